#!/usr/bin/env bash
# Processor throughput on one Redis and on Redis Clusters of 1, 2 and 3 masters (no replicas,
# AOF everysec on every node): node-messages per second for 1 000 `count` nodes with 2
# processors, and the CPU time the processors and the Redis processes spend per
# node-message, from the same benchmark as bench/processor.sh; then 3 masters with a replica
# each, with GORGON_REPLICA_ACKS=0 and 1: the cost of waiting for a replica. Beside each row,
# the Redis ceiling of the same deployment in the same run: redis-benchmark's LPUSH and a Lua
# script of two writes (INCR + LPUSH, as bench/mesh.sh), 50 clients pipelining 100, spread
# over every master (--cluster). The figures and the model beside them are in
# docs/scaling.md.
#
# Usage: bench/cluster.sh [messages] [processors]      (defaults 300000, 2)
# Prints a markdown table. Needs redis-server, redis-cli and redis-benchmark.
set -euo pipefail

messages=${1:-300000}
processors=${2:-2}
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
pids=()
stop_all() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
  done
  pids=()
}
cleanup() {
  stop_all
  rm -rf "$work" 2>/dev/null || true
}
trap cleanup EXIT

for tool in redis-server redis-cli redis-benchmark; do
  command -v "$tool" >/dev/null || { echo "bench/cluster.sh: $tool not found; install redis-server and redis-tools" >&2; exit 1; }
done

echo "building release binaries..." >&2
cargo build --release --quiet --manifest-path "$root/Cargo.toml" -p processor --bin processor -p mesh-tests --example processor_bench

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Starts one redis-server on a free port (a cluster node when $1 is "cluster"); prints the
# port (it runs in a subshell: the caller tracks the server).
start_node() {
  local port dir
  port=$(free_port)
  dir="$work/$port"
  mkdir -p "$dir"
  local cluster=()
  if [ "$1" = cluster ]; then
    free_port >"$dir/bus"
    cluster=(--cluster-enabled yes --cluster-config-file nodes.conf --cluster-port "$(cat "$dir/bus")")
  fi
  redis-server --port "$port" --bind 127.0.0.1 --dir "$dir" --save '' --appendonly yes --appendfsync everysec \
    "${cluster[@]}" --daemonize yes --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" >/dev/null
  for _ in $(seq 100); do redis-cli -p "$port" ping 2>/dev/null | grep -q PONG && break; sleep 0.05; done
  for _ in $(seq 100); do [ -s "$dir/redis.pid" ] && break; sleep 0.05; done
  echo "$port"
}
# Notes the server on port $1 for the CPU count and the clean-up.
track() { pids+=("$(cat "$work/$1/redis.pid")"); }

# Makes the nodes on ports "$@" one cluster, the 16 384 slots split evenly among them as
# masters (redis-cli --cluster create wants at least 3; CLUSTER ADDSLOTSRANGE takes any number).
make_cluster() {
  local count=$# index=0 first=$1 port from to
  for port in "$@"; do
    from=$((16384 * index / count))
    to=$((16384 * (index + 1) / count - 1))
    redis-cli -p "$port" cluster addslotsrange "$from" "$to" >/dev/null
    [ "$port" = "$first" ] || redis-cli -p "$port" cluster meet 127.0.0.1 "$first" "$(cat "$work/$first/bus")" >/dev/null
    index=$((index + 1))
  done
  for _ in $(seq 300); do
    local ok=1
    for port in "$@"; do
      redis-cli -p "$port" cluster info | grep -q '^cluster_state:ok' || ok=0
    done
    [ "$ok" = 1 ] && return 0
    sleep 0.1
  done
  echo "bench/cluster.sh: the cluster of $count masters did not reach cluster_state:ok" >&2
  exit 1
}

# Makes the node on port $1 a replica of the master on port $2 and waits for its sync.
make_replica() {
  local replica=$1 master=$2 id
  id=$(redis-cli -p "$master" cluster myid)
  redis-cli -p "$replica" cluster meet 127.0.0.1 "$master" "$(cat "$work/$master/bus")" >/dev/null
  for _ in $(seq 100); do
    redis-cli -p "$replica" cluster nodes | grep -q "^$id" && break
    sleep 0.1
  done
  redis-cli -p "$replica" cluster replicate "$id" >/dev/null
  for _ in $(seq 300); do
    redis-cli -p "$replica" info replication | grep -q 'master_link_status:up' && return 0
    sleep 0.1
  done
  echo "bench/cluster.sh: the replica on port $replica never synced" >&2
  exit 1
}

rps() { tail -n 1 | awk -F'","' '{print $2}' | cut -d. -f1; }

# The Redis ceiling of the deployment whose entry node is on port $1 ("cluster" in $2 spreads
# the load over every master in $ports; redis-benchmark refuses --cluster with one node, which
# serves every key anyway): "LPUSH/s | Lua INCR+LPUSH/s".
ceiling() {
  local port=$1 mode=() node sha=""
  if [ "$2" = cluster ] && [ "${#ports[@]}" -gt 1 ]; then mode=(--cluster); fi
  local script="redis.call('INCR', KEYS[1]) return redis.call('LPUSH', KEYS[2], ARGV[1])"
  for node in "${ports[@]}"; do sha=$(redis-cli -p "$node" script load "$script"); done
  local lpush lua
  lpush=$(redis-benchmark "${mode[@]}" -p "$port" -c 50 -P 100 -n 2000000 -d 64 --csv -t lpush | rps)
  # In cluster mode redis-benchmark puts each master's own hash tag where a key says {tag}.
  lua=$(redis-benchmark "${mode[@]}" -p "$port" -c 50 -P 100 -n 2000000 --csv EVALSHA "$sha" 2 'bench:{tag}:n' 'bench:{tag}:l' x | rps)
  echo "$lpush | $lua"
}

# Runs the processor benchmark on the deployment whose entry node is on port $2 (a cluster
# when $3 is "cluster"; $ports lists every master), then its ceiling; prints the row.
run() {
  local label=$1 port=$2 mode=$3
  echo "$label..." >&2
  local watch=()
  for pid in "${pids[@]}"; do watch+=(--redis-pid "$pid"); done
  local row
  row=$("$root/target/release/examples/processor_bench" --url "redis://127.0.0.1:$port" \
    --processor "$root/target/release/processor" --messages "$messages" --processors "$processors" "${watch[@]}")
  echo "  the Redis ceiling..." >&2
  local limit
  limit=$(ceiling "$port" "$mode")
  # The benchmark's row starts with the run; put the deployment in front, the ceiling after.
  echo "| $label |${row#|} $limit |"
}

echo "# $(date -u +%Y-%m-%dT%H:%MZ) on $(nproc) cores, $(redis-server --version | awk '{print $3}'), AOF everysec, $messages messages, $processors processors"
echo
echo "| Redis | run | throughput | time | exact | processor CPU µs / node-message | Redis CPU µs / node-message (every server) | ceiling: LPUSH/s | ceiling: Lua INCR+LPUSH/s |"
echo "|---|---|---|---|---|---|---|---|---|"
port=$(start_node single)
track "$port"
ports=("$port")
run "one server" "$port" single
stop_all
for masters in 1 2 3; do
  ports=()
  for _ in $(seq "$masters"); do
    port=$(start_node cluster)
    track "$port"
    ports+=("$port")
  done
  make_cluster "${ports[@]}"
  run "cluster, $masters master(s)" "${ports[0]}" cluster
  stop_all
done
for acks in 0 1; do
  masters=()
  for _ in 1 2 3; do
    port=$(start_node cluster)
    track "$port"
    masters+=("$port")
  done
  make_cluster "${masters[@]}"
  for master in "${masters[@]}"; do
    port=$(start_node cluster)
    track "$port"
    make_replica "$port" "$master"
  done
  export GORGON_REPLICA_ACKS=$acks # passed on to the processors
  ports=("${masters[@]}")
  run "cluster, 3 masters + 3 replicas, GORGON_REPLICA_ACKS=$acks" "${masters[0]}" cluster
  unset GORGON_REPLICA_ACKS
  stop_all
done
