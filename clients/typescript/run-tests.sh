#!/usr/bin/env bash
# TypeScript SDK tests, called by `make test-typescript` (NORIKV_SERVER_BIN set
# by the Makefile; without it the server is looked up on PATH and in the
# repository's build directory). Installs the npm dependencies with `npm ci`
# only when package-lock.json changed since the last install (stamp in
# node_modules/), builds (proto code generation, tsc for ESM and CommonJS),
# and runs the Node test runner, whose TAP summary ends in "# pass N" and
# "# fail N". Tests that need norikv-server skip (saying why) only when no
# server binary can be found.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$HERE"

if ! command -v node >/dev/null 2>&1; then
  echo "run-tests.sh: node (18 or newer) is not installed" >&2
  exit 1
fi
major="$(node -p 'process.versions.node.split(".")[0]')"
if [ "$major" -lt 18 ]; then
  echo "run-tests.sh: node $(node --version) is too old; the SDK needs Node 18+" >&2
  exit 1
fi

STAMP=node_modules/.norikv-lock-stamp
if [ -f "$STAMP" ] && cmp -s package-lock.json "$STAMP"; then
  echo "== npm dependencies up to date (package-lock.json unchanged)"
else
  echo "== npm ci"
  npm ci --no-audit --no-fund --loglevel=error
  cp package-lock.json "$STAMP"
fi

echo "== build (proto code, tsc: ESM and CommonJS)"
npm run --silent build

echo "== node --test"
node -e 'try { console.log("   norikv-server:", require("@norikv/client/testing").findServerBinary()) } catch (e) { console.log("   norikv-server not found: the tests that need it will skip (" + e.message + ")") }'
# One file at a time: each starts its own servers, and the machine is small
# (--test-concurrency exists from Node 20.10; older runners get the default).
flags=(--test --test-reporter=tap)
if node -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 20 || (a === 20 && b >= 10) ? 0 : 1)'; then
  flags+=(--test-concurrency=1)
fi
# A bound on the whole run: a test that leaves a handle open (a client not
# closed after a failed hook) keeps its file's process alive forever; this
# turns that into a failure with a message instead of a hung CI.
limit="${NORIKV_TS_TEST_LIMIT_S:-900}"
set +e
timeout -k 10 "$limit" node "${flags[@]}" test/*.test.mjs
rc=$?
set -e
if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
  echo "run-tests.sh: the TypeScript tests did not finish within ${limit} s (a test left a server or client open?)" >&2
fi
exit "$rc"
