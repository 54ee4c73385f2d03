#!/usr/bin/env python3
"""The Python half of `make bench-vector`: hnswlib and FAISS (IndexHNSWFlat,
IndexFlatL2) on the same data file as bench_vector, with the same settings
(M, ef_construction, the ef sweep, one-thread build, one-thread and
all-core search), printing the same JSON lines.

usage: bench_py.py --data FILE --lib hnswlib|faiss-hnsw|faiss-flat
                   [--threads T] [--m 16] [--efc 200] [--ef 10,16,...] [--passes P]
"""
import argparse
import json
import os
import sys
import time

import numpy as np

K = 10


def rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def load(path):
    with open(path, "rb") as f:
        if f.read(4) != b"NKVB":
            sys.exit(f"{path}: not a bench_vector data file")
        ver, n, d, nq, k = np.frombuffer(f.read(20), dtype=np.uint32)
        assert ver == 1
        base = np.frombuffer(f.read(4 * int(n) * int(d)), dtype=np.float32).reshape(n, d)
        queries = np.frombuffer(f.read(4 * int(nq) * int(d)), dtype=np.float32).reshape(nq, d)
        gt = np.frombuffer(f.read(4 * int(nq) * int(k)), dtype=np.int32).reshape(nq, k)
    return np.ascontiguousarray(base), np.ascontiguousarray(queries), gt


def recall(labels, gt):
    hits = 0
    for row, truth in zip(labels, gt):
        hits += len(set(int(x) for x in row[:K]) & set(int(x) for x in truth[:K]))
    return hits / (len(gt) * K)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--lib", required=True, choices=["hnswlib", "faiss-hnsw", "faiss-flat"])
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--m", type=int, default=16)
    ap.add_argument("--efc", type=int, default=200)
    ap.add_argument("--ef", default="10,16,24,32,48,64,96,128,192,256,384,512")
    ap.add_argument("--passes", type=int, default=2)
    a = ap.parse_args()
    base, queries, gt = load(a.data)
    n, d = base.shape

    if a.lib == "hnswlib":
        import hnswlib

        rss0 = rss_bytes()
        t0 = time.perf_counter()
        ix = hnswlib.Index(space="l2", dim=d)
        ix.init_index(max_elements=n, ef_construction=a.efc, M=a.m, random_seed=100)
        ix.set_num_threads(1)
        ix.add_items(base, np.arange(n))
        build = time.perf_counter() - t0
        rss = rss_bytes() - rss0

        def search(ef, threads):
            ix.set_ef(ef)
            labels, _ = ix.knn_query(queries, k=K, num_threads=threads)
            return labels

    else:
        import faiss

        faiss.omp_set_num_threads(1)
        rss0 = rss_bytes()
        t0 = time.perf_counter()
        if a.lib == "faiss-hnsw":
            ix = faiss.IndexHNSWFlat(d, a.m)
            ix.hnsw.efConstruction = a.efc
        else:
            ix = faiss.IndexFlatL2(d)
        ix.add(base)
        build = time.perf_counter() - t0
        rss = rss_bytes() - rss0

        def search(ef, threads):
            faiss.omp_set_num_threads(threads)
            if a.lib == "faiss-hnsw":
                ix.hnsw.efSearch = max(ef, K)
            _, labels = ix.search(queries, K)
            return labels

    print(f"{a.lib}: built {n} x {d} in {build:.1f} s, {rss / 1048576:.1f} MiB RSS",
          file=sys.stderr)
    efs = [0] if a.lib == "faiss-flat" else [int(x) for x in a.ef.split(",")]
    for ef in efs:
        res = {}
        cpu_qps = 0.0
        for threads in (1, a.threads):
            best = 0.0
            for _ in range(a.passes):
                t0, c0 = time.perf_counter(), time.process_time()
                labels = search(ef, threads)
                qps = len(queries) / (time.perf_counter() - t0)
                if threads == 1:
                    cpu_qps = max(cpu_qps, len(queries) / (time.process_time() - c0))
                best = max(best, qps)
            res[threads] = (best, recall(labels, gt))
        print(json.dumps({"lib": a.lib, "n": n, "dims": d, "m": a.m, "efc": a.efc, "ef": ef,
                          "build_s": round(build, 3), "build_threads": 1, "mem_bytes": rss,
                          "rss_bytes": rss, "recall": round(res[1][1], 4),
                          "qps_1": round(res[1][0], 1), "qps_all": round(res[a.threads][0], 1),
                          "cpu_qps": round(cpu_qps, 1),
                          "threads": a.threads}), flush=True)


if __name__ == "__main__":
    main()
