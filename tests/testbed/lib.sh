# Shared settings and helpers of tests/testbed/up and tests/testbed/down (sourced, not run).
# shellcheck disable=SC2034  # the settings are used by up and down
# shellcheck shell=bash

TESTBED_SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$TESTBED_SRC/../.." && pwd)"
TB="$ROOT/target/testbed"

PG_PORT="${TESTBED_PG_PORT:-25432}"
S3_PORT="${TESTBED_S3_PORT:-29000}"
FAST_S3_PORT="${TESTBED_FAST_S3_PORT:-29100}"       # s3s-fs, with TESTBED_S3=fast (see fast-s3)
RS_PORT="${TESTBED_REDSHIFT_PORT:-25439}"
RS_API_PORT="${TESTBED_REDSHIFT_API_PORT:-25440}"   # the emulator's AWS API double (HTTP)
RS_CLUSTER_ID="testbed"
RS_WORKGROUP="testbed-wg"
RS_USER="awsuser"
RS_PASSWORD="Testbed-Passw0rd"
RS_DATABASE="dev"
S3_BUCKET="redshift-flight-test"
S3_REGION="us-east-1"
IAM_ROLE="arn:aws:iam::123456789012:role/redshift-unload"
AWS_KEY_ID="testbed"
AWS_SECRET="testbed-secret-key"

VENV="$TB/venv"
MOTO_PID="$TB/moto.pid"
MOTO_LOG="$TB/moto.log"
FAST_S3_PID="$TB/fast-s3.pid"
FAST_S3_LOG="$TB/fast-s3.log"
FAST_S3_ROOT="$TB/s3fs"
EMU_PID="$TB/emulator.pid"
EMU_LOG="$TB/emulator.log"
EMU_STAMP="$TB/emulator.stamp"

log() { printf 'testbed: %s\n' "$*" >&2; }
die() { printf 'testbed: ERROR: %s\n' "$*" >&2; exit 1; }

# PostgreSQL refuses to run as root: as root it runs as the `postgres` user of the Debian package.
pg_user() { if [ "$(id -u)" -eq 0 ]; then echo postgres; else id -un; fi; }
as_pg() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# Where the cluster lives: target/testbed/pg, unless the PostgreSQL user cannot reach that folder
# (a checkout under /root, say) or the socket path would be too long; then a folder under /var/tmp
# named after the checkout.
pg_base() {
  local base="$TB/pg"
  local probe="$TB"
  [ -d "$probe" ] || probe="$ROOT"
  if [ $(( ${#base} + 20 )) -gt 100 ] || \
     { id postgres >/dev/null 2>&1 && [ "$(id -u)" -eq 0 ] && ! runuser -u postgres -- test -x "$probe"; }; then
    base="/var/tmp/redshift-flight-testbed-$(printf '%s' "$ROOT" | sha256sum | cut -c1-12)/pg"
  fi
  echo "$base"
}

# The newest PostgreSQL of the Debian packages (or the one matching an existing cluster).
pg_bindir() {
  local want="${1:-}" d
  if [ -n "$want" ] && [ -x "/usr/lib/postgresql/$want/bin/postgres" ]; then
    echo "/usr/lib/postgresql/$want/bin"; return 0
  fi
  d="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1 || true)"
  [ -n "$d" ] && [ -x "$d/postgres" ] && echo "$d"
}

# True when something accepts TCP connections on 127.0.0.1:$1.
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Pid from a pid file, if that process is alive and its command line contains $2.
live_pid() {
  local file="$1" pattern="$2" pid
  [ -f "$file" ] || return 1
  pid="$(head -n1 "$file" 2>/dev/null | tr -dc 0-9)"
  [ -n "$pid" ] && alive "$pid" || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$pattern" || return 1
  echo "$pid"
}

# True while process $1 exists and is not a zombie.
alive() {
  local st
  st="$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -c1)" || return 1
  [ -n "$st" ] && [ "$st" != Z ] && [ "$st" != X ]
}

# Stop a process started by `up` (in its own session, so its group is signalled): SIGTERM, wait up
# to $3 seconds, then SIGKILL. Removes the pid file.
stop_pidfile() {
  local name="$1" file="$2" pattern="$3" deadline="${4:-15}" pid i
  if pid="$(live_pid "$file" "$pattern")"; then
    log "stopping $name (pid $pid)"
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < deadline * 10; i++)); do
      alive "$pid" || break
      sleep 0.1
    done
    if alive "$pid"; then
      log "$name did not stop within ${deadline}s: SIGKILL"
      kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
      for ((i = 0; i < 50; i++)); do alive "$pid" || break; sleep 0.1; done
    fi
    if alive "$pid"; then die "$name (pid $pid) is still alive"; fi
  fi
  rm -f "$file"
}

# Take the test bed's lock, so that two `up`/`down` of one checkout don't interleave. Every
# long-lived process that `up` starts is started with `9>&-`, so that it does not inherit the lock.
take_lock() {
  mkdir -p "$TB"
  exec 9>"$TB/.lock"
  if ! flock -w 600 9; then die "could not lock $TB/.lock within 600s"; fi
}
