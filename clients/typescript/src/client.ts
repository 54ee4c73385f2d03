/**
 * NoriKVClient: routes each request to the leader of its key's shard
 * (shard = jump(xxhash64(key), totalShards)) as the cluster view says,
 * follows NOT_LEADER + leader-hint at once, retries transient failures with
 * exponential backoff and jitter where CONTRACT.md allows (retry.ts), and
 * bounds the attempts on the wire; a ClusterWatcher (watcher.ts) follows
 * the cluster's layout. One client is meant to be shared by the
 * whole process: it owns one gRPC channel per node.
 *
 * `createClient(config)` returns at once and starts connecting; the first
 * call waits for the connection. `await client.connect()` connects
 * explicitly and surfaces its errors (no node answered: ConnectionError;
 * config.totalShards differs from the cluster's: ShardCountMismatchError).
 */
import * as grpc from '@grpc/grpc-js';
import { normalizeConfig, type ClientConfig, type NormalizedConfig } from './config.js';
import {
  ClientClosedError,
  ConnectionError,
  DeadlineExceededError,
  InvalidArgumentError,
  NoriKVError,
  ResourceExhaustedError,
  errorFromStatus,
  isRpcFailure,
  type RpcFailure,
} from './errors.js';
import type * as wire from './gen/norikv.js';
import { keyBytes, loadHasher, shardForKey } from './hash.js';
import { NodeConn, Pool } from './pool.js';
import { Router } from './topology.js';
import { ClusterWatcher, type TopologyListener } from './watcher.js';
import type {
  ClientStats,
  DistanceFunction,
  VectorIndexType,
  VectorSearchOptions,
  VectorSearchResult,
  VectorWriteOptions,
  ClusterView,
  ConsistencyLevel,
  DeleteOptions,
  GetOptions,
  GetResult,
  Key,
  PutOptions,
  Value,
} from './types.js';
import { Version } from './types.js';
import { classify, backoffMs, mayRetry, nodeDown } from './retry.js';
import { codecOf, fromBigInt, methods, toBigInt, type Method } from './wire.js';

/** How many NOT_LEADER hints one call follows, so two nodes naming each other cannot bounce it forever. */
const MAX_REDIRECTS = 8;
/** Bound on calls waiting for an in-flight slot; beyond it calls fail with ResourceExhaustedError. */
const MAX_QUEUED = 100_000;


const DISTANCES: Record<DistanceFunction, number> = { euclidean: 1, cosine: 2, inner_product: 3 };
const INDEX_TYPES: Record<VectorIndexType, number> = { brute_force: 1, hnsw: 2 };

const ANY_REPLICA: ReadonlySet<string> = new Set(['stale_ok', 'eventual', 'bounded_staleness']);
const NO_META: Record<string, string> = Object.freeze({}) as Record<string, string>;

function valueBytes(v: Value): Uint8Array {
  if (typeof v === 'string') return Buffer.from(v, 'utf8');
  if (v instanceof Uint8Array) return v;
  throw new TypeError(`norikv: value must be a string or Uint8Array, not ${typeof v}`);
}

function checkKey(k: Key): Uint8Array {
  if (typeof k !== 'string' && !(k instanceof Uint8Array)) {
    throw new TypeError(`norikv: key must be a string or Uint8Array, not ${typeof k}`);
  }
  return keyBytes(k);
}

/** Accepts a Version or any { term, index } of bigints or integers. */
function versionToWire(v: Version): wire.Version {
  return { term: fromBigInt(BigInt(v.term)), index: fromBigInt(BigInt(v.index)) };
}

function versionFromWire(v: wire.Version | null | undefined): Version {
  return new Version(toBigInt(v?.term), toBigInt(v?.index));
}


class GetResultImpl implements GetResult {
  constructor(
    readonly value: Buffer,
    readonly version: Version,
    readonly metadata: Record<string, string>,
  ) {}
  text(): string {
    return this.value.toString('utf8');
  }
}

/** A counting semaphore with a FIFO wait queue bounded in length. */
class Slots {
  inUse = 0;
  private waiters: Array<() => void> = [];
  constructor(private readonly limit: number) {}

  get queued(): number {
    return this.waiters.length;
  }

  /** Resolves once a slot is held; rejects when the deadline passes first. */
  acquire(deadline: number): Promise<void> | null {
    if (this.inUse < this.limit) {
      this.inUse++;
      return null;
    }
    if (this.waiters.length >= MAX_QUEUED) {
      return Promise.reject(
        new ResourceExhaustedError(`norikv: ${MAX_QUEUED} calls already wait for one of ${this.limit} in-flight slots`, {
          code: 'RESOURCE_EXHAUSTED',
        }),
      );
    }
    return new Promise<void>((resolve, reject) => {
      const grant = (): void => {
        clearTimeout(timer);
        resolve();
      };
      const timer = setTimeout(() => {
        const i = this.waiters.indexOf(grant);
        if (i >= 0) this.waiters.splice(i, 1);
        reject(new DeadlineExceededError('norikv: deadline exceeded waiting for an in-flight slot', { code: 'DEADLINE_EXCEEDED' }));
      }, Math.max(0, deadline - Date.now()));
      this.waiters.push(grant);
    });
  }

  release(): void {
    const next = this.waiters.shift();
    if (next !== undefined) next(); // the slot passes straight to the next waiter
    else this.inUse--;
  }
}

export type { TopologyListener };

export class NoriKVClient {
  readonly config: NormalizedConfig;
  private readonly pool = new Pool();
  private readonly router: Router;
  private readonly slots: Slots;
  private closed = false;
  private connecting: Promise<void> | null = null;
  private connected = false;
  private readyResolve: ((err: Error | null) => void) | null = null;
  private readonly ready: Promise<Error | null>;
  /** Why connect() failed; later calls fail with it too. */
  private connectError: Error | null = null;
  private readonly watcher: ClusterWatcher;

  /** Wakes the calls sleeping between attempts (close() uses it). */
  private sleepers = new Set<() => void>();

  private nRequests = 0;
  private nAttempts = 0;
  private nRetries = 0;
  private nFailures = 0;

  constructor(config: ClientConfig) {
    this.config = normalizeConfig(config);
    this.router = new Router(this.config.totalShards, this.pool, this.config.nodes, () => this.watcher.fetchView());
    this.watcher = new ClusterWatcher(this.config, this.pool, this.router, (err) => this.markReady(err));
    this.slots = new Slots(this.config.maxInFlight);
    this.ready = new Promise<Error | null>((resolve) => {
      this.readyResolve = resolve;
    });
  }

  // ------------------------------------------------------------------ life

  /** True once connect() succeeded and until close(). */
  get isConnected(): boolean {
    return this.connected && !this.closed;
  }

  /**
   * Learns the cluster view from one of config.nodes and checks the shard
   * count. Idempotent: every caller shares the one attempt. Rejects with
   * ConnectionError when no node sent a view within connectTimeoutMs and
   * with ShardCountMismatchError when config.totalShards differs from the
   * cluster's; the client is then closed.
   */
  connect(): Promise<void> {
    if (this.connecting === null) this.connecting = this.doConnect();
    return this.connecting;
  }

  private async doConnect(): Promise<void> {
    if (this.closed) throw new ClientClosedError();
    await loadHasher();
    this.watcher.start();
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), this.config.connectTimeoutMs);
    });
    const r = await Promise.race([this.ready, timeout]);
    clearTimeout(timer);
    if (r === null) {
      this.connected = true;
      // Listeners registered before connect() hear of the first view by
      // the time it resolves.
      this.watcher.flushEvents();
      return;
    }
    if (r === 'timeout') {
      const last = this.watcher.lastWatchError ? ` (last error: ${this.watcher.lastWatchError})` : '';
      this.connectError = new ConnectionError(
        `norikv: no node of ${this.config.nodes.join(', ')} sent the cluster view within ${this.config.connectTimeoutMs} ms${last}`,
        { code: 'UNAVAILABLE' },
      );
    } else {
      this.connectError = r;
    }
    await this.close();
    throw this.connectError;
  }

  private markReady(err: Error | null): void {
    const r = this.readyResolve;
    if (r !== null) {
      this.readyResolve = null;
      r(err);
    }
  }

  /**
   * Stops following the cluster and closes every connection. Calls in
   * progress fail; later calls reject with ClientClosedError. Idempotent.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.connected = false;
    this.markReady(new ClientClosedError('norikv: the client was closed while connecting'));
    for (const wake of this.sleepers) wake();
    this.pool.close();
    await this.watcher.stop();
  }

  // ------------------------------------------------------------- requests

  /** Writes value under key; resolves to the new value's version. */
  async put(key: Key, value: Value, options: PutOptions = {}): Promise<Version> {
    options = options ?? {}; // JavaScript callers may pass null, as Go's nil options
    const req: wire.PutRequest = { key: checkKey(key), value: valueBytes(value) };
    if (options.ttlMs !== undefined) {
      if (!Number.isInteger(options.ttlMs) || options.ttlMs < 0) {
        throw new InvalidArgumentError(`norikv: ttlMs must be a non-negative integer, got ${options.ttlMs}`, {
          code: 'INVALID_ARGUMENT',
        });
      }
      req.ttl_ms = options.ttlMs;
    }
    if (options.idempotencyKey) req.idempotency_key = options.idempotencyKey;
    if (options.ifMatch != null) req.if_match = versionToWire(options.ifMatch);
    if (options.ifNotExists) req.if_not_exists = true;
    const safe = !!options.idempotencyKey || (options.ifMatch == null && !options.ifNotExists);
    const resp = await this.invoke<wire.PutRequest, wire.PutResponse>('put', methods.Kv.Put, req, req.key!, safe, false, options.timeoutMs);
    return versionFromWire(resp.version);
  }

  /** Reads key; rejects with KeyNotFoundError when it is missing or expired. */
  async get(key: Key, options: GetOptions = {}): Promise<GetResult> {
    options = options ?? {}; // JavaScript callers may pass null, as Go's nil options
    const req: wire.GetRequest = { key: checkKey(key) };
    const c: ConsistencyLevel | undefined = options.consistency;
    if (c !== undefined) req.consistency = c;
    const resp = await this.invoke<wire.GetRequest, wire.GetResponse>(
      'get',
      methods.Kv.Get,
      req,
      req.key!,
      true,
      c !== undefined && ANY_REPLICA.has(c),
      options.timeoutMs,
    );
    const v = resp.value ?? new Uint8Array(0);
    const buf = Buffer.isBuffer(v) ? v : Buffer.from(v.buffer, v.byteOffset, v.byteLength);
    const meta = resp.meta && Object.keys(resp.meta).length > 0 ? { ...resp.meta } : NO_META;
    return new GetResultImpl(buf, versionFromWire(resp.version), meta);
  }

  /** Removes key; resolves to true when a live value was removed, false when it was absent. */
  async delete(key: Key, options: DeleteOptions = {}): Promise<boolean> {
    options = options ?? {}; // JavaScript callers may pass null, as Go's nil options
    const req: wire.DeleteRequest = { key: checkKey(key) };
    if (options.idempotencyKey) req.idempotency_key = options.idempotencyKey;
    if (options.ifMatch != null) req.if_match = versionToWire(options.ifMatch);
    const safe = !!options.idempotencyKey || options.ifMatch == null;
    const resp = await this.invoke<wire.DeleteRequest, wire.DeleteResponse>('delete', methods.Kv.Delete, req, req.key!, safe, false, options.timeoutMs);
    return resp.tombstoned ?? false;
  }

  // --------------------------------------------------------------- vectors
  //
  // Calls are routed to the leader of the namespace's shard (the same
  // jump(xxhash64) as keys); writes retry like an unconditional put. A server
  // without vector search answers UNIMPLEMENTED: UnimplementedError, never
  // retried.

  /** Creates a vector index; false when one with the same parameters exists. */
  async vectorCreateIndex(
    namespace: string,
    dimensions: number,
    distance: DistanceFunction,
    indexType: VectorIndexType,
    options: VectorWriteOptions = {},
  ): Promise<boolean> {
    const req: wire.CreateVectorIndexRequest = {
      namespace,
      dimensions,
      distance: DISTANCES[distance],
      index_type: INDEX_TYPES[indexType],
    };
    if (options.idempotencyKey) req.idempotency_key = options.idempotencyKey;
    const resp = await this.invokeVector<wire.CreateVectorIndexRequest, wire.CreateVectorIndexResponse>('vectorCreateIndex', methods.Vector.CreateIndex, req, namespace, options.timeoutMs);
    return resp.created ?? false;
  }

  /** Drops a vector index; false when there was none. */
  async vectorDropIndex(namespace: string, options: VectorWriteOptions = {}): Promise<boolean> {
    const req: wire.DropVectorIndexRequest = { namespace };
    if (options.idempotencyKey) req.idempotency_key = options.idempotencyKey;
    const resp = await this.invokeVector<wire.DropVectorIndexRequest, wire.DropVectorIndexResponse>('vectorDropIndex', methods.Vector.DropIndex, req, namespace, options.timeoutMs);
    return resp.dropped ?? false;
  }

  /** Inserts (or replaces) the vector with this id; resolves to the write's version. */
  async vectorInsert(namespace: string, id: string, vector: ArrayLike<number>, options: VectorWriteOptions = {}): Promise<Version> {
    const req: wire.VectorInsertRequest = { namespace, id, vector: Array.from(vector) };
    if (options.idempotencyKey) req.idempotency_key = options.idempotencyKey;
    const resp = await this.invokeVector<wire.VectorInsertRequest, wire.VectorInsertResponse>('vectorInsert', methods.Vector.Insert, req, namespace, options.timeoutMs);
    return versionFromWire(resp.version);
  }

  /** Deletes the vector with this id; false when there was none. */
  async vectorDelete(namespace: string, id: string, options: VectorWriteOptions = {}): Promise<boolean> {
    const req: wire.VectorDeleteRequest = { namespace, id };
    if (options.idempotencyKey) req.idempotency_key = options.idempotencyKey;
    const resp = await this.invokeVector<wire.VectorDeleteRequest, wire.VectorDeleteResponse>('vectorDelete', methods.Vector.Delete, req, namespace, options.timeoutMs);
    return resp.deleted ?? false;
  }

  /** The k nearest vectors to query, by ascending distance. */
  async vectorSearch(namespace: string, query: ArrayLike<number>, k: number, options: VectorSearchOptions = {}): Promise<VectorSearchResult> {
    const req: wire.VectorSearchRequest = { namespace, query: Array.from(query), k };
    if (options.includeVectors) req.include_vectors = true;
    if (options.consistency !== undefined) req.consistency = options.consistency;
    const resp = await this.invokeVector<wire.VectorSearchRequest, wire.VectorSearchResponse>('vectorSearch', methods.Vector.Search, req, namespace, options.timeoutMs);
    return {
      matches: (resp.matches ?? []).map((m) => ({ id: m.id ?? '', distance: m.distance ?? 0, vector: m.vector ?? [] })),
      searchTimeUs: Number(toBigInt(resp.search_time_us)),
    };
  }

  /** The vector with this id, or null when there is none. */
  async vectorGet(namespace: string, id: string, options: { consistency?: ConsistencyLevel; timeoutMs?: number } = {}): Promise<number[] | null> {
    const req: wire.VectorGetRequest = { namespace, id };
    if (options.consistency !== undefined) req.consistency = options.consistency;
    const resp = await this.invokeVector<wire.VectorGetRequest, wire.VectorGetResponse>('vectorGet', methods.Vector.Get, req, namespace, options.timeoutMs);
    return resp.found ? (resp.vector ?? []) : null;
  }

  private invokeVector<Req, Resp>(op: string, m: Method, req: Req, namespace: string, timeoutMs: number | undefined): Promise<Resp> {
    // Every vector write is safe to repeat: create and drop are idempotent
    // by parameters, insert replaces, delete of a deleted id is a no-op.
    return this.invoke<Req, Resp>(op, m, req, keyBytes(namespace), true, false, timeoutMs);
  }

  /** The shard a key routes to. */
  shardForKey(key: Key): number {
    return shardForKey(checkKey(key), this.config.totalShards);
  }

  private unary<Req, Resp>(nc: NodeConn, m: Method, req: Req, deadline: number): Promise<Resp> {
    const reqCodec = codecOf<Req>(m.request);
    const respCodec = codecOf<Resp>(m.response);
    return new Promise<Resp>((resolve, reject) => {
      if (nc.closed) {
        // The view dropped this node after the request picked it: nothing was sent.
        reject({ code: grpc.status.UNAVAILABLE, details: 'channel closed before the call was sent', metadata: undefined });
        return;
      }
      nc.client.makeUnaryRequest<Req, Resp>(
        m.path,
        reqCodec.serialize,
        respCodec.deserialize,
        req,
        new grpc.Metadata(),
        { deadline },
        (err, resp) => {
          if (err) reject(err);
          else resolve(resp as Resp);
        },
      );
    });
  }

  private async invoke<Req, Resp>(
    op: string,
    m: Method,
    req: Req,
    key: Uint8Array,
    writeSafe: boolean,
    anyReplica: boolean,
    timeoutMs: number | undefined,
  ): Promise<Resp> {
    if (this.closed) throw this.connectError ?? new ClientClosedError();
    const deadline = Date.now() + (timeoutMs ?? this.config.timeoutMs);
    if (!this.connected) await this.connect();
    this.nRequests++;
    try {
      return await this.attemptUntilDone<Req, Resp>(op, m, req, key, writeSafe, anyReplica, deadline);
    } catch (e) {
      this.nFailures++;
      throw e;
    }
  }

  /**
   * Sends one request to its shard's leader, following NOT_LEADER hints at
   * once and retrying transient failures with backoff as far as the retry
   * policy, the request's retry safety and its deadline allow. With
   * anyReplica the first attempt goes to one of the shard's replicas.
   */
  private async attemptUntilDone<Req, Resp>(
    op: string,
    m: Method,
    req: Req,
    key: Uint8Array,
    writeSafe: boolean,
    anyReplica: boolean,
    deadline: number,
  ): Promise<Resp> {
    const router = this.router;
    const shard = shardForKey(key, this.config.totalShards);
    const retry = this.config.retry;
    let last: NoriKVError | null = null;
    let avoid = '';
    let redirects = 0;
    let attempts = 0;
    for (;;) {
      if (this.closed) throw new ClientClosedError('norikv: the client was closed during the call');
      if (Date.now() >= deadline) throw this.deadlineError(op, last, attempts);
      let nc: NodeConn | null = null;
      if (anyReplica && attempts === 0 && redirects === 0) nc = router.replica(shard);
      if (nc === null) nc = router.leaders[shard] ?? null;
      if (nc === null || nc.addr === avoid) {
        // A leader look-up may wait on unresponsive nodes: bound it by the call's deadline.
        const found = await this.beforeDeadline(router.target(shard, avoid), deadline);
        if (found === null) throw this.deadlineError(op, last, attempts);
        nc = found;
      }
      if (this.closed) throw new ClientClosedError('norikv: the client was closed during the call');
      const wait = this.slots.acquire(deadline);
      if (wait !== null) {
        try {
          await wait;
        } catch (e) {
          throw e instanceof DeadlineExceededError ? this.deadlineError(op, last, attempts) : e;
        }
      }
      attempts++;
      this.nAttempts++;
      if (attempts > 1 || redirects > 0) this.nRetries++;
      let failure: RpcFailure;
      try {
        return await this.unary<Req, Resp>(nc, m, req, deadline);
      } catch (e) {
        if (!isRpcFailure(e)) throw e;
        failure = e;
      } finally {
        this.slots.release();
      }
      const { code, details, metadata } = failure;
      const err = errorFromStatus(code, details, metadata, op, { node: nc.addr, attempts });
      last = err;
      if (this.closed) throw new ClientClosedError('norikv: the client was closed during the call');
      const f = classify(code, details);
      if (f === 'notLeader') {
        const hint = err.leaderHint;
        if (hint !== undefined && hint !== '' && hint !== nc.addr && redirects < MAX_REDIRECTS) {
          redirects++;
          router.setLeader(shard, hint);
          attempts--; // following a hint is routing, not a retry
          continue;
        }
        router.forget(shard, nc);
      }
      // The call's own deadline (not a server's COMMIT_TIMEOUT) ran out.
      if (code === grpc.status.DEADLINE_EXCEEDED && deadline - Date.now() < 20) throw this.deadlineError(op, last, attempts);
      if (!mayRetry(f, writeSafe) || attempts >= retry.maxAttempts) throw err;
      avoid = '';
      if (nodeDown(code, details, f)) {
        router.nodeFailed(nc);
        avoid = nc.addr;
      }
      const delay = Math.min(backoffMs(retry, attempts), Math.max(0, deadline - Date.now()));
      await this.sleep(delay);
    }
  }

  /** p's value, or null when the deadline passes first. */
  private beforeDeadline<T>(p: Promise<T>, deadline: number): Promise<T | null> {
    let timer: NodeJS.Timeout | undefined;
    const expiry = new Promise<null>((resolve) => {
      timer = setTimeout(() => resolve(null), Math.max(0, deadline - Date.now()));
    });
    return Promise.race([p, expiry]).finally(() => clearTimeout(timer));
  }

  /** Waits ms between attempts; close() cuts the wait short. */
  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const wake = (): void => {
        clearTimeout(timer);
        this.sleepers.delete(wake);
        resolve();
      };
      const timer = setTimeout(wake, ms);
      this.sleepers.add(wake);
    });
  }

  private deadlineError(op: string, last: NoriKVError | null, attempts: number): DeadlineExceededError {
    let msg = `norikv: ${op}: deadline exceeded after ${attempts} attempt${attempts === 1 ? '' : 's'}`;
    if (last !== null) msg += ` (last answer: ${last.message})`;
    const e = new DeadlineExceededError(msg, { code: 'DEADLINE_EXCEEDED', attempts, cause: last ?? undefined });
    if (last !== null) {
      e.node = last.node;
      e.leaderHint = last.leaderHint;
    }
    return e;
  }

  // ------------------------------------------------------------- topology

  /** A copy of the view the client routes by, or null before one is known. */
  getClusterView(): ClusterView | null {
    return this.watcher.getClusterView();
  }

  /**
   * Calls listener after each change of the cluster view, in order, on a
   * later turn of the event loop (it may call the client); listeners
   * registered before connect() hear of the first view by the time it
   * resolves. Returns a function that unregisters the listener.
   */
  onTopologyChange(listener: TopologyListener): () => void {
    return this.watcher.onTopologyChange(listener);
  }

  /** A snapshot of the client's pool, router, topology and request counters. */
  getStats(): ClientStats {
    return {
      pool: this.pool.stats(),
      router: {
        totalNodes: this.router.index?.view.nodes.length ?? this.config.nodes.length,
        totalShards: this.config.totalShards,
        redirects: this.router.redirects,
        discoveries: this.router.discoveries,
      },
      topology: {
        epoch: this.watcher.view?.epoch ?? 0n,
        cachedLeaders: this.router.cachedLeaders(),
        watching: this.watcher.watching,
      },
      requests: {
        total: this.nRequests,
        attempts: this.nAttempts,
        retries: this.nRetries,
        failures: this.nFailures,
        inFlight: this.slots.inUse,
        queued: this.slots.queued,
      },
    };
  }

}

/**
 * Creates a client and starts connecting in the background; calls wait for
 * the connection. `await client.connect()` to surface connection errors
 * early (the first call surfaces them too).
 */
export function createClient(config: ClientConfig): NoriKVClient {
  const c = new NoriKVClient(config);
  // Errors reach whoever awaits connect() or a call; none goes unhandled here.
  c.connect().catch(() => undefined);
  return c;
}
