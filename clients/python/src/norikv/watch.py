"""Client.watch: the changes of a key, a prefix or a range (docs/watch.md).

Keys are hash-distributed, so a watch covers every shard (a single key: its
one shard). A node serves the shards it leads, so a WatchStream runs one
Kv.Watch call per node that leads some of the shards, feeding one bounded
queue that the caller iterates.

Exactly once, in per-shard order, across reconnects: the stream remembers,
per shard, the revision of the last event (or progress mark) it received.
When a call ends with a status that allows a resume (UNAVAILABLE: not the
leader any more, shutting down, connection lost; RESOURCE_EXHAUSTED: too
slow, too many streams; an unexpected end), its shards are routed again by
the client's cluster view and leader hints and re-sent with those revisions,
after a backoff. The server sends, per shard, only events after the revision
given, and the iterator also drops any event at or below the shard's
position before the message that carries it (the events of one entry, a
multi-key batch, share its revision and are never split between messages),
so an event that crossed a resume twice is yielded once.

A shard the caller gives no revision for starts from the node's current
revision: before its first Watch call the stream reads it with a one-entry
Kv.Range (RangeResponse.revisions), so even the first resume of that shard
has a position and loses nothing.

A revision the shard no longer retains ends the watch with
WatchCompactedError (its shard and floor revision): scan again and watch
from the scan's revisions. Other permanent statuses end it with the mapped
NoriKVError. Used on the client's event loop only.
"""

from __future__ import annotations

import asyncio
import enum
import re
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional, Set, Tuple, Type, Union, cast

import grpc
import grpc.aio

from ._hash import KeyLike, key_bytes
from .errors import (
    LEADER_HINT_KEY,
    ClientClosedError,
    ConnectionError,
    NoriKVError,
    error_from_status,
    trailer_value,
)
from .retry import backoff_delay_s, is_connect_failure
from .types import Version
from .v1 import norikv_pb2 as pb

if TYPE_CHECKING:
    from .client import NoriKVClient
    from .topology import Router

__all__ = ["WatchEventKind", "WatchEvent", "WatchStream", "WatchCompactedError", "watch_selector"]

# Messages waiting for the caller (each up to 256 events): when it is full the
# node streams stop reading, gRPC flow control holds the server back, and a
# server that runs out of patience ends the call "watch too slow", which
# resumes from the last revisions. Bounds the client's memory.
_QUEUE_MESSAGES = 64
# A shard that no node serves for this long (consecutive failed attempts,
# backing off) ends the watch with ConnectionError.
_GIVE_UP_S = 60.0

# "revision T.I" as docs/watch.md shows it, or "revision I" (the index
# alone, as the server writes it: revisions are ordered by index in a shard)
_COMPACTED_RE = re.compile(r"shard (\d+) keeps events after revision (\d+)(?:\.(\d+))?")
_SHARD_RE = re.compile(r"shard (\d+)")
# grpc.aio.EOF (end of a response stream); absent from the type stubs.
_EOF: object = getattr(grpc.aio, "EOF")


class WatchEventKind(enum.Enum):
    PUT = 0
    DELETE = 1
    """Deleted by a client."""
    EXPIRE = 2
    """Its TTL ran out (one event, decided by the shard's replicated time)."""


@dataclass(frozen=True)
class WatchEvent:
    """One change. version is the shard's revision of the change; value is
    empty for DELETE and EXPIRE and with keys_only."""

    kind: WatchEventKind
    key: bytes
    value: bytes
    version: Version
    shard: int
    expires_at_ms: int = 0


class WatchCompactedError(NoriKVError):
    """A revision asked for is older than what the shard keeps: shard keeps
    events after floor only (floor.term is 0 when the server named only the
    index). Scan again (Client.range) and watch from there."""

    def __init__(self, message: str, shard: int, floor: Version) -> None:
        super().__init__(message, "OUT_OF_RANGE")
        self.shard = shard
        self.floor = floor


def compacted_error(details: str) -> NoriKVError:
    """The typed error of an OUT_OF_RANGE "compacted: ..." status."""
    m = _COMPACTED_RE.search(details)
    if m is None:
        return error_from_status("OUT_OF_RANGE", details)
    if m.group(3) is None:
        floor = Version(0, int(m.group(2)))  # term not given
    else:
        floor = Version(int(m.group(2)), int(m.group(3)))
    return WatchCompactedError(details, int(m.group(1)), floor)


def watch_selector(
    router: "Router",
    key: Optional[KeyLike],
    prefix: Optional[KeyLike],
    start: Optional[KeyLike],
    end: Optional[KeyLike],
) -> Tuple[Dict[str, bytes], List[int]]:
    """Client.watch's arguments as WatchRequest fields, and the shards they
    touch (one key: its shard; anything else: all)."""
    given = [n for n, v in (("key", key), ("prefix", prefix)) if v is not None]
    if start is not None or end is not None:
        given.append("start/end")
    if len(given) > 1:
        raise ValueError("watch takes one of key, prefix or start/end, not %s" % " and ".join(given))
    selector: Dict[str, bytes] = {}
    shards = list(range(router.total_shards))
    if key is not None:
        kb = key_bytes(key)
        if not kb:
            raise ValueError("watch: key must not be empty")
        selector["key"] = kb
        shards = [router.shard_for(kb)]
    elif prefix is not None:
        p = key_bytes(prefix)
        if p:
            selector["prefix"] = p
    else:
        if start is not None:
            selector["start"] = key_bytes(start)
        if end is not None:
            selector["end"] = key_bytes(end)
    return selector, shards


# What the node streams put on the queue: events of one message, a progress
# mark, or the end of the watch (an exception).
_Item = Union[Tuple[str, List[Any]], Tuple[str, BaseException]]


class WatchStream:
    """The events of a watch, as an async iterator (and async context
    manager: leaving it, or aclose(), stops every call).

        async with client.watch(prefix=b"user/") as w:
            async for ev in w:
                ...

    revisions: per shard, the revision of the last entry whose events were
    all handed out (or of a progress mark), to resume a later watch with
    from_revisions: such a watch neither repeats an event nor skips one."""

    def __init__(
        self,
        client: "NoriKVClient",
        selector: Dict[str, bytes],
        shards: List[int],
        from_revisions: Mapping[int, Version],
        keys_only: bool,
    ) -> None:
        self._client = client
        self._selector = selector
        self._keys_only = keys_only
        self._shards = shards
        # received: what the node streams have queued (resumes start there);
        # delivered: what the caller got (duplicates are dropped against it)
        self._received: Dict[int, Version] = {s: v for s, v in from_revisions.items() if s in set(shards)}
        self._delivered: Dict[int, Version] = dict(self._received)
        # revisions(): like _delivered, but only entries handed out whole
        self._handed: Dict[int, Version] = dict(self._received)
        # per shard: _delivered before the message being handed out
        self._msg_base: Dict[int, Optional[Version]] = {}
        self._queue: "asyncio.Queue[_Item]" = asyncio.Queue(_QUEUE_MESSAGES)
        self._tasks: Set["asyncio.Task[None]"] = set()
        self._pending: List[Any] = []
        self._pos = 0
        self._started = False
        self._closed = False
        self._error: Optional[BaseException] = None
        self._resumes = 0

    # ---------------------------------------------------------- the caller
    @property
    def revisions(self) -> Dict[int, Version]:
        return dict(self._handed)

    @property
    def resumes(self) -> int:
        """How many times shards were sent again (to the same node or their
        new leader) after a node call ended or did not serve them."""
        return self._resumes

    def __aiter__(self) -> "WatchStream":
        return self

    async def __aenter__(self) -> "WatchStream":
        self._start()
        return self

    async def __aexit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop every call. Idempotent; iteration then ends."""
        self._closed = True
        tasks = list(self._tasks)
        self._tasks.clear()
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    async def __anext__(self) -> WatchEvent:
        self._start()
        while True:
            if self._closed:
                raise StopAsyncIteration
            if self._error is not None:
                raise self._error
            pend = self._pending
            while self._pos < len(pend):
                e = pend[self._pos]
                self._pos += 1
                # The events of one entry (a multi-key batch) share its
                # revision, and the server never splits an entry between
                # messages: an event is old when its revision is at or below
                # the shard's position before this message.
                sh = e.shard
                if sh not in self._msg_base:
                    self._msg_base[sh] = self._delivered.get(sh)
                base = self._msg_base[sh]
                if base is not None and e.version.index <= base.index:
                    continue  # seen before a resume
                v = Version(e.version.term, e.version.index)
                self._delivered[sh] = v
                # revisions names whole entries only: not while more events
                # of this entry (next in the message) are still to come
                nxt = pend[self._pos] if self._pos < len(pend) else None
                if nxt is None or nxt.shard != sh or nxt.version.index != e.version.index:
                    self._handed[sh] = v
                return WatchEvent(
                    kind=WatchEventKind(e.kind),
                    key=e.key,
                    value=e.value,
                    version=v,
                    shard=sh,
                    expires_at_ms=e.expires_at_ms,
                )
            kind, payload = await self._queue.get()
            if kind == "events":
                assert isinstance(payload, list)
                self._pending, self._pos = payload, 0
                self._msg_base = {}
            elif kind == "progress":
                assert isinstance(payload, list)
                for p in payload:
                    last = self._delivered.get(p.shard)
                    if last is None or p.applied.index > last.index:
                        self._delivered[p.shard] = Version(p.applied.term, p.applied.index)
                        self._handed[p.shard] = self._delivered[p.shard]
            else:
                assert isinstance(payload, BaseException)
                self._error = payload
                await self.aclose()
                self._closed = False  # raise the error (above), not StopAsyncIteration
                raise payload

    # ------------------------------------------------------- node streams
    def _start(self) -> None:
        if self._started:
            return
        if not self._client.is_connected:
            raise ClientClosedError()
        self._started = True
        self._spawn(self._shards, 0.0, 0)

    def _spawn(self, shards: List[int], delay: float, failures: int) -> None:
        if self._closed or not shards:
            return
        t = asyncio.ensure_future(self._run(sorted(shards), delay, failures))
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)

    async def _fail(self, err: BaseException) -> None:
        await self._queue.put(("end", err))

    async def _run(self, shards: List[int], delay: float, failures: int) -> None:
        """Serve shards: route them to their leaders (one more task per extra
        node), run one Watch call, and when it ends resume with the latest
        revisions. failures counts consecutive attempts that served nothing;
        past _GIVE_UP_S of those the watch ends with ConnectionError."""
        c = self._client
        router = c._router
        retry = c.config.retry
        failing_since: Optional[float] = None
        try:
            while True:
                if delay > 0:
                    await asyncio.sleep(delay)
                if self._closed or c._closed:
                    return
                groups: Dict[str, List[int]] = {}
                for sh in shards:
                    groups.setdefault(router.route(sh), []).append(sh)
                addrs = list(groups)
                for a in addrs[1:]:
                    self._spawn(groups[a], 0.0, failures)
                addr = addrs[0]
                shards = groups[addr]
                ok, unserved, why, err = await self._call(addr, shards)
                if err is not None:
                    await self._fail(err)
                    return
                if unserved:
                    for sh in unserved:
                        router.forget_leader(sh, addr)
                    self._spawn(unserved, backoff_delay_s(min(failures + 1, 8), retry, c._rng), failures + 1)
                    gone = set(unserved)
                    shards = [s for s in shards if s not in gone]
                if not shards:
                    return
                self._resumes += 1
                now = asyncio.get_running_loop().time()
                if ok:
                    failures, failing_since, delay = 0, None, 0.0
                    continue
                failures += 1
                if failing_since is None:
                    failing_since = now
                elif now - failing_since > _GIVE_UP_S:
                    await self._fail(
                        ConnectionError(
                            "watch: no node served shards %s for %.0f s (last: %s)" % (shards[:8], _GIVE_UP_S, why)
                        )
                    )
                    return
                delay = backoff_delay_s(min(failures, 8), retry, c._rng)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # a bug here must end the watch, not hang it
            await self._fail(e)

    async def _initial_revisions(self, addr: str, shards: List[int]) -> List[int]:
        """Read the current revision of the shards that have none yet from
        addr (a one-entry Range on the same selector); returns the shards it
        does not lead."""
        missing = [s for s in shards if s not in self._received]
        if not missing:
            return []
        sel = self._selector
        start, end, prefix = sel.get("start", b""), sel.get("end", b""), sel.get("prefix", b"")
        if "key" in sel:
            start, end = sel["key"], sel["key"] + b"\x00"
        req = pb.RangeRequest(start=start, end=end, prefix=prefix, limit=1, keys_only=True, shards=missing)
        resp = await self._client._pool.get(addr).range(req, timeout=self._client._timeout_s)
        for r in resp.revisions:
            if r.shard not in self._received:
                self._received[r.shard] = Version(r.applied.term, r.applied.index)
        covered = set(resp.shards)
        return [s for s in missing if s not in covered]

    async def _call(self, addr: str, shards: List[int]) -> Tuple[bool, List[int], str, Optional[BaseException]]:
        """One Watch call to addr for shards until it ends. Returns (made
        progress, shards addr does not serve, why it ended, fatal error)."""
        c = self._client
        router = c._router
        conn = c._pool.get(addr)
        call: Optional[Any] = None
        got_first = False
        try:
            unserved = await self._initial_revisions(addr, shards)
            if unserved:
                # the rest have their revisions now: retried at once
                return len(unserved) < len(shards), unserved, "not the leader", None
            req = pb.WatchRequest(shards=shards, keys_only=self._keys_only, **self._selector)
            for sh in shards:
                v = self._received[sh]
                getattr(req, "from").add(shard=sh, applied=pb.Version(term=v.term, index=v.index))
            call = conn.watch(req)
            while True:
                raw = await call.read()
                if raw is _EOF:
                    return got_first, [], "stream ended", None
                msg = cast("pb.WatchResponse", raw)
                if not got_first:
                    got_first = True
                    served = set(msg.shards)
                    unserved = [s for s in shards if s not in served]
                    if unserved:
                        # this call keeps serving the rest; the others are
                        # routed again by the caller once this call ends, so
                        # hand them over now
                        for sh in unserved:
                            router.forget_leader(sh, addr)
                        self._spawn(unserved, backoff_delay_s(1, c.config.retry, c._rng), 1)
                        shards[:] = [s for s in shards if s in served]
                        if not shards:
                            return False, [], "serves none", None
                if msg.events:
                    evs = list(msg.events)
                    for e in evs:
                        self._received[e.shard] = Version(e.version.term, e.version.index)
                    await self._queue.put(("events", evs))
                if msg.progress:
                    prog = list(msg.progress)
                    for p in prog:
                        last = self._received.get(p.shard)
                        if last is None or p.applied.index > last.index:
                            self._received[p.shard] = Version(p.applied.term, p.applied.index)
                    await self._queue.put(("progress", prog))
        except grpc.aio.AioRpcError as e:
            code = e.code().name
            details = e.details() or ""
            if code == "OUT_OF_RANGE":
                return False, [], details, compacted_error(details)
            if code in ("INVALID_ARGUMENT", "UNIMPLEMENTED", "PERMISSION_DENIED", "UNAUTHENTICATED",
                        "FAILED_PRECONDITION", "NOT_FOUND", "ALREADY_EXISTS"):
                return False, [], details, error_from_status(code, details, e.trailing_metadata())
            if code == "UNAVAILABLE" and "NOT_LEADER" in details:
                # one shard moved; the others of the call keep their leaders
                hint = trailer_value(e.trailing_metadata(), LEADER_HINT_KEY)
                m = _SHARD_RE.search(details)
                moved = [int(m.group(1))] if m is not None else shards
                for sh in moved:
                    if hint and hint != addr:
                        router.learn_leader(sh, hint)
                    else:
                        router.forget_leader(sh, addr)
            elif is_connect_failure(code, details):
                router.mark_down(addr)
                for sh in shards:
                    router.forget_leader(sh, addr)
            elif code == "UNAVAILABLE":
                for sh in shards:  # shutting down, connection lost
                    router.forget_leader(sh, addr)
            return got_first, [], "%s %s" % (code, details), None
        finally:
            if call is not None:
                call.cancel()
