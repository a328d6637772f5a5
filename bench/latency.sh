#!/usr/bin/env bash
# Inject -> socket.io latency at load, with every role up, and what it is made of:
#   1. a fresh redis-server (AOF, appendfsync everysec) on a free port, and scripts/up on it
#      (release build, the Procfile under foreman: web_face, store with the archive on MongoDB
#      as scripts/up starts it, one processor, notifier, stats) on free ports;
#   2. for each rate: a topology of 10 `pass` nodes, one socket.io client (the official
#      socket.io-client, tests/socketio/clients.mjs) subscribed to it, and single-message
#      injects at that rate for the given seconds (bench/latency/inject.mjs: keep-alive HTTP,
#      each inject due at start + i / rate);
#   3. per rate: inject -> client latency p50/p90/p99/max over every event, split at the
#      output's `ts` into inject -> output (queue, pull, function) and output -> client (commit,
#      live publish, the notifier's hop, socket.io); the inject answer's time; the client must
#      have every output once and in order (else exit 1); and the CPU each process used while
#      the injects ran (from /proc), in % of one core, for what the latency is made of;
#   4. the last rate once more with every Redis command logged (SLOWLOG): Redis's time per
#      message by command and by redpill script (inject, pull, commit, publish, archive).
# Timestamps are whole milliseconds (the events' `injected_at` and `ts`), so each split is
# +-1 ms. Prints a markdown table for docs/benchmarks.md on stdout; progress on stderr.
#
# Usage: bench/latency.sh [seconds=20] [rates=1000,5000]
# Needs what scripts/up needs, plus node and npm.
set -euo pipefail

seconds=${1:-20}
rates=${2:-1000,5000}
nodes=10
bench=bench/latency.sh
# shellcheck source=bench/lib/mesh.sh
. "$(dirname "$0")/lib/mesh.sh"

for tool in redis-server redis-cli python3 node npm curl; do
  command -v "$tool" >/dev/null || fail "$tool not found (scripts/deps test installs what is missing)"
done
field() { python3 -c "import json,sys; r=json.loads(sys.argv[1]); print(eval(sys.argv[2]))" "$1" "$2"; }
say "building the profiler (release)..."
cargo build --release --quiet --manifest-path "$root/Cargo.toml" -p mesh-tests --example redis_profile
[ -d "$root/tests/socketio/node_modules" ] || npm ci --prefix "$root/tests/socketio" --no-audit --no-fund >/dev/null

start_redis
start_mesh "all=1"
base="http://127.0.0.1:$web"

doc=$(python3 -c "import json; print(json.dumps({'node':[{'id':'n%d'%i,'function':'pass'} for i in range($nodes)]}))")
# run_rate RATE TOPOLOGY: one client on a new topology, RATE injects a second for $seconds s;
# sets total, injected (the injector's report), report (the client's) and cpu_line.
run_rate() {
  local rate=$1 topology=$2 status expect clients_pid started
  total=$((rate * seconds))
  total=$((total - total % nodes))
  status=$(curl -s -o "$work/put.json" -w '%{http_code}' -X PUT -H 'Content-Type: application/json' \
    --data "$doc" "$base/v1/topologies/$topology")
  case "$status" in 200 | 201) ;; *) fail "PUT answered $status: $(cat "$work/put.json")" ;; esac
  expect=$(python3 -c "import json; print(json.dumps({'n%d'%i: $((total / nodes)) for i in range($nodes)}))")
  node "$root/tests/socketio/clients.mjs" "{\"url\":\"http://127.0.0.1:$notifier\",\"clients\":1,\
\"subscribe\":{\"topology\":\"$topology\"},\"expect\":$expect,\"latency\":true,\"timeout_ms\":$(((seconds + 120) * 1000))}" \
    >"$work/clients.out" 2>"$work/clients.err" &
  clients_pid=$!
  for _ in $(seq 600); do grep -q '"ready"' "$work/clients.out" 2>/dev/null && break; sleep 0.1; done
  grep -q '"ready"' "$work/clients.out" || { cat "$work/clients.err" >&2; fail "the client did not subscribe within 60 s"; }
  say "$rate messages/s for $seconds s ($total messages) into $topology..."
  cpu_ticks "$work/cpu.before"
  started=$(date +%s.%N)
  injected=$(node "$root/bench/latency/inject.mjs" \
    "{\"base\":\"$base\",\"topology\":\"$topology\",\"nodes\":$nodes,\"rate\":$rate,\"seconds\":$seconds}") ||
    fail "injects were refused: $injected"
  cpu_ticks "$work/cpu.after"
  cpu_line=$(cpu_use "$work/cpu.before" "$work/cpu.after" "$(python3 -c "import time; print(time.time() - $started)")")
  wait "$clients_pid" || true
  report=$(grep '"done"' "$work/clients.out") || { cat "$work/clients.err" >&2; fail "the client printed no report"; }
  [ "$(field "$report" "r['complete'] and r['duplicated'] == 0 and r['out_of_order'] == 0")" = True ] ||
    fail "verification failed at $rate/s: $report"
}

rows=()
cpu=()
for rate in ${rates//,/ }; do
  run_rate "$rate" "latency-$rate"
  # The two Node processes have ended by now: they report their own CPU.
  cpu+=("| $rate | $cpu_line; node injector $(field "$injected" "r['cpu_percent']"), node client $(field "$report" "round(r['cpu_ms'] / r['elapsed_ms'] * 100)") over its life |")
  split() { field "$report" "'{p50} / {p90} / {p99} / {max}'.format(**r['$1'])"; }
  rows+=("| $rate | $(field "$injected" "r['rate']") | **$(split latency_ms)** | $(split to_output_ms) | $(split to_client_ms) | $(field "$injected" "'{p50} / {p99}'.format(**r['answer_ms'])") | $(field "$report" "r['received']") / 0 / 0 / 0 |")
done

# Where Redis's time goes per message: the last rate once more with every command logged.
rate=${rates##*,}
mkfifo "$work/profile.in"
"$root/target/release/examples/redis_profile" --url "redis://127.0.0.1:$redis_port" \
  --count "$(( (rate * seconds) - (rate * seconds) % nodes ))" --unit "message" \
  --when "$rate messages/s through the mesh" <"$work/profile.in" >"$work/profile.out" 2>"$work/profile.err" &
profile_pid=$!
exec 9>"$work/profile.in"
for _ in $(seq 100); do grep -q profiling "$work/profile.err" 2>/dev/null && break; sleep 0.1; done
grep -q profiling "$work/profile.err" || fail "the profile did not start: $(cat "$work/profile.err")"
run_rate "$rate" "profiled-$rate"
echo >&9
exec 9>&-
wait "$profile_pid" || fail "the profile failed: $(cat "$work/profile.err")"

echo "# $(date -u +%Y-%m-%dT%H:%MZ) on $(nproc) cores, Redis $(redis-server --version | sed 's/.*v=\([^ ]*\).*/\1/'), mesh: web_face, store (archive on), processor, notifier, stats; $nodes pass nodes, 1 client, $seconds s per rate"
echo
echo "| msg/s asked | msg/s injected | inject -> client p50 / p90 / p99 / max ms | inject -> output | output -> client | inject answer p50 / p99 ms | events / lost / dup / out of order |"
echo "|---|---|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
echo
echo "| msg/s asked | CPU while injecting, % of one core (the top eight processes, and the machine's idle time of its $(nproc) cores; the Node processes report their own) |"
echo "|---|---|"
printf '%s\n' "${cpu[@]}"
echo
echo "Profiled run ($rate messages/s, every command in SLOWLOG; its latency is no figure):"
cat "$work/profile.out"
