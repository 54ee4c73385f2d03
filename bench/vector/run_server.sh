#!/usr/bin/env bash
# End-to-end vector search through norikv-server (gRPC) against the same
# index in-process: bench_vector_server. Run by hand
# (`make bench-vector-server`, or bench/vector/run_server.sh BUILD_DIR [options]);
# never part of `make test`.
#
#   --n N          vectors (default 20000; inserting them is Raft writes)
#   --dims D       dimensions (default 128)
#   --clients C    search client threads (default 8)
#   --seconds S    each search phase (default 10)
#
# The server: one node, on-disk data in a temporary directory, default
# settings (fdatasync before acknowledging), 127.0.0.1 free ports; stopped by
# PID on exit. The data file (bench_vector gen: clustered, exact top-10) is
# kept in bench/out/vector/ and reused.
set -euo pipefail

usage() { sed -n '2,/^set /p' "$0" | grep '^#' | sed 's/^# \{0,1\}//'; exit 2; }
[ $# -ge 1 ] || usage
BUILD=$1; shift
N=20000 DIMS=128 CLIENTS=8 SECS=10
while [ $# -gt 0 ]; do
  case $1 in
    --n) N=$2; shift 2 ;;
    --dims) DIMS=$2; shift 2 ;;
    --clients) CLIENTS=$2; shift 2 ;;
    --seconds) SECS=$2; shift 2 ;;
    -h|--help) usage ;;
    *) echo "run_server.sh: unknown option '$1'" >&2; usage ;;
  esac
done
SERVER=$BUILD/src/server/norikv-server
GEN=$BUILD/bench/vector/bench_vector
BENCH=$BUILD/bench/vector/bench_vector_server
for b in "$SERVER" "$GEN" "$BENCH"; do
  [ -x "$b" ] || { echo "run_server.sh: $b is not built (cmake --build $BUILD)" >&2; exit 1; }
done
OUT=bench/out/vector
mkdir -p "$OUT"
DATA=$OUT/clustered-${N}x${DIMS}.bin
[ -f "$DATA" ] || "$GEN" gen --out "$DATA" --n "$N" --dims "$DIMS"

TMP=$(mktemp -d "${TMPDIR:-/tmp}/norikv-bench-vector-server.XXXXXX")
PID=
cleanup() {
  if [ -n "$PID" ]; then kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; fi
  rm -rf "$TMP"
}
trap cleanup EXIT
"$SERVER" --data-dir "$TMP/data" --rpc-addr 127.0.0.1:0 --http-addr 127.0.0.1:0 \
  > "$TMP/stdout" 2> "$TMP/stderr" &
PID=$!
for _ in $(seq 300); do
  grep -q '^READY ' "$TMP/stdout" 2>/dev/null && break
  kill -0 "$PID" 2>/dev/null || { cat "$TMP/stderr" >&2; exit 1; }
  sleep 0.1
done
GRPC=$(grep '^READY ' "$TMP/stdout" | sed 's/.*grpc=\([^ ]*\).*/\1/')
[ -n "$GRPC" ] || { echo "run_server.sh: no READY line" >&2; exit 1; }
echo "norikv-server pid $PID on $GRPC; load average: $(cut -d' ' -f1-3 /proc/loadavg)"
"$BENCH" --data "$DATA" --target "$GRPC" --clients "$CLIENTS" --seconds "$SECS"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"

# Restart: SIGTERM, then start on the same data directory and time it to READY
# (the Raft log replayed from the applied index, every index loaded from the LSM).
kill -TERM "$PID"; wait "$PID" || true; PID=
T0=$(date +%s.%N)
"$SERVER" --data-dir "$TMP/data" --rpc-addr 127.0.0.1:0 --http-addr 127.0.0.1:0 \
  > "$TMP/stdout2" 2> "$TMP/stderr2" &
PID=$!
for _ in $(seq 3000); do
  grep -q '^READY ' "$TMP/stdout2" 2>/dev/null && break
  kill -0 "$PID" 2>/dev/null || { cat "$TMP/stderr2" >&2; exit 1; }
  sleep 0.01
done
T1=$(date +%s.%N)
echo "restart with $N vectors of $DIMS dims: READY after $(awk -v a="$T0" -v b="$T1" 'BEGIN { printf "%.2f", b - a }') s;" \
  "$(grep -o 'vector indexes loaded in [0-9]* ms' "$TMP/stderr2" || echo 'vector indexes loaded in < 100 ms')"
