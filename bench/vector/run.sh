#!/usr/bin/env bash
# make bench-vector: NoriKV's in-process vector indexes against hnswlib and
# FAISS (IndexHNSWFlat, IndexFlatL2), same machine, one run, same data file,
# same settings (L2, M=16, ef_construction=200, k=10, one-thread build,
# search with one thread and with every core, the same ef sweep), then the
# comparison table (compare.py). Also times the rebuild of an index from the
# LSM after a restart.
#
#   bench/vector/run.sh [BUILD_DIR] [SETS]
#   SETS: space-separated N:DIMS, default "100000:128 100000:768";
#         e.g. VECTOR_SETS="1000000:128" make bench-vector
# Output: bench/out/vector/ (git-ignored): data files, results-*.jsonl, report.md
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
build="${1:-build}"
sets="${2:-${VECTOR_SETS:-100000:128 100000:768}}"
bin="$root/$build/bench/vector/bench_vector"
out="$root/bench/out/vector"
mkdir -p "$out"
[ -x "$bin" ] || { echo "bench-vector: $bin is not built"; exit 1; }

"$root/bench/vector/venv.sh"
py="$root/bench/vector/.venv/bin/python"
threads="$(nproc)"
stamp="$(date -u +%Y%m%dT%H%M%SZ)"
results="$out/results-$stamp.jsonl"
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)," \
     "load average $(cut -d' ' -f1-3 /proc/loadavg) at start" | tee "$out/report-$stamp.md"

for set in $sets; do
  n="${set%%:*}"; d="${set##*:}"
  data="$out/clustered-${n}x${d}.bin"
  [ -f "$data" ] || nice "$bin" gen --out "$data" --n "$n" --dims "$d" --queries 1000
  passes=2; [ "$n" -ge 1000000 ] && passes=1
  nice "$bin" run --data "$data" --threads "$threads" --passes "$passes" | tee -a "$results"
  nice "$py" "$root/bench/vector/bench_py.py" --data "$data" --lib hnswlib --threads "$threads" \
    --passes "$passes" | tee -a "$results"
  nice "$py" "$root/bench/vector/bench_py.py" --data "$data" --lib faiss-hnsw --threads "$threads" \
    --passes "$passes" | tee -a "$results"
  if [ "$n" -lt 1000000 ]; then
    nice "$bin" run --data "$data" --threads "$threads" --flat --passes 1 | tee -a "$results"
    nice "$py" "$root/bench/vector/bench_py.py" --data "$data" --lib faiss-flat \
      --threads "$threads" --passes 1 | tee -a "$results"
  fi
  if [ "$d" -eq 128 ]; then
    nice "$bin" rebuild --data "$data" --dir "$out/rebuild-db" | tee -a "$results"
  fi
done
"$py" "$root/bench/vector/compare.py" "$results" | tee -a "$out/report-$stamp.md"
grep '"rebuild"' "$results" | tee -a "$out/report-$stamp.md" || true
echo "results: $results; report: $out/report-$stamp.md"
