"""Cluster view handling and routing state.

Router holds what the client knows about the cluster: the last ClusterView,
the shard -> leader address map (from the view, refined by NOT_LEADER leader
hints) and the seed addresses. It is used from one event loop only (all its
methods are synchronous, so concurrent tasks never see it half-updated).
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Set, Tuple

from ._hash import jump_consistent_hash, xxhash64
from .types import ClusterNode, ClusterView, ShardInfo, ShardReplica, TopologyChangeEvent

__all__ = ["Router", "view_from_proto", "diff_views", "EMPTY_VIEW"]

EMPTY_VIEW = ClusterView(epoch=0, nodes=(), shards=())

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

    # -- keys and shards ------------------------------------------------------
    def shard_for(self, key: bytes) -> int:
        return jump_consistent_hash(xxhash64(key), self.total_shards)

    # -- addresses ------------------------------------------------------------
    def leader_addr(self, shard: int) -> Optional[str]:
        return self._leaders.get(shard)

    def candidates(self) -> List[str]:
        """Addresses worth trying when a shard's leader is unknown: the view's
        live nodes first, then the seeds not among them."""
        return list(self._candidates)

    def next_candidate(self, avoid: Optional[str] = None) -> str:
        c = self._candidates
        for _ in range(len(c)):
            addr = c[self._rr % len(c)]
            self._rr += 1
            if addr != avoid or len(c) == 1:
                return addr
        return c[0]

    def route(self, shard: int) -> str:
        addr = self._leaders.get(shard)
        return addr if addr is not None else self.next_candidate()

    def learn_leader(self, shard: int, addr: str) -> None:
        """A NOT_LEADER answer named addr as shard's leader."""
        self._leaders[shard] = addr

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
        self._leaders = leaders
        live = [n.addr for n in view.nodes if n.addr and n.role not in _DOWN_ROLES]
        seen: Set[str] = set(live)
        self._candidates = live + [s for s in self.seeds if s not in seen]
        if not self._candidates:
            self._candidates = list(self.seeds)
        return event

    def node_addrs(self) -> Set[str]:
        return {n.addr for n in self.view.nodes if n.addr}
