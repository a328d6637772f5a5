#!/usr/bin/env bash
# Archive throughput: documents per second one store or more write to MongoDB, with outputs
# waiting in Redis when they start (so the figure is the archive's, not the processor's).
#
# Usage: bench/archive.sh [messages] [batch] [stores]      (defaults 50000, 1000 and 1)
# Uses `mongod` when it is on the PATH, else nx-27017 from .venv (see .ci/run). Prints a
# markdown row for docs/benchmarks.md.
set -euo pipefail

messages=${1:-50000}
batch=${2:-1000}
stores=${3:-1}
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  [ -f "$work/redis.pid" ] && kill "$(cat "$work/redis.pid")" 2>/dev/null || true
  sleep 0.3
  rm -rf "$work" 2>/dev/null || true
}
trap cleanup EXIT

command -v redis-server >/dev/null || { echo "bench/archive.sh: redis-server not found; apt-get install redis-server" >&2; exit 1; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

echo "building release binaries..." >&2
cargo build --release --quiet --manifest-path "$root/Cargo.toml" -p processor --bin processor -p store --bin store -p mesh-tests --example archive_bench

redis_port=$(free_port)
mkdir -p "$work/redis" "$work/mongo"
redis-server --port "$redis_port" --bind 127.0.0.1 --dir "$work/redis" --save '' --appendonly yes --appendfsync everysec \
  --daemonize yes --pidfile "$work/redis.pid" --logfile "$work/redis.log" >/dev/null

mongo_port=$(free_port)
if command -v mongod >/dev/null; then
  server="mongod $(mongod --version | head -1 | awk '{print $3}')"
  mongod --port "$mongo_port" --dbpath "$work/mongo" --bind_ip 127.0.0.1 --nounixsocket >"$work/mongo.log" 2>&1 &
  concern=journaled
elif [ -x "$root/.venv/bin/nx-27017" ]; then
  server="nx-27017 $("$root/.venv/bin/python" -c 'import importlib.metadata as m; print(m.version("nx-27017"))')"
  "$root/.venv/bin/nx-27017" --host 127.0.0.1 -p "$mongo_port" --data-dir "$work/mongo" \
    --log-file "$work/mongo.log" --pid-file "$work/mongo.pid" >"$work/mongo.out" 2>&1 &
  concern=journaled
else
  echo "bench/archive.sh: no mongod on the PATH and no .venv/bin/nx-27017; run .ci/run or: python3 -m venv .venv && .venv/bin/pip install nx-27017==0.8.1" >&2
  exit 1
fi
pids+=($!)
for _ in $(seq 100); do (echo > "/dev/tcp/127.0.0.1/$mongo_port") 2>/dev/null && break; sleep 0.1; done

echo "# $(date -u +%Y-%m-%dT%H:%MZ) on $(nproc) cores, $server, Redis $(redis-server --version | awk '{print $3}') AOF everysec"
"$root/target/release/examples/archive_bench" --url "redis://127.0.0.1:$redis_port" \
  --mongodb "mongodb://127.0.0.1:$mongo_port/bench" --processor "$root/target/release/processor" \
  --store "$root/target/release/store" --messages "$messages" --batch "$batch" --write-concern "$concern" --stores "$stores"
