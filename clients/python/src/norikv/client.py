"""NoriKVClient: the asyncio client.

Requests go to the leader of the key's shard as the cluster view says
(shard = jump(xxhash64(key), total_shards)); a NOT_LEADER answer with a
leader-hint is followed at once; other failures are retried with exponential
backoff and jitter only where CONTRACT.md allows (retry.py). A background task
keeps a Meta.WatchCluster stream open, reconnecting with backoff, and installs
each newer view; topology callbacks run on the event loop.

One client may be shared by any number of tasks of the event loop it was
connected on; it is not meant to be used from several event loops or threads.
"""

from __future__ import annotations

import asyncio
import heapq
import inspect
import logging
import random
import weakref
from types import MappingProxyType, TracebackType
from typing import (
    Any,
    AsyncIterator,
    Awaitable,
    Callable,
    Dict,
    List,
    Mapping,
    Optional,
    Sequence,
    Tuple,
    Type,
    TypeVar,
    Union,
    cast,
)

import grpc
import grpc.aio

from ._hash import KeyLike, key_bytes
from .config import ClientConfig, RetryConfig
from .errors import (
    BatchNotAppliedError,
    ClientClosedError,
    ConfigurationError,
    ConnectionError,
    LEADER_HINT_KEY,
    NoriKVError,
    error_from_status,
    trailer_value,
)
from .pool import ConnectionPool, NodeConnection
from .retry import FailureKind, backoff_delay_s, classify, is_connect_failure, should_retry
from .topology import Router, view_from_proto
from .types import (
    KV,
    BatchOp,
    BatchOpResult,
    BatchOptions,
    BatchResult,
    ClientStats,
    ClusterView,
    ConsistencyLevel,
    CreateVectorIndexOptions,
    DeleteOptions,
    DistanceFunction,
    GetOptions,
    GetResult,
    PoolStats,
    PutOptions,
    RangeOptions,
    RequestStats,
    RouterStats,
    TopologyChangeEvent,
    TopologyStats,
    VectorDeleteOptions,
    VectorDropIndexOptions,
    VectorGetOptions,
    VectorIndexType,
    VectorInsertOptions,
    VectorMatch,
    VectorSearchOptions,
    VectorSearchResult,
    Version,
)
from .v1 import norikv_pb2 as pb
from .watch import WatchStream, watch_selector

__all__ = ["NoriKVClient", "Client", "TopologyCallback"]

log = logging.getLogger("norikv")

T = TypeVar("T")
TopologyCallback = Callable[[TopologyChangeEvent], Any]
ValueLike = Union[str, bytes, bytearray, memoryview]
# Shared read-only empty metadata (copying an empty protobuf map costs ~1 µs).
_NO_META: Mapping[str, str] = MappingProxyType({})
# gRPC code numbers of BatchOpResult.code (docs/batch.md).
_BATCH_CODES = {0: "OK", 6: "ALREADY_EXISTS", 9: "FAILED_PRECONDITION", 10: "ABORTED"}
# grpc.aio.EOF (end of a response stream); absent from the type stubs.
_EOF: object = getattr(grpc.aio, "EOF")


def _value_bytes(value: ValueLike) -> bytes:
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, bytes):
        return value
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    raise TypeError("value must be str or bytes, not %s" % type(value).__name__)


def _version(msg: "pb.Version") -> Version:
    return Version(term=msg.term, index=msg.index)


def _pb_version(v: Version) -> "pb.Version":
    return pb.Version(term=v.term, index=v.index)


class NoriKVClient:
    """Asyncio NoriKV client. Use ``async with NoriKVClient(config) as client``
    or ``await client.connect()`` ... ``await client.close()``."""

    def __init__(self, config: ClientConfig) -> None:
        self.config = config
        self._router = Router(config.nodes, config.total_shards)
        self._pool = ConnectionPool()
        self._callbacks: List[TopologyCallback] = []
        self._watch_task: Optional["asyncio.Task[None]"] = None
        self._watching = False
        self._connected = False
        self._closed = False
        self._rng = random.Random()
        self._timeout_s = config.timeout / 1000.0
        self._bg: "set[asyncio.Future[Any]]" = set()
        self._inflight: Optional[asyncio.Semaphore] = None  # made in connect(), on the loop
        self._watches: "weakref.WeakSet[WatchStream]" = weakref.WeakSet()  # closed by close()
        # counters for get_stats()
        self._n_requests = 0
        self._n_attempts = 0
        self._n_retries = 0
        self._n_redirects = 0
        self._n_failures = 0

    # ------------------------------------------------------------------ life
    async def __aenter__(self) -> "NoriKVClient":
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        await self.close()

    @property
    def is_connected(self) -> bool:
        return self._connected

    async def connect(self) -> None:
        """Reach a seed node, learn the cluster view and check total_shards.

        Raises ConnectionError when no seed answers within the timeout, and
        ConfigurationError when the cluster's shard count differs from
        config.total_shards."""
        if self._connected:
            return
        if self._closed:
            raise ClientClosedError("client was closed; create a new one")
        self._inflight = asyncio.Semaphore(self.config.max_in_flight)
        errors: List[str] = []
        call: Optional[Any] = None
        got_view = False
        watch_addr: Optional[str] = None
        for addr in self._router.candidates():
            watch_addr = addr
            conn = self._pool.get(addr)
            try:
                call, first = await self._open_watch(conn, wait_first=True)
            except grpc.aio.AioRpcError as e:
                if e.code() == grpc.StatusCode.UNIMPLEMENTED:
                    # A server without Meta: route by seeds and leader hints.
                    log.warning("norikv: %s does not implement WatchCluster; routing by leader hints", addr)
                    call = None
                    break
                errors.append("%s: %s %s" % (addr, e.code().name, e.details()))
                continue
            except asyncio.TimeoutError:
                errors.append("%s: no cluster view within %d ms" % (addr, self.config.timeout))
                continue
            if first is not None:
                view = view_from_proto(first)
                if view.shards and len(view.shards) != self.config.total_shards:
                    if call is not None:
                        call.cancel()
                    await self._pool.close()
                    raise ConfigurationError(
                        "total_shards mismatch: the client is configured with %d shards but the "
                        "cluster at %s has %d; set ClientConfig.total_shards=%d"
                        % (self.config.total_shards, addr, len(view.shards), len(view.shards))
                    )
                self._install_view(view)
                got_view = True
            break
        else:
            await self._pool.close()
            raise ConnectionError("could not reach any NoriKV node: " + "; ".join(errors))
        self._connected = True
        # The stream that delivered the first view stays open: the watch task
        # continues reading it.
        self._watching = got_view
        self._watch_task = asyncio.ensure_future(
            self._watch_loop(call if got_view else None, watch_addr, enabled=got_view or call is not None)
        )

    async def close(self) -> None:
        """Stop watching the cluster and close every connection. Idempotent."""
        self._closed = True
        self._connected = False
        watches = list(self._watches)
        if watches:
            await asyncio.gather(*(w.aclose() for w in watches), return_exceptions=True)
        task, self._watch_task = self._watch_task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass
        await self._pool.close()
        if self._bg:
            await asyncio.gather(*list(self._bg), return_exceptions=True)

    # -------------------------------------------------------------- topology
    def get_cluster_view(self) -> Optional[ClusterView]:
        """The last cluster view received, or None before the first."""
        v = self._router.view
        return v if v.epoch > 0 or v.nodes else None

    def on_topology_change(self, callback: TopologyCallback) -> Callable[[], None]:
        """Call callback(event) after each newer cluster view is installed
        (including the first one, whose previous_epoch is 0). The callback may
        be a plain function or a coroutine function; exceptions it raises are
        logged. Returns a function that unsubscribes it."""
        self._callbacks.append(callback)

        def unsubscribe() -> None:
            try:
                self._callbacks.remove(callback)
            except ValueError:
                pass

        return unsubscribe

    def get_stats(self) -> ClientStats:
        return ClientStats(
            pool=PoolStats(
                active_connections=self._pool.active_connections,
                open_channels=self._pool.open_channels,
            ),
            router=RouterStats(total_nodes=self._router.total_nodes, total_shards=self._router.total_shards),
            topology=TopologyStats(
                epoch=self._router.view.epoch,
                cached_leaders=self._router.cached_leaders,
                watching=self._watching,
            ),
            requests=RequestStats(
                requests=self._n_requests,
                attempts=self._n_attempts,
                retries=self._n_retries,
                leader_redirects=self._n_redirects,
                failures=self._n_failures,
            ),
        )

    def shard_for_key(self, key: KeyLike) -> int:
        """The shard that owns key under this client's total_shards."""
        return self._router.shard_for(key_bytes(key))

    # ------------------------------------------------------------ operations
    async def put(self, key: KeyLike, value: ValueLike, options: Optional[PutOptions] = None) -> Version:
        """Write value under key; returns the Version of the write."""
        kb = key_bytes(key)
        req = pb.PutRequest(key=kb, value=_value_bytes(value))
        repeat_safe = True
        if options is not None:
            if options.ttl_ms:
                if options.ttl_ms < 0:
                    raise ValueError("ttl_ms must be >= 0, got %d" % options.ttl_ms)
                req.ttl_ms = options.ttl_ms
            if options.idempotency_key:
                req.idempotency_key = options.idempotency_key
            if options.if_match_version is not None:
                req.if_match.CopyFrom(_pb_version(options.if_match_version))
            if options.if_not_exists:
                req.if_not_exists = True
            repeat_safe = bool(options.idempotency_key) or (
                options.if_match_version is None and not options.if_not_exists
            )

        async def attempt(conn: NodeConnection, timeout: float) -> Version:
            resp = await conn.put(req, timeout=timeout)
            return _version(resp.version)

        return await self._invoke(kb, attempt, repeat_safe)

    async def get(self, key: KeyLike, options: Optional[GetOptions] = None) -> GetResult:
        """Read key; raises KeyNotFoundError when it is missing or expired."""
        kb = key_bytes(key)
        consistency = options.consistency.value if options is not None else ""
        req = pb.GetRequest(key=kb, consistency=consistency)

        async def attempt(conn: NodeConnection, timeout: float) -> GetResult:
            resp = await conn.get(req, timeout=timeout)
            meta = resp.meta
            return GetResult(
                value=resp.value,
                version=_version(resp.version),
                metadata=dict(meta) if len(meta) else _NO_META,
            )

        # stale_ok may be served by any replica: spread such reads over them.
        any_replica = options is not None and options.consistency is ConsistencyLevel.STALE_OK
        return await self._invoke(kb, attempt, True, any_replica)

    async def delete(self, key: KeyLike, options: Optional[DeleteOptions] = None) -> bool:
        """Delete key; returns True when a live value was removed, False when
        the key was absent."""
        kb = key_bytes(key)
        req = pb.DeleteRequest(key=kb)
        repeat_safe = True
        if options is not None:
            if options.idempotency_key:
                req.idempotency_key = options.idempotency_key
            if options.if_match_version is not None:
                req.if_match.CopyFrom(_pb_version(options.if_match_version))
            repeat_safe = bool(options.idempotency_key) or options.if_match_version is None

        async def attempt(conn: NodeConnection, timeout: float) -> bool:
            resp = await conn.delete(req, timeout=timeout)
            return bool(resp.tombstoned)

        return await self._invoke(kb, attempt, repeat_safe)

    # ------------------------------------------------------- range and batch
    async def range(self, options: Optional[RangeOptions] = None) -> AsyncIterator[KV]:
        """Yield the keys options select in ascending byte order (docs/range.md).

        Keys are hash-distributed, so every range covers every shard: each node
        that leads shards is asked for its shards' next page, and the pages are
        merged in key order as the iteration goes. Shards a node does not cover
        (leadership moved) are asked of their leader with the same continuation.
        No server state is held between pages; breaking out early is fine.

            async for kv in client.range(RangeOptions(prefix=b"user/")):
                ...
        """
        if not self._connected:
            raise ClientClosedError()
        opts = options if options is not None else RangeOptions()
        if opts.limit < 0 or opts.page_size < 0:
            raise ValueError("limit and page_size must be >= 0")
        streams = await self._range_open(list(range(self._router.total_shards)), b"", opts)
        heap: List[Tuple[bytes, int, int, _RangeStream]] = []
        seq = 0
        for s in streams:
            e = s.entries[s.pos]
            heap.append((e.key, e.shard, seq, s))
            seq += 1
        heapq.heapify(heap)
        yielded = 0
        while heap:
            if opts.limit and yielded >= opts.limit:
                return
            _, _, _, s = heap[0]
            e = s.entries[s.pos]
            yield KV(
                key=e.key,
                value=e.value,
                version=_version(e.version),
                shard=e.shard,
                expires_at_ms=e.expires_at_ms,
            )
            yielded += 1
            s.pos += 1
            if s.pos < len(s.entries):
                n = s.entries[s.pos]
                heapq.heapreplace(heap, (n.key, n.shard, seq, s))
                seq += 1
                continue
            heapq.heappop(heap)
            if s.eof:
                continue
            # the stream's page is used up: its next page before any further key
            for m in await self._range_open(s.shards, s.token, opts):
                n = m.entries[m.pos]
                heapq.heappush(heap, (n.key, n.shard, seq, m))
                seq += 1

    async def _range_open(self, shards: List[int], token: bytes, opts: RangeOptions) -> "List[_RangeStream]":
        """Fetch the next page for shards from token, one request per node that
        leads some of them, concurrently; route uncovered shards again (with
        backoff) until all are covered. Every stream returned has entries."""
        router = self._router
        retry: RetryConfig = self.config.retry
        stale = opts.consistency is ConsistencyLevel.STALE_OK
        out: List[_RangeStream] = []
        pending = list(shards)
        attempt = 0
        while pending:
            attempt += 1
            if self._closed:
                raise ClientClosedError("client was closed during a range scan")
            groups: Dict[str, List[int]] = {}
            for sh in pending:
                addr = (
                    (router.any_replica(sh, self._rng) if stale else None)
                    or router.leader_addr(sh)
                    or router.next_candidate()
                )
                groups.setdefault(addr, []).append(sh)
            addrs = list(groups)
            results = await asyncio.gather(
                *(self._range_fetch(a, groups[a], token, opts) for a in addrs), return_exceptions=True
            )
            pending = []
            last: Optional[BaseException] = None
            for addr, res in zip(addrs, results):
                asked = groups[addr]
                if isinstance(res, grpc.aio.AioRpcError):
                    code = res.code().name
                    details = res.details() or ""
                    kind = classify(code, details)
                    if kind is FailureKind.PERMANENT:
                        raise error_from_status(code, details, res.trailing_metadata()) from None
                    if is_connect_failure(code, details):
                        router.mark_down(addr)
                    for sh in asked:
                        router.forget_leader(sh, addr)
                    last = res
                    pending.extend(asked)
                    continue
                if isinstance(res, BaseException):
                    raise res
                stream = res
                covered = set(stream.shards)
                pending.extend(sh for sh in asked if sh not in covered)
                if stream.shards and (stream.entries or not stream.eof):
                    out.append(stream)
            if pending:
                if attempt >= retry.max_attempts + 4:
                    raise ConnectionError(
                        "range: %d shards found no node to serve them (last error: %s)" % (len(pending), last)
                    )
                pending.sort()
                await asyncio.sleep(backoff_delay_s(attempt, retry, self._rng))
        ready: List[_RangeStream] = []
        for s in out:
            if s.entries:
                ready.append(s)
            else:  # a page of only expired records that has more
                ready.extend(await self._range_open(s.shards, s.token, opts))
        return ready

    async def _range_fetch(self, addr: str, shards: List[int], token: bytes, opts: RangeOptions) -> "_RangeStream":
        req = pb.RangeRequest(
            start=opts.start,
            end=opts.end,
            prefix=opts.prefix,
            limit=opts.page_size,
            keys_only=opts.keys_only,
            consistency=opts.consistency.value,
            continuation=token,
            shards=shards,
        )
        resp = await self._pool.get(addr).range(req, timeout=self._timeout_s)
        return _RangeStream(
            addr=addr,
            shards=sorted(resp.shards),
            token=bytes(resp.continuation),
            entries=list(resp.entries),
            eof=not resp.continuation,
        )

    def watch(
        self,
        key: Optional[KeyLike] = None,
        prefix: Optional[KeyLike] = None,
        start: Optional[KeyLike] = None,
        end: Optional[KeyLike] = None,
        from_revisions: Optional[Mapping[int, Version]] = None,
        keys_only: bool = False,
    ) -> WatchStream:
        """The changes of one key, a prefix, or [start, end) (nothing given:
        every key), as an async iterator of WatchEvent (docs/watch.md):

            async with client.watch(prefix=b"user/") as w:
                async for ev in w:
                    ...

        from_revisions maps shard -> the revision after which to start (a
        RangeResponse's or an earlier WatchStream.revisions); other shards
        start at their current revision. Every event is yielded once, in
        per-shard order, across reconnects, server restarts and leader
        changes. A revision the shard no longer keeps raises
        WatchCompactedError (shard, floor)."""
        if not self._connected:
            raise ClientClosedError()
        selector, shards = watch_selector(self._router, key, prefix, start, end)
        revs = dict(from_revisions or {})
        for sh in revs:
            if not 0 <= sh < self._router.total_shards:
                raise ValueError("from_revisions: shard %d is not in [0, %d)" % (sh, self._router.total_shards))
        w = WatchStream(self, selector, shards, revs, keys_only)
        self._watches.add(w)
        return w

    async def batch(self, ops: Sequence[BatchOp], options: Optional[BatchOptions] = None) -> BatchResult:
        """Apply ops atomically: all in one Raft entry, or none (docs/batch.md).

        Every key must be on one shard (shard_for_key); otherwise ValueError
        names the shards before anything is sent. When a condition fails
        nothing is applied and BatchNotAppliedError is raised, whose result
        says which op failed (its code is that op's: FAILED_PRECONDITION or
        ALREADY_EXISTS)."""
        if not ops:
            raise ValueError("a batch needs at least one operation")
        kb0 = key_bytes(ops[0].key)
        shard0 = self._router.shard_for(kb0)
        req = pb.BatchRequest()
        repeat_safe = True
        for i, o in enumerate(ops):
            kb = key_bytes(o.key)
            sh = self._router.shard_for(kb)
            if sh != shard0:
                raise ValueError(
                    "batch spans shards %d (op 0) and %d (op %d): a batch's keys must all be on one shard"
                    % (shard0, sh, i)
                )
            if o.ttl_ms < 0:
                raise ValueError("ttl_ms must be >= 0, got %d" % o.ttl_ms)
            op = req.ops.add()
            op.key = kb
            op.delete = o.delete
            if not o.delete:
                op.value = _value_bytes(o.value)
                op.ttl_ms = o.ttl_ms
                op.if_not_exists = o.if_not_exists
            if o.if_match_version is not None:
                op.if_match.CopyFrom(_pb_version(o.if_match_version))
            if o.if_match_version is not None or o.if_not_exists:
                repeat_safe = False
        if options is not None and options.idempotency_key:
            req.idempotency_key = options.idempotency_key
            repeat_safe = True

        async def attempt(conn: NodeConnection, timeout: float) -> BatchResult:
            resp = await conn.batch(req, timeout=timeout)
            results = tuple(
                BatchOpResult(
                    code=_BATCH_CODES.get(r.code, str(r.code)),
                    tombstoned=r.tombstoned,
                    current=_version(r.current) if r.HasField("current") else None,
                )
                for r in resp.results
            )
            return BatchResult(applied=resp.applied, version=_version(resp.version), results=results)

        res = await self._invoke(kb0, attempt, repeat_safe)
        if not res.applied:
            for i, r in enumerate(res.results):
                if r.code in ("FAILED_PRECONDITION", "ALREADY_EXISTS"):
                    what = "version mismatch" if r.code == "FAILED_PRECONDITION" else "key already exists"
                    raise BatchNotAppliedError("batch op %d: %s; nothing was applied" % (i, what), r.code, res)
            raise BatchNotAppliedError("batch was not applied", "FAILED_PRECONDITION", res)
        return res

    # -------------------------------------------------------------- vectors
    # A namespace lives whole on the shard its name hashes to, like a key, so
    # vector calls route by namespace. Writes are safe to repeat after an
    # unknown outcome (applying one twice leaves the same state). A missing
    # index raises KeyNotFoundError; bad input InvalidArgumentError naming
    # the problem.

    async def vector_create_index(
        self,
        namespace: str,
        dimensions: int,
        distance: DistanceFunction,
        index_type: VectorIndexType,
        options: Optional[CreateVectorIndexOptions] = None,
    ) -> bool:
        """Create the index; False when it exists with the same dimensions,
        distance and type (other parameters: AlreadyExistsError)."""
        kb = key_bytes(namespace)
        req = pb.CreateVectorIndexRequest(
            namespace=namespace,
            dimensions=dimensions,
            distance=cast(Any, int(distance)),
            index_type=cast(Any, int(index_type)),
        )
        if options is not None and options.idempotency_key:
            req.idempotency_key = options.idempotency_key

        async def attempt(conn: NodeConnection, timeout: float) -> bool:
            resp = await conn.vector_create_index(req, timeout=timeout)
            return bool(resp.created)

        return await self._invoke(kb, attempt, True)

    async def vector_drop_index(self, namespace: str, options: Optional[VectorDropIndexOptions] = None) -> bool:
        """Drop the index and its vectors; False when it did not exist."""
        kb = key_bytes(namespace)
        req = pb.DropVectorIndexRequest(namespace=namespace)
        if options is not None and options.idempotency_key:
            req.idempotency_key = options.idempotency_key

        async def attempt(conn: NodeConnection, timeout: float) -> bool:
            resp = await conn.vector_drop_index(req, timeout=timeout)
            return bool(resp.dropped)

        return await self._invoke(kb, attempt, True)

    async def vector_insert(
        self,
        namespace: str,
        id: str,
        vector: Sequence[float],
        options: Optional[VectorInsertOptions] = None,
    ) -> Version:
        """Store vector under id (replacing its vector if any); returns the
        write's Version."""
        kb = key_bytes(namespace)
        req = pb.VectorInsertRequest(namespace=namespace, id=id, vector=vector)
        if options is not None and options.idempotency_key:
            req.idempotency_key = options.idempotency_key

        async def attempt(conn: NodeConnection, timeout: float) -> Version:
            resp = await conn.vector_insert(req, timeout=timeout)
            return _version(resp.version)

        return await self._invoke(kb, attempt, True)

    async def vector_delete(self, namespace: str, id: str, options: Optional[VectorDeleteOptions] = None) -> bool:
        """Remove id; False when it was not there."""
        kb = key_bytes(namespace)
        req = pb.VectorDeleteRequest(namespace=namespace, id=id)
        if options is not None and options.idempotency_key:
            req.idempotency_key = options.idempotency_key

        async def attempt(conn: NodeConnection, timeout: float) -> bool:
            resp = await conn.vector_delete(req, timeout=timeout)
            return bool(resp.deleted)

        return await self._invoke(kb, attempt, True)

    async def vector_search(
        self,
        namespace: str,
        query: Sequence[float],
        k: int,
        options: Optional[VectorSearchOptions] = None,
    ) -> VectorSearchResult:
        """The k vectors of namespace nearest to query."""
        kb = key_bytes(namespace)
        opts = options if options is not None else VectorSearchOptions()
        req = pb.VectorSearchRequest(
            namespace=namespace,
            query=query,
            k=k,
            include_vectors=opts.include_vectors,
            consistency=ConsistencyLevel(opts.consistency).value,
        )

        async def attempt(conn: NodeConnection, timeout: float) -> VectorSearchResult:
            resp = await conn.vector_search(req, timeout=timeout)
            return VectorSearchResult(
                matches=[
                    VectorMatch(id=m.id, distance=m.distance, vector=list(m.vector) if len(m.vector) else None)
                    for m in resp.matches
                ],
                search_time_us=resp.search_time_us,
            )

        any_replica = ConsistencyLevel(opts.consistency) is ConsistencyLevel.STALE_OK
        return await self._invoke(kb, attempt, True, any_replica)

    async def vector_get(
        self, namespace: str, id: str, options: Optional[VectorGetOptions] = None
    ) -> Optional[List[float]]:
        """The vector stored under id, or None when the id is absent."""
        kb = key_bytes(namespace)
        opts = options if options is not None else VectorGetOptions()
        req = pb.VectorGetRequest(namespace=namespace, id=id, consistency=ConsistencyLevel(opts.consistency).value)

        async def attempt(conn: NodeConnection, timeout: float) -> Optional[List[float]]:
            resp = await conn.vector_get(req, timeout=timeout)
            return list(resp.vector) if resp.found else None

        any_replica = ConsistencyLevel(opts.consistency) is ConsistencyLevel.STALE_OK
        return await self._invoke(kb, attempt, True, any_replica)

    # --------------------------------------------------------------- engine
    async def _invoke(
        self,
        kb: bytes,
        attempt: Callable[[NodeConnection, float], Awaitable[T]],
        repeat_safe: bool,
        any_replica: bool = False,
    ) -> T:
        if not self._connected or self._inflight is None:
            raise ClientClosedError()
        inflight = self._inflight
        router = self._router
        retry: RetryConfig = self.config.retry
        shard = router.shard_for(kb)
        self._n_requests += 1
        n = 0
        avoid: Optional[str] = None
        while True:
            n += 1
            self._n_attempts += 1
            if self._closed:
                raise ClientClosedError("client was closed while the request was being retried")
            addr = ""
            try:
                async with inflight:
                    # Route after the wait for a slot: the view may have moved on.
                    addr = (
                        (router.any_replica(shard, self._rng) if any_replica and n == 1 else None)
                        or router.leader_addr(shard)
                        or router.next_candidate(avoid)
                    )
                    return await attempt(self._pool.get(addr), self._timeout_s)
            except grpc.aio.AioRpcError as e:
                code = e.code().name
                details = e.details() or ""
                trailers = e.trailing_metadata()
                kind = classify(code, details)
                immediate = False
                if code == "UNAVAILABLE" and "NOT_LEADER" in details:
                    hint = trailer_value(trailers, LEADER_HINT_KEY)
                    if hint and hint != addr:
                        router.learn_leader(shard, hint)
                        self._n_redirects += 1
                        immediate = True
                    else:
                        router.forget_leader(shard, addr)
                elif is_connect_failure(code, details):
                    # Nothing listens there (node down): pass it over for a while.
                    router.mark_down(addr)
                elif kind is not FailureKind.PERMANENT:
                    # The node failed us: ask someone else next time.
                    router.forget_leader(shard, addr)
                avoid = addr
                if n >= retry.max_attempts or not should_retry(kind, repeat_safe):
                    self._n_failures += 1
                    err = error_from_status(code, details, trailers)
                    if kind is not FailureKind.PERMANENT:
                        err.message = "%s (node %s, attempt %d of %d)" % (
                            err.message,
                            addr,
                            n,
                            retry.max_attempts,
                        )
                    raise err from None
                self._n_retries += 1
                if not immediate:
                    await asyncio.sleep(backoff_delay_s(n, retry, self._rng))

    # ------------------------------------------------------------ watching
    async def _open_watch(self, conn: NodeConnection, wait_first: bool) -> "tuple[Any, Optional[pb.ClusterView]]":
        req = pb.ClusterView(epoch=self._router.view.epoch)
        call = conn.watch_cluster(req)
        if not wait_first:
            return call, None
        try:
            first = await asyncio.wait_for(call.read(), self._timeout_s)
        except BaseException:
            call.cancel()
            raise
        if first is _EOF:
            code = await call.code()
            raise grpc.aio.AioRpcError(
                code, grpc.aio.Metadata(), grpc.aio.Metadata(), "WatchCluster ended without a view", None
            )
        return call, cast("pb.ClusterView", first)

    def _install_view(self, view: ClusterView) -> None:
        event = self._router.apply_view(view)
        if event is None:
            return
        # Close channels to nodes that left the view (seeds stay).
        self._pool.retain(set(self._router.seeds) | self._router.node_addrs())
        for cb in list(self._callbacks):
            try:
                res = cb(event)
                if inspect.isawaitable(res):
                    fut = asyncio.ensure_future(res)
                    self._bg.add(fut)
                    fut.add_done_callback(self._bg_done)
            except Exception:
                log.exception("norikv: topology callback %r raised", cb)

    def _bg_done(self, fut: "asyncio.Future[Any]") -> None:
        self._bg.discard(fut)
        if not fut.cancelled() and fut.exception() is not None:
            log.error("norikv: topology callback failed: %r", fut.exception())

    async def _watch_loop(self, call: Optional[Any], addr: Optional[str], enabled: bool) -> None:
        """Keep a WatchCluster stream open (call, on addr, is the one connect()
        opened); when it fails, back off and open one on the next node. Ends
        when the client closes (cancellation)."""
        if not enabled:
            return
        retry = self.config.retry
        failures = 0
        try:
            while True:
                if call is None:
                    addr = self._router.next_candidate(addr)
                    call, _ = await self._open_watch(self._pool.get(addr), wait_first=False)
                try:
                    self._watching = True
                    while True:
                        msg = await call.read()
                        if msg is _EOF:
                            break
                        failures = 0
                        self._install_view(view_from_proto(msg))
                except grpc.aio.AioRpcError as e:
                    if e.code() == grpc.StatusCode.UNIMPLEMENTED:
                        log.warning("norikv: WatchCluster unimplemented; routing by leader hints")
                        return
                    log.debug("norikv: cluster watch on %s ended: %s %s", addr, e.code().name, e.details())
                    if addr is not None and is_connect_failure(e.code().name, e.details() or ""):
                        self._router.mark_down(addr)
                finally:
                    self._watching = False
                    call.cancel()
                    call = None
                failures += 1
                await asyncio.sleep(backoff_delay_s(min(failures, 8), retry, self._rng))
        except asyncio.CancelledError:
            if call is not None:
                call.cancel()
            raise


class _RangeStream:
    """One node's ordered page stream over a set of shards (range())."""

    __slots__ = ("addr", "shards", "token", "entries", "pos", "eof")

    def __init__(self, addr: str, shards: List[int], token: bytes, entries: "List[Any]", eof: bool) -> None:
        self.addr = addr
        self.shards = shards
        self.token = token
        self.entries = entries
        self.pos = 0
        self.eof = eof

    def __lt__(self, other: "_RangeStream") -> bool:  # heap ties never reach here (seq)
        return id(self) < id(other)


class Client(NoriKVClient):
    """Short form: ``async with Client(["host:9001", ...]) as client``."""

    def __init__(
        self,
        nodes: Sequence[str],
        total_shards: int = 1024,
        timeout: int = 5000,
        retry: Optional[RetryConfig] = None,
    ) -> None:
        super().__init__(
            ClientConfig(nodes=list(nodes), total_shards=total_shards, timeout=timeout, retry=retry or RetryConfig())
        )
