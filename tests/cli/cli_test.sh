#!/usr/bin/env bash
# The norikv CLI against a real ephemeral server: every command, its output,
# and the exit status that says what happened. Usage: cli_test.sh SERVER CLI
set -u
SERVER=$1
CLI=$2
tmp=$(mktemp -d)
"$SERVER" --ephemeral --rpc-addr 127.0.0.1:0 --http-addr 127.0.0.1:0 >"$tmp/out" 2>"$tmp/err" &
pid=$!
trap 'kill -TERM $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$tmp"' EXIT
for _ in $(seq 1 300); do grep -q READY "$tmp/out" && break; sleep 0.1; done
addr=$(sed -n 's/READY grpc=\([^ ]*\).*/\1/p' "$tmp/out")
[ -n "$addr" ] || { echo "server did not start"; cat "$tmp/err"; exit 1; }

passed=0 failed=0
# expect NAME WANT_STATUS WANT_STDOUT_REGEX WANT_STDERR_REGEX -- ARGS...
expect() {
    local name=$1 want=$2 out_re=$3 err_re=$4
    shift 5
    "$CLI" --addr "$addr" "$@" >"$tmp/o" 2>"$tmp/e"
    local st=$? o e
    o=$(cat "$tmp/o")
    e=$(cat "$tmp/e")
    if [ $st -eq "$want" ] && [[ $o =~ $out_re ]] && [[ $e =~ $err_re ]]; then
        passed=$((passed + 1)); echo "ok   $name"
    else
        failed=$((failed + 1)); echo "FAIL $name: status $st (want $want)"
        echo "  stdout: $(cat "$tmp/o")"; echo "  stderr: $(cat "$tmp/e")"
    fi
}

expect put_prints_the_version 0 '^version [0-9]+\.[0-9]+$' '.*' -- put greeting hello
ver=$("$CLI" --addr "$addr" put greeting hello | awk '{print $2}')
expect get_prints_the_value 0 '^hello$' "version $ver" -- get greeting
expect get_linearizable_works 0 '^hello$' '.*' -- get greeting --consistency linearizable
expect cas_with_the_current_version_succeeds 0 '^version' '.*' -- put greeting hi --if-match "$ver"
expect cas_with_a_stale_version_exits_1 1 '^$' 'version mismatch.*current version' -- put greeting x --if-match "$ver"
expect if_not_exists_on_a_live_key_exits_1 1 '^$' 'ALREADY_EXISTS' -- put greeting x --if-not-exists
expect del_removes_the_key 0 '^deleted at version' '.*' -- del greeting
expect get_of_a_missing_key_exits_1 1 '^$' 'NOT_FOUND: key not found' -- get greeting
expect del_of_a_missing_key_says_so 0 '^not present' '.*' -- del greeting
expect unknown_consistency_is_rejected 1 '^$' 'INVALID_ARGUMENT.*consistency' -- get k --consistency sometimes
expect bad_if_match_is_a_usage_error 2 '^$' 'TERM.INDEX' -- put k v --if-match nope
expect unknown_command_is_a_usage_error 2 '^$' 'unknown command' -- frobnicate
expect cluster_shows_every_shard_led 0 'leads 1024' '.*' -- cluster
expect bench_runs_without_errors 0 'ops/s.*0 errors' '.*' -- bench --seconds 1 --clients 4
expect ttl_put_works 0 '^version' '.*' -- put short v --ttl-ms 200
sleep 0.5
expect ttl_key_expires 1 '^$' 'NOT_FOUND' -- get short
"$CLI" --addr 127.0.0.1:1 --timeout-ms 2000 get x >"$tmp/o" 2>"$tmp/e"
if [ $? -eq 3 ] && grep -q UNAVAILABLE "$tmp/e"; then passed=$((passed + 1)); echo "ok   unreachable_server_exits_3"
else failed=$((failed + 1)); echo "FAIL unreachable_server_exits_3: $(cat "$tmp/e")"; fi

echo "$passed passed, $failed failed"
[ $failed -eq 0 ]
