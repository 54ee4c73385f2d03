#!/usr/bin/env bash
# The cluster benchmark: a 3-node NoriKV cluster (RF 3, 1024 shards) vs a
# 3-member etcd cluster on this machine, one system at a time, driven by the
# same load generator (bench/server/loadgen.c) with the same workload and
# client count; prints one table with NoriKV/etcd ratios, then NoriKV's
# failover times, idle CPU and memory. Run by hand (`make bench-cluster`, or
# bench/server/cluster.sh BUILD_DIR [options]); never part of `make test`.
#
#   --seconds N          duration of every load phase (default 10)
#   --idle-seconds N     idle CPU measurement window (default 10)
#   --clients N          concurrent clients, one thread each (default 64)
#   --value-size B       value bytes (default 256; keys are 16 bytes)
#   --kills N            failover rounds (SIGKILL of the busiest leader; default 10, 0: none)
#   --balance-seconds N  at most this long for leadership to even out (no node leading
#                        more than 110% of its share) after start-up and after a
#                        killed node is back, before the next measurement (default 30)
#   --only norikv|etcd   run one system only
#   --keep               keep the temporary directory (data, logs)
#
# NoriKV: three norikv-server processes, each with its own data directory,
# default durability (WAL fsync "always"), replication factor 3, each
# seeded with the other two's peer addresses, all started at once. The load
# generator sends each request to the leader of the key's shard (learned from
# NOT_LEADER leader-hint trailers). etcd: three members (--initial-cluster),
# defaults (fsync before acknowledging); client i talks to member i % 3 and
# followers forward to the leader. Everything listens on 127.0.0.1 free
# ports, keeps its data in a temporary directory, and is stopped by PID on
# exit.
set -euo pipefail

usage() { sed -n '2,/^set /p' "$0" | grep '^#' | sed 's/^# \{0,1\}//'; exit 2; }
[ $# -ge 1 ] || usage
BUILD=$1; shift
SECONDS_PER_PHASE=10 IDLE_SECONDS=10 CLIENTS=64 VALUE_SIZE=256 KILLS=10 BALANCE=30 ONLY= KEEP=0
SHARDS=1024 N=3
while [ $# -gt 0 ]; do
  case $1 in
    --seconds) SECONDS_PER_PHASE=$2; shift 2 ;;
    --idle-seconds) IDLE_SECONDS=$2; shift 2 ;;
    --clients) CLIENTS=$2; shift 2 ;;
    --value-size) VALUE_SIZE=$2; shift 2 ;;
    --kills) KILLS=$2; shift 2 ;;
    --balance-seconds) BALANCE=$2; shift 2 ;;
    --only) ONLY=$2; shift 2 ;;
    --keep) KEEP=1; shift ;;
    -h|--help) usage ;;
    *) echo "cluster.sh: unknown option '$1'" >&2; usage ;;
  esac
done

SERVER=$BUILD/src/server/norikv-server
LOADGEN=$BUILD/bench/norikv_loadgen
for b in "$SERVER" "$LOADGEN"; do
  [ -x "$b" ] || { echo "cluster.sh: $b is not built (cmake --build $BUILD)" >&2; exit 1; }
done
ETCD=$(command -v etcd || true)
if [ -z "$ONLY" ] || [ "$ONLY" = etcd ]; then
  [ -n "$ETCD" ] || { echo "cluster.sh: etcd is not installed (Debian package etcd-server)" >&2; exit 1; }
fi
# Multi-node clusters were gated behind this variable while they were being
# built; harmless once the gate is gone.
export NORIKV_EXPERIMENTAL_CLUSTER=1

TMP=$(mktemp -d "${TMPDIR:-/tmp}/norikv-bench-cluster.XXXXXX")
RESULTS=$TMP/results.txt
: > "$RESULTS"
PIDS=() # every process ever started (stopped by PID on exit; dead ones are skipped)

stop_pid() {
  local pid=$1
  kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 100); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    echo "cluster.sh: PID $pid did not stop on SIGTERM within 10 s, killing it" >&2
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
}
cleanup() {
  local p
  for p in "${PIDS[@]}"; do stop_pid "$p"; done
  if [ "$KEEP" = 1 ]; then echo "cluster.sh: kept $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

CLK_TCK=$(getconf CLK_TCK)
# utime + stime of a process, in clock ticks (fields 14 and 15 of /proc/PID/stat).
cpu_ticks() { sed 's/^.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'; }
# ... summed over several processes.
cpu_ticks_sum() { local t=0 p; for p in "$@"; do t=$((t + $(cpu_ticks "$p"))); done; echo "$t"; }
now() { date +%s.%N; }

# One loadgen phase against a cluster; records the CPU seconds of all its
# server processes during it (SERVERCPU line: the table divides by the ops).
phase() {
  local sys=$1 targets=$2 ph=$3 t0 t1
  shift 3
  t0=$(cpu_ticks_sum "$@")
  "$LOADGEN" run --system "$sys" --target "$targets" --clients "$CLIENTS" \
    --seconds "$SECONDS_PER_PHASE" --value-size "$VALUE_SIZE" --shards "$SHARDS" \
    --phases "$ph" --keys-file "$TMP/$sys.keys" >> "$RESULTS" || true
  t1=$(cpu_ticks_sum "$@")
  echo "SERVERCPU $sys $ph $(awk -v d=$((t1 - t0)) -v h="$CLK_TCK" 'BEGIN{printf "%.3f", d / h}')" >> "$RESULTS"
}

# Total CPU of several processes over IDLE_SECONDS, as % of one core
# (CLUSTERIDLE line; the loadgen table ignores it, the summary below prints it).
idle_cpu() {
  local sys=$1 what=$2 t0 t1 w0 w1
  shift 2
  t0=$(cpu_ticks_sum "$@"); w0=$(now)
  sleep "$IDLE_SECONDS"
  t1=$(cpu_ticks_sum "$@"); w1=$(now)
  awk -v d=$((t1 - t0)) -v h="$CLK_TCK" -v w0="$w0" -v w1="$w1" -v sys="$sys" -v what="$what" \
    'BEGIN{printf "CLUSTERIDLE %s %s %.3f %.1f\n", sys, what, 100 * d / h / (w1 - w0), w1 - w0}' >> "$RESULTS"
  tail -n 1 "$RESULTS" >&2
}

# VmRSS of each process in MB (RSS line).
rss() {
  local sys=$1 what=$2 p line
  shift 2
  line="RSS $sys $what"
  for p in "$@"; do
    line="$line $(awk '/^VmRSS:/ {printf "%.1f", $2 / 1024}' "/proc/$p/status")"
  done
  echo "$line" >> "$RESULTS"
  tail -n 1 "$RESULTS" >&2
}

echo "== cluster benchmark: $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores," \
  "load average $(cut -d' ' -f1-3 /proc/loadavg), commit $(git -C "$(dirname "$0")" rev-parse --short HEAD 2>/dev/null || echo '?')"
echo "== $N nodes per system, $CLIENTS clients, 16-byte keys, $VALUE_SIZE-byte values," \
  "$SECONDS_PER_PHASE s per phase; temp dir $TMP"

# ---------------------------------------------------------------- NoriKV
NODE_PID=() NODE_ARGS=() RPC=()
# start_node I: starts node I with its arguments (NODE_ARGS[I]); its stdout
# goes to a new file each start, so READY is the latest start's.
start_node() {
  local i=$1
  # the old READY must be gone before the shell forks: the child truncates
  # the file only once it runs, and wait_ready must not see the old line
  rm -f "$TMP/n$i.out"
  # shellcheck disable=SC2086
  "$SERVER" ${NODE_ARGS[$i]} > "$TMP/n$i.out" 2>> "$TMP/n$i.log" &
  NODE_PID[$i]=$!
  PIDS+=("$!")
}
# wait_ready I...: until each node printed READY (60 s at most).
wait_ready() {
  local i
  for i in "$@"; do
    for _ in $(seq 600); do
      grep -qs '^READY' "$TMP/n$i.out" && break
      kill -0 "${NODE_PID[$i]}" 2>/dev/null ||
        { tail -20 "$TMP/n$i.log" >&2; echo "cluster.sh: node $i exited" >&2; exit 1; }
      sleep 0.1
    done
    grep -qs '^READY' "$TMP/n$i.out" || { echo "cluster.sh: node $i not ready in 60 s" >&2; exit 1; }
  done
}

# wait_balanced WHAT: polls the shard leaders every second until no node
# leads more than 110% of its share, for at most BALANCE seconds (BALANCED
# line: how long it took, or -1).
wait_balanced() {
  local what=$1 t0 line
  t0=$(now)
  while :; do
    line=$("$LOADGEN" leaders --target "$TARGETS" --shards "$SHARDS" 2>/dev/null) || true
    if echo "$line" | awk -v s="$SHARDS" -v n="$N" '$1 == "LEADERS" {
         m = 0; for (i = 2; i <= n + 1; i++) if ($i > m) m = $i
         ok = $NF == 0 && m <= 1.1 * s / n }
         END { exit !ok }'; then
      echo "BALANCED $what $(awk -v a="$t0" -v b="$(now)" 'BEGIN{printf "%.1f", b - a}') $line" >> "$RESULTS"
      return 0
    fi
    if awk -v a="$t0" -v b="$(now)" -v m="$BALANCE" 'BEGIN{exit !(b - a > m)}'; then
      echo "BALANCED $what -1 $line" >> "$RESULTS"
      echo "cluster.sh: leadership not even after $BALANCE s: $line" >&2
      return 0
    fi
    sleep 1
  done
}

if [ -z "$ONLY" ] || [ "$ONLY" = norikv ]; then
  echo "== norikv-server: $N nodes, RF 3, $SHARDS shards, fsync always" >&2
  read -r -a PORTS <<< "$("$LOADGEN" freeport $((3 * N)))"
  for i in $(seq 0 $((N - 1))); do
    seeds=
    for j in $(seq 0 $((N - 1))); do
      [ "$j" = "$i" ] || seeds="$seeds${seeds:+,}127.0.0.1:${PORTS[$((N + j))]}"
    done
    RPC[$i]=127.0.0.1:${PORTS[$i]}
    NODE_ARGS[$i]="--node-id n$((i + 1)) --rpc-addr ${RPC[$i]} --peer-addr 127.0.0.1:${PORTS[$((N + i))]}
      --http-addr 127.0.0.1:${PORTS[$((2 * N + i))]} --data-dir $TMP/n$i
      --cluster-seed-nodes=$seeds --cluster-total-shards $SHARDS --cluster-replication-factor 3"
  done
  T0=$(now)
  for i in $(seq 0 $((N - 1))); do start_node "$i"; done # at once: each waits for its seeds
  wait_ready $(seq 0 $((N - 1)))
  TARGETS=$(IFS=,; echo "${RPC[*]}")
  echo "   READY (all $N) after $(awk -v a="$T0" -v b="$(now)" 'BEGIN{printf "%.1f", b - a}') s: $TARGETS" >&2
  "$LOADGEN" leaders --target "$TARGETS" --shards "$SHARDS" >> "$RESULTS" || true
  wait_balanced start
  sleep 2 # start-up work (first elections, leadership transfers) is not idle time
  idle_cpu norikv fresh "${NODE_PID[@]}"
  rss norikv fresh "${NODE_PID[@]}"
  phase norikv "$TARGETS" put "${NODE_PID[@]}"
  phase norikv "$TARGETS" get-lease "${NODE_PID[@]}"
  phase norikv "$TARGETS" get-linearizable "${NODE_PID[@]}"
  rss norikv after-load "${NODE_PID[@]}"
  sleep 2
  idle_cpu norikv after-load "${NODE_PID[@]}"

  # failover: kill the busiest leader under a put load, restart it, let
  # leadership rebalance, again
  for k in $(seq 1 "$KILLS"); do
    PIDLIST=$(IFS=,; echo "${NODE_PID[*]}")
    line=$("$LOADGEN" failover --target "$TARGETS" --pids "$PIDLIST" --clients "$CLIENTS" \
      --shards "$SHARDS" --value-size "$VALUE_SIZE" --timeout 30) || true
    echo "$line" >> "$RESULTS"
    victim=$(echo "$line" | awk '$1 == "FAILOVER" {print $2}')
    [ -n "$victim" ] || { echo "cluster.sh: failover round $k measured nothing" >&2; continue; }
    wait "${NODE_PID[$victim]}" 2>/dev/null || true
    start_node "$victim"
    wait_ready "$victim"
    wait_balanced "restart-$k"
  done
  [ "$KILLS" -gt 0 ] && { "$LOADGEN" leaders --target "$TARGETS" --shards "$SHARDS" | sed 's/^LEADERS/LEADERS-END/' >> "$RESULTS" || true; }
  for p in "${NODE_PID[@]}"; do stop_pid "$p"; done
fi

# ---------------------------------------------------------------- etcd
if [ -z "$ONLY" ] || [ "$ONLY" = etcd ]; then
  echo "== etcd $("$ETCD" --version | sed -n 's/^etcd Version: //p'): $N members, defaults" >&2
  read -r -a EP <<< "$("$LOADGEN" freeport $((2 * N)))"
  CLUSTER=
  for i in $(seq 0 $((N - 1))); do
    CLUSTER="$CLUSTER${CLUSTER:+,}e$i=http://127.0.0.1:${EP[$((N + i))]}"
  done
  EPIDS=() ETARGETS=()
  for i in $(seq 0 $((N - 1))); do
    c=http://127.0.0.1:${EP[$i]} p=http://127.0.0.1:${EP[$((N + i))]}
    "$ETCD" --name "e$i" --data-dir "$TMP/etcd$i" \
      --listen-client-urls "$c" --advertise-client-urls "$c" \
      --listen-peer-urls "$p" --initial-advertise-peer-urls "$p" \
      --initial-cluster "$CLUSTER" --initial-cluster-state new \
      --initial-cluster-token norikv-bench > "$TMP/etcd$i.log" 2>&1 &
    EPIDS+=("$!")
    PIDS+=("$!")
    ETARGETS+=("127.0.0.1:${EP[$i]}")
  done
  for t in "${ETARGETS[@]}"; do
    "$LOADGEN" wait --system etcd --target "$t" --timeout 60 || { tail -20 "$TMP"/etcd*.log >&2; exit 1; }
  done
  ETARGET=$(IFS=,; echo "${ETARGETS[*]}")
  echo "   serving on $ETARGET" >&2
  sleep 2
  idle_cpu etcd fresh "${EPIDS[@]}"
  phase etcd "$ETARGET" put "${EPIDS[@]}"
  phase etcd "$ETARGET" get-serializable "${EPIDS[@]}"
  phase etcd "$ETARGET" get-linearizable "${EPIDS[@]}"
  rss etcd after-load "${EPIDS[@]}"
  for p in "${EPIDS[@]}"; do stop_pid "$p"; done
fi

echo
"$LOADGEN" table "$RESULTS"
echo
awk -v idle_goal=5 -v rss_goal=300 '
  $1 == "CLUSTERIDLE" {
    printf "idle %-6s 3 processes, %-10s %6.2f%% of one core in total over %.0f s%s\n", $2, $3 ":", $4, $5,
      $2 == "norikv" ? sprintf(" (goal < %d%%): %s", idle_goal, $4 < idle_goal ? "MET" : "MISSED") : "" }
  $1 == "RSS" {
    max = 0; s = ""
    for (i = 4; i <= NF; i++) { s = s sprintf(" %.0f", $i); if ($i > max) max = $i }
    printf "VmRSS  %-6s %-10s per process (MB):%s%s\n", $2, $3 ":", s,
      $2 == "norikv" ? sprintf(" (goal < %d MB each): %s", rss_goal, max < rss_goal ? "MET" : "MISSED") : "" }
  $1 == "LEADERS" { printf "shards led per node when READY: %s (%d without a leader)\n", $2 " " $3 " " $4, $5 }
  $1 == "LEADERS-END" { printf "shards led per node at the end:  %s (%d without a leader)\n", $2 " " $3 " " $4, $5 }
  $1 == "BALANCED" {
    if ($3 >= 0) { nb++; bt += $3; if ($3 > bmax) bmax = $3 } else bfail++
    if ($2 == "start") printf "leadership even (no node > 110%% of its share) %s s after READY: %s %s %s\n", $3, $5, $6, $7 }
  $1 == "FAILOVER" {
    n++; printf "failover %2d: killed node %d (leading %4d shards): all writable again after %8.1f ms (median shard %.1f ms)%s\n",
      n, $2, $3, $5, $6, ($7 > 0 ? sprintf(", %d shards had no write in the 0.5 s before", $7) : "")
    if ($5 >= 0) t[++m] = $5; else failed++ }
  END {
    if (n) {
      # sort the successful rounds (insertion sort: at most a few dozen)
      for (i = 2; i <= m; i++) { v = t[i]; for (j = i - 1; j >= 1 && t[j] > v; j--) t[j + 1] = t[j]; t[j + 1] = v }
      med = m ? (m % 2 ? t[(m + 1) / 2] : (t[m / 2] + t[m / 2 + 1]) / 2) : -1
      printf "failover over %d kills: median %.0f ms, max %.0f ms%s\n", n, med, m ? t[m] : -1,
        (failed ? sprintf(", %d kills not recovered within 30 s", failed) : "")
    }
    if (nb || bfail)
      printf "leadership even again after a start or restart: mean %.1f s, max %.1f s over %d%s\n",
        nb ? bt / nb : -1, bmax, nb, (bfail ? sprintf(", %d times not within the limit", bfail) : "")
  }' "$RESULTS"
echo "load average after the run: $(cut -d' ' -f1-3 /proc/loadavg)"
