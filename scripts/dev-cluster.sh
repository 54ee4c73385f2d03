#!/usr/bin/env bash
# A local N-node NoriKV cluster on 127.0.0.1, for development.
#
#   scripts/dev-cluster.sh start  [N]   start N nodes (default 3) and wait for READY
#   scripts/dev-cluster.sh stop         SIGTERM every node (by its PID file)
#   scripts/dev-cluster.sh status [N]   each node's process and /health, and the view
#
# Ports (ARCHITECTURE.md): node i uses gRPC 900i, peer 910i, HTTP 920i.
# Data, logs and PID files: ./norikv-dev-cluster/nI/ (git-ignored).
# Server binary: $NORIKV_SERVER_BIN, else build/src/server/norikv-server
# (`make build`). Extra server flags for every node: $NORIKV_DEV_ARGS.
set -euo pipefail

cmd=${1:-}
n=${2:-3}
root=${NORIKV_DEV_DIR:-./norikv-dev-cluster}
bin=${NORIKV_SERVER_BIN:-build/src/server/norikv-server}
shards=${NORIKV_DEV_SHARDS:-1024}

usage() {
  sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
}

case "$n" in
  '' | *[!0-9]*) echo "dev-cluster: N must be a number from 1 to 9 (got '$n')" >&2; exit 2 ;;
esac
if [ "$n" -lt 1 ] || [ "$n" -gt 9 ]; then
  echo "dev-cluster: N must be from 1 to 9 (the port scheme 900i/910i/920i has one digit)" >&2
  exit 2
fi

pidfile() { echo "$root/n$1/pid"; }
alive() { local p; p=$(cat "$(pidfile "$1")" 2>/dev/null) && [ -n "$p" ] && kill -0 "$p" 2>/dev/null; }

start() {
  if [ ! -x "$bin" ]; then
    echo "dev-cluster: no server binary at $bin (run 'make build' or set NORIKV_SERVER_BIN)" >&2
    exit 1
  fi
  for i in $(seq 1 "$n"); do
    if alive "$i"; then
      echo "dev-cluster: n$i is already running (pid $(cat "$(pidfile "$i")")); stop it first" >&2
      exit 1
    fi
  done
  for i in $(seq 1 "$n"); do
    mkdir -p "$root/n$i"
    local seeds=""
    for j in $(seq 1 "$n"); do
      [ "$j" = "$i" ] && continue
      seeds="${seeds:+$seeds,}127.0.0.1:910$j"
    done
    local args=(--node-id "n$i" --data-dir "$root/n$i/data"
      --rpc-addr "127.0.0.1:900$i" --http-addr "127.0.0.1:920$i" --peer-addr "127.0.0.1:910$i"
      --cluster-total-shards "$shards")
    if [ "$n" -gt 1 ]; then
      args+=(--cluster-seed-nodes="$seeds" --cluster-replication-factor 3)
    fi
    # shellcheck disable=SC2086
    nohup "$bin" "${args[@]}" ${NORIKV_DEV_ARGS:-} >"$root/n$i/stdout.log" 2>"$root/n$i/server.log" </dev/null &
    echo $! >"$(pidfile "$i")"
  done
  # Wait for every node's READY line (once the cluster formed), or an exit.
  local deadline=$((SECONDS + ${NORIKV_DEV_READY_TIMEOUT:-60}))
  for i in $(seq 1 "$n"); do
    while ! grep -q '^READY ' "$root/n$i/stdout.log" 2>/dev/null; do
      if ! alive "$i"; then
        local rc=0
        wait "$(cat "$(pidfile "$i")")" 2>/dev/null || rc=$?
        echo "dev-cluster: n$i exited before READY (status $rc):" >&2
        sed 's/^/  /' "$root/n$i/server.log" | tail -n 5 >&2
        if grep -qiE 'not supported|not built' "$root/n$i/server.log"; then
          echo "dev-cluster: this norikv-server build does not run multi-node clusters yet;" \
            "'scripts/dev-cluster.sh start 1' runs one node" >&2
        fi
        rm -f "$(pidfile "$i")"
        stop_quiet
        exit 1
      fi
      if [ $SECONDS -ge $deadline ]; then
        echo "dev-cluster: n$i printed no READY within ${NORIKV_DEV_READY_TIMEOUT:-60}s (log: $root/n$i/server.log)" >&2
        stop_quiet
        exit 1
      fi
      sleep 0.1
    done
    echo "n$i: $(grep -m1 '^READY ' "$root/n$i/stdout.log") pid $(cat "$(pidfile "$i")") data $root/n$i/data"
  done
  echo "dev-cluster: $n node(s) ready; clients: $(seq -s, -f '127.0.0.1:900%g' 1 "$n")"
}

stop_quiet() { stop >/dev/null 2>&1 || true; }

stop() {
  local any=0
  for i in $(seq 1 9); do
    local f; f=$(pidfile "$i")
    [ -f "$f" ] || continue
    local p; p=$(cat "$f")
    if alive "$i"; then
      kill -TERM "$p"
      for _ in $(seq 1 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
      if kill -0 "$p" 2>/dev/null; then
        echo "n$i (pid $p) did not stop within 10s of SIGTERM; sending SIGKILL"
        kill -KILL "$p"
      fi
      echo "n$i stopped (pid $p)"
      any=1
    fi
    rm -f "$f"
  done
  [ $any = 1 ] || echo "dev-cluster: no node was running"
}

status() {
  local up=0
  for i in $(seq 1 "$n"); do
    if alive "$i"; then
      up=$((up + 1))
      local h
      h=$(curl -s --max-time 2 "http://127.0.0.1:920$i/health" || echo "no answer on :920$i")
      echo "n$i: running (pid $(cat "$(pidfile "$i")")) gRPC 127.0.0.1:900$i  health: $h"
    else
      echo "n$i: not running"
    fi
  done
  for i in $(seq 1 "$n"); do
    alive "$i" || continue
    local v
    if v=$(curl -s --max-time 2 "http://127.0.0.1:920$i/meta/cluster"); then
      echo "view (from n$i):"
      if command -v jq >/dev/null; then
        echo "$v" | jq -r '"  epoch \(.epoch), \(.total_shards // (.shards|length)) shards",
          (.nodes[] | "  node \(.id) \(.addr) \(.role)"),
          "  leaders per node: " + ([.shards[].replicas[] | select(.leader) | .node_id] | group_by(.) | map("\(.[0])=\(length)") | join(" "))' 2>/dev/null ||
          echo "  $v" | cut -c1-400
      else
        echo "  $v" | cut -c1-400
      fi
      break
    fi
  done
  [ $up -gt 0 ]
}

case "$cmd" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) usage ;;
esac
