#!/usr/bin/env bash
# Queue push + pull + ack in batches of 100 (redpill), beside redis-benchmark's pipelined
# LPUSH and LMOVE at -P 100, against the same freshly started Redis, without and with AOF.
#
# The peer, BullMQ (bench/peer-bullmq, pinned with a lockfile), runs on the same server right
# after, when node and npm are on the PATH.
#
# Usage: bench/queue.sh [messages]      (default 200000)
# Prints markdown tables for docs/benchmarks.md. Needs redis-server and redis-benchmark.
set -euo pipefail

messages=${1:-200000}
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
cleanup() {
  for pidfile in "$work"/*/redis.pid; do
    [ -f "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null || true
  done
  sleep 0.3 # let Redis finish its last AOF write before the folder goes
  rm -rf "$work" 2>/dev/null || true
}
trap cleanup EXIT

for tool in redis-server redis-benchmark redis-cli; do
  command -v "$tool" >/dev/null || { echo "bench/queue.sh: $tool not found; install redis-server and redis-tools" >&2; exit 1; }
done

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

peer=yes
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "node/npm not found: skipping the BullMQ peer" >&2
  peer=no
elif [ ! -d "$root/bench/peer-bullmq/node_modules" ]; then
  echo "installing the BullMQ peer (npm ci)..." >&2
  npm ci --prefix "$root/bench/peer-bullmq" --no-audit --no-fund >/dev/null
fi

echo "building the benchmark (release)..." >&2
cargo build --release --quiet -p redpill --example queue_bench --manifest-path "$root/Cargo.toml"

start_redis() { # $1 = no | everysec
  local port dir
  port=$(free_port)
  dir="$work/$1"
  mkdir -p "$dir"
  local aof=(--appendonly no)
  [ "$1" = everysec ] && aof=(--appendonly yes --appendfsync everysec)
  redis-server --port "$port" --bind 127.0.0.1 --dir "$dir" --save '' "${aof[@]}" \
    --daemonize yes --pidfile "$dir/redis.pid" --logfile "$dir/log" >/dev/null
  for _ in $(seq 100); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.05; done
  echo "$port"
}

rps() { # redis-benchmark --csv output -> requests per second of the last line
  tail -n 1 | awk -F'","' '{print $2}' | cut -d. -f1
}

echo "# $(date -u +%Y-%m-%dT%H:%MZ) on $(nproc) cores, $(redis-server --version | awk '{print $3}'), $messages messages"
for aof in no everysec; do
  port=$(start_redis "$aof")
  echo "running with appendonly=$aof on port $port..." >&2
  lpush=$(redis-benchmark -p "$port" -c 1 -P 100 -n 1000000 -d 64 --csv -t lpush | rps)
  # LMOVE needs a source that never runs dry: prefill it.
  redis-cli -p "$port" eval "for i=1,1001000 do redis.call('RPUSH', KEYS[1], 'x') end" 1 lmsrc >/dev/null
  lmove=$(redis-benchmark -p "$port" -c 1 -P 100 -n 1000000 --csv LMOVE lmsrc lmdst RIGHT LEFT | rps)
  lpush50=$(redis-benchmark -p "$port" -c 50 -P 64 -n 2000000 -d 64 --csv -t lpush | rps)
  redis-cli -p "$port" flushall >/dev/null
  echo
  echo "## appendonly $aof"
  echo
  echo "| redis-benchmark (ceiling, commands/s) | ops/s |"
  echo "|---|---|"
  echo "| LPUSH 64 B, -c 1 -P 100 | $lpush |"
  echo "| LMOVE, -c 1 -P 100 | $lmove |"
  echo "| LPUSH 64 B, -c 50 -P 64 | $lpush50 |"
  echo
  echo "redpill queue_bench..." >&2
  "$root/target/release/examples/queue_bench" --url "redis://127.0.0.1:$port" --messages "$messages" | tail -n +2
  if [ "$peer" = yes ]; then
    redis-cli -p "$port" flushall >/dev/null
    echo "BullMQ..." >&2
    echo
    node "$root/bench/peer-bullmq/bench.js" "$port" "$messages"
  fi
done
