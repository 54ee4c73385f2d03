"""Cluster view handling and routing state.

Router holds what the client knows about the cluster: the last ClusterView,
the shard -> leader address map (from the view, refined by NOT_LEADER leader
hints) and the seed addresses. It is used from one event loop only (all its
methods are synchronous, so concurrent tasks never see it half-updated).
"""

from __future__ import annotations

import random
import time
from typing import Dict, List, Optional, Sequence, Set, Tuple

from ._hash import jump_consistent_hash, xxhash64
from .types import ClusterNode, ClusterView, ShardInfo, ShardReplica, TopologyChangeEvent

__all__ = ["Router", "view_from_proto", "diff_views", "EMPTY_VIEW"]

EMPTY_VIEW = ClusterView(epoch=0, nodes=(), shards=())

# How long an address that refused a connection is passed over.
DOWN_PERIOD_S = 1.0

# Roles whose nodes are not worth sending requests to.
_DOWN_ROLES = frozenset({"dead", "left"})


def view_from_proto(msg: object) -> ClusterView:
    """Convert a norikv.v1.ClusterView message (duck-typed) to a ClusterView."""
    nodes = tuple(
        ClusterNode(id=n.id, addr=n.addr, role=n.role) for n in getattr(msg, "nodes")
    )
    shards = tuple(
        ShardInfo(
            id=s.id,
            replicas=tuple(ShardReplica(node_id=r.node_id, leader=r.leader) for r in s.replicas),
        )
        for s in getattr(msg, "shards")
    )
    return ClusterView(epoch=int(getattr(msg, "epoch")), nodes=nodes, shards=shards)


def _leaders(view: ClusterView) -> Dict[int, str]:
    out: Dict[int, str] = {}
    for s in view.shards:
        lid = s.leader_id
        if lid is not None:
            out[s.id] = lid
    return out


def diff_views(old: ClusterView, new: ClusterView) -> TopologyChangeEvent:
    old_nodes = {n.id: n for n in old.nodes}
    new_nodes = {n.id: n for n in new.nodes}
    added = [n.id for n in new.nodes if n.id not in old_nodes]
    removed = [n.id for n in old.nodes if n.id not in new_nodes]
    roles: Dict[str, Tuple[str, str]] = {}
    for nid, n in new_nodes.items():
        o = old_nodes.get(nid)
        if o is not None and o.role != n.role:
            roles[nid] = (o.role, n.role)
    ol, nl = _leaders(old), _leaders(new)
    leader_changes: Dict[int, Tuple[Optional[str], Optional[str]]] = {}
    for sid in sorted(set(ol) | set(nl)):
        a, b = ol.get(sid), nl.get(sid)
        if a != b:
            leader_changes[sid] = (a, b)
    return TopologyChangeEvent(
        previous_epoch=old.epoch,
        current_epoch=new.epoch,
        added_nodes=added,
        removed_nodes=removed,
        role_changes=roles,
        leader_changes=leader_changes,
        view=new,
    )


class Router:
    """Maps keys to shards and shards to the address to call."""

    def __init__(self, seeds: Sequence[str], total_shards: int) -> None:
        self.seeds: List[str] = list(seeds)
        self.total_shards = total_shards
        self.view: ClusterView = EMPTY_VIEW
        self._leaders: Dict[int, str] = {}  # shard -> client address
        self._candidates: List[str] = list(self.seeds)
        self._rr = 0
        # Addresses that refused a connection recently -> monotonic time until
        # which they are passed over (bounded by the addresses known).
        self._down_until: Dict[str, float] = {}
        self.down_period_s = DOWN_PERIOD_S
        self._replicas: Dict[int, List[str]] = {}

    # -- keys and shards ------------------------------------------------------
    def shard_for(self, key: bytes) -> int:
        return jump_consistent_hash(xxhash64(key), self.total_shards)

    # -- addresses ------------------------------------------------------------
    def leader_addr(self, shard: int) -> Optional[str]:
        return self._leaders.get(shard)

    def any_replica(self, shard: int, rng: "random.Random") -> Optional[str]:
        """A random replica of shard that is not marked down (for stale_ok
        reads), or None when the view lists none."""
        reps = self._replicas.get(shard)
        if not reps:
            return None
        up = [a for a in reps if not self.is_down(a)] if self._down_until else reps
        return rng.choice(up) if up else None

    def mark_down(self, addr: str, now: Optional[float] = None) -> None:
        """addr refused a connection: prefer other addresses for a while and
        stop routing to it as a leader."""
        t = time.monotonic() if now is None else now
        self._down_until[addr] = t + self.down_period_s
        for shard in [s for s, a in self._leaders.items() if a == addr]:
            del self._leaders[shard]

    def mark_up(self, addr: str) -> None:
        self._down_until.pop(addr, None)

    def is_down(self, addr: str, now: Optional[float] = None) -> bool:
        until = self._down_until.get(addr)
        if until is None:
            return False
        if (time.monotonic() if now is None else now) >= until:
            del self._down_until[addr]
            return False
        return True

    def candidates(self) -> List[str]:
        """Addresses worth trying when a shard's leader is unknown: the view's
        live nodes first, then the seeds not among them."""
        return list(self._candidates)

    def next_candidate(self, avoid: Optional[str] = None) -> str:
        """The next address in rotation, passing over avoid and addresses
        marked down (unless nothing else is left)."""
        c = self._candidates
        n = len(c)
        fallback: Optional[str] = None
        for _ in range(n):
            addr = c[self._rr % n]
            self._rr += 1
            if addr == avoid and n > 1:
                continue
            if self._down_until and self.is_down(addr):
                if fallback is None:
                    fallback = addr
                continue
            return addr
        if fallback is not None:
            return fallback
        return c[self._rr % n]

    def route(self, shard: int) -> str:
        addr = self._leaders.get(shard)
        return addr if addr is not None else self.next_candidate()

    def learn_leader(self, shard: int, addr: str) -> None:
        """A NOT_LEADER answer named addr as shard's leader."""
        self._leaders[shard] = addr
        self._down_until.pop(addr, None)

    def forget_leader(self, shard: int, addr: Optional[str] = None) -> None:
        """The cached leader failed (or said it is not the leader)."""
        if addr is None or self._leaders.get(shard) == addr:
            self._leaders.pop(shard, None)

    @property
    def cached_leaders(self) -> int:
        return len(self._leaders)

    @property
    def total_nodes(self) -> int:
        return len(self.view.nodes) if self.view.nodes else len(self.seeds)

    # -- views ----------------------------------------------------------------
    def apply_view(self, view: ClusterView) -> Optional[TopologyChangeEvent]:
        """Install view if it is newer than the current one. Returns what
        changed, or None when the view was not newer (stale or repeated)."""
        if view.epoch <= self.view.epoch and self.view is not EMPTY_VIEW:
            return None
        event = diff_views(self.view, view)
        self.view = view
        addr_of = {n.id: n.addr for n in view.nodes if n.addr}
        leaders: Dict[int, str] = {}
        for s in view.shards:
            lid = s.leader_id
            if lid is not None and lid in addr_of:
                leaders[s.id] = addr_of[lid]
        self._leaders = {s: a for s, a in leaders.items() if not self.is_down(a)}
        # Replica addresses per shard, for reads that any replica may serve.
        usable = {n.id: n.addr for n in view.nodes if n.addr and n.role not in _DOWN_ROLES}
        self._replicas = {
            s.id: [usable[r.node_id] for r in s.replicas if r.node_id in usable] for s in view.shards
        }
        live = [n.addr for n in view.nodes if n.addr and n.role not in _DOWN_ROLES]
        seen: Set[str] = set(live)
        self._candidates = live + [s for s in self.seeds if s not in seen]
        if not self._candidates:
            self._candidates = list(self.seeds)
        return event

    def node_addrs(self) -> Set[str]:
        return {n.addr for n in self.view.nodes if n.addr}
