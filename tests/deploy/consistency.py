"""Cross-checks of the deployment files against each other and against the server's source.

Run by tests/deploy/check with the tools venv's Python (it needs PyYAML); the rendered manifests
(`kubectl kustomize deploy/kubernetes`) come as the first argument, or the files themselves are
read when it is `-`. Schema validity is kubernetes-validate's job; this checks what no schema can:
that names, ports, labels and timeouts agree across files, that every setting is a key the server
knows (src/config/raw.rs), that no secret sits in a ConfigMap, that the committed secrets are
placeholders the server refuses, and that the Docker build context holds what the Dockerfile
copies and nothing else of the checkout's (.dockerignore, with Docker's matching rules).

May import: the standard library and PyYAML only.
"""

import base64
import os
import re
import sys

import yaml

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
K8S = os.path.join(ROOT, "deploy", "kubernetes")
FLIGHT_SERVICE = "arrow.flight.protocol.FlightService"
# Variables the server reads that are not configuration keys.
EXTRA_VARS = {"REDSHIFT_FLIGHT_LOG", "REDSHIFT_FLIGHT_CONFIG"}

failures = []


def check(condition, message):
    """Records `message` as a failure unless `condition` holds."""
    if not condition:
        failures.append(message)
    return condition


def read(*parts):
    with open(os.path.join(ROOT, *parts), encoding="utf-8") as f:
        return f.read()


def config_vars():
    """{env var: is secret} for every configuration key of src/config/raw.rs."""
    found = {}
    for m in re.finditer(r'^\s*\w+:\s*"(REDSHIFT_FLIGHT_\w+)",\s*secret\s*=\s*(true|false)',
                         read("src", "config", "raw.rs"), re.M):
        found[m.group(1)] = m.group(2) == "true"
    check(len(found) > 30, f"src/config/raw.rs: found only {len(found)} keys; has its format changed?")
    return found


# --- Dockerfile and .dockerignore ---------------------------------------------------------

def dockerfile_stages():
    """[(from line, [(instruction, arguments)])] with continuation lines joined."""
    text = re.sub(r"\\\n", " ", read("Dockerfile"))
    stages = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        word = word.upper()
        if word == "FROM":
            stages.append((rest.strip(), []))
        elif stages:
            stages[-1][1].append((word, rest.strip()))
    return stages


def dockerignore_regex(pattern):
    """Docker's pattern syntax (moby patternmatcher) as a regular expression."""
    out, i = "", 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif c == "*":
            out, i = out + "[^/]*", i + 1
        elif c == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(c), i + 1
    return re.compile(out + r"\Z")


def in_context(path, rules):
    """Whether Docker sends `path` with these .dockerignore rules: the last rule that matches
    the path or one of its parent folders decides."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    excluded = False
    for negate, regex in rules:
        if any(regex.match(p) for p in prefixes):
            excluded = not negate
    return not excluded


def check_docker(uid_holder):
    stages = dockerfile_stages()
    if not check(len(stages) >= 2, "Dockerfile: expected a build stage and a runtime stage"):
        return
    build_from, build = stages[0]
    runtime_from, runtime = stages[-1]
    check(re.match(r"rust:\S*bookworm\s+AS\s+\w+", build_from, re.I),
          f"Dockerfile: the build stage should be the official rust image on bookworm: {build_from}")
    runs = " ".join(args for word, args in build if word == "RUN")
    for flag in ("--release", "--locked", "--bin redshift-flight"):
        check(flag in runs, f"Dockerfile: the build does not use {flag}")
    rust = re.search(r"ARG RUST_VERSION=(\d+)\.(\d+)", read("Dockerfile"))
    need = re.search(r'rust-version\s*=\s*"(\d+)\.(\d+)', read("Cargo.toml"))
    if check(rust and need, "Dockerfile: ARG RUST_VERSION or Cargo.toml rust-version not found"):
        check(tuple(map(int, rust.groups())) >= tuple(map(int, need.groups())),
              f"Dockerfile: Rust {rust.group(1)}.{rust.group(2)} is older than Cargo.toml's rust-version")
    check("distroless" in runtime_from or "slim" in runtime_from,
          f"Dockerfile: the runtime stage should be small: {runtime_from}")
    words = dict(runtime)
    user = words.get("USER", "")
    uid = user.split(":")[0]
    if check(uid.isdigit() and int(uid) != 0,
             f"Dockerfile: the runtime stage must run as a numeric non-root user, not {user!r}"):
        uid_holder.append(int(uid))
    check(set(words.get("EXPOSE", "").split()) >= {"8815", "9090"}, "Dockerfile: EXPOSE 8815 9090")
    check(words.get("ENTRYPOINT") == '["redshift-flight"]', "Dockerfile: ENTRYPOINT [\"redshift-flight\"]")
    check(words.get("CMD") == '["serve"]', "Dockerfile: CMD [\"serve\"]")
    env = words.get("ENV", "")
    check("REDSHIFT_FLIGHT_LISTEN_ADDRESS=0.0.0.0:8815" in env,
          "Dockerfile: the image must listen on 0.0.0.0:8815 (the EXPOSEd port)")
    check("REDSHIFT_FLIGHT_METRICS_ADDRESS=0.0.0.0:9090" in env,
          "Dockerfile: metrics on 0.0.0.0:9090 (the EXPOSEd port)")
    check("REDSHIFT_FLIGHT_INSECURE" not in env, "Dockerfile: the image must not turn off authentication")
    if "HEALTHCHECK" not in words:
        check("grpc.health.v1.Health" in read("Dockerfile"),
              "Dockerfile: without HEALTHCHECK, say how the gRPC health service is probed")

    rules = []
    for line in read(".dockerignore").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = os.path.normpath(line.lstrip("!").strip()).lstrip("/")
        rules.append((negate, dockerignore_regex(pattern)))
    sources = []
    for _, steps in stages:
        for word, args in steps:
            if word in ("COPY", "ADD") and "--from=" not in args:
                sources += [a for a in args.split()[:-1] if not a.startswith("--")]
    for source in sources:
        source = source.rstrip("/")
        if os.path.isdir(os.path.join(ROOT, source)):
            files = [os.path.relpath(os.path.join(d, f), ROOT)
                     for d, _, fs in os.walk(os.path.join(ROOT, source)) for f in fs]
        else:
            files = [source]
        check(os.path.exists(os.path.join(ROOT, source)), f"Dockerfile: COPY {source}: no such file")
        for f in files:
            if not f.endswith(("~", ".swp", ".DS_Store")):
                check(in_context(f, rules), f".dockerignore: {f} (copied by the Dockerfile) is left out")
    for f in ("target/release/redshift-flight", ".git/HEAD", "fuzz/artifacts/x/crash-1",
              "fuzz/corpus/x/1", "configuration.json", "clients/python/pyproject.toml",
              "tests/flight_e2e.rs", "tests/testbed/up", "tests/redshift-emulator/src/lib.rs",
              "deploy/kubernetes/secret.yaml", "deploy/systemd/redshift-flight.env",
              "bench/README.md", ".ci/run", "src/.main.rs.swp"):
        check(not in_context(f, rules), f".dockerignore: {f} would be sent to the builder")


# --- Kubernetes ---------------------------------------------------------------------------

def load_manifests(rendered):
    if rendered != "-":
        with open(rendered, encoding="utf-8") as f:
            return [d for d in yaml.safe_load_all(f) if d]
    kustomization = yaml.safe_load(read("deploy", "kubernetes", "kustomization.yaml"))
    docs = []
    for name in kustomization.get("resources", []):
        with open(os.path.join(K8S, name), encoding="utf-8") as f:
            docs += [d for d in yaml.safe_load_all(f) if d]
    return docs


def check_kustomization():
    kustomization = yaml.safe_load(read("deploy", "kubernetes", "kustomization.yaml"))
    listed = set(kustomization.get("resources", []))
    present = {f for f in os.listdir(K8S) if f.endswith((".yaml", ".yml")) and f != "kustomization.yaml"}
    check(listed == present, f"kustomization.yaml: resources {sorted(listed)} != files {sorted(present)}")
    return kustomization


def port_of(container, name):
    return next((p["containerPort"] for p in container.get("ports", []) if p.get("name") == name), None)


def check_kubernetes(docs, kustomization, known, image_uid):
    by_kind = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)
    for kind in ("ServiceAccount", "ConfigMap", "Secret", "Deployment", "Service",
                 "PodDisruptionBudget", "HorizontalPodAutoscaler"):
        check(len(by_kind.get(kind, [])) == 1, f"kubernetes: expected one {kind}")
    if failures:
        return
    [sa], [cm], [secret], [dep], [svc], [pdb], [hpa] = (by_kind[k] for k in (
        "ServiceAccount", "ConfigMap", "Secret", "Deployment", "Service",
        "PodDisruptionBudget", "HorizontalPodAutoscaler"))
    spec, pod = dep["spec"], dep["spec"]["template"]["spec"]
    labels = dep["spec"]["template"]["metadata"]["labels"]

    def selects(selector, what):
        check(selector and all(labels.get(k) == v for k, v in selector.items()),
              f"kubernetes: the {what} selector {selector} does not select the pods {labels}")

    selects(spec["selector"]["matchLabels"], "Deployment's")
    selects(svc["spec"]["selector"], "Service's")
    selects(pdb["spec"]["selector"]["matchLabels"], "PodDisruptionBudget's")
    ref = hpa["spec"]["scaleTargetRef"]
    check((ref["kind"], ref["name"]) == ("Deployment", dep["metadata"]["name"]),
          "HorizontalPodAutoscaler: scaleTargetRef is not the Deployment")
    check(hpa["spec"].get("minReplicas", 1) >= 3, "HorizontalPodAutoscaler: at least 3 replicas")
    check(spec.get("replicas") in (None, hpa["spec"].get("minReplicas")),
          "Deployment: replicas disagrees with the autoscaler's minimum")
    check(pod.get("serviceAccountName") == sa["metadata"]["name"], "Deployment: serviceAccountName")
    check(sa["metadata"].get("annotations", {}).get("eks.amazonaws.com/role-arn", "").startswith("arn:aws:iam::"),
          "ServiceAccount: eks.amazonaws.com/role-arn (IRSA)")

    containers = pod["containers"]
    check(len(containers) == 1, "Deployment: one container")
    c = containers[0]
    image = kustomization.get("images", [{}])[0]
    check(c["image"].split(":")[0] in (image.get("name"), image.get("newName")),
          f"Deployment: image {c['image']} is not the one kustomization.yaml sets")
    config = cm["data"]
    secret_data = secret.get("data", {})
    for name, value in config.items():
        check(name in known or name in EXTRA_VARS, f"ConfigMap: {name} is not a setting of the server")
        check(not known.get(name, False), f"ConfigMap: {name} is a secret: put it in the Secret")
        check(isinstance(value, str), f"ConfigMap: {name} must be a string")
    for name, value in secret_data.items():
        try:
            base64.b64decode(value or "", validate=True)
        except ValueError:
            failures.append(f"Secret: {name} is not base64")
    check([e["configMapRef"]["name"] for e in c.get("envFrom", []) if "configMapRef" in e] == [cm["metadata"]["name"]],
          "Deployment: envFrom the ConfigMap")
    env_names = set(config)
    for e in c.get("env", []):
        env_names.add(e["name"])
        check(e["name"] in known or e["name"] in EXTRA_VARS, f"Deployment: {e['name']} is not a setting")
        ref = e.get("valueFrom", {}).get("secretKeyRef")
        if ref:
            check(ref["name"] == secret["metadata"]["name"] and ref["key"] in secret_data,
                  f"Deployment: {e['name']} names {ref['name']}/{ref['key']}, which the Secret lacks")
        elif known.get(e["name"]):
            failures.append(f"Deployment: {e['name']} is a secret: take it from the Secret")
    check("REDSHIFT_FLIGHT_TICKET_SECRET" in env_names or "REDSHIFT_FLIGHT_TICKET_SECRET_FILE" in env_names,
          "Deployment: replicas must share ticket_secret")
    check(env_names & {"REDSHIFT_FLIGHT_AUTH_TOKENS", "REDSHIFT_FLIGHT_AUTH_FILE"},
          "Deployment: no authentication (auth_tokens or auth_file)")
    check(config.get("REDSHIFT_FLIGHT_INSECURE", "false") != "true", "ConfigMap: insecure must stay off")
    ticket = base64.b64decode(secret_data.get("ticket_secret", "")).decode()
    check(all(len(s.strip()) < 32 for s in ticket.split(",")),
          "Secret: ticket_secret holds a usable secret: commit a placeholder the server refuses")

    listen = config.get("REDSHIFT_FLIGHT_LISTEN_ADDRESS", "")
    grpc_port, metrics_port = port_of(c, "grpc"), port_of(c, "metrics")
    check(listen == f"0.0.0.0:{grpc_port}", f"ConfigMap: listen_address {listen} vs containerPort {grpc_port}")
    check(config.get("REDSHIFT_FLIGHT_METRICS_ADDRESS") == f"0.0.0.0:{metrics_port}",
          "ConfigMap: metrics_address vs the metrics containerPort")
    ready, live = c.get("readinessProbe", {}), c.get("livenessProbe", {})
    check(ready.get("grpc", {}).get("port") == grpc_port, "Deployment: readinessProbe grpc on the Flight port")
    check(ready.get("grpc", {}).get("service") == FLIGHT_SERVICE,
          f"Deployment: readinessProbe should ask for {FLIGHT_SERVICE} (NOT_SERVING on SIGTERM)")
    check(live.get("grpc", {}).get("port") == grpc_port, "Deployment: livenessProbe grpc on the Flight port")
    check("set_not_serving::<FlightServiceServer" in read("src", "server.rs"),
          "src/server.rs no longer marks the Flight service NOT_SERVING on shutdown")
    grace = int(config.get("REDSHIFT_FLIGHT_SHUTDOWN_GRACE_SECONDS", "30"))
    pre_stop = c.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
    check(pod.get("terminationGracePeriodSeconds", 30) > grace + pre_stop,
          f"Deployment: terminationGracePeriodSeconds must exceed shutdown_grace_seconds ({grace}) + preStop ({pre_stop})")

    psc, csc = pod.get("securityContext", {}), c.get("securityContext", {})
    check(psc.get("runAsNonRoot") is True, "Deployment: runAsNonRoot")
    check(psc.get("runAsUser") in (None, *image_uid), f"Deployment: runAsUser {psc.get('runAsUser')} is not the image's user")
    check(csc.get("readOnlyRootFilesystem") is True, "Deployment: readOnlyRootFilesystem")
    check(csc.get("allowPrivilegeEscalation") is False, "Deployment: allowPrivilegeEscalation: false")
    check("ALL" in csc.get("capabilities", {}).get("drop", []), "Deployment: drop ALL capabilities")
    res = c.get("resources", {})
    check(res.get("requests", {}).get("cpu"), "Deployment: a CPU request (the autoscaler measures against it)")
    memory = res.get("limits", {}).get("memory", "")
    mib = {"Mi": 1, "Gi": 1024}.get(memory[-2:], 0) * int(re.sub(r"\D", "", memory) or 0)
    check(mib > int(config.get("REDSHIFT_FLIGHT_STREAM_MEMORY_MB", "512")) + 256,
          f"Deployment: memory limit {memory!r} leaves no room beyond stream_memory_mb")

    check(svc["spec"].get("type", "ClusterIP") == "ClusterIP", "Service: ClusterIP")
    grpc = [p for p in svc["spec"]["ports"] if p.get("name") == "grpc"]
    if check(len(grpc) == 1, "Service: a port named grpc"):
        check(grpc[0].get("appProtocol") == "grpc", "Service: appProtocol grpc")
        check(grpc[0].get("targetPort") in ("grpc", grpc_port), "Service: targetPort is the Flight port")


# --- systemd ------------------------------------------------------------------------------

def check_systemd(known):
    unit = {}
    for line in read("deploy", "systemd", "redshift-flight.service").splitlines():
        if "=" in line and not line.lstrip().startswith(("#", ";")):
            key, _, value = line.partition("=")
            unit.setdefault(key.strip(), []).append(value.strip())
    env = {}
    for line in read("deploy", "systemd", "redshift-flight.env").splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            env[key.strip()] = value.strip()
            check(key.strip() in known or key.strip() in EXTRA_VARS,
                  f"redshift-flight.env: {key.strip()} is not a setting of the server")
    one = lambda k: unit.get(k, [""])[-1]
    check(one("KillSignal") == "SIGTERM", "systemd: KillSignal=SIGTERM")
    check(one("Restart") == "on-failure", "systemd: Restart=on-failure")
    check(one("DynamicUser") == "yes" or one("User") not in ("", "root"), "systemd: a non-root user")
    check(one("EnvironmentFile").lstrip("-"), "systemd: EnvironmentFile=")
    check(one("NoNewPrivileges") == "yes", "systemd: NoNewPrivileges=yes")
    check(one("ExecStart").endswith("redshift-flight serve"), "systemd: ExecStart=... redshift-flight serve")
    grace = int(env.get("REDSHIFT_FLIGHT_SHUTDOWN_GRACE_SECONDS", "30"))
    stop = re.fullmatch(r"(\d+)s?", one("TimeoutStopSec"))
    check(stop and int(stop.group(1)) > grace, f"systemd: TimeoutStopSec must exceed shutdown_grace_seconds ({grace})")
    check(all(len(s.strip()) < 32 for s in env.get("REDSHIFT_FLIGHT_TICKET_SECRET", "").split(",")),
          "redshift-flight.env: holds a usable ticket secret: commit a placeholder")


def main():
    rendered = sys.argv[1] if len(sys.argv) > 1 else "-"
    known = config_vars()
    image_uid = []
    check_docker(image_uid)
    kustomization = check_kustomization()
    check_kubernetes(load_manifests(rendered), kustomization, known, image_uid)
    check_systemd(known)
    for f in failures:
        print(f"FAIL {f}")
    if failures:
        return 1
    print("consistency: Dockerfile, .dockerignore, deploy/kubernetes and deploy/systemd agree")
    return 0


if __name__ == "__main__":
    sys.exit(main())
