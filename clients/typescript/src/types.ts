/** Public value types of the SDK: versions, options, results, cluster view, stats. */

/**
 * Identifies the write that produced a value: the (term, index) of its Raft
 * entry. Versions are compared by equality only (use `equals`).
 */
export class Version {
  readonly term: bigint;
  readonly index: bigint;

  constructor(term: bigint | number, index: bigint | number) {
    this.term = BigInt(term);
    this.index = BigInt(index);
  }

  /** True when both name the same write. */
  equals(other: Version | null | undefined): boolean {
    return other != null && other.term === this.term && other.index === this.index;
  }

  /** "term.index", the form of the server's current-version trailer. */
  toString(): string {
    return `${this.term}.${this.index}`;
  }

  /** Parses "term.index"; null when malformed. */
  static parse(s: string): Version | null {
    const m = /^\s*(\d+)\.(\d+)\s*$/.exec(s);
    if (m === null || m[1] === undefined || m[2] === undefined) return null;
    return new Version(BigInt(m[1]), BigInt(m[2]));
  }

  toJSON(): { term: string; index: string } {
    return { term: this.term.toString(), index: this.index.toString() };
  }
}

/**
 * How a read is served (CONTRACT.md, "Consistency"): `lease` (the default)
 * on the leader while its lease holds; `linearizable` after confirming
 * leadership with a quorum; `stale_ok` by any replica. The aliases the
 * server accepts (`strong`, `eventual`, `bounded_staleness`) pass through.
 */
export type ConsistencyLevel = 'lease' | 'linearizable' | 'stale_ok' | 'strong' | 'eventual' | 'bounded_staleness';

/** Keys: strings (routed and stored as UTF-8) or bytes. */
export type Key = string | Uint8Array;
/** Values: strings (stored as UTF-8) or bytes. */
export type Value = string | Uint8Array;

export interface PutOptions {
  /** > 0: the value expires this many milliseconds after the leader proposes the write. */
  ttlMs?: number;
  /**
   * Retries of this write (by the client or by you) with the same key return
   * the first attempt's result instead of writing again. Scoped to the key's shard.
   */
  idempotencyKey?: string;
  /** CAS: write only if the key exists at exactly this version, else VersionMismatchError. */
  ifMatch?: Version;
  /** Write only when the key has no live value, else AlreadyExistsError. */
  ifNotExists?: boolean;
  /** Overrides the client's timeout for this call (ms, all attempts included). */
  timeoutMs?: number;
}

export interface GetOptions {
  consistency?: ConsistencyLevel;
  /** Overrides the client's timeout for this call (ms, all attempts included). */
  timeoutMs?: number;
}

export interface DeleteOptions {
  idempotencyKey?: string;
  /** Delete only if the key's current version equals this, else VersionMismatchError. */
  ifMatch?: Version;
  /** Overrides the client's timeout for this call (ms, all attempts included). */
  timeoutMs?: number;
}

/** A value read by get(). */
export interface GetResult {
  /** The value's bytes (a Buffer). */
  value: Buffer;
  version: Version;
  /** What the server attached to the response, if anything. */
  metadata: Record<string, string>;
  /** The value decoded as UTF-8. */
  text(): string;
}

/** One member of the cluster. */
export interface ClusterNode {
  id: string;
  /** The node's client (gRPC) address, host:port. */
  addr: string;
  /** Membership state: alive, suspect, dead or left. */
  role: string;
}

export interface ShardReplica {
  nodeId: string;
  leader: boolean;
}

export interface ShardInfo {
  id: number;
  replicas: ShardReplica[];
}

/** The cluster's layout as the client last learned it. */
export interface ClusterView {
  epoch: bigint;
  nodes: ClusterNode[];
  shards: ShardInfo[];
}

/**
 * Sent to topology listeners after the view changed. Epochs are those of
 * the node that served the view: after the client moves to another node, or
 * its node restarts, currentEpoch may be lower than previousEpoch. An event
 * is sent only when the view's content changed.
 */
export interface TopologyChangeEvent {
  /** 0n for the first view the client learns. */
  previousEpoch: bigint;
  currentEpoch: bigint;
  /** Node ids that became present (alive or suspect). */
  addedNodes: string[];
  /** Node ids that became dead or left, or disappeared. */
  removedNodes: string[];
  /** Shard id -> new leader's node id ("" when none is known now). */
  leaderChanges: Map<number, string>;
  /** A copy of the new view. */
  view: ClusterView;
}

export interface ClientStats {
  pool: {
    /** Pooled connections that are usable (ready, connecting or idle). */
    activeConnections: number;
    totalConnections: number;
  };
  router: {
    /** Nodes in the cluster view (the configured seeds before one is known). */
    totalNodes: number;
    totalShards: number;
    /** NOT_LEADER answers followed to a hinted leader. */
    redirects: number;
    /** Views fetched to find a shard's leader. */
    discoveries: number;
  };
  topology: {
    epoch: bigint;
    /** Shards whose leader is known. */
    cachedLeaders: number;
    /** True while the WatchCluster stream is open. */
    watching: boolean;
  };
  requests: {
    /** Calls started (put, get, delete). */
    total: number;
    /** Attempts sent, first ones included. */
    attempts: number;
    /** Attempts after the first (backoff retries and redirects). */
    retries: number;
    /** Calls that failed. */
    failures: number;
    /** Attempts on the wire now. */
    inFlight: number;
    /** Calls waiting for an in-flight slot now. */
    queued: number;
  };
}

/** Vector distance: L2, 1 - cosine similarity, or -(a.b). */
export type DistanceFunction = 'euclidean' | 'cosine' | 'inner_product';
export type VectorIndexType = 'brute_force' | 'hnsw';

export interface VectorWriteOptions {
  idempotencyKey?: string;
  timeoutMs?: number;
}

export interface VectorSearchOptions {
  includeVectors?: boolean;
  consistency?: ConsistencyLevel;
  timeoutMs?: number;
}

export interface VectorMatch {
  id: string;
  distance: number;
  /** Empty unless includeVectors was set. */
  vector: number[];
}

export interface VectorSearchResult {
  matches: VectorMatch[];
  /** Server-side search time in microseconds. */
  searchTimeUs: number;
}
