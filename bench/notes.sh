#!/usr/bin/env bash
# The Gorgon seed's own test at full scale: a user's recent notes, with history behind them.
#   1. a fresh redis-server (AOF, appendfsync everysec) on a free port, and scripts/up on it
#      (release build; web_face, three stores, two processors, notifier, stats; MongoDB as
#      scripts/up starts it), with GORGON_REPLAY_BUFFER=20: the depth of fast history;
#   2. the simulator's notes scenario: 10 000 users; a prefill of 1 000 000 notes flat out,
#      waited for until every one is archived; then 1 000 notes a second, one per request to
#      a random user, while 1 000 history readers (HTTP keep-alive) each read a random user's
#      newest 10 notes once a second, a tenth of them the user's oldest 10 instead (beyond
#      the buffer: from the archive); verified (lost, duplicated, out of order);
#   3. the CPU each process used during the whole run, and MongoDB's document count.
# Prints markdown tables for docs/benchmarks.md on stdout; progress on stderr.
#
# Usage: bench/notes.sh [prefill=1000000] [messages=60000] [readers=1000] [deep share=0.1]
# Environment, for the experiments in docs/benchmarks.md: NOTES_RATE (inserts a second,
# default 1000); NOTES_RENICE (names of processes, e.g. "web_face redis-server", whose every
# thread runs at nice -10 once the mesh is up: what CPU scheduling costs the reads' tail).
# Needs what scripts/up needs. The prefill goes at the archive's pace: on the MongoDB stand-in
# (nx-27017) about 2 500 documents a second, so about seven minutes for a million.
set -euo pipefail

prefill=${1:-1000000}
messages=${2:-60000}
readers=${3:-1000}
deep=${4:-0.1}
rate=${NOTES_RATE:-1000}
bench=bench/notes.sh
# shellcheck source=bench/lib/mesh.sh
. "$(dirname "$0")/lib/mesh.sh"

for tool in redis-server redis-cli python3 curl; do
  command -v "$tool" >/dev/null || fail "$tool not found"
done

start_redis
export GORGON_REPLAY_BUFFER=20 # every role of the mesh takes it from the environment
start_mesh "all=1,processor=2,store=3"
# This bench's own processes named $1: its redis-server, or the roles scripts/up runs for it
# (descendants of $up_pid), never another process of the same name on the machine.
ours() {
  if [ "$1" = redis-server ]; then
    cat "$work/redis.pid"
    return
  fi
  for process in $(pgrep -x "$1"); do
    ancestor=$process
    while [ -n "$ancestor" ] && [ "$ancestor" -gt 1 ]; do
      if [ "$ancestor" = "$up_pid" ]; then
        echo "$process"
        break
      fi
      ancestor=$(ps -o ppid= -p "$ancestor" | tr -d ' ')
    done
  done
}
for name in ${NOTES_RENICE:-}; do
  for process in $(ours "$name"); do
    for thread in /proc/"$process"/task/*; do
      renice -n -10 -p "${thread##*/}" >/dev/null ||
        fail "could not raise $name's priority (NOTES_RENICE needs root, or CAP_SYS_NICE)"
    done
  done
  say "every thread of $name at nice -10"
done

say "simulator notes: $prefill notes prefilled, then $messages at $rate/s with $readers readers..."
cpu_ticks "$work/cpu.before"
started=$(date +%s.%N)
set +e
"$root/target/release/simulator" --api "http://127.0.0.1:$web" \
  --notifier "http://127.0.0.1:$notifier" --json --prefill "$prefill" --messages "$messages" \
  --rate "$rate" --readers "$readers" --reader-interval-ms 1000 --deep-share "$deep" \
  --settle-timeout-s 300 notes --users 10000 >"$work/notes.json"
status=$?
set -e
cpu_ticks "$work/cpu.after"
seconds=$(python3 -c "import time; print(time.time() - $started)")
[ -s "$work/notes.json" ] || fail "the simulator made no report (exit $status)"
[ "$status" = 0 ] || say "the simulator's verification FAILED (exit $status): see the table"

json() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)" <"$work/notes.json"; }
echo "# $(date -u +%Y-%m-%dT%H:%MZ) on $(nproc) cores, Redis $(redis-server --version | sed 's/.*v=\([^ ]*\).*/\1/'), mesh: web_face, 3 stores, 2 processors, notifier, stats; GORGON_REPLAY_BUFFER=20"
echo
echo "| notes, 10 000 users | figure |"
echo "|---|---|"
json "'| prefilled, then inserted at $rate/s | {} notes, then {} ({:.0f}/s) |'.format(d['prefilled'], d['sent'], d['inject_per_s'])"
json "'| recent reads (newest 10) p50 / p99 / max ms | {} / {} / {} ({} reads) |'.format(d['history_ms']['p50'], d['history_ms']['p99'], d['history_ms']['max'], d['history_ms']['count'])"
json "'| deep reads (oldest 10, archive) p50 / p99 / max ms | {} / {} / {} ({} reads) |'.format(d['history_deep_ms']['p50'], d['history_deep_ms']['p99'], d['history_deep_ms']['max'], d['history_deep_ms']['count'])"
json "'| reads by status | {} |'.format(', '.join('{}: {}'.format(k, v) for k, v in d['history_statuses'].items()))"
json "'| insert request p50 / p99 ms | {} / {} |'.format(d['inject_ms']['p50'], d['inject_ms']['p99'])"
json "'| insert → socket.io p50 / p99 / max ms | {} / {} / {} |'.format(d['e2e_ms']['p50'], d['e2e_ms']['p99'], d['e2e_ms']['max'])"
json "'| lost / duplicated / out of order | {} / {} / {} |'.format(d['verdict']['lost'], d['verdict']['duplicated'], d['verdict']['out_of_order'])"
echo
echo "| CPU over the whole run ($(printf '%.0f' "$seconds") s, prefill included), % of one core |"
echo "|---|"
echo "| $(cpu_use "$work/cpu.before" "$work/cpu.after" "$seconds") |"
[ "$(json "d['passed']")" = True ] || fail "the notes run failed its verification"
