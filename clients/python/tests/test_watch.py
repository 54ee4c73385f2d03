"""Client.watch against real norikv-server processes (docs/watch.md): puts,
deletes and TTL expiries arrive once each with the versions the writes
returned; a watch resumed from WatchStream.revisions yields exactly the later
events; a server restart under a write load loses and duplicates nothing; a
revision below the shard's floor raises WatchCompactedError. The request
checks and the compacted message's parsing run without a server."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time
from pathlib import Path
from typing import AsyncIterator, Dict, List, Optional, Set, Tuple

import grpc
import pytest

from conftest import server_binary_or_skip
from norikv import (
    BatchOp,
    ClientConfig,
    NoriKVClient,
    NoriKVError,
    PutOptions,
    RetryConfig,
    Version,
    WatchCompactedError,
    WatchEvent,
    WatchEventKind,
    WatchStream,
    get_shard_for_key,
)
from norikv.testing import EphemeralServer
from norikv.watch import compacted_error


def skip_unless_watch(addr: str) -> None:
    """Skips while the server answers Kv.Watch UNIMPLEMENTED (the server side
    is landing on main); NORIKV_REQUIRE_WATCH=1 makes that a failure."""
    from norikv.v1 import norikv_pb2 as pb

    with grpc.insecure_channel(addr) as ch:
        call = ch.unary_stream(
            "/norikv.v1.Kv/Watch",
            request_serializer=pb.WatchRequest.SerializeToString,
            response_deserializer=pb.WatchResponse.FromString,
        )(pb.WatchRequest(key=b"probe"), timeout=10)
        try:
            next(call)
        except grpc.RpcError as e:
            if e.code() == grpc.StatusCode.UNIMPLEMENTED and os.environ.get("NORIKV_REQUIRE_WATCH") != "1":
                pytest.skip("this norikv-server does not implement Kv.Watch yet")
        finally:
            call.cancel()


@pytest.fixture
async def client(server: EphemeralServer) -> AsyncIterator[NoriKVClient]:
    skip_unless_watch(server.address)
    async with NoriKVClient(ClientConfig(nodes=[server.address])) as c:
        yield c


async def take(w: WatchStream, n: int, timeout: float = 20.0) -> List[WatchEvent]:
    """The next n events of w (fails when they do not come in time)."""
    out: List[WatchEvent] = []

    async def run() -> None:
        async for ev in w:
            out.append(ev)
            if len(out) >= n:
                return

    try:
        await asyncio.wait_for(run(), timeout)
    except asyncio.TimeoutError:
        pytest.fail("got %d of %d events within %.0f s: %r" % (len(out), n, timeout, out))
    return out


async def quiet(w: WatchStream, seconds: float) -> List[WatchEvent]:
    """Whatever w yields within seconds (expected: nothing)."""
    out: List[WatchEvent] = []

    async def run() -> None:
        async for ev in w:
            out.append(ev)

    try:
        await asyncio.wait_for(run(), seconds)
    except asyncio.TimeoutError:
        pass
    return out


# ------------------------------------------------------------ no server
def test_compacted_status_becomes_a_typed_error_with_shard_and_floor() -> None:
    e = compacted_error(
        "compacted: shard 17 keeps events after revision 3.1200 only; scan again (Kv.Range) and watch from its revisions"
    )
    assert isinstance(e, WatchCompactedError)
    assert e.shard == 17 and e.floor == Version(3, 1200) and e.code == "OUT_OF_RANGE"
    idx = compacted_error("compacted: shard 3 keeps events after revision 187 only (asked from 2); scan again")
    assert isinstance(idx, WatchCompactedError) and idx.shard == 3 and idx.floor == Version(0, 187)
    other = compacted_error("something else")
    assert not isinstance(other, WatchCompactedError) and other.code == "OUT_OF_RANGE"


async def test_watch_rejects_two_selectors_and_foreign_shards(server: EphemeralServer) -> None:
    async with NoriKVClient(ClientConfig(nodes=[server.address])) as client:
        check_rejects(client)


def check_rejects(client: NoriKVClient) -> None:
    with pytest.raises(ValueError, match="one of key, prefix or start/end"):
        client.watch(key=b"a", prefix=b"b")
    with pytest.raises(ValueError, match="one of key, prefix or start/end"):
        client.watch(prefix=b"a", start=b"b")
    with pytest.raises(ValueError, match="shard 1024"):
        client.watch(prefix=b"a", from_revisions={1024: Version(1, 1)})


# ------------------------------------------------------------ one server
async def test_watch_of_a_prefix_yields_puts_deletes_and_expiry_once_with_the_write_versions(
    client: NoriKVClient, key_prefix: str
) -> None:
    base = key_prefix.encode()
    async with client.watch(prefix=base + b"w/") as w:
        # the watch positions itself on its first read; start it before writing
        first = asyncio.ensure_future(take(w, 1))
        await asyncio.sleep(0.5)
        v_a = await client.put(base + b"w/a", b"1")
        await client.put(base + b"other", b"not watched")
        v_b = await client.put(base + b"w/b", b"2", PutOptions(ttl_ms=300))
        v_a2 = await client.put(base + b"w/a", b"3")
        assert await client.delete(base + b"w/a")
        await client.delete(base + b"w/missing")  # changes nothing: no event
        got = await first
        got += await take(w, 4)
        by_key: Dict[bytes, List[WatchEvent]] = {}
        for ev in got:
            by_key.setdefault(ev.key, []).append(ev)
        a = by_key[base + b"w/a"]
        assert [(e.kind, e.value, e.version) for e in a[:2]] == [
            (WatchEventKind.PUT, b"1", v_a),
            (WatchEventKind.PUT, b"3", v_a2),
        ]
        assert a[2].kind is WatchEventKind.DELETE and a[2].version.index > v_a2.index
        b = by_key[base + b"w/b"]
        assert b[0].kind is WatchEventKind.PUT and b[0].version == v_b and b[0].expires_at_ms > 0
        assert b[1].kind is WatchEventKind.EXPIRE and b[1].version.index > v_b.index
        assert set(by_key) == {base + b"w/a", base + b"w/b"}
        assert await quiet(w, 1.5) == [], "an event for a write that changed nothing, or a second expiry"


async def test_watch_of_one_key_sees_only_that_key_and_keys_only_drops_values(
    client: NoriKVClient, key_prefix: str
) -> None:
    base = key_prefix.encode()
    k = base + b"single"
    async with client.watch(key=k, keys_only=True) as w:
        first = asyncio.ensure_future(take(w, 2))
        await asyncio.sleep(0.5)
        await client.put(k + b"x", b"longer key, same prefix")
        v1 = await client.put(k, b"value")
        v2 = await client.put(k, b"value2")
        got = await first
        assert [(e.key, e.value, e.version, e.shard) for e in got] == [
            (k, b"", v1, get_shard_for_key(k, 1024)),
            (k, b"", v2, get_shard_for_key(k, 1024)),
        ]


async def test_watch_resumed_from_its_revisions_yields_exactly_the_later_events(
    client: NoriKVClient, key_prefix: str
) -> None:
    base = key_prefix.encode()
    keys = [base + b"r/%03d" % i for i in range(40)]
    async with client.watch(prefix=base + b"r/") as w:
        first = asyncio.ensure_future(take(w, 40))
        await asyncio.sleep(0.5)
        before = [await client.put(k, b"before") for k in keys]
        got = await first
        assert sorted(e.version.index for e in got) == sorted(v.index for v in before)
        revs = w.revisions
    after: Dict[bytes, Version] = {}
    for k in keys[::2]:
        after[k] = await client.put(k, b"after")
    for k in keys[1::3]:
        await client.delete(k)
    n_deletes = len(keys[1::3])
    async with client.watch(prefix=base + b"r/", from_revisions=revs) as w2:
        got2 = await take(w2, len(after) + n_deletes)
        assert await quiet(w2, 1.0) == []
    puts = {e.key: e.version for e in got2 if e.kind is WatchEventKind.PUT}
    assert puts == after, "the resumed watch must yield the later puts, each once"
    assert sorted(e.key for e in got2 if e.kind is WatchEventKind.DELETE) == sorted(keys[1::3])
    # per shard in revision order
    last: Dict[int, int] = {}
    for e in got2:
        assert e.version.index > last.get(e.shard, 0)
        last[e.shard] = e.version.index


async def test_a_multi_key_batch_yields_every_key_at_one_revision_and_revisions_name_whole_entries(
    client: NoriKVClient, key_prefix: str
) -> None:
    base = key_prefix.encode() + b"b/"
    shard = get_shard_for_key(base + b"0", 1024)
    same = [k for k in (base + b"%d" % i for i in range(20000)) if get_shard_for_key(k, 1024) == shard][:6]
    assert len(same) == 6
    async with client.watch(prefix=base) as w:
        first = asyncio.ensure_future(take(w, 3))
        await asyncio.sleep(0.5)
        r1 = await client.batch([BatchOp(key=k, value=b"one") for k in same[:3]])
        got = await first
        assert sorted(e.key for e in got) == sorted(same[:3])
        assert {e.version for e in got} == {r1.version}, "a batch's events share its revision"
        r2 = await client.batch([BatchOp(key=k, value=b"two") for k in same[3:]])
        part = await take(w, 1)
        assert part[0].version == r2.version
        # one of three events handed out: the entry is not whole yet
        assert w.revisions[shard] == r1.version
        revs = w.revisions
    async with client.watch(prefix=base, from_revisions=revs) as w2:
        again = await take(w2, 3)
        assert sorted(e.key for e in again) == sorted(same[3:])
        assert {e.version for e in again} == {r2.version}
        assert await quiet(w2, 1.0) == []


# ------------------------------------------------------------ restarts
def check_exactly_once(events: List[WatchEvent], acked: Dict[bytes, Version]) -> None:
    """No event twice, every shard in revision order, every acknowledged put
    among the events (puts whose outcome was unknown may appear or not)."""
    seen: Set[Tuple[int, int]] = set()
    last: Dict[int, int] = {}
    for e in events:
        ident = (e.shard, e.version.index)
        assert ident not in seen, "event %r delivered twice" % (e,)
        seen.add(ident)
        assert e.version.index > last.get(e.shard, 0), "shard %d out of order at %r" % (e.shard, e)
        last[e.shard] = e.version.index
        assert e.kind is WatchEventKind.PUT, e
    missing = [k for k, v in acked.items() if (get_shard_for_key(k, 1024), v.index) not in seen]
    assert not missing, "%d of %d acknowledged puts never arrived, e.g. %r" % (len(missing), len(acked), missing[:5])


async def wait_for_all(events: List[WatchEvent], acked: Dict[bytes, Version], reader: "asyncio.Future[None]") -> None:
    want = {(get_shard_for_key(k, 1024), v.index) for k, v in acked.items()}
    t0 = time.monotonic()
    while time.monotonic() - t0 < 60:
        if want <= {(e.shard, e.version.index) for e in events}:
            return
        if reader.done():
            reader.result()
        await asyncio.sleep(0.2)


def free_addr() -> str:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return "127.0.0.1:%d" % port


def durable_server(binary: str, data: Path, rpc: str, peer: str, extra: Tuple[str, ...] = ()) -> EphemeralServer:
    args = ["--rpc-addr=" + rpc, "--peer-addr=" + peer, "--http-addr=127.0.0.1:0", "--data-dir=" + str(data), *extra]
    return EphemeralServer(binary, args=args, ready_addr=rpc, startup_timeout=60)


@pytest.mark.timeout(240)
async def test_watch_survives_a_server_restart_under_writes_without_loss_or_duplicates(
    tmp_path: Path,
) -> None:
    binary = server_binary_or_skip()
    rpc, peer = free_addr(), free_addr()
    srv = durable_server(binary, tmp_path / "data", rpc, peer)
    srv.start()
    try:
        skip_unless_watch(rpc)
        cfg = ClientConfig(nodes=[rpc], timeout=3000, retry=RetryConfig(max_attempts=3))
        async with NoriKVClient(cfg) as c:
            await c.put(b"warm", b"up")
            acked: Dict[bytes, Version] = {}
            events: List[WatchEvent] = []
            stop = asyncio.Event()
            counter = [0]

            async def write() -> None:
                while not stop.is_set():
                    i = counter[0]
                    counter[0] += 1
                    k = b"rs/%06d" % i
                    try:
                        acked[k] = await c.put(k, b"v%d" % i)
                    except NoriKVError:
                        await asyncio.sleep(0.05)  # server down: outcome unknown

            async with c.watch(prefix=b"rs/") as w:

                async def read() -> None:
                    async for ev in w:
                        events.append(ev)

                reader = asyncio.ensure_future(read())
                await asyncio.sleep(0.5)
                writers = [asyncio.ensure_future(write()) for _ in range(4)]
                await asyncio.sleep(2.0)
                n_before = len(acked)
                await asyncio.get_running_loop().run_in_executor(None, srv.stop)
                await asyncio.sleep(1.0)
                srv = durable_server(binary, tmp_path / "data", rpc, peer)
                await asyncio.get_running_loop().run_in_executor(None, srv.start)
                t0 = time.monotonic()
                while len(acked) < n_before + 200 and time.monotonic() - t0 < 60:
                    await asyncio.sleep(0.2)
                stop.set()
                await asyncio.gather(*writers)
                assert len(acked) > n_before + 100, "writes did not resume after the restart"
                print("restart: %d puts acknowledged before, %d in all" % (n_before, len(acked)))
                await wait_for_all(events, acked, reader)
                reader.cancel()
            check_exactly_once(events, acked)
    finally:
        srv.stop()


@pytest.mark.timeout(120)
async def test_resuming_below_the_retained_feed_raises_compacted_with_shard_and_floor(tmp_path: Path) -> None:
    binary = server_binary_or_skip()
    rpc, peer = free_addr(), free_addr()
    srv = durable_server(binary, tmp_path / "data", rpc, peer, ("--watch-retention-entries=16",))
    srv.start()
    try:
        skip_unless_watch(rpc)
        async with NoriKVClient(ClientConfig(nodes=[rpc])) as c:
            keys = [k for k in (b"cp/%05d" % i for i in range(5000)) if get_shard_for_key(k, 1024) == 7][:5]
            assert len(keys) == 5
            first = await c.put(keys[0], b"0")
            for i in range(200):
                await c.put(keys[i % 5], b"%d" % i)
            w = c.watch(prefix=b"cp/", from_revisions={7: first})
            with pytest.raises(WatchCompactedError) as ei:
                await asyncio.wait_for(w.__anext__(), 20)
            await w.aclose()
            assert ei.value.shard == 7
            assert ei.value.floor.index > first.index
            # from the floor itself the watch is accepted
            async with c.watch(prefix=b"cp/", from_revisions={7: ei.value.floor}) as w2:
                got = await take(w2, 1)
                assert got[0].shard == 7 and got[0].version.index > ei.value.floor.index
    finally:
        srv.stop()


@pytest.mark.timeout(180)
async def test_a_watcher_cut_off_as_too_slow_resumes_by_itself_without_loss_or_duplicates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    binary = server_binary_or_skip()
    monkeypatch.setenv("NORIKV_WATCH_SLOW_MS", "1000")  # the server's slow bound (tests)
    rpc, peer = free_addr(), free_addr()
    srv = durable_server(binary, tmp_path / "data", rpc, peer)
    srv.start()
    try:
        skip_unless_watch(rpc)
        async with NoriKVClient(ClientConfig(nodes=[rpc])) as c:
            async with c.watch(prefix=b"sl/") as w:
                first = asyncio.ensure_future(take(w, 1))
                await asyncio.sleep(0.5)
                acked: Dict[bytes, Version] = {b"sl/first": await c.put(b"sl/first", b"x")}
                events = await first
                # far more than the client buffers (64 responses of <= 1 MiB)
                # while nobody reads: the server cuts the stream off
                big = b"v" * (48 << 10)
                sem = asyncio.Semaphore(16)

                async def put(i: int) -> None:
                    async with sem:
                        k = b"sl/%05d" % i
                        acked[k] = await c.put(k, big)

                await asyncio.gather(*(put(i) for i in range(2500)))
                await asyncio.sleep(3.0)
                events += await take(w, len(acked) - 1, timeout=60)
                assert w.resumes >= 1, "the stream was never cut off: the test did not stall it"
                print("slow watcher: %d events, %d resumes" % (len(events), w.resumes))
        check_exactly_once(events, acked)
    finally:
        srv.stop()
