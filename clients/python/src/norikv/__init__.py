"""NoriKV Python client (asyncio).

    from norikv import Client
    async with Client(["localhost:9001"]) as client:
        await client.put("key", "value")
        result = await client.get("key")

See NoriKVClient for the full API, norikv.testing.EphemeralServer for tests.
"""

from ._hash import get_shard_for_key, jump_consistent_hash, xxhash64
from .client import Client, NoriKVClient, TopologyCallback
from .config import ClientConfig, RetryConfig
from .errors import (
    AlreadyExistsError,
    BatchNotAppliedError,
    ClientClosedError,
    ConfigurationError,
    ConnectionError,
    DeadlineExceededError,
    InvalidArgumentError,
    KeyNotFoundError,
    NoriKVError,
    NotLeaderError,
    ResourceExhaustedError,
    VersionMismatchError,
)
from .types import (
    KV,
    BatchOp,
    BatchOpResult,
    BatchOptions,
    BatchResult,
    ClientStats,
    ClusterNode,
    ClusterView,
    ConsistencyLevel,
    DeleteOptions,
    GetOptions,
    GetResult,
    PoolStats,
    PutOptions,
    RequestStats,
    RouterStats,
    ShardInfo,
    ShardReplica,
    TopologyChangeEvent,
    TopologyStats,
    CreateVectorIndexOptions,
    DistanceFunction,
    VectorDeleteOptions,
    VectorDropIndexOptions,
    VectorGetOptions,
    VectorIndexType,
    VectorInsertOptions,
    VectorMatch,
    VectorSearchOptions,
    VectorSearchResult,
    RangeOptions,
    Version,
)

from .watch import WatchCompactedError, WatchEvent, WatchEventKind, WatchStream

__version__ = "0.1.0"

__all__ = [
    "WatchCompactedError",
    "WatchEvent",
    "WatchEventKind",
    "WatchStream",
    "Client",
    "NoriKVClient",
    "TopologyCallback",
    "ClientConfig",
    "RetryConfig",
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
    "ClientStats",
    "PoolStats",
    "RouterStats",
    "TopologyStats",
    "RequestStats",
    "NoriKVError",
    "KeyNotFoundError",
    "VersionMismatchError",
    "AlreadyExistsError",
    "ConnectionError",
    "NotLeaderError",
    "DeadlineExceededError",
    "InvalidArgumentError",
    "ResourceExhaustedError",
    "ConfigurationError",
    "ClientClosedError",
    "BatchNotAppliedError",
    "RangeOptions",
    "KV",
    "BatchOp",
    "BatchOptions",
    "BatchOpResult",
    "BatchResult",
    "xxhash64",
    "jump_consistent_hash",
    "get_shard_for_key",
    "CreateVectorIndexOptions",
    "DistanceFunction",
    "VectorDeleteOptions",
    "VectorDropIndexOptions",
    "VectorGetOptions",
    "VectorIndexType",
    "VectorInsertOptions",
    "VectorMatch",
    "VectorSearchOptions",
    "VectorSearchResult",
]
