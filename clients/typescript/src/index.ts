/**
 * @norikv/client: the TypeScript/Node.js client of NoriKV.
 *
 *   import { createClient } from '@norikv/client';
 *   const client = createClient({ nodes: ['localhost:9001'] });
 *   await client.put('key', 'value');
 *   const result = await client.get('key');
 */
export { NoriKVClient, createClient, type TopologyListener } from './client.js';
export { DEFAULTS, type ClientConfig, type RetryConfig } from './config.js';
export {
  AlreadyExistsError,
  ClientClosedError,
  ConfigurationError,
  ConnectionError,
  DeadlineExceededError,
  InvalidArgumentError,
  KeyNotFoundError,
  NoriKVError,
  NotLeaderError,
  ResourceExhaustedError,
  ShardCountMismatchError,
  UnimplementedError,
  VersionMismatchError,
} from './errors.js';
export { jumpConsistentHash, loadHasher, shardForKey, xxhash64 } from './hash.js';
export {
  Version,
  type ClientStats,
  type ClusterNode,
  type ClusterView,
  type ConsistencyLevel,
  type DeleteOptions,
  type GetOptions,
  type GetResult,
  type Key,
  type PutOptions,
  type ShardInfo,
  type ShardReplica,
  type TopologyChangeEvent,
  type Value,
  type DistanceFunction,
  type VectorIndexType,
  type VectorMatch,
  type VectorSearchOptions,
  type VectorSearchResult,
  type VectorWriteOptions,
} from './types.js';
