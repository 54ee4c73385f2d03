"""Value types of the public API: versions, options, results, the cluster view,
topology events and client statistics. All are plain dataclasses; the ones that
describe server state (Version, ClusterView and its parts) are immutable."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Tuple

__all__ = [
    "Version",
    "ConsistencyLevel",
    "PutOptions",
    "GetOptions",
    "DeleteOptions",
    "GetResult",
    "ClusterNode",
    "ShardReplica",
    "ShardInfo",
    "ClusterView",
    "TopologyChangeEvent",
    "PoolStats",
    "RouterStats",
    "TopologyStats",
    "RequestStats",
    "ClientStats",
    "RangeOptions",
    "KV",
    "BatchOp",
    "BatchOptions",
    "BatchOpResult",
    "BatchResult",
]


@dataclass(frozen=True)
class Version:
    """The (term, index) of the Raft entry that wrote a value. Compared by equality."""

    term: int
    index: int

    def __str__(self) -> str:
        return "%d.%d" % (self.term, self.index)

    @classmethod
    def parse(cls, text: str) -> "Version":
        """Parse the "<term>.<index>" form used by the current-version trailer."""
        term, sep, index = text.strip().partition(".")
        if not sep:
            raise ValueError("version must look like <term>.<index>, got %r" % text)
        return cls(int(term), int(index))


class ConsistencyLevel(str, enum.Enum):
    """Read consistency of a Get (CONTRACT.md, Semantics/Consistency)."""

    LEASE = "lease"
    """Default: lease read on the shard's leader."""
    LINEARIZABLE = "linearizable"
    """ReadIndex on the leader: always up to date."""
    STALE_OK = "stale_ok"
    """Any replica may answer; may be stale."""


@dataclass
class PutOptions:
    ttl_ms: Optional[int] = None
    """Time to live in milliseconds (None or 0: no expiry)."""
    idempotency_key: Optional[str] = None
    """A retry with the same key and parameters returns the first result."""
    if_match_version: Optional[Version] = None
    """CAS: apply only when the key exists with exactly this version."""
    if_not_exists: bool = False
    """Apply only when no live value exists (AlreadyExistsError otherwise)."""


@dataclass
class GetOptions:
    consistency: ConsistencyLevel = ConsistencyLevel.LEASE


@dataclass
class DeleteOptions:
    idempotency_key: Optional[str] = None
    if_match_version: Optional[Version] = None


@dataclass(frozen=True)
class GetResult:
    value: bytes
    version: Version
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ClusterNode:
    id: str
    addr: str
    """The node's client (gRPC) address, host:port."""
    role: str
    """Membership state: alive, suspect, dead or left."""


@dataclass(frozen=True)
class ShardReplica:
    node_id: str
    leader: bool


@dataclass(frozen=True)
class ShardInfo:
    id: int
    replicas: Tuple[ShardReplica, ...]

    @property
    def leader_id(self) -> Optional[str]:
        for r in self.replicas:
            if r.leader:
                return r.node_id
        return None


@dataclass(frozen=True)
class ClusterView:
    """The cluster as the servers last described it (Meta.WatchCluster)."""

    epoch: int
    nodes: Tuple[ClusterNode, ...]
    shards: Tuple[ShardInfo, ...]

    def node(self, node_id: str) -> Optional[ClusterNode]:
        for n in self.nodes:
            if n.id == node_id:
                return n
        return None

    def leader_of(self, shard_id: int) -> Optional[ClusterNode]:
        """The node that leads shard_id in this view, if one is flagged."""
        for s in self.shards:
            if s.id == shard_id:
                lid = s.leader_id
                return self.node(lid) if lid is not None else None
        return None


@dataclass(frozen=True)
class TopologyChangeEvent:
    """What changed between two cluster views (passed to on_topology_change callbacks)."""

    previous_epoch: int
    current_epoch: int
    added_nodes: List[str]
    """Ids of nodes in the new view that were not in the previous one."""
    removed_nodes: List[str]
    """Ids of nodes of the previous view that the new one no longer lists."""
    role_changes: Dict[str, Tuple[str, str]]
    """node id -> (old role, new role) for nodes present in both views."""
    leader_changes: Dict[int, Tuple[Optional[str], Optional[str]]]
    """shard id -> (old leader node id, new leader node id)."""
    view: ClusterView


@dataclass(frozen=True)
class PoolStats:
    active_connections: int
    """Pooled channels that are connected (READY) right now."""
    open_channels: int
    """Pooled channels, connected or not."""


@dataclass(frozen=True)
class RouterStats:
    total_nodes: int
    """Nodes known: those of the cluster view, or the configured seeds before one."""
    total_shards: int


@dataclass(frozen=True)
class TopologyStats:
    epoch: int
    cached_leaders: int
    """Shards whose leader address is known (from the view or leader hints)."""
    watching: bool
    """Whether a WatchCluster stream is open now."""


@dataclass(frozen=True)
class RequestStats:
    requests: int
    attempts: int
    retries: int
    leader_redirects: int
    failures: int


@dataclass(frozen=True)
class ClientStats:
    pool: PoolStats
    router: RouterStats
    topology: TopologyStats
    requests: RequestStats


# ------------------------------------------------------------------ vectors


class DistanceFunction(enum.IntEnum):
    """How a vector index measures distance (matches sort ascending)."""

    EUCLIDEAN = 1
    """L2 distance."""
    COSINE = 2
    """1 - cosine similarity (1 when either vector is zero)."""
    INNER_PRODUCT = 3
    """Negative inner product, -(a.b)."""


class VectorIndexType(enum.IntEnum):
    """The structure of a vector index."""

    BRUTE_FORCE = 1
    """Exact linear scan."""
    HNSW = 2
    """Hierarchical Navigable Small World graph: approximate, logarithmic."""


@dataclass
class CreateVectorIndexOptions:
    idempotency_key: Optional[str] = None
    """A retry with the same key and parameters returns the first result."""


@dataclass
class VectorDropIndexOptions:
    idempotency_key: Optional[str] = None


@dataclass
class VectorInsertOptions:
    idempotency_key: Optional[str] = None


@dataclass
class VectorDeleteOptions:
    idempotency_key: Optional[str] = None


@dataclass
class VectorSearchOptions:
    include_vectors: bool = False
    """Return each match's vector too."""
    consistency: ConsistencyLevel = ConsistencyLevel.LEASE


@dataclass
class VectorGetOptions:
    consistency: ConsistencyLevel = ConsistencyLevel.LEASE


@dataclass(frozen=True)
class VectorMatch:
    id: str
    distance: float
    vector: Optional[List[float]] = None
    """Only with VectorSearchOptions.include_vectors."""


@dataclass(frozen=True)
class VectorSearchResult:
    matches: List[VectorMatch]
    """Ascending distance, at most k."""
    search_time_us: int
    """The server's search time."""


# ------------------------------------------------------------ range and batch


@dataclass
class RangeOptions:
    """What a range scan selects (docs/range.md). Empty bounds are unbounded;
    prefix narrows start/end. limit stops after that many entries (0: all);
    page_size is entries per server response (0: the server's 1000)."""

    start: bytes = b""
    end: bytes = b""
    prefix: bytes = b""
    limit: int = 0
    page_size: int = 0
    keys_only: bool = False
    consistency: ConsistencyLevel = ConsistencyLevel.LEASE


@dataclass(frozen=True)
class KV:
    """One entry of a range scan."""

    key: bytes
    value: bytes
    version: Version
    shard: int
    expires_at_ms: int = 0  # absolute, ms since the Unix epoch; 0: none


@dataclass
class BatchOp:
    """One operation of a batch: a put (delete=False) or a delete of key."""

    key: bytes
    value: bytes = b""
    delete: bool = False
    ttl_ms: int = 0
    if_match_version: Optional[Version] = None
    if_not_exists: bool = False


@dataclass
class BatchOptions:
    idempotency_key: str = ""


@dataclass(frozen=True)
class BatchOpResult:
    """code: "OK", "FAILED_PRECONDITION" (version mismatch), "ALREADY_EXISTS"
    (if_not_exists), or "ABORTED" (fine, but another op failed)."""

    code: str
    tombstoned: bool = False
    current: Optional[Version] = None


@dataclass(frozen=True)
class BatchResult:
    """applied: every op was applied, all at version."""

    applied: bool
    version: Version
    results: Tuple[BatchOpResult, ...] = ()
