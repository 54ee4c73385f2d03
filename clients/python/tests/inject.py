"""Error injection for the client's error-path unit tests: a grpc.aio server
in this process implementing the generated Kv and Meta servicers, answering
each call from a script (an error with given status, details and trailers; a
delay; or a fixed response). It stores nothing and is not a NoriKV server:
everything about real semantics is tested against norikv-server itself."""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Deque, List, Optional, Sequence, Tuple

import grpc
import grpc.aio

from norikv.v1 import norikv_pb2 as pb
from norikv.v1 import norikv_pb2_grpc as pbg


@dataclass
class Fail:
    code: grpc.StatusCode
    details: str = ""
    trailers: Sequence[Tuple[str, str]] = ()


@dataclass
class Delay:
    seconds: float
    then: Any = None  # a Fail, a response message, or None for the default


@dataclass
class Call:
    method: str
    request: Any


class ScriptedNode:
    def __init__(self, node_id: str = "n1") -> None:
        self.node_id = node_id
        self.script: Deque[Any] = deque()  # actions for Kv calls, in order
        self.calls: List[Call] = []
        self.watch_calls = 0
        self.view = pb.ClusterView(epoch=0)
        self._view_queues: List["asyncio.Queue[Optional[pb.ClusterView]]"] = []
        self.server: Optional[grpc.aio.Server] = None
        self.addr = ""
        self.version_term = 1
        self.default_action: Any = None  # used when the script is empty
        self.active = 0
        self.max_active = 0

    def kv_calls(self, method: Optional[str] = None) -> List[Call]:
        return [c for c in self.calls if method is None or c.method == method]

    async def start(self) -> str:
        self.server = grpc.aio.server()
        pbg.add_KvServicer_to_server(_Kv(self), self.server)
        pbg.add_MetaServicer_to_server(_Meta(self), self.server)
        port = self.server.add_insecure_port("127.0.0.1:0")
        await self.server.start()
        self.addr = "127.0.0.1:%d" % port
        return self.addr

    async def stop(self) -> None:
        for q in self._view_queues:
            q.put_nowait(None)
        if self.server is not None:
            await self.server.stop(0)

    def publish(self, view: pb.ClusterView) -> None:
        """Send view to every open WatchCluster stream (and future ones)."""
        self.view = view
        for q in self._view_queues:
            q.put_nowait(view)

    def end_streams(self) -> None:
        for q in self._view_queues:
            q.put_nowait(None)

    async def answer(self, method: str, request: Any, context: Any, default: Any) -> Any:
        self.calls.append(Call(method, request))
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        try:
            action = self.script.popleft() if self.script else self.default_action
            if isinstance(action, Delay):
                await asyncio.sleep(action.seconds)
                action = action.then
            if isinstance(action, Fail):
                await context.abort(action.code, action.details, trailing_metadata=tuple(action.trailers))
            if action is not None:
                return action
            return default
        finally:
            self.active -= 1


class _Kv(pbg.KvServicer):
    def __init__(self, node: ScriptedNode) -> None:
        self.node = node

    async def Put(self, request: Any, context: Any) -> Any:
        n = len(self.node.calls) + 1
        return await self.node.answer(
            "Put", request, context, pb.PutResponse(version=pb.Version(term=self.node.version_term, index=n))
        )

    async def Get(self, request: Any, context: Any) -> Any:
        return await self.node.answer(
            "Get", request, context, pb.GetResponse(value=b"v", version=pb.Version(term=1, index=1))
        )

    async def Delete(self, request: Any, context: Any) -> Any:
        return await self.node.answer(
            "Delete", request, context, pb.DeleteResponse(tombstoned=True, version=pb.Version(term=1, index=2))
        )


class _Meta(pbg.MetaServicer):
    def __init__(self, node: ScriptedNode) -> None:
        self.node = node

    async def WatchCluster(self, request: Any, context: Any) -> Any:
        self.node.watch_calls += 1
        q: "asyncio.Queue[Optional[pb.ClusterView]]" = asyncio.Queue()
        self.node._view_queues.append(q)
        try:
            if self.node.view.epoch > request.epoch:
                yield self.node.view
            while True:
                v = await q.get()
                if v is None:
                    return
                if v.epoch > request.epoch:
                    yield v
        finally:
            self.node._view_queues.remove(q)


def make_view(epoch: int, nodes: Sequence[Tuple[str, str, str]], total_shards: int,
              leader_of: Any = None, replicas: Optional[Sequence[str]] = None) -> pb.ClusterView:
    """nodes: (id, addr, role). leader_of(shard) -> node id or None."""
    v = pb.ClusterView(epoch=epoch)
    for nid, addr, role in nodes:
        v.nodes.add(id=nid, addr=addr, role=role)
    ids = list(replicas) if replicas is not None else [n[0] for n in nodes]
    for s in range(total_shards):
        si = v.shards.add(id=s)
        lid = leader_of(s) if leader_of is not None else None
        for nid in ids:
            si.replicas.add(node_id=nid, leader=(nid == lid))
    return v


def free_dead_addr() -> str:
    """A loopback address on which nothing listens (the port was just free)."""
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return "127.0.0.1:%d" % port
