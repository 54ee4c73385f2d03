#!/usr/bin/env bash
# Java SDK tests, called by `make test-java` (from the repository root, with
# NORIKV_SERVER_BIN set). `mvn verify` generates the gRPC code from
# proto/norikv/v1/norikv.proto, compiles, and runs every test; dependencies
# come from Maven Central into ~/.m2 once and are reused afterwards.
# Maven's own chatter goes to target/mvn-test.log; this prints Surefire's
# per-class lines and its summary ("Tests run: N, Failures: ..."), and the
# log's tail when the build fails.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$HERE"
mkdir -p target
LOG="$HERE/target/mvn-test.log"

# Release artifacts already in ~/.m2 are not fetched again (no update checks
# for them), so runs after the first need no network.
MVN_FLAGS=(-B -ntp)

echo "== mvn verify (clients/java; log: $LOG)"
set +e
mvn "${MVN_FLAGS[@]}" verify "$@" >"$LOG" 2>&1
rc=$?
set -e
grep -E "Tests run:|Tests in error|FAIL|BUILD (SUCCESS|FAILURE)|^\[ERROR\]" "$LOG" | grep -v "^\[ERROR\] *$" | tail -300 || true
if [ "$rc" -ne 0 ]; then
  echo "== mvn verify failed (exit $rc); last lines of $LOG:" >&2
  tail -60 "$LOG" >&2
fi
exit "$rc"
