#!/usr/bin/env bash
# Creates bench/vector/.venv (git-ignored) with the libraries the vector
# benchmark compares against, from PyPI: hnswlib, faiss-cpu, numpy.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="$here/.venv"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
if ! "$venv/bin/python" -c "import hnswlib, faiss, numpy" 2>/dev/null; then
  "$venv/bin/pip" install --quiet --upgrade pip
  "$venv/bin/pip" install --quiet numpy hnswlib faiss-cpu
fi
"$venv/bin/python" -c "import hnswlib, faiss, numpy; print('venv ok: faiss', faiss.__version__, 'numpy', numpy.__version__)"
