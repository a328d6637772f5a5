#!/usr/bin/env bash
# Inject over HTTP: messages per second and latency of POST /v1/topologies/{t}/nodes/{n}/messages
# against the web_face role, driven by wrk (bench/http/inject.lua), with store and processor
# running on a private Redis with AOF everysec, beside redis-benchmark's RPUSH ceilings on the
# same server in the same run. At the end every accepted message must have been counted.
#
# Usage: bench/http.sh [seconds] [processors]   (defaults 20 and 1)
#   seconds     length of the ndjson throughput run (the single-message runs take half each)
#   processors  how many processor processes to run
# Environment: GORGON_QUEUE_HIGH_WATER and the other GORGON_* settings pass through to the roles;
#   SETTLE_TIMEOUT (default 300) is how many seconds to wait for the counts to catch up.
# Prints the figures for docs/benchmarks.md on stdout and progress and wrk's own reports on
# stderr. Needs redis-server, redis-benchmark, redis-cli, curl, python3 and cargo; installs wrk
# (Debian package wrk) with apt-get when it is missing. Exits 1 when an accepted message was not
# counted (lost) or more were counted than were sent (duplicates).
set -euo pipefail

seconds=${1:-20}
processors=${2:-1}
settle_timeout=${SETTLE_TIMEOUT:-300}
nodes=64
lines=1000
topology=bench
root=$(cd "$(dirname "$0")/.." && pwd)
lua="$root/bench/http/inject.lua"

fail() { echo "bench/http.sh: $*" >&2; exit 1; }
case "$seconds" in '' | *[!0-9]*) fail "seconds must be a whole number, got '$seconds'" ;; esac
case "$processors" in '' | *[!0-9]*) fail "processors must be a whole number, got '$processors'" ;; esac
[ "$seconds" -ge 2 ] || fail "seconds must be at least 2"
[ "$processors" -ge 1 ] || fail "processors must be at least 1"

work=$(mktemp -d)
pids=()
cleanup() {
  local pid
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  [ -f "$work/redis.pid" ] && kill "$(cat "$work/redis.pid")" 2>/dev/null || true
  sleep 0.3 # let Redis finish its last AOF write before the folder goes
  rm -rf "$work" 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

for tool in redis-server redis-benchmark redis-cli; do
  command -v "$tool" >/dev/null || fail "$tool not found; install redis-server and redis-tools"
done
for tool in curl python3 cargo; do
  command -v "$tool" >/dev/null || fail "$tool not found; install it and run again"
done
if ! command -v wrk >/dev/null; then
  echo "wrk not found: installing the Debian package wrk with apt-get..." >&2
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq >/dev/null && apt-get install -y -qq wrk >/dev/null
  elif command -v sudo >/dev/null && command -v apt-get >/dev/null; then
    sudo apt-get update -qq >/dev/null && sudo apt-get install -y -qq wrk >/dev/null
  fi
  command -v wrk >/dev/null || fail "could not install wrk; install it (apt-get install wrk) and run again"
fi

echo "building release binaries (cargo build --release --bins)..." >&2
cargo build --release --quiet --bins --manifest-path "$root/Cargo.toml"
for role in store processor web_face; do
  [ -x "$root/target/release/$role" ] || fail "target/release/$role was not built"
done

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
rps() { tail -n 1 | awk -F'","' '{print $2}' | cut -d. -f1; }
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$2"; } # field NAME "result ..." line
ms() { awk -v us="$1" 'BEGIN { printf "%.2f", us / 1000 }'; }

# Start Redis the way the roles expect to find it in production: AOF on, fsync every second.
redis_port=$(free_port)
mkdir -p "$work/data"
redis-server --port "$redis_port" --bind 127.0.0.1 --dir "$work/data" --save '' \
  --appendonly yes --appendfsync everysec \
  --daemonize yes --pidfile "$work/redis.pid" --logfile "$work/redis.log" >/dev/null
for _ in $(seq 100); do redis-cli -p "$redis_port" ping 2>/dev/null | grep -q PONG && break; sleep 0.05; done
redis-cli -p "$redis_port" ping 2>/dev/null | grep -q PONG || fail "redis-server did not start; see its log: $(tail -n 5 "$work/redis.log")"

echo "redis-benchmark ceilings (AOF everysec, port $redis_port)..." >&2
rpush_p100=$(redis-benchmark -p "$redis_port" -t rpush -P 100 -n 1000000 --csv | rps)
rpush_c8=$(redis-benchmark -p "$redis_port" -t rpush -c 8 -n 200000 --csv | rps)
redis-cli -p "$redis_port" del mylist >/dev/null

web_port=$(free_port)
base="http://127.0.0.1:$web_port"
export REDIS_URL="redis://127.0.0.1:$redis_port"
export GORGON_PARTITIONS="${GORGON_PARTITIONS:-64}"
export GORGON_WEB_PORT="$web_port"
names=()
start_role() { # $1 = binary, $2 = log name
  "$root/target/release/$1" >"$work/$2.log" 2>&1 &
  pids+=("$!")
  names+=("$2")
}
start_role store store
for i in $(seq "$processors"); do start_role processor "processor$i"; done
start_role web_face web_face
role_logs() {
  local log
  for log in "$work"/*.log; do echo "--- $(basename "$log") (last lines)" >&2; tail -n 5 "$log" >&2; done
}
ready=no
for _ in $(seq 300); do
  if [ "$(curl -s -o /dev/null -w '%{http_code}' "$base/readyz")" = 200 ]; then ready=yes; break; fi
  kill -0 "${pids[-1]}" 2>/dev/null || break # web_face exited
  sleep 0.1
done
[ "$ready" = yes ] || { role_logs; fail "web_face did not answer 200 on $base/readyz (it exited, or was not ready within 30 s); the roles' logs are above"; }

# The topology: $nodes count nodes, hashed over the partitions.
doc=$(python3 -c "import json,sys; n=int(sys.argv[1]); print(json.dumps({'node':[{'id':'n%d'%i,'function':'count'} for i in range(n)]}))" "$nodes")
status=$(curl -s -o "$work/put.json" -w '%{http_code}' -X PUT -H 'Content-Type: application/json' \
  --data "$doc" "$base/v1/topologies/$topology")
case "$status" in 200 | 201) ;; *) role_logs; fail "PUT /v1/topologies/$topology answered $status: $(cat "$work/put.json")" ;; esac

metric() { # the value of an unlabelled counter on web_face's /metrics, 0 when absent
  curl -s "$base/metrics" | awk -v name="$1" '$1 == name { printf "%d", $2; found = 1 } END { if (!found) print 0 }'
}
counted() { # the sum of the count nodes' attrs.count
  curl -sf "$base/v1/topologies/$topology/nodes" | python3 -c '
import json, sys
print(sum(int(node["attrs"].get("count", 0)) for node in json.load(sys.stdin)["nodes"]))'
}
now_ms() { echo $(($(date +%s%N) / 1000000)); }
accepted=0  # messages wrk saw answered 202, all runs so far
cut_off=0   # messages of requests still unanswered when wrk stopped: queued or not
settle() { # waits until the counts cover every accepted message and stop moving; sets total, waited (s)
  local deadline=$((SECONDS + settle_timeout)) start last=$SECONDS previous=-1 target
  start=$(now_ms)
  target=$(metric gorgon_messages_injected_total)
  [ "$accepted" -gt "$target" ] && target=$accepted
  while :; do
    total=$(counted)
    [ "$total" -ge "$target" ] && [ "$total" -eq "$previous" ] && break
    if [ "$SECONDS" -ge "$deadline" ]; then
      role_logs
      echo "the counts did not catch up within ${settle_timeout} s (SETTLE_TIMEOUT): $total of $target;" \
        "the roles' logs are above" >&2
      break
    fi
    if [ $((SECONDS - last)) -ge 5 ]; then
      echo "  waiting for the processors: $total of $target counted..." >&2
      last=$SECONDS
    fi
    previous=$total
    sleep 0.5
  done
  # The last 0.5 s was only to see that nothing more arrived.
  waited=$(awk -v ms="$(($(now_ms) - start - 500))" 'BEGIN { printf "%.1f", (ms < 0 ? 0 : ms) / 1000 }')
}
run_wrk() { # $1 = name, $2 = messages a request (0: one JSON message), then wrk options
  local name=$1 per=$2 result
  shift 2
  wrk "$@" --latency --timeout 10s -s "$lua" "$base" -- "$nodes" "$per" "$topology" >"$work/$name.out" 2>&1 ||
    { cat "$work/$name.out" >&2; fail "wrk failed in the $name run; its output is above"; }
  sed 's/^/  | /' "$work/$name.out" >&2
  result=$(grep '^result ' "$work/$name.out") || fail "wrk printed no result line in the $name run; is $lua the script?"
  [ "$per" -gt 0 ] || per=1
  accepted=$((accepted + $(field accepted "$result") * per))
  cut_off=$((cut_off + ($(field sent "$result") - $(field requests "$result")) * per))
  echo "$result" >"$work/$name.result"
}

ticks() { # CPU time of process $1 so far, in clock ticks
  awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0
}
busy() { # busy and total clock ticks of the whole machine so far
  awk '/^cpu / { print $2 + $3 + $4 + $7 + $8, $2 + $3 + $4 + $5 + $6 + $7 + $8 }' /proc/stat
}
cpu_snapshot() { # one line: machine busy/total, then each role's and Redis's ticks
  local pid line
  line=$(busy)
  for pid in "${pids[@]}" "$(cat "$work/redis.pid")"; do line="$line $(ticks "$pid")"; done
  echo "$line"
}
cpu_shares() { # $1, $2 = snapshots: each process's share of one core, and the machine's busy share
  local hz
  hz=$(getconf CLK_TCK)
  awk -v a="$1" -v b="$2" -v names="${names[*]} redis-server" -v hz="$hz" -v cores="$(nproc)" 'BEGIN {
    n = split(a, x, " "); split(b, y, " "); split(names, name, " ")
    seconds = (y[2] - x[2]) / hz / cores
    out = sprintf("machine %d %% busy of %d cores;", 100 * (y[1] - x[1]) / (y[2] - x[2]), cores)
    for (i = 3; i <= n; i++) out = out sprintf(" %s %d %%", name[i - 2], 100 * (y[i] - x[i]) / hz / seconds)
    print out " (100 % = one core)"
  }'
}

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
echo "ndjson throughput: $lines lines a request, wrk -t2 -c8 -d${seconds}s..." >&2
cpu_before=$(cpu_snapshot)
run_wrk ndjson "$lines" -t2 -c8 -d"${seconds}s"
cpu_after=$(cpu_snapshot)
counted_at_end=$(counted)
echo "waiting for the processors to count everything..." >&2
settle
nd_waited=$waited
nd_accepted=$accepted

half=$((seconds / 2))
echo "single-message inject, one connection, closed loop, ${half}s..." >&2
run_wrk single_c1 0 -t1 -c1 -d"${half}s"
settle
echo "single-message inject, 8 connections, closed loop, ${half}s..." >&2
cpu_c8_before=$(cpu_snapshot)
run_wrk single_c8 0 -t2 -c8 -d"${half}s"
cpu_c8_after=$(cpu_snapshot)
settle
echo "single-message inject, paced: 4 connections, each waiting 4 ms after an answer, ${half}s..." >&2
INJECT_DELAY_MS=4 run_wrk single_paced 0 -t2 -c4 -d"${half}s"
echo "final count..." >&2
settle
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

nd=$(cat "$work/ndjson.result")
refusals=$(metric gorgon_inject_backlog_refusals_total)
injected=$(metric gorgon_messages_injected_total)
lost=$((accepted - total))
[ "$lost" -lt 0 ] && lost=0
unanswered=$((total - accepted)) # counted, though wrk never read their 202
[ "$unanswered" -lt 0 ] && unanswered=0
socket_errors=0
for run in ndjson single_c1 single_c8 single_paced; do
  socket_errors=$((socket_errors + $(field socket_errors "$(cat "$work/$run.result")")))
done

per_s() { awk -v n="$1" -v us="$2" -v k="${3:-1}" 'BEGIN { printf "%d", n * k / (us / 1e6) }'; }
row() { # label, run name, messages a request
  local r
  r=$(cat "$work/$2.result")
  echo "| $1 | $(per_s "$(field accepted "$r")" "$(field duration_us "$r")" "$3") | $(per_s "$(field requests "$r")" "$(field duration_us "$r")") | $(ms "$(field p50_us "$r")") | $(ms "$(field p99_us "$r")") | $(ms "$(field max_us "$r")") | $(field not_accepted "$r") ($(field statuses "$r")) |"
}

wrk_version=$(wrk -v 2>&1 | head -n 1 | awk '{print $2}' || true)
echo "# $(date -u +%Y-%m-%dT%H:%MZ)"
echo
echo "Command: bench/http.sh $seconds $processors"
echo "Machine: $(nproc) cores ($(lscpu | sed -n 's/^Model name: *//p' | head -n 1)), $(free -g | awk '/^Mem:/ {print $2}') GiB," \
  "$(. /etc/os-release && echo "$PRETTY_NAME"), Linux $(uname -r)"
echo "Redis $(redis-server --version | awk '{print $3}' | cut -d= -f2), AOF everysec; wrk $wrk_version; $(rustc --version | awk '{print $1, $2}')"
echo "Roles: 1 store, $processors processor(s), 1 web_face; GORGON_PARTITIONS=$GORGON_PARTITIONS," \
  "GORGON_QUEUE_HIGH_WATER=${GORGON_QUEUE_HIGH_WATER:-100000 (default)}; $nodes count nodes"
echo "Load average before: $load_before; after: $load_after"
echo
echo "| run | messages/s accepted | requests/s | p50 ms | p99 ms | max ms | non-202 |"
echo "|---|---|---|---|---|---|---|"
row "ndjson, $lines lines a request, -t2 -c8, ${seconds} s" ndjson "$lines"
row "single JSON message, -c1 closed loop, ${half} s" single_c1 1
row "single JSON message, -c8 closed loop, ${half} s" single_c8 1
row "single JSON message, paced (-c4, 4 ms pause after each answer), ${half} s" single_paced 1
echo
echo "| redis-benchmark ceiling (same Redis, 3 B values) | commands/s |"
echo "|---|---|"
echo "| RPUSH -P 100 (-c 50) | $rpush_p100 |"
echo "| RPUSH -c 8, no pipelining | $rpush_c8 |"
echo
echo "ndjson run: $nd_accepted messages accepted, $counted_at_end counted when wrk stopped" \
  "($(per_s "$counted_at_end" "$(field duration_us "$nd")") messages/s processed while injecting); all counted ${nd_waited} s later."
echo "CPU during the ndjson run: $(cpu_shares "$cpu_before" "$cpu_after"); the rest is wrk and anything else running"
echo "CPU during the single-message -c8 run: $(cpu_shares "$cpu_c8_before" "$cpu_c8_after")"
echo "backlog refusals (429): $refusals; socket errors: $socket_errors"
echo "accepted: $accepted (answered 202); web_face's gorgon_messages_injected_total: $injected"
echo "counted: $total"
echo "counted without a 202 read by wrk: $unanswered (requests cut off when wrk stopped carried $cut_off messages)"
echo "lost: $lost"
status=0
if [ "$lost" -ne 0 ]; then
  echo "bench/http.sh: $lost accepted messages were not counted within ${settle_timeout} s" >&2
  status=1
fi
if [ "$unanswered" -gt "$cut_off" ]; then
  echo "bench/http.sh: $((unanswered - cut_off)) more messages were counted than were sent: duplicates" >&2
  status=1
fi
exit "$status"
