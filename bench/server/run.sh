#!/usr/bin/env bash
# The server benchmark: norikv-server vs etcd on this machine, one at a time,
# driven by the same load generator (bench/server/loadgen.c) with the same
# workload; prints one table with NoriKV/etcd ratios. Run by hand
# (`make bench-server`, or bench/server/run.sh BUILD_DIR [options]); never
# part of `make test`.
#
#   --seconds N        duration of every load phase (default 10)
#   --idle-seconds N   idle CPU measurement window (default 10)
#   --clients N        concurrent clients, one thread each (default 64)
#   --value-size B     value bytes (default 256; keys are 16 bytes)
#   --only norikv|etcd run one system only
#   --keep             keep the temporary directory (data, logs, metrics)
#
# NoriKV: one node, 1024 shards, on-disk data dir, default settings (WAL fsync
# "always": fdatasync before acknowledging). etcd: one member, defaults
# (fsyncs its WAL on every commit). Both listen on 127.0.0.1 free ports, keep
# their data in a temporary directory, and are stopped by PID on exit.
set -euo pipefail

usage() { sed -n '2,/^set /p' "$0" | grep '^#' | sed 's/^# \{0,1\}//'; exit 2; }
[ $# -ge 1 ] || usage
BUILD=$1; shift
SECONDS_PER_PHASE=10 IDLE_SECONDS=10 CLIENTS=64 VALUE_SIZE=256 ONLY= KEEP=0
while [ $# -gt 0 ]; do
  case $1 in
    --seconds) SECONDS_PER_PHASE=$2; shift 2 ;;
    --idle-seconds) IDLE_SECONDS=$2; shift 2 ;;
    --clients) CLIENTS=$2; shift 2 ;;
    --value-size) VALUE_SIZE=$2; shift 2 ;;
    --only) ONLY=$2; shift 2 ;;
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
ETCD=$(command -v etcd || true)
if [ -z "$ONLY" ] || [ "$ONLY" = etcd ]; then
  [ -n "$ETCD" ] || { echo "run.sh: etcd is not installed (Debian package etcd-server)" >&2; exit 1; }
fi

TMP=$(mktemp -d "${TMPDIR:-/tmp}/norikv-bench-server.XXXXXX")
RESULTS=$TMP/results.txt
: > "$RESULTS"
PIDS=()

# Stops every process this script started, by PID: SIGTERM, then SIGKILL
# after 10 s.
stop_pid() {
  local pid=$1
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 100); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    echo "run.sh: PID $pid did not stop on SIGTERM within 10 s, killing it" >&2
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
}
cleanup() {
  local p
  for p in "${PIDS[@]}"; do stop_pid "$p"; done
  if [ "$KEEP" = 1 ]; then echo "run.sh: kept $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

CLK_TCK=$(getconf CLK_TCK)
# utime + stime of a process, in clock ticks (fields 14 and 15 of
# /proc/PID/stat, counted after the command name, which may hold spaces).
cpu_ticks() { sed 's/^.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'; }
now() { date +%s.%N; }

# Runs one loadgen phase against a server and records the server's CPU
# seconds during it (SERVERCPU line).
phase() {
  local sys=$1 pid=$2 target=$3 ph=$4 t0 t1
  t0=$(cpu_ticks "$pid")
  "$LOADGEN" run --system "$sys" --target "$target" --clients "$CLIENTS" \
    --seconds "$SECONDS_PER_PHASE" --value-size "$VALUE_SIZE" \
    --phases "$ph" --keys-file "$TMP/$sys.keys" >> "$RESULTS" || true
  t1=$(cpu_ticks "$pid")
  echo "SERVERCPU $sys $ph $(awk -v d=$((t1 - t0)) -v h="$CLK_TCK" 'BEGIN{printf "%.3f", d / h}')" >> "$RESULTS"
}

# Idle CPU of a process over IDLE_SECONDS, as % of one core (IDLE line).
idle_cpu() {
  local pid=$1 what=$2 t0 t1 w0 w1
  t0=$(cpu_ticks "$pid"); w0=$(now)
  sleep "$IDLE_SECONDS"
  t1=$(cpu_ticks "$pid"); w1=$(now)
  awk -v d=$((t1 - t0)) -v h="$CLK_TCK" -v w0="$w0" -v w1="$w1" -v what="$what" \
    'BEGIN{printf "IDLE %s %.3f %.1f\n", what, 100 * d / h / (w1 - w0), w1 - w0}' >> "$RESULTS"
  tail -n 1 "$RESULTS" >&2
}

# Sum and count of a Prometheus histogram (all label sets), "sum count".
metric_sum_count() {
  awk -v m="$2" '$1 ~ "^"m"_sum" {s += $2} $1 ~ "^"m"_count" {c += $2} END {printf "%s %s\n", s + 0, c + 0}' "$1"
}

# A histogram's change between two scrapes: "METRIC <sys> <name> <count> <mean>".
metric_delta() {
  local sys=$1 m=$2
  paste <(metric_sum_count "$TMP/$sys.metrics.0" "$m") <(metric_sum_count "$TMP/$sys.metrics.1" "$m") |
    awk -v sys="$sys" -v m="$m" '{s = $3 - $1; c = $4 - $2; printf "METRIC %s %s %d %.6g\n", sys, m, c, c ? s / c : 0}' >> "$RESULTS"
}

echo "== server benchmark: $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores," \
  "load average $(cut -d' ' -f1-3 /proc/loadavg), commit $(git -C "$(dirname "$0")" rev-parse --short HEAD 2>/dev/null || echo '?')"
echo "== $CLIENTS clients, 16-byte keys, $VALUE_SIZE-byte values, $SECONDS_PER_PHASE s per phase," \
  "one gRPC connection; temp dir $TMP"

# ---------------------------------------------------------------- NoriKV
if [ -z "$ONLY" ] || [ "$ONLY" = norikv ]; then
  echo "== norikv-server: one node, 1024 shards, fsync always" >&2
  "$SERVER" --data-dir "$TMP/norikv" --rpc-addr 127.0.0.1:0 --http-addr 127.0.0.1:0 \
    --peer-addr 127.0.0.1:0 > "$TMP/norikv.out" 2> "$TMP/norikv.log" &
  NPID=$!
  PIDS+=("$NPID")
  for _ in $(seq 600); do
    grep -q '^READY' "$TMP/norikv.out" && break
    kill -0 "$NPID" 2>/dev/null || { cat "$TMP/norikv.log" >&2; echo "run.sh: norikv-server exited" >&2; exit 1; }
    sleep 0.1
  done
  grep -q '^READY' "$TMP/norikv.out" || { echo "run.sh: norikv-server not ready in 60 s" >&2; exit 1; }
  GRPC=$(sed -n 's/^READY grpc=\([^ ]*\).*/\1/p' "$TMP/norikv.out")
  HTTP=$(sed -n 's/^READY.* http=\([^ ]*\).*/\1/p' "$TMP/norikv.out")
  echo "   READY grpc=$GRPC http=$HTTP" >&2
  sleep 2 # start-up work (first elections, files) is not idle time
  idle_cpu "$NPID" fresh
  curl -s --max-time 5 "http://$HTTP/metrics" > "$TMP/norikv.metrics.0" || true
  phase norikv "$NPID" "$GRPC" put
  curl -s --max-time 5 "http://$HTTP/metrics" > "$TMP/norikv.metrics.1" || true
  phase norikv "$NPID" "$GRPC" get-lease
  phase norikv "$NPID" "$GRPC" get-linearizable
  sleep 2
  idle_cpu "$NPID" after-load
  # the Raft log during the put phase, from the server's histograms
  for m in norikv_raft_fsync_duration_seconds norikv_raft_round_entries norikv_raft_commit_duration_seconds; do
    metric_delta norikv $m
  done
  stop_pid "$NPID"
fi

# ---------------------------------------------------------------- etcd
if [ -z "$ONLY" ] || [ "$ONLY" = etcd ]; then
  echo "== etcd $("$ETCD" --version | sed -n 's/^etcd Version: //p'): one member, defaults" >&2
  read -r CPORT PPORT <<< "$("$LOADGEN" freeport 2)"
  "$ETCD" --name bench --data-dir "$TMP/etcd" \
    --listen-client-urls "http://127.0.0.1:$CPORT" --advertise-client-urls "http://127.0.0.1:$CPORT" \
    --listen-peer-urls "http://127.0.0.1:$PPORT" --initial-advertise-peer-urls "http://127.0.0.1:$PPORT" \
    --initial-cluster "bench=http://127.0.0.1:$PPORT" > "$TMP/etcd.log" 2>&1 &
  EPID=$!
  PIDS+=("$EPID")
  "$LOADGEN" wait --system etcd --target "127.0.0.1:$CPORT" --timeout 60 ||
    { tail -20 "$TMP/etcd.log" >&2; exit 1; }
  echo "   serving on 127.0.0.1:$CPORT" >&2
  curl -s --max-time 5 "http://127.0.0.1:$CPORT/metrics" > "$TMP/etcd.metrics.0" || true
  phase etcd "$EPID" "127.0.0.1:$CPORT" put
  curl -s --max-time 5 "http://127.0.0.1:$CPORT/metrics" > "$TMP/etcd.metrics.1" || true
  metric_delta etcd etcd_disk_wal_fsync_duration_seconds
  phase etcd "$EPID" "127.0.0.1:$CPORT" get-serializable
  phase etcd "$EPID" "127.0.0.1:$CPORT" get-linearizable
  stop_pid "$EPID"
fi

echo
"$LOADGEN" table "$RESULTS"
if grep -q '^METRIC' "$RESULTS"; then
  echo
  echo "During the put phase (from each server's /metrics histograms):"
  awk '$1 == "RESULT" && $3 == "put" {puts[$2] = $4}
       $1 == "METRIC" && $3 ~ /fsync_duration/ {
         printf "  %-6s %8d fdatasyncs for %8d puts (%.2f puts per fdatasync), mean %.3f ms (%s)\n", $2, $4,
                puts[$2], $4 ? puts[$2] / $4 : 0, $5 * 1000, $3 }
       $1 == "METRIC" && $3 == "norikv_raft_round_entries" {
         printf "  norikv %8d Ready rounds, mean %.1f entries per round\n", $4, $5 }
       $1 == "METRIC" && $3 == "norikv_raft_commit_duration_seconds" {
         printf "  norikv mean proposal-to-apply time %.3f ms (%s)\n", $5 * 1000, $3 }' "$RESULTS"
fi
echo "load average after the run: $(cut -d' ' -f1-3 /proc/loadavg)"
