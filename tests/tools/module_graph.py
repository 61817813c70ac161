#!/usr/bin/env python3
"""The import graph of the server's top-level modules (src/<module>.rs or src/<module>/),
read from `crate::<module>` paths in the code (comments and doc comments excluded).

Fails (exit 1) when the graph has a circle, or when a file in src/ is over 600 lines: the
structure rules of issue 12. `--print` prints the graph, one module and what it imports a line.
Run by tests/run; by hand: python3 tests/tools/module_graph.py --print
"""
import os
import re
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
SRC = os.path.join(ROOT, "src")
MAX_LINES = 600
# Binaries and test-only helpers are not part of the library's layering.
SKIP = {"main", "lib", "testing"}


def top_module(path):
    rel = os.path.relpath(path, SRC)
    first = rel.split(os.sep)[0]
    return first[:-3] if first.endswith(".rs") else first


def code_lines(text):
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("//"):
            continue
        yield line.split("//")[0] if "\"" not in line else line


def graph():
    edges = {}
    too_long = []
    for dirpath, _, files in os.walk(SRC):
        for name in files:
            if not name.endswith(".rs"):
                continue
            path = os.path.join(dirpath, name)
            with open(path, encoding="utf-8") as f:
                text = f.read()
            lines = text.count("\n")
            if lines > MAX_LINES:
                too_long.append((os.path.relpath(path, ROOT), lines))
            module = top_module(path)
            if module in SKIP:
                continue
            # `#[cfg(test)]` modules in their own file may reach anywhere (fakes, fixtures).
            if name == "tests.rs":
                continue
            deps = edges.setdefault(module, set())
            for line in code_lines(text):
                for target in re.findall(r"crate::([a-z_][a-z0-9_]*)", line):
                    if target != module and target not in SKIP:
                        deps.add(target)
    return edges, too_long


def find_cycle(edges):
    state = {}
    stack = []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(edges):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def main():
    edges, too_long = graph()
    if "--print" in sys.argv:
        for module in sorted(edges):
            print(f"{module:10} -> {', '.join(sorted(edges[module])) or '(leaf)'}")
    failed = False
    cycle = find_cycle(edges)
    if cycle:
        print("import circle among src/ modules: " + " -> ".join(cycle), file=sys.stderr)
        failed = True
    for path, lines in too_long:
        print(f"{path} has {lines} lines (the limit is {MAX_LINES})", file=sys.stderr)
        failed = True
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
