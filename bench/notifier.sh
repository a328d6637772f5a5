#!/usr/bin/env bash
# socket.io delivery: output events per second delivered to many clients of one notifier, and
# inject -> client latency at a steady rate, with the official socket.io-client (Node, from
# tests/socketio), store, processor, web_face and notifier as release binaries on a private
# Redis with AOF everysec, beside redis-benchmark's PUBLISH ceiling on the same server in the
# same run, and beside the peer: a plain socket.io server (Node, bench/peer-socketio, pinned by
# its lockfile) broadcasting the same number of events of the same shape from memory to the same
# clients. The same two runs again with Server-Sent Events clients (the notifier's streams,
# read by Node's fetch in the same harness) instead of socket.io. Every client must receive
# every output exactly once, in order (else exit 1).
#
# Usage: bench/notifier.sh [clients] [outputs] [rate] [seconds]
#   clients  socket.io clients, all subscribed to the topology (default 100)
#   outputs  outputs of the flat-out run: injected as fast as possible over 10 pass nodes
#            (default 20000, so 100 clients receive 2 000 000 events)
#   rate     messages per second of the latency run (default 200)
#   seconds  length of the latency run (default 20)
# Prints the figures for docs/benchmarks.md on stdout and progress on stderr. Needs
# redis-server, redis-benchmark, redis-cli, curl, python3, node, npm and cargo.
set -euo pipefail

clients=${1:-100}
outputs=${2:-20000}
rate=${3:-200}
seconds=${4:-20}
nodes=10
root=$(cd "$(dirname "$0")/.." && pwd)

fail() { echo "bench/notifier.sh: $*" >&2; exit 1; }
for value in "$clients" "$outputs" "$rate" "$seconds"; do
  case "$value" in '' | *[!0-9]*) fail "arguments are whole numbers, got '$value'" ;; esac
done
[ $((outputs % nodes)) -eq 0 ] || fail "outputs must be a multiple of $nodes"

work=$(mktemp -d)
pids=()
cleanup() {
  local pid
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  [ -f "$work/redis.pid" ] && kill "$(cat "$work/redis.pid")" 2>/dev/null || true
  sleep 0.3
  rm -rf "$work" 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

for tool in redis-server redis-benchmark redis-cli curl python3 node npm cargo; do
  command -v "$tool" >/dev/null || fail "$tool not found; install it and run again"
done
for package in tests/socketio bench/peer-socketio; do
  if [ ! -d "$root/$package/node_modules" ]; then
    echo "installing $package (npm ci)..." >&2
    npm ci --prefix "$root/$package" --no-audit --no-fund --loglevel=error
  fi
done
echo "building release binaries (cargo build --release --bins)..." >&2
cargo build --release --quiet --bins --manifest-path "$root/Cargo.toml"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
rps() { tail -n 1 | awk -F'","' '{print $2}' | cut -d. -f1; }

redis_port=$(free_port)
mkdir -p "$work/data"
redis-server --port "$redis_port" --bind 127.0.0.1 --dir "$work/data" --save '' \
  --appendonly yes --appendfsync everysec \
  --daemonize yes --pidfile "$work/redis.pid" --logfile "$work/redis.log" >/dev/null
for _ in $(seq 100); do redis-cli -p "$redis_port" ping 2>/dev/null | grep -q PONG && break; sleep 0.05; done
redis-cli -p "$redis_port" ping 2>/dev/null | grep -q PONG || fail "redis-server did not start: $(tail -n 5 "$work/redis.log")"

echo "redis-benchmark PUBLISH ceiling (port $redis_port)..." >&2
publish_p100=$(redis-benchmark -p "$redis_port" -P 100 -n 1000000 --csv publish bench-channel x | rps)
publish_c8=$(redis-benchmark -p "$redis_port" -c 8 -n 200000 --csv publish bench-channel x | rps)

web_port=$(free_port)
notifier_port=$(free_port)
base="http://127.0.0.1:$web_port"
export REDIS_URL="redis://127.0.0.1:$redis_port"
export GORGON_PARTITIONS="${GORGON_PARTITIONS:-64}"
export GORGON_WEB_PORT="$web_port" GORGON_NOTIFIER_PORT="$notifier_port"
export RUST_LOG="${RUST_LOG:-warn}"
start_role() { "$root/target/release/$1" >"$work/$1.log" 2>&1 & pids+=("$!"); }
for role in store processor web_face notifier; do start_role "$role"; done
role_logs() { local log; for log in "$work"/*.log; do echo "--- $(basename "$log")" >&2; tail -n 5 "$log" >&2; done; }
for _ in $(seq 300); do
  [ "$(curl -s -o /dev/null -w '%{http_code}' "$base/readyz")" = 200 ] &&
    [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$notifier_port/readyz")" = 200 ] && break
  sleep 0.1
done
[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$notifier_port/readyz")" = 200 ] || { role_logs; fail "the roles did not become ready"; }

# One topology per run, so each run's seqs start at 1.
doc=$(python3 -c "import json; print(json.dumps({'node':[{'id':'n%d'%i,'function':'pass'} for i in range($nodes)]}))")
for name in flat steady flat-sse steady-sse; do
  status=$(curl -s -o "$work/put.json" -w '%{http_code}' -X PUT -H 'Content-Type: application/json' --data "$doc" "$base/v1/topologies/$name")
  case "$status" in 200 | 201) ;; *) role_logs; fail "PUT answered $status: $(cat "$work/put.json")" ;; esac
done

# run_clients RUN PER_NODE [latency [PORT [TRANSPORT]]]: starts the clients of topology RUN (on
# the notifier, or the server on PORT; socket.io, or TRANSPORT sse) in the background and waits
# until they print "ready".
run_clients() {
  local expect
  expect=$(python3 -c "import json; print(json.dumps({'n%d'%i: $2 for i in range($nodes)}))")
  node "$root/tests/socketio/clients.mjs" "{\"url\":\"http://127.0.0.1:${4:-$notifier_port}\",\"clients\":$clients,\
\"subscribe\":{\"topology\":\"$1\"},\"expect\":$expect,\"latency\":${3:-false},\"timeout_ms\":300000,\
\"transport\":\"${5:-socket.io}\"}" \
    >"$work/$1.out" 2>"$work/$1.err" &
  pids+=("$!")
  client_pid=$!
  for _ in $(seq 600); do grep -q '"ready"' "$work/$1.out" 2>/dev/null && return; sleep 0.1; done
  cat "$work/$1.err" >&2
  fail "the clients did not subscribe within 60 s"
}
wait_clients() { # RUN: waits for the report
  while kill -0 "$client_pid" 2>/dev/null; do sleep 0.5; done
  grep '"done"' "$work/$1.out" || { cat "$work/$1.err" >&2; fail "the clients printed no report"; }
}
report_field() { python3 -c "import json,sys; r=json.loads(sys.argv[1]); print(eval(sys.argv[2]))" "$1" "$2"; }
check() { # REPORT: exits 1 unless every client got every output once, in order
  local verdict
  verdict=$(report_field "$1" "r['complete'] and r['missing']==0 and r['duplicated']==0 and r['out_of_order']==0")
  [ "$verdict" = True ] || fail "verification failed: $1"
}

# inject_flat RUN: every output of the flat-out run, in ndjson requests of 1 000.
inject_flat() {
  for i in $(seq 0 $((nodes - 1))); do
    sent=0
    while [ "$sent" -lt "$per_node" ]; do
      lines=$((per_node - sent < 1000 ? per_node - sent : 1000))
      python3 -c "import sys; [print('{\"v\":%d}' % v) for v in range(int(sys.argv[1]))]" "$lines" >"$work/body.ndjson"
      status=$(curl -s -o /dev/null -w '%{http_code}' -X POST -H 'Content-Type: application/x-ndjson' \
        --data-binary @"$work/body.ndjson" "$base/v1/topologies/$1/nodes/n$i/messages")
      [ "$status" = 202 ] || fail "inject answered $status"
      sent=$((sent + lines))
    done
  done
}
# inject_steady RUN: the steady run's messages, one a request at the rate.
inject_steady() {
python3 - "$base" "$1" "$nodes" "$rate" "$total" <<'PY'
import sys, time, urllib.request
base, topology, nodes, rate, total = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
start = time.monotonic()
for i in range(total):
    due = start + i / rate
    pause = due - time.monotonic()
    if pause > 0:
        time.sleep(pause)
    request = urllib.request.Request(f"{base}/v1/topologies/{topology}/nodes/n{i % nodes}/messages",
                                     data=b'{"v":%d}' % i, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request) as answer:
        assert answer.status == 202, answer.status
PY
}
rate_of() { report_field "$1" "int(r['received'] * 1000 / max(1, r['last_output_ms'] - r['first_output_ms']))"; }
span_of() { report_field "$1" "r['last_output_ms'] - r['first_output_ms']"; }
per_node=$((outputs / nodes))
total=$((rate * seconds))
total=$((total - total % nodes))

echo "flat out: $outputs outputs to $clients socket.io clients..." >&2
run_clients flat "$per_node"
inject_flat flat
flat=$(wait_clients flat)
check "$flat"
flat_rate=$(rate_of "$flat")
flat_ms=$(span_of "$flat")

echo "steady: $rate messages/s for $seconds s to $clients socket.io clients..." >&2
run_clients steady "$((total / nodes))" true
inject_steady steady
steady=$(wait_clients steady)
check "$steady"

echo "flat out: $outputs outputs to $clients Server-Sent Events clients..." >&2
run_clients flat-sse "$per_node" false "$notifier_port" sse
inject_flat flat-sse
flat_sse=$(wait_clients flat-sse)
check "$flat_sse"

echo "steady: $rate messages/s for $seconds s to $clients Server-Sent Events clients..." >&2
run_clients steady-sse "$((total / nodes))" true "$notifier_port" sse
inject_steady steady-sse
steady_sse=$(wait_clients steady-sse)
check "$steady_sse"

echo "peer: plain socket.io broadcasting $outputs events to $clients clients..." >&2
peer_port=$(free_port)
node "$root/bench/peer-socketio/server.mjs" "$peer_port" 2>"$work/peer.err" &
pids+=("$!")
for _ in $(seq 100); do grep -q "peer socket.io server" "$work/peer.err" 2>/dev/null && break; sleep 0.1; done
run_clients peer "$per_node" false "$peer_port"
curl -sf "http://127.0.0.1:$peer_port/emit?topology=peer&nodes=$nodes&per_node=$per_node" >/dev/null || fail "the peer did not start emitting"
peer=$(wait_clients peer)
check "$peer"
peer_rate=$(rate_of "$peer")
peer_ms=$(span_of "$peer")
latency() { # REPORT: its inject -> client latency line
  echo "ms p50 $(report_field "$1" "r['latency_ms']['p50']"), p90 $(report_field "$1" "r['latency_ms']['p90']"), p99 $(report_field "$1" "r['latency_ms']['p99']"), max $(report_field "$1" "r['latency_ms']['max']") over $(report_field "$1" "r['latency_ms']['count']") events"
}

cat <<EOF
machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB; $(date -u +%Y-%m-%d); redis $(redis-server --version | awk '{print $3}' | cut -d= -f2)
command: bench/notifier.sh $clients $outputs $rate $seconds
redis-benchmark PUBLISH, pipelined 100: $publish_p100 /s
redis-benchmark PUBLISH, 8 clients unpipelined: $publish_c8 /s
flat out: $(report_field "$flat" "r['received']") events to $clients clients in $flat_ms ms: $flat_rate events/s delivered; lost 0, duplicated 0, out of order 0
peer, socket.io $(node -p "require('$root/bench/peer-socketio/node_modules/socket.io/package.json').version") broadcasting from memory: $(report_field "$peer" "r['received']") events to $clients clients in $peer_ms ms: $peer_rate events/s delivered
steady $rate msg/s for $seconds s ($((rate * clients)) events/s): inject -> client latency $(latency "$steady"); lost 0, duplicated 0, out of order 0
Server-Sent Events, flat out: $(report_field "$flat_sse" "r['received']") events to $clients clients in $(span_of "$flat_sse") ms: $(rate_of "$flat_sse") events/s delivered; lost 0, duplicated 0, out of order 0
Server-Sent Events, steady $rate msg/s for $seconds s: inject -> client latency $(latency "$steady_sse"); lost 0, duplicated 0, out of order 0
clients' CPU (Node), flat out: socket.io $(report_field "$flat" "r['cpu_ms']") ms, Server-Sent Events $(report_field "$flat_sse" "r['cpu_ms']") ms
EOF
