"""One grpc.aio channel per node address, with typed method handles.

A gRPC channel multiplexes any number of concurrent calls over its HTTP/2
connection and reconnects by itself, so one channel per node is the pool. The
pool is bounded by the number of distinct addresses the client learns (seeds,
nodes of the cluster view, leader hints); channels of nodes that leave the view
are closed. Used from one event loop.
"""

from __future__ import annotations

import asyncio
from typing import Any, Dict, List, Optional, Set, Tuple

import grpc
import grpc.aio

from .v1 import norikv_pb2 as pb

__all__ = ["NodeConnection", "ConnectionPool", "CHANNEL_OPTIONS"]

# Reconnect quickly after a node comes back (defaults back off up to 120 s),
# keep idle connections alive, and never let gRPC retry on its own: the client
# decides what may be retried (retry.py). grpc.min_reconnect_backoff_ms is left
# alone: gRPC core also uses it as the minimum connect (handshake) timeout, and
# a small value makes connections to a busy server fail.
CHANNEL_OPTIONS: List[Tuple[str, Any]] = [
    ("grpc.enable_retries", 0),
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 2000),
    ("grpc.keepalive_time_ms", 30000),
    ("grpc.keepalive_timeout_ms", 10000),
    ("grpc.max_send_message_length", 4 * 1024 * 1024),
    ("grpc.max_receive_message_length", 4 * 1024 * 1024),
]


class NodeConnection:
    """A channel to one node and its method handles."""

    def __init__(self, addr: str) -> None:
        self.addr = addr
        self.channel: grpc.aio.Channel = grpc.aio.insecure_channel(addr, options=CHANNEL_OPTIONS)
        ch = self.channel
        self.put = ch.unary_unary(
            "/norikv.v1.Kv/Put",
            request_serializer=pb.PutRequest.SerializeToString,
            response_deserializer=pb.PutResponse.FromString,
        )
        self.get = ch.unary_unary(
            "/norikv.v1.Kv/Get",
            request_serializer=pb.GetRequest.SerializeToString,
            response_deserializer=pb.GetResponse.FromString,
        )
        self.delete = ch.unary_unary(
            "/norikv.v1.Kv/Delete",
            request_serializer=pb.DeleteRequest.SerializeToString,
            response_deserializer=pb.DeleteResponse.FromString,
        )
        self.vector_create_index = ch.unary_unary(
            "/norikv.v1.Vector/CreateIndex",
            request_serializer=pb.CreateVectorIndexRequest.SerializeToString,
            response_deserializer=pb.CreateVectorIndexResponse.FromString,
        )
        self.vector_drop_index = ch.unary_unary(
            "/norikv.v1.Vector/DropIndex",
            request_serializer=pb.DropVectorIndexRequest.SerializeToString,
            response_deserializer=pb.DropVectorIndexResponse.FromString,
        )
        self.vector_insert = ch.unary_unary(
            "/norikv.v1.Vector/Insert",
            request_serializer=pb.VectorInsertRequest.SerializeToString,
            response_deserializer=pb.VectorInsertResponse.FromString,
        )
        self.vector_delete = ch.unary_unary(
            "/norikv.v1.Vector/Delete",
            request_serializer=pb.VectorDeleteRequest.SerializeToString,
            response_deserializer=pb.VectorDeleteResponse.FromString,
        )
        self.vector_search = ch.unary_unary(
            "/norikv.v1.Vector/Search",
            request_serializer=pb.VectorSearchRequest.SerializeToString,
            response_deserializer=pb.VectorSearchResponse.FromString,
        )
        self.vector_get = ch.unary_unary(
            "/norikv.v1.Vector/Get",
            request_serializer=pb.VectorGetRequest.SerializeToString,
            response_deserializer=pb.VectorGetResponse.FromString,
        )
        self.range = ch.unary_unary(
            "/norikv.v1.Kv/Range",
            request_serializer=pb.RangeRequest.SerializeToString,
            response_deserializer=pb.RangeResponse.FromString,
        )
        self.batch = ch.unary_unary(
            "/norikv.v1.Kv/Batch",
            request_serializer=pb.BatchRequest.SerializeToString,
            response_deserializer=pb.BatchResponse.FromString,
        )
        self.watch = ch.unary_stream(
            "/norikv.v1.Kv/Watch",
            request_serializer=pb.WatchRequest.SerializeToString,
            response_deserializer=pb.WatchResponse.FromString,
        )
        self.watch_cluster = ch.unary_stream(
            "/norikv.v1.Meta/WatchCluster",
            request_serializer=pb.ClusterView.SerializeToString,
            response_deserializer=pb.ClusterView.FromString,
        )

    def is_ready(self) -> bool:
        return self.channel.get_state(try_to_connect=False) == grpc.ChannelConnectivity.READY

    async def close(self) -> None:
        await self.channel.close(None)


class ConnectionPool:
    def __init__(self) -> None:
        self._conns: Dict[str, NodeConnection] = {}
        self._closing: List["asyncio.Task[None]"] = []

    def get(self, addr: str) -> NodeConnection:
        c = self._conns.get(addr)
        if c is None:
            c = NodeConnection(addr)
            self._conns[addr] = c
        return c

    def peek(self, addr: str) -> Optional[NodeConnection]:
        return self._conns.get(addr)

    def retain(self, keep: Set[str]) -> None:
        """Close channels to addresses not in keep (nodes that left the view).
        Calls in flight on them finish or fail first (grace period)."""
        for addr in [a for a in self._conns if a not in keep]:
            conn = self._conns.pop(addr)
            self._closing.append(asyncio.ensure_future(conn.channel.close(2.0)))

    @property
    def active_connections(self) -> int:
        return sum(1 for c in self._conns.values() if c.is_ready())

    @property
    def open_channels(self) -> int:
        return len(self._conns)

    def addresses(self) -> List[str]:
        return list(self._conns)

    async def close(self) -> None:
        conns = list(self._conns.values())
        self._conns.clear()
        await asyncio.gather(*(c.close() for c in conns), return_exceptions=True)
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)
            self._closing.clear()
