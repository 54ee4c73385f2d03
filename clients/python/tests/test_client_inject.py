"""The client's error paths over real gRPC, against an in-process grpc.aio
servicer that injects failures (inject.py). What is proven here: leader hints
are followed at once and cached, retries happen exactly when CONTRACT.md
allows, statuses map to the right error types across the wire, connect checks
total_shards and survives dead seeds, views stream in and fire callbacks.
Real semantics are tested against norikv-server in test_integration.py."""

from __future__ import annotations

import asyncio
import time
from typing import AsyncIterator, List, Tuple

import grpc
import pytest

from inject import Delay, Fail, ScriptedNode, free_dead_addr, make_view
from norikv import (
    AlreadyExistsError,
    ClientConfig,
    ConfigurationError,
    ConnectionError,
    DeadlineExceededError,
    DeleteOptions,
    GetOptions,
    ConsistencyLevel,
    InvalidArgumentError,
    KeyNotFoundError,
    NoriKVClient,
    NotLeaderError,
    PutOptions,
    RetryConfig,
    TopologyChangeEvent,
    Version,
    VersionMismatchError,
    get_shard_for_key,
)
from norikv.errors import ClientClosedError

UNAV = grpc.StatusCode.UNAVAILABLE
# Long enough that a test can tell "retried at once" from "waited a backoff".
SLOW_RETRY = RetryConfig(max_attempts=4, initial_delay_ms=3000, max_delay_ms=3000, jitter_ms=0)
FAST_RETRY = RetryConfig(max_attempts=4, initial_delay_ms=10, max_delay_ms=20, jitter_ms=5)


@pytest.fixture
async def nodes() -> AsyncIterator[Tuple[ScriptedNode, ScriptedNode]]:
    a, b = ScriptedNode("a"), ScriptedNode("b")
    await a.start()
    await b.start()
    # a leads every shard until a test publishes another view
    view = make_view(1, [("a", a.addr, "alive"), ("b", b.addr, "alive")], 16, lambda s: "a")
    a.publish(view)
    b.publish(view)
    yield a, b
    await a.stop()
    await b.stop()


def cfg(addrs: List[str], retry: RetryConfig = FAST_RETRY, total_shards: int = 16, timeout: int = 2000) -> ClientConfig:
    return ClientConfig(nodes=addrs, total_shards=total_shards, timeout=timeout, retry=retry)


async def test_not_leader_with_hint_is_followed_at_once_and_cached(nodes: Tuple[ScriptedNode, ScriptedNode]) -> None:
    a, b = nodes
    a.script.append(Fail(UNAV, "NOT_LEADER", [("leader-hint", b.addr)]))
    async with NoriKVClient(cfg([a.addr], retry=SLOW_RETRY)) as c:
        t0 = time.monotonic()
        v = await c.put("k1", "v")
        assert time.monotonic() - t0 < 2.0, "a leader hint must not wait for a backoff (3 s here)"
        assert v.term == 1 and len(a.kv_calls("Put")) == 1 and len(b.kv_calls("Put")) == 1
        st = c.get_stats()
        assert st.requests.leader_redirects == 1 and st.topology.cached_leaders == 16
        await c.put("k1", "again")  # straight to the cached leader
        assert len(a.kv_calls("Put")) == 1 and len(b.kv_calls("Put")) == 2


async def test_not_leader_without_hint_tries_another_node_after_backoff(nodes: Tuple[ScriptedNode, ScriptedNode]) -> None:
    a, b = nodes
    a.script.append(Fail(UNAV, "NOT_LEADER"))
    b.script.append(Fail(UNAV, "NOT_LEADER"))
    async with NoriKVClient(cfg([a.addr])) as c:
        await c.put("k", "v")
        assert len(a.kv_calls()) + len(b.kv_calls()) == 3
        assert c.get_stats().requests.retries == 2


async def test_retries_stop_at_max_attempts(nodes: Tuple[ScriptedNode, ScriptedNode]) -> None:
    a, b = nodes
    for n in (a, b):
        n.script.extend([Fail(UNAV, "NOT_LEADER")] * 10)
    async with NoriKVClient(cfg([a.addr])) as c:
        with pytest.raises(NotLeaderError):
            await c.get("k")
        assert len(a.kv_calls()) + len(b.kv_calls()) == FAST_RETRY.max_attempts


async def test_unconditional_put_is_retried_after_an_unknown_outcome(nodes: Tuple[ScriptedNode, ScriptedNode]) -> None:
    a, b = nodes
    a.script.append(Fail(UNAV, "QUORUM_UNAVAILABLE"))
    b.script.append(Fail(UNAV, "Socket closed"))
    async with NoriKVClient(cfg([a.addr])) as c:
        await c.put("k", "v", PutOptions(ttl_ms=1000))
        assert len(a.kv_calls()) + len(b.kv_calls()) == 3
        a.script.append(Fail(grpc.StatusCode.DEADLINE_EXCEEDED, "COMMIT_TIMEOUT"))
        b.script.append(Fail(grpc.StatusCode.DEADLINE_EXCEEDED, "COMMIT_TIMEOUT"))
        assert await c.delete("k") is True
        assert len(a.kv_calls()) + len(b.kv_calls()) == 6


@pytest.mark.parametrize(
    "options",
    [PutOptions(if_match_version=Version(1, 1)), PutOptions(if_not_exists=True)],
    ids=["cas", "if_not_exists"],
)
async def test_conditional_put_is_not_retried_after_an_unknown_outcome(
    nodes: Tuple[ScriptedNode, ScriptedNode], options: PutOptions
) -> None:
    a, b = nodes
    a.script.append(Fail(UNAV, "QUORUM_UNAVAILABLE"))
    async with NoriKVClient(cfg([a.addr])) as c:
        with pytest.raises(ConnectionError) as ei:
            await c.put("k", "v", options)
        assert ei.value.code == "UNAVAILABLE" and "QUORUM_UNAVAILABLE" in str(ei.value)
        assert len(a.kv_calls()) + len(b.kv_calls()) == 1


async def test_conditional_delete_is_not_retried_after_a_deadline(nodes: Tuple[ScriptedNode, ScriptedNode]) -> None:
    a, b = nodes
    a.script.append(Delay(1.0))
    async with NoriKVClient(cfg([a.addr], timeout=200)) as c:
        with pytest.raises(DeadlineExceededError):
            await c.delete("k", DeleteOptions(if_match_version=Version(1, 1)))
        assert len(a.kv_calls()) + len(b.kv_calls()) == 1


async def test_conditional_put_with_idempotency_key_is_retried(nodes: Tuple[ScriptedNode, ScriptedNode]) -> None:
    a, b = nodes
    a.script.append(Delay(1.0))
    async with NoriKVClient(cfg([a.addr], timeout=200)) as c:
        v = await c.put("k", "v", PutOptions(if_match_version=Version(1, 1), idempotency_key="op-1"))
        assert v.term == 1
        calls = a.kv_calls() + b.kv_calls()
        assert len(calls) == 2 and all(x.request.idempotency_key == "op-1" for x in calls)


async def test_get_is_retried_after_a_deadline(nodes: Tuple[ScriptedNode, ScriptedNode]) -> None:
    a, b = nodes
    a.script.append(Delay(1.0))
    async with NoriKVClient(cfg([a.addr], timeout=200)) as c:
        r = await c.get("k", GetOptions(consistency=ConsistencyLevel.LINEARIZABLE))
        assert r.value == b"v"
        calls = a.kv_calls() + b.kv_calls()
        assert len(calls) == 2 and calls[0].request.consistency == "linearizable"


async def test_permanent_errors_are_raised_after_one_attempt(nodes: Tuple[ScriptedNode, ScriptedNode]) -> None:
    a, b = nodes
    cases = [
        (Fail(grpc.StatusCode.INVALID_ARGUMENT, "key is empty (limit: 1-1024 bytes)"), InvalidArgumentError),
        (Fail(grpc.StatusCode.NOT_FOUND, "key not found"), KeyNotFoundError),
        (Fail(grpc.StatusCode.ALREADY_EXISTS, ""), AlreadyExistsError),
        (Fail(grpc.StatusCode.FAILED_PRECONDITION, "version mismatch", [("current-version", "2.5")]),
         VersionMismatchError),
    ]
    async with NoriKVClient(cfg([a.addr])) as c:
        for fail, etype in cases:
            a.calls.clear()
            b.calls.clear()
            a.script.append(fail)
            b.script.append(fail)
            with pytest.raises(etype) as ei:
                await c.put("k", "v")
            assert len(a.kv_calls()) + len(b.kv_calls()) == 1, etype
            if etype is VersionMismatchError:
                assert ei.value.current_version == Version(2, 5)  # type: ignore[attr-defined]
            if etype is InvalidArgumentError:
                assert "1024" in str(ei.value)


async def test_refused_connection_is_retried_even_for_cas(nodes: Tuple[ScriptedNode, ScriptedNode]) -> None:
    a, _ = nodes
    dead = free_dead_addr()
    async with NoriKVClient(cfg([a.addr])) as c:
        # The view says a dead node leads every shard: the CAS is never sent
        # there, so trying elsewhere is safe.
        a.publish(make_view(2, [("a", a.addr, "alive"), ("d", dead, "alive")], 16, lambda s: "d"))
        for _ in range(100):
            if c.get_stats().topology.epoch == 2:
                break
            await asyncio.sleep(0.02)
        assert c.get_stats().topology.cached_leaders == 16
        v = await c.put("k", "v", PutOptions(if_match_version=Version(1, 1)))
        assert v.term == 1 and len(a.kv_calls("Put")) == 1
        assert c.get_stats().requests.retries == 1
        # The dead node is now passed over: the next keys (other shards) go
        # straight to a live node without another failed attempt.
        for i in range(10):
            await c.put("other-%d" % i, "v")
        assert c.get_stats().requests.retries == 1


async def test_connect_skips_a_dead_seed() -> None:
    a = ScriptedNode("a")
    await a.start()
    a.publish(make_view(1, [("a", a.addr, "alive")], 16, lambda s: "a"))
    try:
        async with NoriKVClient(cfg([free_dead_addr(), a.addr])) as c:
            assert c.get_cluster_view() is not None
            assert await c.delete("x") is True
    finally:
        await a.stop()


async def test_connect_fails_with_connection_error_when_no_seed_answers() -> None:
    dead1, dead2 = free_dead_addr(), free_dead_addr()
    c = NoriKVClient(cfg([dead1, dead2], timeout=1000))
    with pytest.raises(ConnectionError) as ei:
        await c.connect()
    assert dead1 in str(ei.value) and dead2 in str(ei.value)
    with pytest.raises(ClientClosedError):
        await c.get("k")
    await c.close()


async def test_total_shards_mismatch_fails_at_connect(nodes: Tuple[ScriptedNode, ScriptedNode]) -> None:
    a, _ = nodes
    c = NoriKVClient(cfg([a.addr], total_shards=1024))
    with pytest.raises(ConfigurationError) as ei:
        await c.connect()
    assert "1024" in str(ei.value) and "16" in str(ei.value)
    await c.close()


async def test_requests_go_to_the_leader_the_view_names(nodes: Tuple[ScriptedNode, ScriptedNode]) -> None:
    a, b = nodes
    view = make_view(3, [("a", a.addr, "alive"), ("b", b.addr, "alive")], 16, lambda s: "a" if s % 2 else "b")
    a.publish(view)
    async with NoriKVClient(cfg([a.addr])) as c:
        keys = ["key-%d" % i for i in range(40)]
        for k in keys:
            await c.put(k, "v")
        on_a = {x.request.key.decode() for x in a.kv_calls("Put")}
        on_b = {x.request.key.decode() for x in b.kv_calls("Put")}
        assert on_a == {k for k in keys if get_shard_for_key(k, 16) % 2}
        assert on_b == {k for k in keys if not get_shard_for_key(k, 16) % 2}
        assert c.get_stats().requests.retries == 0


async def test_topology_changes_reach_callbacks_until_unsubscribed(nodes: Tuple[ScriptedNode, ScriptedNode]) -> None:
    a, b = nodes
    events: List[TopologyChangeEvent] = []
    async_events: List[int] = []

    async def async_cb(ev: TopologyChangeEvent) -> None:
        async_events.append(ev.current_epoch)

    c = NoriKVClient(cfg([a.addr]))
    c.on_topology_change(events.append)
    unsub_async = c.on_topology_change(async_cb)
    c.on_topology_change(lambda ev: 1 / 0)  # a failing callback must not hurt others
    await c.connect()
    try:
        assert [e.current_epoch for e in events] == [1] and events[0].previous_epoch == 0
        a.publish(make_view(2, [("a", a.addr, "alive"), ("c", "10.9.9.9:9001", "alive")], 16, lambda s: "c"))
        for _ in range(200):
            if len(events) == 2 and async_events == [1, 2]:
                break
            await asyncio.sleep(0.01)
        ev = events[1]
        assert (ev.previous_epoch, ev.current_epoch) == (1, 2)
        assert ev.added_nodes == ["c"] and ev.removed_nodes == ["b"]
        assert len(ev.leader_changes) == 16
        assert c.get_cluster_view() is not None and c.get_cluster_view().epoch == 2  # type: ignore[union-attr]
        assert c.get_stats().router.total_nodes == 2
        unsub_async()
        a.publish(make_view(3, [("a", a.addr, "alive")], 16, lambda s: "a"))
        for _ in range(200):
            if len(events) == 3:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)
        assert [e.current_epoch for e in events] == [1, 2, 3] and async_events == [1, 2]
    finally:
        await c.close()


async def test_cluster_watch_reconnects_to_another_node_after_the_stream_breaks(
    nodes: Tuple[ScriptedNode, ScriptedNode]
) -> None:
    a, b = nodes
    async with NoriKVClient(cfg([a.addr, b.addr])) as c:
        assert c.get_stats().topology.epoch == 1
        b.view = make_view(5, [("a", a.addr, "alive"), ("b", b.addr, "alive")], 16, lambda s: "b")
        a.view = b.view
        a.end_streams()  # the server ends the stream
        for _ in range(300):
            if c.get_stats().topology.epoch == 5:
                break
            await asyncio.sleep(0.01)
        assert c.get_stats().topology.epoch == 5 and c.get_stats().topology.cached_leaders == 16


async def test_many_concurrent_tasks_share_one_client(nodes: Tuple[ScriptedNode, ScriptedNode]) -> None:
    a, b = nodes
    a.publish(make_view(2, [("a", a.addr, "alive"), ("b", b.addr, "alive")], 16, lambda s: "a" if s < 8 else "b"))
    async with NoriKVClient(cfg([a.addr])) as c:
        while c.get_stats().topology.epoch != 2:
            await asyncio.sleep(0.01)
        versions = await asyncio.gather(*(c.put("k%d" % i, b"x" * i) for i in range(300)))
        assert len(versions) == 300
        # Every put reached its node (the scripted server and the client
        # share this loop: under load an attempt may time out and be retried,
        # which unconditional puts allow).
        sent = {x.request.key for x in a.kv_calls("Put") + b.kv_calls("Put")}
        assert sent == {b"k%d" % i for i in range(300)}
        st = c.get_stats()
        assert st.requests.requests == 300 and st.requests.failures == 0
        assert st.pool.active_connections >= 2


async def test_operations_after_close_raise_client_closed(nodes: Tuple[ScriptedNode, ScriptedNode]) -> None:
    a, _ = nodes
    c = NoriKVClient(cfg([a.addr]))
    await c.connect()
    await c.close()
    await c.close()  # idempotent
    with pytest.raises(ClientClosedError):
        await c.put("k", "v")
    with pytest.raises(ClientClosedError):
        await c.connect()


async def test_keys_and_values_accept_str_and_bytes(nodes: Tuple[ScriptedNode, ScriptedNode]) -> None:
    a, b = nodes
    async with NoriKVClient(cfg([a.addr])) as c:
        await c.put("ключ", "значение")
        await c.put(b"\x00\xff", bytearray(b"\x01"))
        reqs = [x.request for x in a.kv_calls("Put") + b.kv_calls("Put")]
        assert {(r.key, r.value) for r in reqs} == {
            ("ключ".encode(), "значение".encode()),
            (b"\x00\xff", b"\x01"),
        }
        with pytest.raises(TypeError):
            await c.put("k", 5)  # type: ignore[arg-type]
        with pytest.raises(ValueError):
            await c.put("k", "v", PutOptions(ttl_ms=-1))


async def test_requests_on_the_wire_are_bounded_by_max_in_flight(nodes: Tuple[ScriptedNode, ScriptedNode]) -> None:
    a, b = nodes
    a.default_action = Delay(0.05)
    config = ClientConfig(nodes=[a.addr], total_shards=16, max_in_flight=8, retry=FAST_RETRY)
    async with NoriKVClient(config) as c:
        await asyncio.gather(*(c.put("k%d" % i, "v") for i in range(64)))
        assert len(a.kv_calls("Put")) == 64
        assert 1 < a.max_active <= 8


async def test_server_cancelled_calls_are_retried_only_when_repeat_safe(nodes: Tuple[ScriptedNode, ScriptedNode]) -> None:
    a, b = nodes
    a.script.append(Fail(grpc.StatusCode.CANCELLED, "CANCELLED"))
    async with NoriKVClient(cfg([a.addr])) as c:
        await c.put("k", "v")
        assert len(a.kv_calls()) + len(b.kv_calls()) == 2
        a.script.append(Fail(grpc.StatusCode.CANCELLED, "CANCELLED"))
        b.script.append(Fail(grpc.StatusCode.CANCELLED, "CANCELLED"))
        with pytest.raises(Exception) as ei:
            await c.put("k", "v", PutOptions(if_not_exists=True))
        assert getattr(ei.value, "code", None) == "CANCELLED"
        assert len(a.kv_calls()) + len(b.kv_calls()) == 3


async def test_cluster_watch_moves_to_a_live_node_when_its_node_dies() -> None:
    a, b = ScriptedNode("a"), ScriptedNode("b")
    await a.start()
    await b.start()
    try:
        view = make_view(1, [("a", a.addr, "alive"), ("b", b.addr, "alive")], 16, lambda s: "a")
        a.publish(view)
        b.publish(view)
        async with NoriKVClient(cfg([a.addr, b.addr])) as c:
            assert a.watch_calls == 1 and b.watch_calls == 0
            await a.stop()  # the watched node goes away
            b.publish(make_view(7, [("a", a.addr, "dead"), ("b", b.addr, "alive")], 16, lambda s: "b"))
            for _ in range(300):
                if c.get_stats().topology.epoch == 7:
                    break
                await asyncio.sleep(0.01)
            assert c.get_stats().topology.epoch == 7 and b.watch_calls >= 1
            # Requests follow the new view to b.
            await c.put("k", "v")
            assert len(b.kv_calls("Put")) == 1
    finally:
        await a.stop()
        await b.stop()


async def test_stale_ok_reads_spread_over_replicas_other_reads_go_to_the_leader(
    nodes: Tuple[ScriptedNode, ScriptedNode]
) -> None:
    a, b = nodes  # both replicate every shard; a leads all
    async with NoriKVClient(cfg([a.addr])) as c:
        for i in range(60):
            await c.get("s%d" % i, GetOptions(consistency=ConsistencyLevel.STALE_OK))
        on_a, on_b = len(a.kv_calls("Get")), len(b.kv_calls("Get"))
        assert on_a + on_b == 60 and on_a > 0 and on_b > 0
        assert all(x.request.consistency == "stale_ok" for x in a.kv_calls("Get") + b.kv_calls("Get"))
        for i in range(20):
            await c.get("l%d" % i)
            await c.get("z%d" % i, GetOptions(consistency=ConsistencyLevel.LINEARIZABLE))
        assert len(a.kv_calls("Get")) == on_a + 40 and len(b.kv_calls("Get")) == on_b
