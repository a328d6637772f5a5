#!/usr/bin/env bash
# Reading many nodes: node views (attributes, latched output, status) per second through the
# API, one node per request against the bulk reads (`?ids=`, pages), beside Redis's ceiling
# for the same per-node read (the atomic record + newest-event script, EVALSHA pipelined):
#   1. a fresh redis-server (AOF, appendfsync everysec) on a free port, and scripts/up on it
#      (release build, every role once) on free ports;
#   2. topology `reads`: a `pass` entry `e` fanning out to `count` nodes n0..n<nodes-1>, one
#      message injected into `e`, until every node has latched its output;
#   3. redis-benchmark: the read script on one node's keys, one client and 50, -P 100;
#   4. wrk (bench/reads/read.lua) for the given seconds each: GET .../nodes/n<i> round-robin,
#      GET .../nodes?ids= of `per` nodes, GET .../nodes?limit=<per>&after= in id order, and
#      GET .../nodes/n<i>/history?limit=10 (a recent history page, from Redis); every answer
#      must be 200 and hold the nodes (or the history item) asked for (else exit 1).
# Prints a markdown table for docs/benchmarks.md on stdout; progress on stderr.
#
# Usage: bench/reads.sh [seconds=10] [nodes=10000] [per=1000]
# Needs what scripts/up needs, plus redis-benchmark and wrk (apt-get install wrk).
set -euo pipefail

seconds=${1:-10}
nodes=${2:-10000}
per=${3:-1000}
bench=bench/reads.sh
# shellcheck source=bench/lib/mesh.sh
. "$(dirname "$0")/lib/mesh.sh"

for tool in redis-server redis-benchmark redis-cli python3 curl wrk; do
  command -v "$tool" >/dev/null || fail "$tool not found (wrk: apt-get install wrk; the others: scripts/deps test)"
done
case "$seconds$nodes$per" in *[!0-9]*) fail "seconds, nodes and per must be whole numbers" ;; esac
[ "$per" -le 1000 ] || fail "per must be at most 1000 (the most ids one request may name)"

start_redis
start_mesh "all=1"
base="http://127.0.0.1:$web"

say "topology reads: e -> $nodes count nodes..."
python3 - "$nodes" >"$work/doc.json" <<'PY'
import json, sys
n = int(sys.argv[1])
nodes = [{"id": "e", "function": "pass"}] + [{"id": "n%d" % i, "function": "count"} for i in range(n)]
print(json.dumps({"graph": "".join("e --> n%d\n" % i for i in range(n)), "node": nodes}))
PY
status=$(curl -s -o "$work/put.json" -w '%{http_code}' -X PUT -H 'Content-Type: application/json' \
  --data-binary @"$work/doc.json" "$base/v1/topologies/reads")
[ "$status" = 201 ] || fail "PUT /v1/topologies/reads answered $status: $(head -c 500 "$work/put.json")"
status=$(curl -s -o /dev/null -w '%{http_code}' -X POST -H 'Content-Type: application/json' \
  --data '{"hello": "reads"}' "$base/v1/topologies/reads/nodes/e/messages")
[ "$status" = 202 ] || fail "the inject answered $status"
latched() { curl -s "$base/v1/topologies/reads/nodes" \
  | python3 -c 'import json,sys; print(sum(1 for n in json.load(sys.stdin)["nodes"] if n["output"]))'; }
for _ in $(seq 600); do
  done_nodes=$(latched)
  [ "$done_nodes" -ge $((nodes + 1)) ] && break
  sleep 0.5
done
[ "$done_nodes" -ge $((nodes + 1)) ] || fail "only $done_nodes of $((nodes + 1)) nodes latched an output"

say "Redis ceiling for one node's read..."
record=$(redis-cli -p "$redis_port" --scan --pattern '*:node:reads/n0' | head -1)
replay=$(redis-cli -p "$redis_port" --scan --pattern '*:replay:reads/n0' | head -1)
[ -n "$record" ] && [ -n "$replay" ] || fail "node n0's keys were not found in Redis"
script="return {redis.call('HGETALL', KEYS[1]), redis.call('LINDEX', KEYS[2], -1)}"
sha=$(redis-cli -p "$redis_port" script load "$script")
rps() { tail -n 1 | awk -F'","' '{print $2}' | cut -d. -f1; }
ceiling1=$(redis-benchmark -p "$redis_port" -c 1 -P 100 -n 500000 --csv EVALSHA "$sha" 2 "$record" "$replay" | rps)
ceiling50=$(redis-benchmark -p "$redis_port" -c 50 -P 100 -n 1000000 --csv EVALSHA "$sha" 2 "$record" "$replay" | rps)

field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$2"; }
ms() { awk -v us="$1" 'BEGIN { printf "%.2f", us / 1000 }'; }
rows=()
for run in "one 16 1" "ids 4 $per" "page 4 $per" "history 16 1"; do
  read -r mode connections size <<<"$run"
  say "wrk: $mode, $connections connections, ${seconds}s..."
  out=$(wrk -t2 -c"$connections" -d"${seconds}s" -s "$root/bench/reads/read.lua" "$base" -- "$mode" "$nodes" "$size")
  result=$(grep '^result' <<<"$out") || fail "wrk printed no result: $out"
  requests=$(field requests "$result")
  other=$(field other "$result")
  read_nodes=$(field nodes "$result")
  [ "$other" = 0 ] || fail "$mode: $other answers were not 200"
  [ "$read_nodes" -eq $((requests * size)) ] || fail "$mode: $read_nodes nodes in $requests answers of $size"
  duration=$(field duration_us "$result")
  rows+=("| $mode | $connections | $size | $((requests * 1000000 / duration)) | $((read_nodes * 1000000 / duration)) | $(ms "$(field p50_us "$result")") / $(ms "$(field p99_us "$result")") |")
done

echo "# $(date -u +%Y-%m-%dT%H:%MZ) on $(nproc) cores, Redis $(redis-server --version | sed 's/.*v=\([^ ]*\).*/\1/'), $nodes nodes"
echo
echo "| Redis ceiling: one node's read script (HGETALL + LINDEX), EVALSHA -P 100 | reads/s |"
echo "|---|---|"
echo "| 1 client | $ceiling1 |"
echo "| 50 clients | $ceiling50 |"
echo
echo "| API read (history: pages of one node's recent outputs) | connections | nodes per request | requests/s | nodes/s | latency p50 / p99 ms |"
echo "|---|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
