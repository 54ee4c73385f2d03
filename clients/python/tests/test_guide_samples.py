"""Every code sample of the NoriKV Python API guide (the vector ones: test_vector_guide_samples.py) and
the README's short form, run against a real norikv-server --ephemeral.

The samples are copied as the guide shows them. The only changes: node
addresses are the ephemeral server's (NODES: the server plus an address where
nothing listens, standing for the guide's second node), sample fragments get
the variables the guide assumes (client, key, value, expected_version), the
TTL sample uses a short TTL instead of 60 s, and assertions follow each sample.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, List, Optional, TypeVar

import pytest

from inject import free_dead_addr
from norikv import (
    AlreadyExistsError,
    ClientConfig,
    ConsistencyLevel,
    DeleteOptions,
    GetOptions,
    KeyNotFoundError,
    NoriKVClient,
    NoriKVError,
    PutOptions,
    RetryConfig,
    Version,
    VersionMismatchError,
)
from norikv import ConnectionError  # noqa: A004 - the guide's name
from norikv.testing import EphemeralServer

T = TypeVar("T")


@pytest.fixture
def NODES(server: EphemeralServer) -> List[str]:
    return [server.address, free_dead_addr()]


@pytest.fixture
async def client(NODES: List[str]) -> Any:
    config = ClientConfig(nodes=NODES, total_shards=1024, timeout=5000)
    async with NoriKVClient(config) as c:
        yield c


def unique(s: str) -> str:
    return "%s-%s" % (s, uuid.uuid4().hex[:10])


# ------------------------------------------------------------ Quick Start
async def test_quick_start(NODES: List[str], capsys: pytest.CaptureFixture[str]) -> None:
    async def main() -> None:
        config = ClientConfig(
            nodes=NODES,
            total_shards=1024,
            timeout=5000,
        )

        async with NoriKVClient(config) as client:
            # Put a value
            version = await client.put("user:alice", "Alice")

            # Get the value
            result = await client.get("user:alice")
            print(f"Value: {result.value.decode()}")

            # Delete
            await client.delete("user:alice")

            assert isinstance(version, Version) and result.version == version
            with pytest.raises(KeyNotFoundError):
                await client.get("user:alice")

    await main()
    assert "Value: Alice" in capsys.readouterr().out


async def test_readme_short_form(server: EphemeralServer) -> None:
    from norikv import Client

    async with Client([server.address, free_dead_addr()]) as client:
        await client.put('key', 'value')
        result = await client.get('key')
    assert result.value == b"value"


# ---------------------------------------------------- Client Configuration
async def test_basic_configuration(NODES: List[str]) -> None:
    config = ClientConfig(
        nodes=NODES,
        total_shards=1024,
        timeout=5000,
    )

    client = NoriKVClient(config)
    await client.connect()
    assert client.is_connected
    await client.close()


async def test_retry_configuration(server: EphemeralServer) -> None:
    retry_config = RetryConfig(
        max_attempts=10,
        initial_delay_ms=100,
        max_delay_ms=5000,
        jitter_ms=100,
    )

    config = ClientConfig(
        nodes=[server.address],
        total_shards=1024,
        retry=retry_config,
    )
    async with NoriKVClient(config) as client:
        await client.put(unique("retry"), "x")


# ------------------------------------------------------------ PUT
async def test_basic_put(client: NoriKVClient, capsys: pytest.CaptureFixture[str]) -> None:
    key = "user:123"
    value = json.dumps({"name": "Alice"})

    version = await client.put(key, value)
    print(f"Written at version: {version}")

    assert version.term >= 1 and version.index >= 1
    assert "Written at version:" in capsys.readouterr().out
    assert json.loads((await client.get(key)).value) == {"name": "Alice"}


async def test_put_with_options(client: NoriKVClient) -> None:
    key, value = unique("order"), "v2"
    expected_version = await client.put(key, "v1")

    options = PutOptions(
        ttl_ms=60000,                    # TTL: 60 seconds
        idempotency_key="order-12345",   # Idempotency key
        if_match_version=expected_version, # CAS
    )

    version = await client.put(key, value, options)

    assert version != expected_version
    got = await client.get(key)
    assert got.value == b"v2" and got.version == version


# ------------------------------------------------------------ GET
async def test_basic_get(client: NoriKVClient) -> None:
    put_version = await client.put("user:123", "hello")

    result = await client.get("user:123")

    value = result.value.decode("utf-8")
    version = result.version

    assert value == "hello" and version == put_version


async def test_get_with_consistency_level(client: NoriKVClient) -> None:
    key = unique("consistent")
    v = await client.put(key, "x")

    options = GetOptions(
        consistency=ConsistencyLevel.LINEARIZABLE,
    )

    result = await client.get(key, options)
    assert result.value == b"x" and result.version == v


# ------------------------------------------------------------ DELETE
async def test_basic_delete(client: NoriKVClient, capsys: pytest.CaptureFixture[str]) -> None:
    await client.put("user:123", "x")

    deleted = await client.delete("user:123")
    print(f"Deleted: {deleted}")

    assert deleted is True
    assert "Deleted: True" in capsys.readouterr().out
    assert await client.delete("user:123") is False


async def test_delete_with_options(client: NoriKVClient) -> None:
    key = unique("order")
    expected_version = await client.put(key, "x")

    options = DeleteOptions(
        idempotency_key="delete-order-12345",
        if_match_version=expected_version,
    )

    await client.delete(key, options)
    with pytest.raises(KeyNotFoundError):
        await client.get(key)


# ------------------------------------------------------------ Advanced
async def test_compare_and_swap(client: NoriKVClient, capsys: pytest.CaptureFixture[str]) -> None:
    key = unique("counter")
    await client.put(key, "41")

    # Read current value
    current = await client.get(key)
    value = int(current.value.decode())

    # Update with CAS
    new_value = str(value + 1)
    try:
        await client.put(
            key,
            new_value,
            PutOptions(if_match_version=current.version),
        )
        print("CAS succeeded")
    except VersionMismatchError:
        print("CAS failed - version changed")

    # The same CAS again, now with a stale version: the conflict branch.
    try:
        await client.put(
            key,
            new_value,
            PutOptions(if_match_version=current.version),
        )
        print("CAS succeeded")
    except VersionMismatchError:
        print("CAS failed - version changed")

    out = capsys.readouterr().out.splitlines()
    assert out == ["CAS succeeded", "CAS failed - version changed"]
    assert (await client.get(key)).value == b"42"


async def test_idempotent_operations(client: NoriKVClient, capsys: pytest.CaptureFixture[str]) -> None:
    import uuid

    key, value = unique("payment"), "paid"

    idempotency_key = f"payment-{uuid.uuid4()}"

    # First attempt
    v1 = await client.put(key, value, PutOptions(idempotency_key=idempotency_key))

    # Retry with same key (safe - returns same version)
    v2 = await client.put(key, value, PutOptions(idempotency_key=idempotency_key))

    print(v1 == v2)  # True

    assert capsys.readouterr().out.strip() == "True"


async def test_time_to_live(client: NoriKVClient, capsys: pytest.CaptureFixture[str]) -> None:
    key, value = unique("session"), "s"
    await client.put(key, value, PutOptions(ttl_ms=600))  # the guide: 60000

    # Key automatically deleted after TTL
    await asyncio.sleep(1.2)  # the guide: 61

    try:
        await client.get(key)
    except KeyNotFoundError:
        print("Key expired")

    assert capsys.readouterr().out.strip() == "Key expired"


async def test_cluster_topology(client: NoriKVClient, capsys: pytest.CaptureFixture[str]) -> None:
    # Get current cluster view
    view = client.get_cluster_view()
    if view:
        print(f"Cluster epoch: {view.epoch}")
        print(f"Nodes: {len(view.nodes)}")

    # Subscribe to topology changes
    def on_topology_change(event):  # type: ignore[no-untyped-def]
        print("Topology changed!")
        print(f"Previous epoch: {event.previous_epoch}")
        print(f"Current epoch: {event.current_epoch}")
        print(f"Added nodes: {event.added_nodes}")
        print(f"Removed nodes: {event.removed_nodes}")

    unsubscribe = client.on_topology_change(on_topology_change)

    # Later: unsubscribe
    unsubscribe()

    out = capsys.readouterr().out
    assert view is not None and view.epoch >= 1
    assert "Cluster epoch: %d" % view.epoch in out and "Nodes: 1" in out


async def test_client_statistics(client: NoriKVClient, capsys: pytest.CaptureFixture[str]) -> None:
    await client.put(unique("stats"), "x")
    stats = client.get_stats()

    print(f"Active connections: {stats.pool.active_connections}")
    print(f"Total nodes: {stats.router.total_nodes}")
    print(f"Cached leaders: {stats.topology.cached_leaders}")

    assert stats.pool.active_connections >= 1
    assert stats.router.total_nodes == 1
    # A one-node server leads all 1024 shards and its view says so.
    assert stats.topology.cached_leaders == 1024
    assert "Cached leaders: 1024" in capsys.readouterr().out


# ------------------------------------------------------------ Errors
async def test_error_types_import() -> None:
    from norikv import (
        KeyNotFoundError,
        VersionMismatchError,
        AlreadyExistsError,
        ConnectionError,
        NoriKVError,
    )

    for e in (KeyNotFoundError, VersionMismatchError, AlreadyExistsError, ConnectionError):
        assert issubclass(e, NoriKVError)


async def test_handling_specific_errors(client: NoriKVClient, capsys: pytest.CaptureFixture[str]) -> None:
    key = unique("missing")
    try:
        result = await client.get(key)
    except KeyNotFoundError:
        print("Key not found")
    except ConnectionError as err:
        print(f"Connection error: {err}")
    except NoriKVError as err:
        print(f"Error: {err.code} - {err}")

    assert capsys.readouterr().out.strip() == "Key not found"


async def test_handling_already_exists(client: NoriKVClient) -> None:
    key = unique("once")
    await client.put(key, "a", PutOptions(if_not_exists=True))
    with pytest.raises(AlreadyExistsError) as ei:
        await client.put(key, "b", PutOptions(if_not_exists=True))
    assert ei.value.code == "ALREADY_EXISTS"


async def test_connection_error_when_no_node_is_reachable() -> None:
    config = ClientConfig(nodes=[free_dead_addr()], total_shards=1024, timeout=1000)
    try:
        async with NoriKVClient(config) as client:
            await client.get("k")
    except ConnectionError as err:
        print(f"Connection error: {err}")
        assert err.code == "UNAVAILABLE"
    else:
        pytest.fail("no ConnectionError")


async def test_retry_pattern(client: NoriKVClient) -> None:
    key, value = unique("retry"), "v"

    from typing import TypeVar, Callable, Awaitable

    T = TypeVar("T")

    async def retry_operation(
        operation: Callable[[], Awaitable[T]],
        max_attempts: int = 3,
    ) -> T:
        for attempt in range(1, max_attempts + 1):
            try:
                return await operation()
            except ConnectionError as err:
                if attempt == max_attempts:
                    raise  # Give up

                # Exponential backoff
                await asyncio.sleep((2 ** attempt) * 0.1)

        raise RuntimeError("Unreachable")

    # Usage
    result = await retry_operation(lambda: client.put(key, value))
    assert isinstance(result, Version)


async def test_graceful_degradation(client: NoriKVClient, capsys: pytest.CaptureFixture[str]) -> None:
    async def get_with_fallback(
        client: NoriKVClient,
        key: str,
        default_value: str,
    ) -> str:
        try:
            result = await client.get(key)
            return result.value.decode()
        except Exception as err:
            print(f"Failed to get key, using default: {err}")
            return default_value

    assert await get_with_fallback(client, unique("nothing"), "dflt") == "dflt"
    assert "using default: key not found" in capsys.readouterr().out
    k = unique("something")
    await client.put(k, "real")
    assert await get_with_fallback(client, k, "dflt") == "real"


# ------------------------------------------------------------ Best practices
async def test_use_context_managers(NODES: List[str]) -> None:
    config = ClientConfig(nodes=NODES, total_shards=1024)
    key, value = unique("ctx"), "v"

    #  Good: Context manager ensures cleanup
    async with NoriKVClient(config) as client:
        await client.put(key, value)

    #  Bad: Manual cleanup required
    client = NoriKVClient(config)
    await client.connect()
    await client.put(key, value)
    await client.close()

    assert not client.is_connected


async def test_reuse_client_instances(server: EphemeralServer) -> None:
    client: Optional[NoriKVClient] = None

    async def init() -> None:
        nonlocal client
        config = ClientConfig(nodes=[server.address], total_shards=1024)
        client = NoriKVClient(config)
        await client.connect()

    await init()
    assert client is not None
    for i in range(10):
        await client.put(unique("reuse"), str(i))
    assert client.get_stats().pool.open_channels == 1
    await client.close()


async def test_use_type_hints(client: NoriKVClient) -> None:
    @dataclass
    class UserData:
        id: str
        name: str
        email: str

    async def update_user(user_id: str, data: UserData) -> Version:
        key = f"user:{user_id}"
        value = json.dumps(data.__dict__)

        options = PutOptions(ttl_ms=3600000)
        return await client.put(key, value, options)

    uid = unique("u")
    v = await update_user(uid, UserData(id=uid, name="Ann", email="ann@example.com"))
    got = await client.get(f"user:{uid}")
    assert got.version == v and json.loads(got.value)["name"] == "Ann"


async def test_handle_errors_properly(client: NoriKVClient) -> None:
    async def safe_get(key: str) -> Optional[str]:
        try:
            result = await client.get(key)
            return result.value.decode()
        except KeyNotFoundError:
            return None

    assert await safe_get(unique("none")) is None
    k = unique("some")
    await client.put(k, "val")
    assert await safe_get(k) == "val"


async def test_use_asyncio_consistently(client: NoriKVClient) -> None:
    async def process_data(raw: bytes) -> bytes:
        return raw.upper()

    user_id = unique("p")
    await client.put(f"user:{user_id}", "data")

    #  Good: Clean async/await
    async def process_user(user_id: str):  # type: ignore[no-untyped-def]
        user_data = await client.get(f"user:{user_id}")
        processed = await process_data(user_data.value)
        await client.put(f"processed:{user_id}", processed)

    await process_user(user_id)
    assert (await client.get(f"processed:{user_id}")).value == b"DATA"


async def test_idempotency_keys_for_important_operations(client: NoriKVClient) -> None:
    async def create_order(order_id: str, data: dict[str, Any]):  # type: ignore[no-untyped-def]
        await client.put(
            f"order:{order_id}",
            json.dumps(data),
            PutOptions(idempotency_key=f"create-order-{order_id}"),
        )

    oid = unique("o")
    await create_order(oid, {"total": 10})
    v1 = (await client.get(f"order:{oid}")).version
    await create_order(oid, {"total": 10})  # a retry: executes once
    assert (await client.get(f"order:{oid}")).version == v1


async def test_choose_appropriate_consistency(client: NoriKVClient) -> None:
    key = unique("c")
    v = await client.put(key, "x")

    # For critical reads
    result = await client.get(
        key,
        GetOptions(consistency=ConsistencyLevel.LINEARIZABLE),
    )
    assert result.version == v

    # For cache-like reads
    result = await client.get(
        key,
        GetOptions(consistency=ConsistencyLevel.STALE_OK),
    )
    assert result.value == b"x"


async def test_use_proper_encoding(client: NoriKVClient) -> None:
    key = unique("enc")

    # Always specify encoding
    value_bytes = "Hello, World!".encode("utf-8")
    await client.put(key, value_bytes)

    result = await client.get(key)
    text = result.value.decode("utf-8")

    assert text == "Hello, World!"


# ------------------------------------------------------------ Performance tips
async def test_batch_operations_with_gather(client: NoriKVClient) -> None:
    keys = [unique("batch") for _ in range(200)]
    value = "v"

    # Process multiple operations concurrently
    await asyncio.gather(
        *[client.put(key, value) for key in keys]
    )

    results = await asyncio.gather(*[client.get(k) for k in keys])
    assert all(r.value == b"v" for r in results)


async def test_monitor_performance(client: NoriKVClient, capsys: pytest.CaptureFixture[str]) -> None:
    key, value = unique("perf"), "v"
    import time

    start = time.time()
    await client.put(key, value)
    duration = time.time() - start
    print(f"PUT took {duration * 1000:.2f}ms")

    assert capsys.readouterr().out.startswith("PUT took ")


# ------------------------------------------------------------ Complete example
async def test_complete_example(NODES: List[str], capsys: pytest.CaptureFixture[str]) -> None:
    async def main() -> None:
        # Configure with retry policy
        config = ClientConfig(
            nodes=NODES,
            total_shards=1024,
            timeout=5000,
            retry=RetryConfig(
                max_attempts=5,
                initial_delay_ms=100,
                max_delay_ms=2000,
            ),
        )

        async with NoriKVClient(config) as client:
            # Write with TTL and idempotency
            key = "session:abc123"
            value = json.dumps({"userId": 42})

            put_opts = PutOptions(
                ttl_ms=3600000,  # 1 hour
                idempotency_key="session-create-abc123",
            )

            version = await client.put(key, value.encode(), put_opts)
            print(f"Written: {version}")

            # Read with linearizable consistency
            get_opts = GetOptions(
                consistency=ConsistencyLevel.LINEARIZABLE,
            )

            result = await client.get(key, get_opts)
            print(f"Read: {result.value.decode()}")

            # Update with CAS
            new_value = json.dumps({"userId": 42, "active": True})

            try:
                await client.put(
                    key,
                    new_value.encode(),
                    PutOptions(if_match_version=result.version),
                )
                print("CAS succeeded")
            except VersionMismatchError:
                print("CAS failed - retry needed")

            # Monitor topology
            def on_change(event):  # type: ignore[no-untyped-def]
                print(f"Cluster changed: epoch {event.current_epoch}")

            client.on_topology_change(on_change)

            # Get statistics
            stats = client.get_stats()
            print(f"Stats: {stats}")

    await main()
    out = capsys.readouterr().out
    assert 'Read: {"userId": 42}' in out and "CAS succeeded" in out and "Stats: ClientStats(" in out


async def test_async_context_manager_pattern(server: EphemeralServer) -> None:
    # Proper pattern for long-lived applications
    class Application:
        def __init__(self) -> None:
            self.client: Optional[NoriKVClient] = None

        async def startup(self) -> None:
            config = ClientConfig(
                nodes=[server.address],
                total_shards=1024,
            )
            self.client = NoriKVClient(config)
            await self.client.connect()

        async def shutdown(self) -> None:
            if self.client:
                await self.client.close()

        async def handle_request(self, key: str, value: str) -> None:
            if not self.client:
                raise RuntimeError("Client not initialized")

            await self.client.put(key, value)

    # Usage
    app = Application()
    await app.startup()

    try:
        await app.handle_request("key", "value")
    finally:
        await app.shutdown()
