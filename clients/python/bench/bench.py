#!/usr/bin/env python3
"""Python SDK benchmark (run by hand; no test asserts a speed).

1. Routing cost: ns per key for xxhash64 (C wheel and pure Python), Jump
   Consistent Hash into 1024 shards, get_shard_for_key and the client's full
   routing step (shard + leader lookup), over 16-byte keys.
2. When a norikv-server binary is found (as norikv.testing finds it): puts
   and gets per second from this one process with --tasks concurrent asyncio
   tasks sharing one client, against a one-node ephemeral server, with p50/p99
   latency per operation.

    clients/python/.venv/bin/python clients/python/bench/bench.py [--seconds 5] [--tasks 64]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import sys
import time
from typing import Callable, List, Sequence, Tuple

from norikv import ClientConfig, NoriKVClient, get_shard_for_key, jump_consistent_hash, xxhash64
from norikv._hash import XXHASH_IMPLEMENTATION, xxhash64_pure
from norikv.topology import Router


def per_op_ns(fn: Callable[[], None], ops: int, min_time: float = 0.5) -> float:
    """Best of 3 runs of fn (which performs `ops` operations), in CPU ns per
    op (process CPU time, so that other load on the machine does not count)."""
    best = float("inf")
    for _ in range(3):
        reps = 0
        t0 = time.process_time()
        while True:
            fn()
            reps += 1
            el = time.process_time() - t0
            if el >= min_time:
                break
        best = min(best, el / (reps * ops) * 1e9)
    return best


def routing(n_keys: int) -> List[Tuple[str, float]]:
    rng = random.Random(1)
    keys_b = [bytes(rng.getrandbits(8) for _ in range(16)) for _ in range(n_keys)]
    keys_s = ["user:%011d" % rng.randrange(10**11) for _ in range(n_keys)]  # 16 chars
    hashes = [xxhash64(k) for k in keys_b]
    router = Router(["127.0.0.1:9001"], 1024)
    for s in range(1024):
        router.learn_leader(s, "127.0.0.1:9001")

    def xx_c() -> None:
        for k in keys_b:
            xxhash64(k)

    def xx_py() -> None:
        for k in keys_b:
            xxhash64_pure(k)

    def jump() -> None:
        for h in hashes:
            jump_consistent_hash(h, 1024)

    def shard_bytes() -> None:
        for k in keys_b:
            get_shard_for_key(k, 1024)

    def shard_str() -> None:
        for k in keys_s:
            get_shard_for_key(k, 1024)

    def route() -> None:
        for k in keys_b:
            router.route(router.shard_for(k))

    def baseline() -> None:
        for k in keys_b:
            pass

    base = per_op_ns(baseline, n_keys)
    rows = [
        ("xxhash64, 16-byte key (%s)" % XXHASH_IMPLEMENTATION, per_op_ns(xx_c, n_keys)),
        ("xxhash64, 16-byte key (pure Python)", per_op_ns(xx_py, n_keys)),
        ("jump_consistent_hash, 1024 shards", per_op_ns(jump, n_keys)),
        ("get_shard_for_key, 16-byte bytes key", per_op_ns(shard_bytes, n_keys)),
        ("get_shard_for_key, 16-char str key", per_op_ns(shard_str, n_keys)),
        ("route one key (shard + leader lookup)", per_op_ns(route, n_keys)),
    ]
    return [(name, ns - base) for name, ns in rows]


class _StubConn:
    """Answers at once without a network: isolates the client's own work."""

    def __init__(self) -> None:
        from norikv.v1 import norikv_pb2 as pb

        self._get = pb.GetResponse(value=b"v" * 256, version=pb.Version(term=1, index=2))
        self._put = pb.PutResponse(version=pb.Version(term=1, index=2))

    async def get(self, req: object, timeout: float = 0) -> object:
        return self._get

    async def put(self, req: object, timeout: float = 0) -> object:
        return self._put


class _StubPool:
    def __init__(self) -> None:
        self.conn = _StubConn()

    def get(self, addr: str) -> _StubConn:
        return self.conn


def client_overhead(n_keys: int) -> List[Tuple[str, float]]:
    """CPU per client.get/put with a stub connection: everything the SDK does
    around the gRPC call (options, routing, in-flight bound, retry loop,
    result objects)."""
    rng = random.Random(3)
    keys = [bytes(rng.getrandbits(8) for _ in range(16)) for _ in range(n_keys)]
    value = b"v" * 256

    async def run() -> List[Tuple[str, float]]:
        c = NoriKVClient(ClientConfig(nodes=["127.0.0.1:1"]))
        c._pool = _StubPool()  # type: ignore[assignment]
        c._connected = True
        c._inflight = asyncio.Semaphore(512)
        for s in range(1024):
            c._router.learn_leader(s, "127.0.0.1:1")
        rows = []
        for name, op in (("client.get around the call (stub connection)", "get"),
                         ("client.put around the call (stub connection)", "put")):
            best = float("inf")
            for _ in range(3):
                t0 = time.process_time()
                for k in keys:
                    if op == "get":
                        await c.get(k)
                    else:
                        await c.put(k, value)
                best = min(best, (time.process_time() - t0) / n_keys * 1e9)
            rows.append((name, best))
        return rows

    return asyncio.run(run())


def pct(sorted_vals: Sequence[float], p: float) -> float:
    if not sorted_vals:
        return float("nan")
    return sorted_vals[min(len(sorted_vals) - 1, int(p * len(sorted_vals)))]


async def drive(
    client: NoriKVClient, op: str, tasks: int, seconds: float, keys: List[bytes], value: bytes
) -> Tuple[int, List[float], float]:
    stop_at = time.perf_counter() + seconds
    lat: List[float] = []
    count = 0

    async def worker(wid: int) -> None:
        nonlocal count
        i = wid
        n = len(keys)
        while time.perf_counter() < stop_at:
            k = keys[i % n]
            i += tasks
            t0 = time.perf_counter()
            if op == "put":
                await client.put(k, value)
            else:
                await client.get(k)
            lat.append(time.perf_counter() - t0)
            count += 1

    t0 = time.perf_counter()
    c0 = time.process_time()
    await asyncio.gather(*(worker(w) for w in range(tasks)))
    el = time.perf_counter() - t0
    cpu = time.process_time() - c0
    return int(count / el), sorted(lat), cpu / max(count, 1)


async def server_bench(binary: str, tasks: int, seconds: float, n_keys: int, value_size: int) -> List[str]:
    from norikv.testing import EphemeralServer

    rng = random.Random(2)
    keys = [b"k%015d" % rng.randrange(10**15) for _ in range(n_keys)]  # 16 bytes
    value = rng.randbytes(value_size)
    out = []
    async with EphemeralServer(binary) as srv:
        async with NoriKVClient(ClientConfig(nodes=[srv.address])) as client:
            # Load every key once so that gets find values.
            await asyncio.gather(*(client.put(k, value) for k in keys[: min(len(keys), 2000)]))
            for k in keys[2000:]:
                await client.put(k, value)
            for op in ("put", "get"):
                ops, lat, cpu = await drive(client, op, tasks, seconds, keys, value)
                out.append(
                    "| %s | %d | %d | %.2f | %.2f | %.0f |"
                    % (op, tasks, ops, pct(lat, 0.50) * 1e3, pct(lat, 0.99) * 1e3, cpu * 1e6)
                )
            st = client.get_stats()
            if st.requests.failures:
                out.append("(%d failed requests)" % st.requests.failures)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=5.0, help="duration of each server phase")
    ap.add_argument("--tasks", type=int, default=64, help="concurrent asyncio tasks")
    ap.add_argument("--keys", type=int, default=10000, help="distinct keys")
    ap.add_argument("--value-size", type=int, default=256)
    ap.add_argument("--routing-only", action="store_true")
    args = ap.parse_args()

    print(
        "Python %s on %s, %d CPUs, load average %.1f"
        % (platform.python_version(), platform.machine(), os.cpu_count() or 0, os.getloadavg()[0])
    )
    print()
    print("| routing step | CPU ns/op |")
    print("|---|---:|")
    for name, ns in routing(10000) + client_overhead(10000):
        print("| %s | %.0f |" % (name, ns))
    print()
    if args.routing_only:
        return 0
    from norikv.testing import find_server_binary

    binary = find_server_binary()
    if binary is None:
        print("server phase skipped: no norikv-server binary (NORIKV_SERVER_BIN, PATH, <repo>/build/src/server/)")
        return 0
    print("server: %s --ephemeral; %d-byte keys, %d-byte values, %d keys, %.0f s per phase" % (binary, 16, args.value_size, args.keys, args.seconds))
    print()
    print("| op | tasks | ops/s | p50 ms | p99 ms | client CPU µs/op |")
    print("|---|---:|---:|---:|---:|---:|")
    for line in asyncio.run(server_bench(binary, args.tasks, args.seconds, args.keys, args.value_size)):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
