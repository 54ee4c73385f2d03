"""Client.watch on a real 3-node cluster: one Kv.Watch call per node that
leads shards, and after SIGKILL of the node leading the most shards in the
middle of a write load, its shards resume at their new leaders from their
last revisions: every acknowledged put arrives exactly once, per shard in
revision order. Skips like test_cluster.py (and while the server lacks
Kv.Watch)."""

from __future__ import annotations

import asyncio
import time
from typing import Dict, List

import pytest

from norikv import ClientConfig, NoriKVClient, NoriKVError, RetryConfig, Version, WatchEvent
from test_cluster import Node, cluster, wait_for_full_view  # noqa: F401 - the fixture
from test_watch import check_exactly_once, skip_unless_watch, wait_for_all


@pytest.mark.timeout(300)
async def test_watch_keeps_every_event_once_across_sigkill_of_the_busiest_leader(cluster: List[Node]) -> None:  # noqa: F811
    addrs = [nd.rpc for nd in cluster]
    skip_unless_watch(addrs[0])
    retry = RetryConfig(max_attempts=5, initial_delay_ms=50, max_delay_ms=1000, jitter_ms=50)
    async with NoriKVClient(ClientConfig(nodes=addrs, timeout=3000, retry=retry)) as c:
        await wait_for_full_view(c, 3)
        acked: Dict[bytes, Version] = {}
        events: List[WatchEvent] = []
        stop = asyncio.Event()
        counter = [0]

        async def write() -> None:
            while not stop.is_set():
                i = counter[0]
                counter[0] += 1
                k = b"wc/%06d" % i
                try:
                    acked[k] = await c.put(k, b"v")
                except NoriKVError:
                    await asyncio.sleep(0.05)

        async with c.watch(prefix=b"wc/") as w:

            async def read() -> None:
                async for ev in w:
                    events.append(ev)

            reader = asyncio.ensure_future(read())
            await asyncio.sleep(1.0)
            writers = [asyncio.ensure_future(write()) for _ in range(8)]
            await asyncio.sleep(2.0)
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
            n_before = len(acked)
            victim.srv.kill()
            t0 = time.monotonic()
            while len(acked) < n_before + 300 and time.monotonic() - t0 < 60:
                await asyncio.sleep(0.2)
            stop.set()
            await asyncio.gather(*writers)
            assert len(acked) > n_before + 100, "writes did not continue after the kill"
            await wait_for_all(events, acked, reader)
            reader.cancel()
        print("killed %s (led %d shards): %d puts acknowledged before, %d in all, %d events" % (
            victim_id, leads[victim_id], n_before, len(acked), len(events)))
        check_exactly_once(events, acked)
