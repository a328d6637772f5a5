# Shared by the benchmarks that run the whole mesh on a Redis of their own (bench/mesh.sh,
# bench/latency.sh). Source it after `set -euo pipefail`, with `bench` set to the script's
# name. It defines:
#   root, work       the checkout, and a temporary folder removed on exit (with the mesh and
#                    the Redis stopped first);
#   say, fail        progress and errors on stderr, prefixed with the script's name;
#   free_port        a free TCP port on 127.0.0.1;
#   start_redis      a fresh redis-server with AOF (appendfsync everysec) on a free port, its
#                    data in $work: sets redis_port;
#   start_mesh F     scripts/up on that Redis with the foreman formation F (release build, the
#                    data of MongoDB in $work), until web_face and the notifier are ready: sets
#                    web, notifier and stats (ports) and up_pid;
#   cpu_ticks, cpu_use  the CPU each process used between two snapshots (below).

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
work=$(mktemp -d)
up_pid=
cleanup() {
  if [ -n "$up_pid" ]; then
    kill -TERM "$up_pid" 2>/dev/null || true
    wait "$up_pid" 2>/dev/null || true
  fi
  [ -f "$work/redis.pid" ] && kill "$(cat "$work/redis.pid")" 2>/dev/null || true
  sleep 0.3
  rm -rf "$work" 2>/dev/null || true
}
trap cleanup EXIT
say() { echo "$bench: $*" >&2; }
fail() { say "$*"; exit 1; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

start_redis() {
  redis_port=$(free_port)
  redis-server --port "$redis_port" --bind 127.0.0.1 --dir "$work" --save '' \
    --appendonly yes --appendfsync everysec --daemonize yes --pidfile "$work/redis.pid" \
    --logfile "$work/redis.log" >/dev/null
  for _ in $(seq 100); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break; sleep 0.05; done
  redis-cli -p "$redis_port" ping >/dev/null 2>&1 || fail "redis-server did not start: $(tail -n 5 "$work/redis.log")"
}

start_mesh() {
  web=$(free_port)
  notifier=$(free_port)
  stats=$(free_port)
  say "starting the mesh (scripts/up, release build; the first build takes minutes)..."
  REDIS_URL="redis://127.0.0.1:$redis_port" GORGON_UP_VAR="$work/var" \
    GORGON_WEB_PORT=$web GORGON_NOTIFIER_PORT=$notifier GORGON_STATS_PORT=$stats \
    GORGON_UP_FORMATION="$1" RUST_LOG=warn \
    "$root/scripts/up" >"$work/up.log" 2>&1 &
  up_pid=$!
  for _ in $(seq 1800); do
    if curl -fs "http://127.0.0.1:$web/readyz" >/dev/null 2>&1 \
      && curl -fs "http://127.0.0.1:$notifier/readyz" >/dev/null 2>&1; then
      return
    fi
    kill -0 "$up_pid" 2>/dev/null || { cat "$work/up.log" >&2; fail "scripts/up stopped"; }
    sleep 0.5
  done
  tail -50 "$work/up.log" >&2
  fail "the mesh did not come up"
}

# cpu_ticks FILE: every process's CPU ticks (user + system) and name, with the machine's idle
# ticks, as JSON; cpu_use BEFORE AFTER SECONDS: each name's share of one core between them.
cpu_ticks() {
  python3 - "$1" <<'PY'
import json, os, sys
ticks = {}
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        with open(f"/proc/{pid}/stat") as stat:
            text = stat.read()
    except OSError:
        continue
    name = text[text.index("(") + 1:text.rindex(")")]
    fields = text[text.rindex(")") + 2:].split()
    ticks[pid] = [name, int(fields[11]) + int(fields[12])]
with open("/proc/stat") as stat:
    idle = int(stat.readline().split()[4])
json.dump({"processes": ticks, "idle": idle}, open(sys.argv[1], "w"))
PY
}
cpu_use() {
  python3 - "$1" "$2" "$3" <<'PY'
import json, os, sys
before, after = (json.load(open(path)) for path in sys.argv[1:3])
seconds, hz = float(sys.argv[3]), os.sysconf("SC_CLK_TCK")
use = {}
for pid, (name, ticks) in after["processes"].items():
    spent = ticks - before["processes"].get(pid, [name, 0])[1]
    if spent > 0:
        use[name] = use.get(name, 0) + spent
top = sorted(use.items(), key=lambda item: -item[1])[:8]
parts = [f"{name} {100 * ticks / hz / seconds:.0f}" for name, ticks in top]
parts.append(f"idle {100 * (after['idle'] - before['idle']) / hz / seconds:.0f}")
print(", ".join(parts))
PY
}
