"""The client against a real norikv-server --ephemeral: CONTRACT.md's semantics
as seen through the SDK (versions, NOT_FOUND, delete results, TTL, CAS on put
and delete with current-version, if_not_exists, idempotency keys, consistency
levels, limits), concurrency on one client, the cluster view of a one-node
server, and the total_shards check. Skips only when no server binary exists."""

from __future__ import annotations

import asyncio
import os
import random
import uuid
from typing import AsyncIterator, List, Optional

import pytest

from norikv import (
    AlreadyExistsError,
    Client,
    ClientConfig,
    ConfigurationError,
    ConsistencyLevel,
    DeleteOptions,
    GetOptions,
    InvalidArgumentError,
    KeyNotFoundError,
    NoriKVClient,
    PutOptions,
    TopologyChangeEvent,
    Version,
    VersionMismatchError,
    get_shard_for_key,
)
from norikv.testing import EphemeralServer

ALL_LEVELS = [ConsistencyLevel.LEASE, ConsistencyLevel.LINEARIZABLE, ConsistencyLevel.STALE_OK]


@pytest.fixture
async def client(server: EphemeralServer) -> AsyncIterator[NoriKVClient]:
    async with NoriKVClient(ClientConfig(nodes=[server.address])) as c:
        yield c


def k(prefix: str, name: str) -> str:
    return prefix + name


async def test_put_returns_a_version_that_get_returns(client: NoriKVClient, key_prefix: str) -> None:
    key = k(key_prefix, "a")
    v1 = await client.put(key, "one")
    assert v1.term >= 1 and v1.index >= 1
    r = await client.get(key)
    assert r.value == b"one" and r.version == v1
    v2 = await client.put(key, "two")
    assert v2 != v1
    r = await client.get(key)
    assert r.value == b"two" and r.version == v2


async def test_get_of_a_missing_key_raises_key_not_found(client: NoriKVClient, key_prefix: str) -> None:
    for level in ALL_LEVELS:
        with pytest.raises(KeyNotFoundError) as ei:
            await client.get(k(key_prefix, "missing"), GetOptions(consistency=level))
        assert ei.value.code == "NOT_FOUND"


async def test_delete_reports_whether_a_live_value_was_removed(client: NoriKVClient, key_prefix: str) -> None:
    key = k(key_prefix, "d")
    assert await client.delete(key) is False
    await client.put(key, "x")
    assert await client.delete(key) is True
    with pytest.raises(KeyNotFoundError):
        await client.get(key)
    assert await client.delete(key) is False


async def test_every_consistency_level_reads_the_latest_write_on_one_node(client: NoriKVClient, key_prefix: str) -> None:
    key = k(key_prefix, "c")
    v = await client.put(key, "x")
    for level in ALL_LEVELS:
        r = await client.get(key, GetOptions(consistency=level))
        assert r.value == b"x" and r.version == v, level


async def test_binary_and_unicode_keys_and_values_round_trip(client: NoriKVClient, key_prefix: str) -> None:
    raw_key = key_prefix.encode() + bytes(range(256))
    raw_val = random.Random(3).randbytes(4096)
    await client.put(raw_key, raw_val)
    assert (await client.get(raw_key)).value == raw_val
    ukey = k(key_prefix, "ключ-キー-🔑")
    await client.put(ukey, "значение")
    assert (await client.get(ukey)).value.decode() == "значение"
    assert (await client.get(ukey.encode("utf-8"))).value.decode() == "значение"


async def test_empty_value_is_a_value(client: NoriKVClient, key_prefix: str) -> None:
    key = k(key_prefix, "empty")
    v = await client.put(key, b"")
    r = await client.get(key)
    assert r.value == b"" and r.version == v


async def test_ttl_expires_at_every_consistency_level(client: NoriKVClient, key_prefix: str) -> None:
    key, keep = k(key_prefix, "ttl"), k(key_prefix, "no-ttl")
    await client.put(key, "short", PutOptions(ttl_ms=700))
    await client.put(keep, "forever", PutOptions(ttl_ms=0))
    await asyncio.sleep(1.5)
    for level in ALL_LEVELS:
        with pytest.raises(KeyNotFoundError):
            await client.get(key, GetOptions(consistency=level))
    assert (await client.get(keep)).value == b"forever"
    # An expired key is absent: if_not_exists applies and delete removes nothing.
    assert await client.delete(key) is False
    await client.put(key, "again", PutOptions(if_not_exists=True))
    assert (await client.get(key)).value == b"again"


async def test_ttl_value_is_readable_before_expiry(client: NoriKVClient, key_prefix: str) -> None:
    key = k(key_prefix, "ttl-long")
    v = await client.put(key, "x", PutOptions(ttl_ms=60_000))
    assert (await client.get(key)).version == v


async def test_cas_put_applies_only_on_the_current_version(client: NoriKVClient, key_prefix: str) -> None:
    key = k(key_prefix, "cas")
    v1 = await client.put(key, "1")
    v2 = await client.put(key, "2", PutOptions(if_match_version=v1))
    with pytest.raises(VersionMismatchError) as ei:
        await client.put(key, "3", PutOptions(if_match_version=v1))
    assert ei.value.code == "FAILED_PRECONDITION"
    assert str(ei.value).startswith("version mismatch")
    assert ei.value.current_version == v2
    r = await client.get(key)
    assert r.value == b"2" and r.version == v2


async def test_cas_on_a_missing_key_is_a_version_mismatch(client: NoriKVClient, key_prefix: str) -> None:
    with pytest.raises(VersionMismatchError) as ei:
        await client.put(k(key_prefix, "nokey"), "x", PutOptions(if_match_version=Version(1, 1)))
    assert ei.value.current_version is None


async def test_cas_delete(client: NoriKVClient, key_prefix: str) -> None:
    key = k(key_prefix, "casdel")
    v1 = await client.put(key, "1")
    v2 = await client.put(key, "2")
    with pytest.raises(VersionMismatchError) as ei:
        await client.delete(key, DeleteOptions(if_match_version=v1))
    assert ei.value.current_version == v2
    assert await client.delete(key, DeleteOptions(if_match_version=v2)) is True
    with pytest.raises(KeyNotFoundError):
        await client.get(key)


async def test_concurrent_cas_increments_are_exact(client: NoriKVClient, key_prefix: str) -> None:
    key = k(key_prefix, "counter")
    await client.put(key, "0")
    workers, per_worker = 8, 10
    conflicts = 0

    async def worker() -> None:
        nonlocal conflicts
        done = 0
        while done < per_worker:
            cur = await client.get(key, GetOptions(consistency=ConsistencyLevel.LINEARIZABLE))
            try:
                await client.put(key, str(int(cur.value) + 1), PutOptions(if_match_version=cur.version))
                done += 1
            except VersionMismatchError:
                conflicts += 1

    await asyncio.gather(*(worker() for _ in range(workers)))
    assert int((await client.get(key)).value) == workers * per_worker, "conflicts=%d" % conflicts


async def test_if_not_exists(client: NoriKVClient, key_prefix: str) -> None:
    key = k(key_prefix, "ine")
    v = await client.put(key, "first", PutOptions(if_not_exists=True))
    with pytest.raises(AlreadyExistsError) as ei:
        await client.put(key, "second", PutOptions(if_not_exists=True))
    assert ei.value.code == "ALREADY_EXISTS"
    assert (await client.get(key)).version == v
    await client.delete(key)
    await client.put(key, "third", PutOptions(if_not_exists=True))
    assert (await client.get(key)).value == b"third"


async def test_if_not_exists_races_have_exactly_one_winner(client: NoriKVClient, key_prefix: str) -> None:
    key = k(key_prefix, "race")

    async def attempt(i: int) -> bool:
        try:
            await client.put(key, str(i), PutOptions(if_not_exists=True))
            return True
        except AlreadyExistsError:
            return False

    wins = await asyncio.gather(*(attempt(i) for i in range(20)))
    assert sum(wins) == 1
    assert (await client.get(key)).value == str(wins.index(True)).encode()


async def test_idempotent_put_retry_returns_the_first_result_without_executing_again(
    client: NoriKVClient, key_prefix: str
) -> None:
    key = k(key_prefix, "idem")
    ikey = "idem-" + uuid.uuid4().hex
    v1 = await client.put(key, "a", PutOptions(idempotency_key=ikey))
    v_other = await client.put(key, "b")  # someone else writes in between
    v_retry = await client.put(key, "a", PutOptions(idempotency_key=ikey))
    assert v_retry == v1
    r = await client.get(key)
    assert r.value == b"b" and r.version == v_other


async def test_idempotency_key_reused_with_other_parameters_is_invalid(client: NoriKVClient, key_prefix: str) -> None:
    key = k(key_prefix, "idem2")
    ikey = "idem-" + uuid.uuid4().hex
    await client.put(key, "a", PutOptions(idempotency_key=ikey))
    with pytest.raises(InvalidArgumentError):
        await client.put(key, "different", PutOptions(idempotency_key=ikey))


async def test_idempotent_conditional_write_retry_returns_the_stored_outcome(
    client: NoriKVClient, key_prefix: str
) -> None:
    key = k(key_prefix, "idem3")
    v1 = await client.put(key, "a")
    ikey = "idem-" + uuid.uuid4().hex
    opts = PutOptions(if_match_version=v1, idempotency_key=ikey)
    v2 = await client.put(key, "b", opts)
    # Retrying the same CAS does not fail on the now-stale version: the stored
    # result comes back.
    assert await client.put(key, "b", opts) == v2
    # Likewise a failed CAS is remembered as failed.
    ikey2 = "idem-" + uuid.uuid4().hex
    stale = PutOptions(if_match_version=v1, idempotency_key=ikey2)
    for _ in range(2):
        with pytest.raises(VersionMismatchError):
            await client.put(key, "c", stale)


async def test_idempotent_delete_retry_returns_the_first_result(client: NoriKVClient, key_prefix: str) -> None:
    key = k(key_prefix, "idemdel")
    await client.put(key, "a")
    opts = DeleteOptions(idempotency_key="idem-" + uuid.uuid4().hex)
    assert await client.delete(key, opts) is True
    assert await client.delete(key, opts) is True  # stored outcome, not "absent"


@pytest.mark.parametrize(
    "key,value,what",
    [
        (b"", b"v", "empty key"),
        (b"k" * 1025, b"v", "key over 1024 bytes"),
        (b"big-value", b"v" * (1024 * 1024 + 1), "value over 1 MiB"),
    ],
)
async def test_limits_are_invalid_argument(client: NoriKVClient, key: bytes, value: bytes, what: str) -> None:
    with pytest.raises(InvalidArgumentError) as ei:
        await client.put(key, value)
    assert ei.value.code == "INVALID_ARGUMENT" and str(ei.value), what
    assert client.get_stats().requests.retries == 0


async def test_values_at_the_limits_are_accepted(client: NoriKVClient, key_prefix: str) -> None:
    long_key = (key_prefix.encode() + b"k" * 1024)[:1024]
    big = random.Random(5).randbytes(1024 * 1024)
    await client.put(long_key, big)
    assert (await client.get(long_key)).value == big


async def test_many_concurrent_operations_on_one_client(client: NoriKVClient, key_prefix: str) -> None:
    keys = [k(key_prefix, "g%d" % i) for i in range(500)]
    versions = await asyncio.gather(*(client.put(key, key) for key in keys))
    results = await asyncio.gather(*(client.get(key) for key in keys))
    for key, v, r in zip(keys, versions, results):
        assert r.value == key.encode() and r.version == v
    deleted = await asyncio.gather(*(client.delete(key) for key in keys))
    assert all(deleted)
    assert client.get_stats().requests.failures == 0


async def test_one_node_view_lists_the_node_and_every_shard_with_its_leader(server: EphemeralServer) -> None:
    events: List[TopologyChangeEvent] = []
    c = NoriKVClient(ClientConfig(nodes=[server.address]))
    unsubscribe = c.on_topology_change(events.append)
    await c.connect()
    try:
        view = c.get_cluster_view()
        assert view is not None and view.epoch >= 1
        assert len(view.nodes) == 1
        node = view.nodes[0]
        assert node.addr == server.address and node.role == "alive"
        assert len(view.shards) == 1024
        assert sorted(s.id for s in view.shards) == list(range(1024))
        assert all(s.leader_id == node.id for s in view.shards)
        # The first view is reported as a change from epoch 0.
        assert len(events) == 1
        ev = events[0]
        assert ev.previous_epoch == 0 and ev.current_epoch == view.epoch
        assert ev.added_nodes == [node.id] and ev.removed_nodes == []
        assert len(ev.leader_changes) == 1024
        st = c.get_stats()
        assert st.topology.cached_leaders == 1024 and st.router.total_nodes == 1
        assert st.topology.watching
        shard = get_shard_for_key("hello", 1024)
        assert view.leader_of(shard) == node
        unsubscribe()
    finally:
        await c.close()


async def test_wrong_total_shards_fails_at_connect(server: EphemeralServer) -> None:
    c = NoriKVClient(ClientConfig(nodes=[server.address], total_shards=256))
    with pytest.raises(ConfigurationError) as ei:
        await c.connect()
    assert "256" in str(ei.value) and "1024" in str(ei.value)
    await c.close()


async def test_short_form_client(server: EphemeralServer, key_prefix: str) -> None:
    async with Client([server.address]) as client:
        await client.put(k(key_prefix, "short"), "value")
        assert (await client.get(k(key_prefix, "short"))).value == b"value"


async def test_requests_fail_cleanly_after_the_server_stops(key_prefix: str) -> None:
    from conftest import server_binary_or_skip
    from norikv import ConnectionError, RetryConfig

    srv = EphemeralServer(server_binary_or_skip()).start()
    try:
        cfg = ClientConfig(nodes=[srv.address], timeout=1000,
                           retry=RetryConfig(max_attempts=3, initial_delay_ms=50, max_delay_ms=100, jitter_ms=10))
        async with NoriKVClient(cfg) as c:
            await c.put(k(key_prefix, "x"), "1")
            assert srv.stop() == 0, "SIGTERM must stop the server cleanly (exit 0)"
            with pytest.raises(ConnectionError):
                await c.get(k(key_prefix, "x"))
    finally:
        srv.stop()


async def test_per_attempt_timeout_and_no_blind_retry_of_a_cas_on_a_paused_server(key_prefix: str) -> None:
    """SIGSTOP the server: each attempt ends at the timeout; a CAS (outcome
    unknown after a deadline) is tried once, a read as often as allowed; after
    SIGCONT the same client works again."""
    import signal
    import time

    from conftest import server_binary_or_skip
    from norikv import DeadlineExceededError, RetryConfig

    srv = EphemeralServer(server_binary_or_skip()).start()
    try:
        cfg = ClientConfig(nodes=[srv.address], timeout=300,
                           retry=RetryConfig(max_attempts=3, initial_delay_ms=10, max_delay_ms=20, jitter_ms=0))
        async with NoriKVClient(cfg) as c:
            key = k(key_prefix, "paused")
            v1 = await c.put(key, "1")
            srv.signal(signal.SIGSTOP)
            try:
                await wait_stopped(srv.pid)
                before = c.get_stats().requests.attempts
                t0 = time.monotonic()
                with pytest.raises(DeadlineExceededError):
                    await c.put(key, "2", PutOptions(if_match_version=v1))
                assert c.get_stats().requests.attempts - before == 1
                assert time.monotonic() - t0 >= 0.25
                before = c.get_stats().requests.attempts
                with pytest.raises(DeadlineExceededError):
                    await c.get(key)
                assert c.get_stats().requests.attempts - before == 3
            finally:
                srv.signal(signal.SIGCONT)
            r = await c.get(key, GetOptions(consistency=ConsistencyLevel.LINEARIZABLE))
            assert r.value in (b"1", b"2")  # the CAS may or may not have been applied
    finally:
        srv.stop()


async def wait_stopped(pid: "int | None", within: float = 5.0) -> None:
    """Wait until every thread of pid is stopped (a signal's delivery to a
    multi-threaded process completes asynchronously)."""
    import time

    assert pid is not None
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        states = []
        for tid in os.listdir("/proc/%d/task" % pid):
            try:
                with open("/proc/%d/task/%s/stat" % (pid, tid)) as f:
                    states.append(f.read().rsplit(")", 1)[1].split()[0])
            except OSError:
                pass
        if states and all(st in ("T", "t") for st in states):
            return
        await asyncio.sleep(0.005)
    raise AssertionError("process %d did not stop within %.0f s" % (pid, within))


async def test_client_recovers_when_its_server_restarts_on_the_same_address(key_prefix: str) -> None:
    """Stop the server and start a new one on the same port: requests during
    the gap are retried (refused connections are always safe to retry), the
    cluster watch reconnects and installs the new server's view, and
    on_topology_change reports it."""
    import socket

    from conftest import server_binary_or_skip
    from norikv import RetryConfig

    binary = server_binary_or_skip()
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    addr = "127.0.0.1:%d" % s.getsockname()[1]
    s.close()
    args = ["--ephemeral", "--rpc-addr", addr, "--http-addr", "127.0.0.1:0", "--peer-addr", "127.0.0.1:0"]
    first = EphemeralServer(binary, args=args).start()
    second = None
    restart: "Optional[asyncio.Future[EphemeralServer]]" = None
    try:
        events: List[TopologyChangeEvent] = []
        cfg = ClientConfig(nodes=[addr], timeout=2000,
                           retry=RetryConfig(max_attempts=50, initial_delay_ms=50, max_delay_ms=200, jitter_ms=20))
        async with NoriKVClient(cfg) as c:
            c.on_topology_change(events.append)
            epoch1 = c.get_stats().topology.epoch
            await c.put(k(key_prefix, "before"), "1")
            assert first.stop() == 0

            async def restart_soon() -> EphemeralServer:
                await asyncio.sleep(0.5)
                return await asyncio.get_running_loop().run_in_executor(
                    None, EphemeralServer(binary, args=args).start
                )

            restart = asyncio.ensure_future(restart_soon())
            # Issued while nothing listens: retried until the new server answers.
            v = await c.put(k(key_prefix, "during"), "2")
            second = await restart
            assert v.term >= 1
            assert (await c.get(k(key_prefix, "during"))).value == b"2"
            for _ in range(200):
                if c.get_stats().topology.epoch > epoch1:
                    break
                await asyncio.sleep(0.05)
            assert c.get_stats().topology.epoch > epoch1, "the watch did not pick up the new server's view"
            assert any(ev.current_epoch > epoch1 for ev in events)
    finally:
        first.stop()
        if restart is not None and second is None:
            try:
                second = await restart  # never leave a started server behind
            except Exception:
                pass
        if second is not None:
            second.stop()
