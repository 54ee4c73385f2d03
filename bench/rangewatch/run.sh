#!/usr/bin/env bash
# The range and watch benchmark (issue 12): norikv-server vs etcd on this
# machine, one at a time, one node / one member each, driven by the same
# Python client code (bench/rangewatch/rangewatch.py, grpc.aio) speaking each
# system's own gRPC API. Prints the raw lines and a table with NoriKV/etcd
# ratios. Run by hand (`make bench-range`, or
# bench/rangewatch/run.sh BUILD_DIR [options]); never part of `make test`.
#
#   --keys N           keys loaded for the range scans (default 100000)
#   --page N           keys per page of a scan, both systems (default 1000)
#   --runs N           scans per mode (default 3; the table shows the median)
#   --watch-seconds N  put load under the watch (default 10)
#   --clients N        put load threads (bench/server/loadgen.c; default 64)
#   --probe-ms N       latency probe: one put every N ms (default 10)
#   --only norikv|etcd one system only
#   --skip-range | --skip-watch
#   --keep             keep the temporary directory (data, logs)
#
# The NoriKV watch phase runs twice: Kv.Watch itself, and through the Python
# SDK's Client.watch (one WatchEvent object per event).
#
# NoriKV: one node, 1024 shards, on-disk data directory, defaults (WAL fsync
# "always"). etcd: one member, defaults (fdatasync before acknowledging).
# Both listen on 127.0.0.1 free ports, keep their data in a temporary
# directory, and are stopped by PID on exit. Each system gets a fresh data
# directory for the range phase and another for the watch phase. The Python
# comes from clients/python/.venv (created by clients/python/run-tests.sh,
# or here when missing: the norikv package and grpcio-tools from PyPI);
# etcd_min.proto is compiled into the temporary directory.
set -euo pipefail

usage() { sed -n '2,/^set /p' "$0" | grep '^#' | sed 's/^# \{0,1\}//'; exit 2; }
[ $# -ge 1 ] || usage
BUILD=$1; shift
KEYS=100000 PAGE=1000 RUNS=3 WATCH_SECONDS=10 CLIENTS=64 PROBE_MS=10 ONLY= KEEP=0 DO_RANGE=1 DO_WATCH=1
while [ $# -gt 0 ]; do
  case $1 in
    --keys) KEYS=$2; shift 2 ;;
    --page) PAGE=$2; shift 2 ;;
    --runs) RUNS=$2; shift 2 ;;
    --watch-seconds) WATCH_SECONDS=$2; shift 2 ;;
    --clients) CLIENTS=$2; shift 2 ;;
    --probe-ms) PROBE_MS=$2; shift 2 ;;
    --only) ONLY=$2; shift 2 ;;
    --skip-range) DO_RANGE=0; shift ;;
    --skip-watch) DO_WATCH=0; shift ;;
    --keep) KEEP=1; shift ;;
    -h|--help) usage ;;
    *) echo "rangewatch: unknown option '$1'" >&2; usage ;;
  esac
done

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
SERVER=$BUILD/src/server/norikv-server
LOADGEN=$BUILD/bench/norikv_loadgen
for b in "$SERVER" "$LOADGEN"; do
  [ -x "$b" ] || { echo "rangewatch: $b is not built (cmake --build $BUILD)" >&2; exit 1; }
done
SERVER=$(cd "$(dirname "$SERVER")" && pwd)/$(basename "$SERVER")
LOADGEN=$(cd "$(dirname "$LOADGEN")" && pwd)/$(basename "$LOADGEN")
ETCD=$(command -v etcd || true)
if [ -z "$ONLY" ] || [ "$ONLY" = etcd ]; then
  [ -n "$ETCD" ] || { echo "rangewatch: etcd is not installed (Debian package etcd-server)" >&2; exit 1; }
fi

VENV=$ROOT/clients/python/.venv
if ! "$VENV/bin/python" -c 'import norikv, grpc_tools' 2>/dev/null; then
  echo "== setting up $VENV (norikv SDK, grpcio-tools)" >&2
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "$ROOT/clients/python[test]"
fi
PY=$VENV/bin/python

TMP=$(mktemp -d "${TMPDIR:-/tmp}/norikv-bench-rangewatch.XXXXXX")
RESULTS=$TMP/results.txt
: > "$RESULTS"
PIDS=()
stop_pid() {
  local pid=$1
  kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 100); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    echo "rangewatch: PID $pid did not stop on SIGTERM within 10 s, killing it" >&2
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
}
cleanup() {
  local p
  for p in "${PIDS[@]}"; do stop_pid "$p"; done
  if [ "$KEEP" = 1 ]; then echo "rangewatch: kept $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

"$PY" -m grpc_tools.protoc -I "$HERE" --python_out="$TMP" "$HERE/etcd_min.proto"

# start_norikv NAME: one node in $TMP/NAME; sets NPID and GRPC.
start_norikv() {
  "$SERVER" --data-dir "$TMP/$1" --rpc-addr 127.0.0.1:0 --http-addr 127.0.0.1:0 \
    --peer-addr 127.0.0.1:0 > "$TMP/$1.out" 2> "$TMP/$1.log" &
  NPID=$!
  PIDS+=("$NPID")
  for _ in $(seq 600); do
    grep -q '^READY' "$TMP/$1.out" && break
    kill -0 "$NPID" 2>/dev/null || { cat "$TMP/$1.log" >&2; echo "rangewatch: norikv-server exited" >&2; exit 1; }
    sleep 0.1
  done
  grep -q '^READY' "$TMP/$1.out" || { echo "rangewatch: norikv-server not ready in 60 s" >&2; exit 1; }
  GRPC=$(sed -n 's/^READY grpc=\([^ ]*\).*/\1/p' "$TMP/$1.out")
  "$LOADGEN" wait --system norikv --target "$GRPC" --timeout 60 >/dev/null
  sleep 2 # first elections of 1024 shards
}
# start_etcd NAME: one member in $TMP/NAME; sets EPID and ETARGET.
start_etcd() {
  local cport pport
  read -r cport pport <<< "$("$LOADGEN" freeport 2)"
  "$ETCD" --name bench --data-dir "$TMP/$1" \
    --listen-client-urls "http://127.0.0.1:$cport" --advertise-client-urls "http://127.0.0.1:$cport" \
    --listen-peer-urls "http://127.0.0.1:$pport" --initial-advertise-peer-urls "http://127.0.0.1:$pport" \
    --initial-cluster "bench=http://127.0.0.1:$pport" > "$TMP/$1.log" 2>&1 &
  EPID=$!
  PIDS+=("$EPID")
  ETARGET=127.0.0.1:$cport
  "$LOADGEN" wait --system etcd --target "$ETARGET" --timeout 60 || { tail -20 "$TMP/$1.log" >&2; exit 1; }
}

echo "== range/watch benchmark: $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores," \
  "load average $(cut -d' ' -f1-3 /proc/loadavg), commit $(git -C "$HERE" rev-parse --short HEAD 2>/dev/null || echo '?')"
echo "== range: $KEYS keys (16 B) x 256 B values, pages of $PAGE, $RUNS scans per mode;" \
  "watch: $CLIENTS put threads for $WATCH_SECONDS s, a probe put every $PROBE_MS ms; temp dir $TMP"

run_py() { "$PY" "$HERE/rangewatch.py" "$@" --gen-dir "$TMP" | tee -a "$RESULTS"; }

for sys in norikv etcd; do
  [ -z "$ONLY" ] || [ "$ONLY" = "$sys" ] || continue
  if [ "$DO_RANGE" = 1 ]; then
    if [ "$sys" = norikv ]; then start_norikv norikv-range; T=$GRPC P=$NPID; else start_etcd etcd-range; T=$ETARGET P=$EPID; fi
    run_py range --system "$sys" --target "$T" --keys "$KEYS" --page "$PAGE" --runs "$RUNS" || true
    stop_pid "$P"
  fi
  if [ "$DO_WATCH" = 1 ]; then
    if [ "$sys" = norikv ]; then start_norikv norikv-watch; T=$GRPC P=$NPID; else start_etcd etcd-watch; T=$ETARGET P=$EPID; fi
    run_py watch --system "$sys" --target "$T" --loadgen "$LOADGEN" --seconds "$WATCH_SECONDS" \
      --clients "$CLIENTS" --probe-ms "$PROBE_MS" --keys-file "$TMP/$sys.keys" --dump "$TMP/$sys-probes.txt" 2>> "$TMP/$sys-watch.err" ||
      { echo "rangewatch: $sys watch phase failed:" >&2; tail -5 "$TMP/$sys-watch.err" >&2; }
    stop_pid "$P"
    if [ "$sys" = norikv ]; then # again through the Python SDK's Client.watch
      start_norikv norikv-watch-sdk
      run_py watch --system norikv --via sdk --target "$GRPC" --loadgen "$LOADGEN" --seconds "$WATCH_SECONDS" \
        --clients "$CLIENTS" --probe-ms "$PROBE_MS" --keys-file "$TMP/norikv-sdk.keys" --dump "$TMP/norikv-sdk-probes.txt" 2>> "$TMP/norikv-sdk-watch.err" ||
        { echo "rangewatch: norikv SDK watch phase failed:" >&2; tail -5 "$TMP/norikv-sdk-watch.err" >&2; }
      stop_pid "$NPID"
    fi
  fi
done

echo
awk '
  function median(s, n,   a, i, j, v) {
    split(s, a, " "); n = 0
    for (i in a) if (a[i] != "") n++
    for (i = 2; i <= n; i++) { v = a[i] + 0; for (j = i - 1; j >= 1 && a[j] + 0 > v; j--) a[j + 1] = a[j]; a[j + 1] = v }
    return n ? (n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2) : -1
  }
  $1 == "LOAD" { printf "load   %-6s %d keys in %.1f s (%.0f puts/s)\n", $2, $3, $4, $5 }
  $1 == "RANGE" { r[$2 " " $3] = r[$2 " " $3] " " $7 }
  $1 == "WATCH" { for (i = 3; i < NF; i += 2) w[$2, $i] = $(i + 1); ws[$2] = 1 }
  END {
    for (k in r) { printf "\n%-32s %14s\n", "range scan (median of runs)", "keys/s"; break }
    for (k in r) { m[k] = median(r[k]); printf "%-32s %14.0f   (runs:%s)\n", k, m[k], r[k] }
    if (("norikv raw-linearizable" in m) && ("etcd raw-linearizable" in m))
      printf "NoriKV/etcd linearizable scan:  %.2fx\n", m["norikv raw-linearizable"] / m["etcd raw-linearizable"]
    if (("norikv raw-lease" in m) && ("etcd raw-serializable" in m))
      printf "NoriKV lease / etcd serializable scan: %.2fx\n", m["norikv raw-lease"] / m["etcd raw-serializable"]
    if (("norikv sdk-linearizable" in m) && ("etcd raw-linearizable" in m))
      printf "NoriKV Python SDK range / etcd linearizable: %.2fx\n", m["norikv sdk-linearizable"] / m["etcd raw-linearizable"]
    for (s in ws)
      printf "\nwatch  %-6s %d events (%d puts acked by the load) in %.1f s: %.0f events/s; probe %d puts, put-ack->event p50 %.2f ms p99 %.2f ms, put-send->event p50 %.2f ms p99 %.2f ms, %d probes without an event\n",
        s, w[s, "events"], w[s, "acked_puts"], w[s, "span_s"], w[s, "events_per_s"], w[s, "probes"],
        w[s, "lat_ack_p50_ms"], w[s, "lat_ack_p99_ms"], w[s, "lat_send_p50_ms"], w[s, "lat_send_p99_ms"], w[s, "missing_probes"]
    if (("norikv-sdk" in ws) && ("etcd" in ws))
      printf "NoriKV Python SDK watch / etcd: events/s %.2fx; put-ack->event p50 %.2fx, p99 %.2fx\n",
        w["norikv-sdk", "events_per_s"] / w["etcd", "events_per_s"],
        (w["etcd", "lat_ack_p50_ms"] > 0 ? w["norikv-sdk", "lat_ack_p50_ms"] / w["etcd", "lat_ack_p50_ms"] : -1),
        (w["etcd", "lat_ack_p99_ms"] > 0 ? w["norikv-sdk", "lat_ack_p99_ms"] / w["etcd", "lat_ack_p99_ms"] : -1)
    if (("norikv" in ws) && ("etcd" in ws)) {
      printf "NoriKV/etcd watch events/s: %.2fx; put-ack->event p50 %.2fx, p99 %.2fx (latency: lower is better)\n",
        w["norikv", "events_per_s"] / w["etcd", "events_per_s"],
        (w["etcd", "lat_ack_p50_ms"] > 0 ? w["norikv", "lat_ack_p50_ms"] / w["etcd", "lat_ack_p50_ms"] : -1),
        (w["etcd", "lat_ack_p99_ms"] > 0 ? w["norikv", "lat_ack_p99_ms"] / w["etcd", "lat_ack_p99_ms"] : -1)
    }
  }' "$RESULTS"
echo "load average after the run: $(cut -d' ' -f1-3 /proc/loadavg)"
