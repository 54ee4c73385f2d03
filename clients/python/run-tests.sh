#!/usr/bin/env bash
# Python SDK tests, called by `make test` (from the repository root, with
# NORIKV_SERVER_BIN set). Creates or reuses the virtual environment
# clients/python/.venv, installs the package (its build generates norikv.v1
# from proto/norikv/v1/norikv.proto) and the test tools from PyPI, generates the
# same code into src/ for the type check, runs `mypy --strict` on the package,
# then pytest against the installed package. Tests that need norikv-server skip
# (saying why) only when no server binary can be found.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$HERE"
PYTHON="${PYTHON:-python3}"
VENV="$HERE/.venv"
PIP_FLAGS=(--quiet --disable-pip-version-check)

if [ ! -x "$VENV/bin/python" ]; then
  echo "== creating $VENV with $("$PYTHON" --version 2>&1)"
  "$PYTHON" -m venv "$VENV"
fi
PY="$VENV/bin/python"

echo "== installing norikv and test dependencies"
"$PY" -m pip install "${PIP_FLAGS[@]}" --upgrade pip
# A stale build/ from an earlier in-tree build could carry removed modules.
rm -rf "$HERE/build"
# pip always rebuilds and reinstalls a local directory, so this also picks
# up source changes under the same version.
"$PY" -m pip install "${PIP_FLAGS[@]}" "$HERE[test]"

echo "== generating norikv.v1 into src/ (git-ignored) for mypy"
"$PY" "$HERE/_build_proto.py" "$HERE/src" >/dev/null

echo "== mypy --strict"
"$VENV/bin/mypy" --strict "$HERE/src/norikv"

echo "== pytest"
"$PY" -c 'from norikv.testing import find_server_binary as f; b = f(); print("   norikv-server:", b or "not found: the tests that need it will skip")'
set +e
"$PY" -m pytest -q tests "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  echo "pytest collected no tests: that is a failure" >&2
  exit 1
fi
exit "$rc"
