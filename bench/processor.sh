#!/usr/bin/env bash
# Processor throughput: node-messages per second for 1 000 `count` nodes, messages pushed in
# batches straight through redpill, Redis with AOF everysec, beside redis-benchmark's
# pipelined and Lua ceilings on the same server in the same run; 1 000 against 100 000 nodes
# made before the timed run; then a profiled run that says where Redis's time goes, per
# command and per redpill script.
#
# Usage: bench/processor.sh [messages]      (default 300000)
# Prints markdown tables for docs/benchmarks.md. Needs redis-server and redis-benchmark.
set -euo pipefail

messages=${1:-300000}
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
cleanup() {
  [ -f "$work/redis.pid" ] && kill "$(cat "$work/redis.pid")" 2>/dev/null || true
  sleep 0.3
  rm -rf "$work" 2>/dev/null || true
}
trap cleanup EXIT

for tool in redis-server redis-benchmark redis-cli; do
  command -v "$tool" >/dev/null || { echo "bench/processor.sh: $tool not found; install redis-server and redis-tools" >&2; exit 1; }
done

echo "building release binaries..." >&2
cargo build --release --quiet --manifest-path "$root/Cargo.toml" -p processor --bin processor -p mesh-tests --example processor_bench

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
start_redis() {
  rm -rf "$work/data"; mkdir -p "$work/data"
  redis-server --port "$port" --bind 127.0.0.1 --dir "$work/data" --save '' --appendonly yes --appendfsync everysec \
    --daemonize yes --pidfile "$work/redis.pid" --logfile "$work/redis.log" >/dev/null
  for _ in $(seq 100); do redis-cli -p "$port" ping 2>/dev/null | grep -q PONG && break; sleep 0.05; done
}
stop_redis() {
  kill "$(cat "$work/redis.pid")" 2>/dev/null || true
  for _ in $(seq 100); do redis-cli -p "$port" ping >/dev/null 2>&1 || break; sleep 0.05; done
}
rps() { tail -n 1 | awk -F'","' '{print $2}' | cut -d. -f1; }

start_redis
echo "redis-benchmark ceilings (AOF everysec, port $port)..." >&2
# The same shape as a processor commit of 100 count messages, reduced to its Redis work: one
# HINCRBY per message on its node's state, one XADD per batch. Payloads have no commas, for --csv.
step100=$(redis-cli -p "$port" script load "for i=1,100 do redis.call('HINCRBY', KEYS[1], 'n' .. (i % 16), 1) end redis.call('XADD', KEYS[2], 'MAXLEN', '~', 10000, '*', 'b', ARGV[1]) return 1")
payload=$(printf 'x%.0s' $(seq 300))
lua_c1=$(redis-benchmark -p "$port" -c 1 -n 20000 --csv EVALSHA "$step100" 2 '{p1}:node' '{p1}:out' "$payload" | rps)
lua_c50=$(redis-benchmark -p "$port" -c 50 -n 50000 --csv EVALSHA "$step100" 2 '{p1}:node' '{p1}:out' "$payload" | rps)
hincr=$(redis-benchmark -p "$port" -c 50 -P 64 -n 2000000 --csv HINCRBY node:st count 1 | rps)
lpush=$(redis-benchmark -p "$port" -c 50 -P 64 -n 2000000 -d 150 --csv -t lpush | rps)
stop_redis

echo "# $(date -u +%Y-%m-%dT%H:%MZ) on $(nproc) cores, $(redis-server --version | awk '{print $3}'), AOF everysec, $messages messages"
echo
echo "| redis-benchmark ceiling | ops/s | node-messages/s |"
echo "|---|---|---|"
echo "| EVALSHA of 100 × HINCRBY + 1 XADD, -c 1 | $lua_c1 | $((lua_c1 * 100)) |"
echo "| EVALSHA of 100 × HINCRBY + 1 XADD, -c 50 | $lua_c50 | $((lua_c50 * 100)) |"
echo "| HINCRBY, -c 50 -P 64 | $hincr | $hincr |"
echo "| LPUSH 150 B, -c 50 -P 64 | $lpush | |"
echo
echo "| run | throughput | time | exact | processor CPU µs / node-message | Redis CPU µs / node-message |"
echo "|---|---|---|---|---|---|"
for processors in 1 2; do
  start_redis
  echo "processors: $processors..." >&2
  "$root/target/release/examples/processor_bench" --url "redis://127.0.0.1:$port" \
    --processor "$root/target/release/processor" --messages "$messages" --processors "$processors" \
    --redis-pid "$(cat "$work/redis.pid")"
  stop_redis
done
# 1 000 against 100 000 nodes, each made before the timed run (which then includes the
# processor's start and its loading of every node), so both figures are the messages' alone.
for nodes in 1000 100000; do
  start_redis
  echo "nodes made first: $nodes..." >&2
  "$root/target/release/examples/processor_bench" --url "redis://127.0.0.1:$port" \
    --processor "$root/target/release/processor" --messages "$messages" --nodes "$nodes" \
    --nodes-first --redis-pid "$(cat "$work/redis.pid")" | sed 's/count nodes/count nodes made first/'
  stop_redis
done

# Where Redis's time goes: one more run of 1 processor with every command in SLOWLOG, per
# command and per redpill script (the log's own cost makes this run's throughput no figure).
start_redis
echo "profiled run, 1 processor..." >&2
echo
echo "Profiled run, 1 processor:"
echo
"$root/target/release/examples/processor_bench" --url "redis://127.0.0.1:$port" \
  --processor "$root/target/release/processor" --messages "$messages" --processors 1 \
  --redis-pid "$(cat "$work/redis.pid")" --profile
stop_redis
