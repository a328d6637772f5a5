#!/usr/bin/env bash
# The whole mesh under load, beside its ceilings and a peer, in one run on one Redis:
#   1. a fresh redis-server (AOF, appendfsync everysec) on a free port, and scripts/up on it
#      (release build, Procfile under foreman: web_face, store, two processors, notifier,
#      stats; MongoDB as scripts/up starts it) on free ports, its data in a temporary folder;
#   2. the Redis ceiling on that server: redis-benchmark LPUSH pipelined (-P 100) and a
#      small Lua script (EVALSHA, -P 100), one client and 50;
#   3. the simulator's scenarios: chain (100 nodes), sensors (10 000 → 100 → 10 → 1) and notes
#      (10 000 users at 1 000 inserts/s with 50 history readers), each verified, with the CPU
#      each process used while it ran (from /proc; the simulator's own is not counted);
#   4. the same chain through BullMQ (bench/peer-bullmq/chain.js, pinned with a lockfile) on the
#      same Redis, when node and npm are on the PATH.
# Prints markdown tables for docs/benchmarks.md on stdout; progress on stderr.
#
# Usage: bench/mesh.sh [chain messages=5000] [sensors messages=100000] [notes messages=30000]
# Needs what scripts/up needs, plus redis-benchmark.
set -euo pipefail

chain_messages=${1:-5000}
sensors_messages=${2:-100000}
notes_messages=${3:-30000}
bench=bench/mesh.sh
# shellcheck source=bench/lib/mesh.sh
. "$(dirname "$0")/lib/mesh.sh"

for tool in redis-server redis-benchmark redis-cli python3; do
  command -v "$tool" >/dev/null || { say "$tool not found; install redis-server and redis-tools"; exit 1; }
done
json() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }

peer=yes
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  say "node/npm not found: skipping the BullMQ peer"
  peer=no
elif [ ! -d "$root/bench/peer-bullmq/node_modules" ]; then
  say "installing the BullMQ peer (npm ci)..."
  npm ci --prefix "$root/bench/peer-bullmq" --no-audit --no-fund >/dev/null
fi

start_redis
start_mesh "all=1,processor=2"

rps() { tail -n 1 | awk -F'","' '{print $2}' | cut -d. -f1; }
say "Redis ceilings on port $redis_port..."
lpush1=$(redis-benchmark -p "$redis_port" -c 1 -P 100 -n 1000000 -d 64 --csv -t lpush | rps)
lpush50=$(redis-benchmark -p "$redis_port" -c 50 -P 100 -n 2000000 -d 64 --csv -t lpush | rps)
script="redis.call('INCR', KEYS[1]) return redis.call('LPUSH', KEYS[2], ARGV[1])"
sha=$(redis-cli -p "$redis_port" script load "$script")
lua1=$(redis-benchmark -p "$redis_port" -c 1 -P 100 -n 1000000 --csv EVALSHA "$sha" 2 bench:n bench:l x | rps)
lua50=$(redis-benchmark -p "$redis_port" -c 50 -P 100 -n 2000000 --csv EVALSHA "$sha" 2 bench:n bench:l x | rps)
redis-cli -p "$redis_port" del bench:n bench:l __rand_int__ mylist >/dev/null

simulate() { # $1 = name of the result file, the rest = simulator arguments
  local name=$1
  shift
  say "simulator $*..."
  cpu_ticks "$work/cpu.before"
  local started status
  started=$(date +%s.%N)
  set +e
  "$root/target/release/simulator" --api "http://127.0.0.1:$web" \
    --notifier "http://127.0.0.1:$notifier" --json "$@" >"$work/$name.json"
  status=$?
  set -e
  cpu_ticks "$work/cpu.after"
  cpu+=("| $name | $(cpu_use "$work/cpu.before" "$work/cpu.after" "$(python3 -c "import time; print(time.time() - $started)")") |")
  [ -s "$work/$name.json" ] || { say "the simulator made no report (exit $status)"; exit 1; }
  [ "$status" = 0 ] || say "the simulator's verification FAILED (exit $status): see the table"
}
cpu=()
simulate chain --messages "$chain_messages" chain --length 100
simulate sensors --messages "$sensors_messages" sensors
simulate notes --messages "$notes_messages" notes

if [ "$peer" = yes ]; then
  say "BullMQ chain of 100 queues, $chain_messages jobs, on the same Redis..."
  node "$root/bench/peer-bullmq/chain.js" "$redis_port" "$chain_messages" 100 50 >"$work/bullmq.json"
fi

echo "# $(date -u +%Y-%m-%dT%H:%MZ) on $(nproc) cores, Redis $(redis-server --version | sed 's/.*v=\([^ ]*\).*/\1/'), mesh: web_face, store, 2 processors, notifier, stats"
echo
echo "| Redis ceiling (same server, AOF everysec) | ops/s |"
echo "|---|---|"
echo "| LPUSH 64 B, -c 1 -P 100 | $lpush1 |"
echo "| LPUSH 64 B, -c 50 -P 100 | $lpush50 |"
echo "| EVALSHA (INCR + LPUSH), -c 1 -P 100 | $lua1 |"
echo "| EVALSHA (INCR + LPUSH), -c 50 -P 100 | $lua50 |"
echo
echo "| simulator scenario | nodes | messages | inject msg/s | node-messages/s | e2e p50 / p99 / max ms | at the end of the graph p50 / p99 / max ms | history p50 / p99 ms (reads: 200 / other) | lost / dup / out of order |"
echo "|---|---|---|---|---|---|---|---|---|"
for name in chain sensors notes; do
  json "'| {} | {} | {} | {:.0f} | {:.0f} | {} / {} / {} | {} / {} / {} | {} / {} ({} / {}) | {} / {} / {} |'.format(
    d['scenario'], d['nodes'], d['sent'], d['inject_per_s'], d['node_messages_per_s'],
    d['e2e_ms']['p50'], d['e2e_ms']['p99'], d['e2e_ms']['max'],
    d['e2e_terminal_ms']['p50'], d['e2e_terminal_ms']['p99'], d['e2e_terminal_ms']['max'],
    d['history_ms']['p50'], d['history_ms']['p99'], d['history_statuses'].get('200', 0),
    sum(v for k, v in d['history_statuses'].items() if k != '200'),
    d['verdict']['lost'], d['verdict']['duplicated'], d['verdict']['out_of_order'])" <"$work/$name.json"
done
echo
echo "| scenario | CPU while it ran, % of one core (the top eight processes, and the machine's idle time of its $(nproc) cores) |"
echo "|---|---|"
printf '%s\n' "${cpu[@]}"
if [ "$peer" = yes ]; then
  echo
  echo "| chain of 100, $chain_messages messages | messages/s end to end | step (node-) messages/s | e2e p50 / p99 / max ms | lost / dup |"
  echo "|---|---|---|---|---|"
  json "'| Gorgon (simulator chain) | {:.0f} | {:.0f} | {} / {} / {} | {} / {} |'.format(
    d['sent'] / d['seconds'], d['node_messages_per_s'], d['e2e_terminal_ms']['p50'],
    d['e2e_terminal_ms']['p99'], d['e2e_terminal_ms']['max'], d['verdict']['lost'],
    d['verdict']['duplicated'])" <"$work/chain.json"
  json "'| BullMQ 6.7.0 (chain.js, concurrency 50) | {} | {} | {} / {} / {} | {} / {} |'.format(
    d['jobs_per_s'], d['step_jobs_per_s'], d['e2e_ms']['p50'], d['e2e_ms']['p99'],
    d['e2e_ms']['max'], d['lost'], d['duplicated'])" <"$work/bullmq.json"
fi
for name in chain sensors notes; do
  [ "$(json "d['passed']" <"$work/$name.json")" = True ] || { say "$name failed its verification"; exit 1; }
done
