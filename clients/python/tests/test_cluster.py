"""Against a real 3-node cluster (three norikv-server processes with data
directories, seeded with each other's peer addresses): requests go to the
leaders the view names, and after SIGKILL of the node leading the most shards
the client keeps working (every acknowledged write readable, new writes
accepted) and on_topology_change reports the leader moves.

Skips when no server binary exists, and when the servers run but do not form
a 3-node cluster within the wait (clustering not on main yet); set
NORIKV_REQUIRE_CLUSTER=1 to make that a failure."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
from pathlib import Path
from typing import Iterator, List, Optional, Tuple

import pytest

from conftest import server_binary_or_skip
from norikv import (
    ClientConfig,
    ClusterView,
    ConsistencyLevel,
    GetOptions,
    NoriKVClient,
    RangeOptions,
    RetryConfig,
    TopologyChangeEvent,
    Version,
)
from norikv.testing import EphemeralServer, ServerStartError

FORM_WAIT_S = 40.0


def free_addr() -> str:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return "127.0.0.1:%d" % port


class Node:
    def __init__(self, node_id: str) -> None:
        self.id = node_id
        self.rpc = free_addr()
        self.peer = free_addr()
        self.srv: Optional[EphemeralServer] = None


def _collect(errors: List[BaseException], fn, arg) -> None:
    try:
        fn(arg)
    except BaseException as e:  # noqa: BLE001 - reported by the fixture
        errors.append(e)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[List[Node]]:
    binary = server_binary_or_skip()
    nodes = [Node("n%d" % (i + 1)) for i in range(3)]
    try:
        # Every member must be running before any of them can be READY (a
        # member waits for all its seeds), so the three start concurrently.
        def start(nd: Node) -> None:
            seeds = ",".join(o.peer for o in nodes if o is not nd)
            args = [
                "--node-id=" + nd.id,
                "--rpc-addr=" + nd.rpc,
                "--peer-addr=" + nd.peer,
                "--http-addr=127.0.0.1:0",
                "--data-dir=" + str(tmp_path / nd.id),
                "--cluster-seed-nodes=" + seeds,
            ]
            srv = EphemeralServer(binary, args=args, ready_addr=nd.rpc, startup_timeout=60)
            nd.srv = srv
            srv.start()

        errors: List[BaseException] = []
        threads = []
        for nd in nodes:
            th = threading.Thread(target=lambda nd=nd: _collect(errors, start, nd))
            th.start()
            threads.append(th)
        for th in threads:
            th.join()
        for e in errors:
            # the server refuses seed nodes until clustering lands on main
            if (
                isinstance(e, ServerStartError)
                and "not supported by this build" in str(e)
                and os.environ.get("NORIKV_REQUIRE_CLUSTER") != "1"
            ):
                pytest.skip("the server refuses multi-node clusters (not on main yet): %s" % e)
        if errors:
            raise errors[0]
        yield nodes
    finally:
        for nd in nodes:
            if nd.srv is not None:
                nd.srv.stop()


def full(view: Optional[ClusterView], n: int) -> bool:
    return (
        view is not None
        and sum(1 for x in view.nodes if x.role == "alive") == n
        and len(view.shards) > 0
        and all(s.leader_id is not None for s in view.shards)
    )


async def wait_for_full_view(c: NoriKVClient, n: int) -> ClusterView:
    deadline = time.monotonic() + FORM_WAIT_S
    while time.monotonic() < deadline:
        v = c.get_cluster_view()
        if full(v, n):
            assert v is not None
            return v
        await asyncio.sleep(0.1)
    v = c.get_cluster_view()
    alive = sum(1 for x in v.nodes if x.role == "alive") if v else 0
    msg = "the servers did not form a %d-node cluster within %.0f s (last view: %d alive nodes)" % (n, FORM_WAIT_S, alive)
    if os.environ.get("NORIKV_REQUIRE_CLUSTER") == "1":
        pytest.fail(msg)
    pytest.skip(msg + "; clustering is not on main yet (NORIKV_REQUIRE_CLUSTER=1 makes this a failure)")


@pytest.mark.timeout(300)
async def test_routes_to_leaders_and_survives_sigkill_of_a_leader(cluster: List[Node]) -> None:
    addrs = [nd.rpc for nd in cluster]
    retry = RetryConfig(max_attempts=40, initial_delay_ms=50, max_delay_ms=1000, jitter_ms=50)
    events: List[TopologyChangeEvent] = []
    async with NoriKVClient(ClientConfig(nodes=addrs, timeout=5000, retry=retry)) as c:
        view = await wait_for_full_view(c, 3)
        assert {x.addr for x in view.nodes} == set(addrs)
        c.on_topology_change(events.append)

        # Routing: with a stable view every request goes straight to its leader.
        before = c.get_stats().requests
        epoch0 = view.epoch
        acked: List[Tuple[str, Version]] = []
        for i in range(200):
            key = "cluster-key-%d" % i
            acked.append((key, await c.put(key, "v-" + key)))
        after = c.get_stats()
        if after.topology.epoch == epoch0:
            assert after.requests.leader_redirects == before.leader_redirects, (
                "NOT_LEADER answers although the view was stable"
            )

        # SIGKILL the node that leads the most shards.
        view = c.get_cluster_view()
        assert view is not None
        leads = {x.id: 0 for x in view.nodes}
        for s in view.shards:
            if s.leader_id is not None:
                leads[s.leader_id] += 1
        victim_id = max(leads, key=lambda k: leads[k])
        victim_addr = view.node(victim_id).addr  # type: ignore[union-attr]
        victim = next(nd for nd in cluster if nd.rpc == victim_addr)
        assert victim.srv is not None
        victim.srv.kill()

        # Every acknowledged write is readable and new writes are accepted,
        # through the client's own retries and redirects.
        lin = GetOptions(consistency=ConsistencyLevel.LINEARIZABLE)
        for key, version in acked:
            r = await c.get(key, lin)
            assert r.value == ("v-" + key).encode() and r.version == version, key
        for i in range(200):
            await c.put("after-kill-%d" % i, "x")

        # The view moves leaders off the dead node and the callback hears it.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if any(ev.current_epoch > epoch0 and ev.leader_changes for ev in events):
                break
            await asyncio.sleep(0.1)
        assert any(ev.current_epoch > epoch0 and ev.leader_changes for ev in events), (
            "no topology change with leader moves after killing %s" % victim_addr
        )
        final = c.get_cluster_view()
        assert final is not None
        assert all(s.leader_id != victim_id for s in final.shards if s.leader_id is not None) or any(
            x.id == victim_id and x.role != "alive" for x in final.nodes
        )


@pytest.mark.timeout(300)
async def test_range_merges_every_nodes_shards_and_survives_sigkill_of_a_leader_mid_scan(cluster: List[Node]) -> None:
    """range() asks every node that leads shards and merges their pages in key
    order; killing the node leading the most shards in the middle of the scan
    moves its shards (with the stream's continuation) to the new leaders, and
    the scan still yields every acknowledged key once, in order."""
    addrs = [nd.rpc for nd in cluster]
    retry = RetryConfig(max_attempts=40, initial_delay_ms=50, max_delay_ms=1000, jitter_ms=50)
    async with NoriKVClient(ClientConfig(nodes=addrs, timeout=5000, retry=retry)) as c:
        view = await wait_for_full_view(c, 3)
        want = []
        for i in range(300):
            key = b"range-kill-%04d" % i
            await c.put(key, key)
            want.append(key)
        leads = {x.id: 0 for x in view.nodes}
        for s in view.shards:
            if s.leader_id is not None:
                leads[s.leader_id] += 1
        assert sum(1 for n in leads.values() if n > 0) >= 2, "the scan would not fan out: %s" % leads
        victim_id = max(leads, key=lambda k: leads[k])
        victim = next(nd for nd in cluster if nd.rpc == view.node(victim_id).addr)  # type: ignore[union-attr]
        got: List[bytes] = []
        opts = RangeOptions(prefix=b"range-kill-", page_size=4, consistency=ConsistencyLevel.LINEARIZABLE)
        async for kv in c.range(opts):
            assert kv.value == kv.key
            if got:
                assert got[-1] < kv.key
            got.append(kv.key)
            if len(got) == 50:
                assert victim.srv is not None
                victim.srv.kill()
        assert got == sorted(want)
