#!/usr/bin/env python3
"""Reads the JSON lines of bench_vector and bench_py.py and prints, per data
set: build time and memory of every index, and for each recall@10 target the
best queries/s any ef reached at or above it (one thread and all cores),
with NoriKV's ratio to hnswlib (> 1: NoriKV faster / larger)."""
import json
import sys
from collections import defaultdict

TARGETS = (0.90, 0.95, 0.99)
LIBS = ("norikv-hnsw", "hnswlib", "faiss-hnsw", "norikv-flat", "faiss-flat")


def best(rows, target, key):
    ok = [(r[key], r["ef"]) for r in rows if r["recall"] >= target]
    return max(ok) if ok else (None, None)


def fmt(x):
    return "-" if x is None else f"{x:,.0f}"


def main():
    sets = defaultdict(lambda: defaultdict(list))
    for path in sys.argv[1:]:
        with open(path) as f:
            for line in f:
                line = line.strip()
                if line.startswith("{") and "\"lib\"" in line:
                    r = json.loads(line)
                    sets[(r["n"], r["dims"])][r["lib"]].append(r)
    for (n, dims), libs in sorted(sets.items()):
        print(f"\n## {n} vectors x {dims} dims (M=16, ef_construction=200, k=10, "
              f"{next(iter(libs.values()))[0]['threads']} threads for 'all')\n")
        print("| index | build s (1 thread) | memory MiB (RSS growth) |")
        print("|---|---|---|")
        for lib in LIBS:
            if lib in libs:
                r = libs[lib][0]
                print(f"| {lib} | {r['build_s']:.1f} | {r['rss_bytes'] / 1048576:.1f} |")
        cpu = all("cpu_qps" in r for rows in libs.values() for r in rows)
        print("\n| recall@10 >= | index | QPS 1 thread (ef) | QPS all cores (ef) |"
              + (" queries per CPU-second, 1 thread (ef) |" if cpu else ""))
        print("|---|---|---|---|" + ("---|" if cpu else ""))
        for t in TARGETS:
            ratios = {}
            for lib in LIBS:
                if lib not in libs:
                    continue
                q1, e1 = best(libs[lib], t, "qps_1")
                qa, ea = best(libs[lib], t, "qps_all")
                qc, ec = best(libs[lib], t, "cpu_qps") if cpu else (None, None)
                ratios[lib] = (q1, qa) + ((qc,) if cpu else ())
                print(f"| {t:.2f} | {lib} | {fmt(q1)} ({e1}) | {fmt(qa)} ({ea}) |"
                      + (f" {fmt(qc)} ({ec}) |" if cpu else ""))
            a, b = ratios.get("norikv-hnsw"), ratios.get("hnswlib")
            if a and b and None not in a and None not in b:
                print(f"| {t:.2f} | **NoriKV / hnswlib** | **{a[0] / b[0]:.2f}x** | "
                      f"**{a[1] / b[1]:.2f}x** |"
                      + (f" **{a[2] / b[2]:.2f}x** |" if cpu else ""))
        a, b = libs.get("norikv-hnsw"), libs.get("hnswlib")
        if a and b:
            print(f"\nmemory NoriKV / hnswlib: {a[0]['rss_bytes'] / max(b[0]['rss_bytes'], 1):.2f}x; "
                  f"build time NoriKV / hnswlib: {a[0]['build_s'] / b[0]['build_s']:.2f}x")


if __name__ == "__main__":
    main()
