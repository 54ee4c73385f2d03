#!/usr/bin/env bash
# The membership benchmark (docs/membership.md): a 3-node NoriKV cluster
# (RF 3, 1024 shards, default durability) is loaded with DATA_MB of values,
# then a fourth node joins and the cluster rebalances onto it, then the
# fourth node is drained and leaves. It reports how long each change took
# (from the command to every node agreeing that every shard sits where the
# plan wants it: GET /meta/placement) and the client latency (p50, p99 of
# puts and of lease gets, bench/server/loadgen.c, closed loop) while the
# replicas moved, against the same load before any change. Run by hand
# (`make bench-membership`, or bench/membership/run.sh BUILD_DIR [options]);
# never part of `make test`.
#
#   --data-mb N          logical data loaded before the changes (default 2048)
#   --value-size B       value bytes of the loaded data (default 4096)
#   --clients N          clients of the latency load (default 16)
#   --phase-seconds N    one latency measurement (default 5); repeated while a change runs
#   --max-moves N        cluster.max_concurrent_moves (default 8)
#   --bandwidth SIZE     cluster.move_bandwidth (default 64MiB)
#   --keep               keep the temporary directory (data, logs)
#
# Everything listens on 127.0.0.1 free ports, keeps its data in a temporary
# directory and is stopped by PID on exit.
set -euo pipefail

usage() { sed -n '2,/^set /p' "$0" | grep '^#' | sed 's/^# \{0,1\}//'; exit 2; }
[ $# -ge 1 ] || usage
BUILD=$1; shift
DATA_MB=2048 VALUE_SIZE=4096 CLIENTS=16 PHASE=5 MAX_MOVES=8 BW=64MiB KEEP=0 SHARDS=1024
while [ $# -gt 0 ]; do
  case $1 in
    --data-mb) DATA_MB=$2; shift 2 ;;
    --value-size) VALUE_SIZE=$2; shift 2 ;;
    --clients) CLIENTS=$2; shift 2 ;;
    --phase-seconds) PHASE=$2; shift 2 ;;
    --max-moves) MAX_MOVES=$2; shift 2 ;;
    --bandwidth) BW=$2; shift 2 ;;
    --keep) KEEP=1; shift ;;
    -h|--help) usage ;;
    *) echo "run.sh: unknown option '$1'" >&2; usage ;;
  esac
done
SERVER=$BUILD/src/server/norikv-server
LOADGEN=$BUILD/bench/norikv_loadgen
for b in "$SERVER" "$LOADGEN"; do
  [ -x "$b" ] || { echo "run.sh: $b is not built (cmake --build $BUILD)" >&2; exit 1; }
done
TMP=$(mktemp -d "${TMPDIR:-/tmp}/norikv-bench-membership.XXXXXX")
RESULTS=$TMP/results.txt
: > "$RESULTS"
PIDS=()
cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do
    for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  if [ "$KEEP" = 1 ]; then echo "run.sh: kept $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN{printf "%.1f", b - a}'; }

read -r -a P <<< "$("$LOADGEN" freeport 12)"
RPC=() HTTP=() PEER=() NPID=()
for i in 0 1 2 3; do
  RPC[$i]=127.0.0.1:${P[$i]} PEER[$i]=127.0.0.1:${P[$((4 + i))]} HTTP[$i]=127.0.0.1:${P[$((8 + i))]}
done
COMMON="--cluster-total-shards $SHARDS --cluster-replication-factor 3
  --cluster-max-concurrent-moves $MAX_MOVES --cluster-move-bandwidth $BW"
start() { # start I EXTRA-ARGS...
  local i=$1; shift
  rm -f "$TMP/n$i.out"
  # shellcheck disable=SC2086
  "$SERVER" --node-id "n$((i + 1))" --rpc-addr "${RPC[$i]}" --peer-addr "${PEER[$i]}" \
    --http-addr "${HTTP[$i]}" --data-dir "$TMP/n$i" $COMMON "$@" > "$TMP/n$i.out" 2>> "$TMP/n$i.log" &
  NPID[$i]=$!
  PIDS+=("$!")
  for _ in $(seq 600); do
    grep -qs '^READY' "$TMP/n$i.out" && return 0
    kill -0 "${NPID[$i]}" 2>/dev/null || { tail -20 "$TMP/n$i.log" >&2; exit 1; }
    sleep 0.1
  done
  echo "run.sh: node $i not ready in 60 s" >&2; exit 1
}
# placed NODES...: true when every listed node's plan has no shard off the
# plan, none unknown and no move in flight.
placed() {
  local i doc
  for i in "$@"; do
    doc=$(curl -sf "http://${HTTP[$i]}/meta/placement") || return 1
    echo "$doc" | python3 -c '
import json, sys
d = json.load(sys.stdin)
ok = d["shards_differing"] == 0 and d["shards_unknown"] == 0 and d["moves_led_here"]["in_flight"] == 0
sys.exit(0 if ok else 1)' || return 1
  done
}
# latency LABEL TARGETS: one put phase and one lease-get phase (RESULT lines, relabelled)
latency() {
  local label=$1 targets=$2
  "$LOADGEN" run --system norikv --target "$targets" --clients "$CLIENTS" --seconds "$PHASE" \
    --value-size 256 --shards "$SHARDS" --phases put,get-lease --keys-file "$TMP/lat.keys" |
    sed "s/^RESULT norikv /RESULT $label /" >> "$RESULTS" || true
}
# during LABEL TARGETS NODES...: latency phases until the nodes are placed; prints the seconds
during() {
  local label=$1 targets=$2 t0; shift 2
  t0=$(now)
  while ! placed "$@"; do
    latency "$label" "$targets"
    if awk -v a="$t0" -v b="$(now)" 'BEGIN{exit !(b - a > 1800)}'; then
      echo "run.sh: not placed in 30 min" >&2
      break
    fi
  done
  return 0
}

echo "== membership benchmark: $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores," \
  "load average $(cut -d' ' -f1-3 /proc/loadavg), commit $(git -C "$(dirname "$0")" rev-parse --short HEAD 2>/dev/null || echo '?')"
echo "== 3 nodes, RF 3, $SHARDS shards, fsync always; $DATA_MB MB of $VALUE_SIZE-byte values;" \
  "latency: $CLIENTS clients, 256-byte puts and lease gets, $PHASE s phases;" \
  "max_concurrent_moves $MAX_MOVES, move_bandwidth $BW"
for i in 0 1 2; do
  seeds=
  for j in 0 1 2; do [ "$j" = "$i" ] || seeds="$seeds${seeds:+,}${PEER[$j]}"; done
  start "$i" "--cluster-seed-nodes=$seeds" &
done
wait
for i in 0 1 2; do NPID[$i]=$(pgrep -f -- "--node-id n$((i + 1)) --rpc-addr ${RPC[$i]}" | head -1); PIDS+=("${NPID[$i]}"); done
T3=$(IFS=,; echo "${RPC[*]:0:3}")
T4=$(IFS=,; echo "${RPC[*]}")
until placed 0 1 2; do sleep 1; done

# load the data: the load generator's keys are (client, sequence number),
# so every run writes the same keys from 0 on: a short run measures the put
# rate, then one run long enough for DATA_MB of distinct keys
t0=$(now)
PUTS=$((DATA_MB * 1024 * 1024 / VALUE_SIZE))
rate=$("$LOADGEN" run --system norikv --target "$T3" --clients 64 --seconds 5 \
  --value-size "$VALUE_SIZE" --shards "$SHARDS" --phases put --keys-file "$TMP/load.keys" |
  awk '$1 == "RESULT" {print int($6)}' || true)
# the rate falls as the database grows: aim 60% over the first estimate
secs=$(awk -v p="$PUTS" -v r="${rate:-1000}" 'BEGIN{s = int(1.6 * p / (r > 0 ? r : 1000)) + 1; print s}')
echo "   put rate ${rate:-?}/s: loading for $secs s" >&2
loaded=$("$LOADGEN" run --system norikv --target "$T3" --clients 64 --seconds "$secs" \
  --value-size "$VALUE_SIZE" --shards "$SHARDS" --phases put --keys-file "$TMP/load.keys" |
  awk '$1 == "RESULT" {print $4}' || true)
loaded=${loaded:-0}
LOAD_S=$(since "$t0")
echo "LOADED $loaded $((loaded * VALUE_SIZE / 1024 / 1024)) $LOAD_S" >> "$RESULTS"
du -sm "$TMP"/n0 | awk '{print "DISK n1", $1}' >> "$RESULTS"
sleep 5

latency before "$T3"
latency before "$T3"

# join: a fourth node; the clock runs from its start to every node placed
t0=$(now)
start 3 --join "${PEER[0]}"
during join "$T4" 0 1 2 3
echo "CHANGE join $(since "$t0")" >> "$RESULTS"
du -sm "$TMP"/n3 | awk '{print "DISK n4", $1}' >> "$RESULTS"
latency after-join "$T4"

# drain the fourth node: from the command to every remaining node placed
t0=$(now)
"$BUILD/tools/norikv/norikv" --addr "${RPC[3]}" drain >> "$RESULTS"
during drain "$T4" 0 1 2
echo "CHANGE drain $(since "$t0")" >> "$RESULTS"

echo
awk '
  $1 == "LOADED" { printf "loaded %d values (%d MB) in %.0f s\n", $2, $3, $4 }
  $1 == "DISK" { printf "disk used by %s: %d MB\n", $2, $3 }
  $1 == "CHANGE" { printf "%-5s took %.1f s (command to every node placed)\n", $2, $3 }
  $1 == "RESULT" {
    k = $2 " " $3; n[k]++; ops[k] += $4; sec[k] += $5
    if ($8 > p99[k]) p99[k] = $8
    p50s[k] += $7; err[k] += $9
    if (!(k in seen)) { seen[k] = 1; order[++m] = k }
  }
  END {
    printf "\n%-18s %-10s %8s %10s %10s %10s %7s\n", "when", "op", "phases", "ops/s", "p50 us", "p99 us", "errors"
    for (i = 1; i <= m; i++) {
      k = order[i]; split(k, a, " ")
      printf "%-18s %-10s %8d %10.0f %10.0f %10.0f %7d\n", a[1], a[2], n[k], ops[k] / sec[k], p50s[k] / n[k], p99[k], err[k]
    }
    for (i = 1; i <= m; i++) {
      k = order[i]; split(k, a, " ")
      b = "before " a[2]
      if (a[1] != "before" && (b in p99) && p99[b] > 0)
        printf "p99 %-5s %-10s during/after the change vs before: %.2fx\n", a[2], a[1], p99[k] / p99[b]
    }
  }' "$RESULTS"
echo "load average after the run: $(cut -d' ' -f1-3 /proc/loadavg)"
