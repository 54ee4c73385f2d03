"""Range and Batch against a real norikv-server --ephemeral (docs/range.md,
docs/batch.md): range results equal a sorted model across all shards with
overwrites, deletes, TTLs and small pages while other tasks write the same
range; batches apply all or nothing with per-op results and idempotent
retries."""

from __future__ import annotations

import asyncio
import random
import time
from typing import AsyncIterator, Dict, List, Set, Tuple

import pytest

from norikv import (
    KV,
    BatchNotAppliedError,
    BatchOp,
    BatchOptions,
    ClientConfig,
    ConsistencyLevel,
    InvalidArgumentError,
    KeyNotFoundError,
    NoriKVClient,
    PutOptions,
    RangeOptions,
    Version,
    get_shard_for_key,
)
from norikv.testing import EphemeralServer


@pytest.fixture
async def client(server: EphemeralServer) -> AsyncIterator[NoriKVClient]:
    async with NoriKVClient(ClientConfig(nodes=[server.address])) as c:
        yield c


async def scan(client: NoriKVClient, opts: RangeOptions) -> List[KV]:
    out: List[KV] = []
    async for kv in client.range(opts):
        if out:
            assert out[-1].key < kv.key, "range not strictly ascending: %r then %r" % (out[-1].key, kv.key)
        out.append(kv)
    return out


async def test_range_equals_a_sorted_model_across_shards_with_ttls_deletes_paging_and_concurrent_writes(
    client: NoriKVClient, key_prefix: str
) -> None:
    seed = time.time_ns()
    print("seed", seed)
    rng = random.Random(seed)
    base = key_prefix.encode()
    model: Dict[bytes, Tuple[bytes, Version]] = {}
    shards: Set[int] = set()
    for i in range(400):
        k = base + b"s/%04d" % rng.randrange(300)
        shards.add(get_shard_for_key(k, 1024))
        op = rng.randrange(10)
        if op < 6:
            v = b"v%d" % i
            model[k] = (v, await client.put(k, v))
        elif op < 7:
            v = b"long%d" % i
            model[k] = (v, await client.put(k, v, PutOptions(ttl_ms=3_600_000)))
        elif op < 8:
            await client.put(k, b"short", PutOptions(ttl_ms=1))
            model.pop(k, None)
        else:
            await client.delete(k)
            model.pop(k, None)
    assert len(shards) > 150
    await asyncio.sleep(0.02)  # the 1 ms TTLs pass

    written: Dict[bytes, Set[bytes]] = {}
    stop = asyncio.Event()

    async def churn(w: int) -> None:
        r = random.Random(seed + w)
        i = 0
        while not stop.is_set():
            k = base + b"c/%03d" % r.randrange(50)
            v = b"w%d-%d" % (w, i)
            i += 1
            written.setdefault(k, set()).add(v)
            if r.randrange(4) == 0:
                await client.delete(k)
            else:
                await client.put(k, v)

    tasks = [asyncio.ensure_future(churn(w)) for w in range(2)]
    try:
        want = sorted(model)
        for page in (0, 1, 7, 40):
            got = await scan(client, RangeOptions(prefix=base, page_size=page))
            stable = [kv for kv in got if kv.key.startswith(base + b"s/")]
            for kv in got:
                if not kv.key.startswith(base + b"s/"):
                    assert kv.value in written.get(kv.key, set()), "churned key %r has a value never written" % kv.key
            assert [kv.key for kv in stable] == want, "page size %d" % page
            for kv in stable:
                assert (kv.value, kv.version) == model[kv.key]
        lo, hi = base + b"s/0050", base + b"s/0200"
        for level in (ConsistencyLevel.LEASE, ConsistencyLevel.LINEARIZABLE, ConsistencyLevel.STALE_OK):
            got = await scan(client, RangeOptions(start=lo, end=hi, keys_only=True, page_size=9, consistency=level))
            assert [kv.key for kv in got] == [k for k in want if lo <= k < hi]
            assert all(kv.value == b"" for kv in got)
        limited = await scan(client, RangeOptions(prefix=base + b"s/", limit=10, page_size=3))
        assert [kv.key for kv in limited] == want[:10]
    finally:
        stop.set()
        await asyncio.gather(*tasks)


def keys_on_one_shard(prefix: str, n: int) -> List[bytes]:
    out: List[bytes] = []
    target = -1
    i = 0
    while len(out) < n:
        k = ("%s%d" % (prefix, i)).encode()
        i += 1
        s = get_shard_for_key(k, 1024)
        if target < 0:
            target = s
        if s == target:
            out.append(k)
    return out


async def test_batch_with_a_failed_condition_applies_nothing_and_names_the_op(
    client: NoriKVClient, key_prefix: str
) -> None:
    ks = keys_on_one_shard(key_prefix, 3)
    v0 = await client.put(ks[0], b"orig")
    stale = Version(v0.term, v0.index + 1000)
    with pytest.raises(BatchNotAppliedError) as ei:
        await client.batch(
            [
                BatchOp(ks[1], b"b"),
                BatchOp(ks[0], b"new", if_match_version=stale),
                BatchOp(ks[2], delete=True),
            ]
        )
    err = ei.value
    assert err.code == "FAILED_PRECONDITION"
    res = err.result
    assert not res.applied  # type: ignore[attr-defined]
    assert [r.code for r in res.results] == ["ABORTED", "FAILED_PRECONDITION", "ABORTED"]  # type: ignore[attr-defined]
    assert res.results[1].current == v0  # type: ignore[attr-defined]
    with pytest.raises(KeyNotFoundError):
        await client.get(ks[1])
    assert (await client.get(ks[0])).value == b"orig"
    ok = await client.batch([BatchOp(ks[1], b"b"), BatchOp(ks[0], b"new", if_match_version=v0), BatchOp(ks[2], delete=True)])
    assert ok.applied and [r.code for r in ok.results] == ["OK", "OK", "OK"]
    for k, v in ((ks[0], b"new"), (ks[1], b"b")):
        r = await client.get(k)
        assert r.value == v and r.version == ok.version


async def test_batch_retry_with_its_idempotency_key_returns_the_first_result(
    client: NoriKVClient, key_prefix: str
) -> None:
    ks = keys_on_one_shard(key_prefix, 2)
    opts = BatchOptions(idempotency_key=key_prefix + "idem")
    ops = [BatchOp(ks[0], b"1", if_not_exists=True), BatchOp(ks[1], b"2")]
    first = await client.batch(ops, opts)
    await client.put(ks[1], b"later")
    again = await client.batch(ops, opts)
    assert again.applied and again.version == first.version
    assert (await client.get(ks[1])).value == b"later"
    with pytest.raises(InvalidArgumentError):
        await client.batch([BatchOp(ks[0], b"other"), BatchOp(ks[1], b"2")], opts)


async def test_batch_across_shards_is_refused_before_sending(client: NoriKVClient) -> None:
    assert get_shard_for_key(b"hello", 1024) != get_shard_for_key(b"world", 1024)
    with pytest.raises(ValueError, match="spans shards"):
        await client.batch([BatchOp(b"hello", b"1"), BatchOp(b"world", b"2")])
