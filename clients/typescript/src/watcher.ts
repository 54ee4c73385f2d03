/**
 * ClusterWatcher follows the cluster's layout for a client: one
 * Meta.WatchCluster stream kept open to one node at a time (moving to the
 * next known node with backoff when it breaks), view fetches for leader
 * discovery, installation of each new view into the router, and the
 * topology events for listeners. Single-threaded like the rest of the
 * client: everything runs on the event loop.
 */
import * as grpc from '@grpc/grpc-js';
import type { NormalizedConfig } from './config.js';
import { ClientClosedError, ConnectionError, ShardCountMismatchError, isRpcFailure, type RpcFailure } from './errors.js';
import type * as wire from './gen/norikv.js';
import type { NodeConn, Pool } from './pool.js';
import { Router, ViewIndex, cloneView, diffViews, viewFromWire, viewsEqual } from './topology.js';
import type { ClusterView, TopologyChangeEvent } from './types.js';
import { codecOf, methods } from './wire.js';

const WATCH_BACKOFF_BASE_MS = 100;
const WATCH_BACKOFF_MAX_MS = 5000;
/** Bound on one node's answer to a view fetch (leader discovery). */
const DISCOVERY_PER_NODE_MS = 2000;
/** Bound on topology events waiting for listeners; beyond it the newest absorbs the next. */
const MAX_PENDING_EVENTS = 256;

export type TopologyListener = (event: TopologyChangeEvent) => void;

export class ClusterWatcher {
  /** The view the client routes by (null before the first). */
  view: ClusterView | null = null;
  /** True while a WatchCluster stream is open. */
  watching = false;
  /** The last stream failure, for connect's error message. */
  lastWatchError = '';

  private closed = false;
  private viewSrc = '';
  private viewSeq = 0;
  private srcEpoch = new Map<string, bigint>();
  private watchCall: grpc.ClientReadableStream<wire.ClusterView> | null = null;
  private watchWake: (() => void) | null = null;
  private loopDone: Promise<void> | null = null;
  private listeners = new Map<number, TopologyListener>();
  private nextListener = 0;
  private pending: Array<{ prev: ClusterView | null; cur: ClusterView }> = [];
  private dispatchScheduled = false;

  constructor(
    private readonly config: NormalizedConfig,
    private readonly pool: Pool,
    private readonly router: Router,
    /** Told once: null when the first view is in, or why the client cannot work. */
    private readonly onReady: (err: Error | null) => void,
  ) {}

  /** Starts following the cluster. */
  start(): void {
    if (this.loopDone === null) this.loopDone = this.watchLoop();
  }

  /** Stops following: closes the stream, drops listeners and pending events. */
  async stop(): Promise<void> {
    this.closed = true;
    this.watchCall?.cancel();
    this.watchWake?.();
    this.listeners.clear();
    this.pending = [];
    if (this.loopDone !== null) await this.loopDone;
  }

  /** Delivers the pending events now (connect() does, so listeners hear of the first view before it resolves). */
  flushEvents(): void {
    if (this.pending.length > 0) this.dispatch();
  }

  /** A copy of the view the client routes by, or null before one is known. */
  getClusterView(): ClusterView | null {
    return this.view === null ? null : cloneView(this.view);
  }

  /**
   * Calls listener after each change of the cluster view, in order, on a
   * later turn of the event loop (it may call the client). Returns a
   * function that unregisters it.
   */
  onTopologyChange(listener: TopologyListener): () => void {
    const id = this.nextListener++;
    this.listeners.set(id, listener);
    return () => {
      this.listeners.delete(id);
    };
  }


  /**
   * Follows the view through one WatchCluster stream at a time; when it
   * breaks, moves to the next known node, trying each once before backing
   * off (100 ms doubling to 5 s, with jitter).
   */
  private async watchLoop(): Promise<void> {
    let failures = 0;
    while (!this.closed) {
      const addrs = this.router.viewAddrs();
      const addr = addrs[failures % addrs.length]!;
      const { got, err } = await this.watchOnce(addr);
      this.watching = false;
      if (this.closed) return;
      if (err !== null) {
        this.lastWatchError = `WatchCluster on ${addr}: ${err.details}`;
        if (err.code === grpc.status.UNIMPLEMENTED) {
          // A server without Meta: route by the seeds and NOT_LEADER hints alone.
          this.onReady(null);
        }
      }
      if (got) failures = 0;
      failures++;
      const round = Math.floor(failures / addrs.length);
      if (failures % addrs.length === 0 && round > 0) {
        let delay = Math.min(WATCH_BACKOFF_BASE_MS * 2 ** Math.min(round - 1, 6), WATCH_BACKOFF_MAX_MS);
        delay += Math.random() * (delay / 2);
        await new Promise<void>((resolve) => {
          const t = setTimeout(() => {
            this.watchWake = null;
            resolve();
          }, delay);
          this.watchWake = () => {
            clearTimeout(t);
            this.watchWake = null;
            resolve();
          };
        });
      }
    }
  }

  private openWatch(nc: NodeConn, deadline?: number): grpc.ClientReadableStream<wire.ClusterView> {
    const m = methods.Meta.WatchCluster;
    const opts: grpc.CallOptions = deadline === undefined ? {} : { deadline };
    // Epoch 0: the node answers at once with its current view. Epochs are
    // counted by each node (and restart with it), so the client's own
    // epoch says nothing to a node it has not been watching.
    return nc.client.makeServerStreamRequest<wire.ClusterView, wire.ClusterView>(
      m.path,
      codecOf<wire.ClusterView>(m.request).serialize,
      codecOf<wire.ClusterView>(m.response).deserialize,
      {},
      new grpc.Metadata(),
      opts,
    );
  }

  private watchOnce(addr: string): Promise<{ got: boolean; err: RpcFailure | null }> {
    return new Promise((resolve) => {
      let nc: NodeConn;
      try {
        nc = this.pool.get(addr);
      } catch {
        resolve({ got: false, err: null });
        return;
      }
      const asked = this.viewSeq;
      const call = this.openWatch(nc);
      this.watchCall = call;
      let got = false;
      let done = false;
      const finish = (err: RpcFailure | null): void => {
        if (done) return;
        done = true;
        if (this.watchCall === call) this.watchCall = null;
        resolve({ got, err });
      };
      call.on('data', (msg: wire.ClusterView) => {
        this.watching = true;
        const fresh = !got;
        got = true;
        const err = this.applyView(msg, addr, fresh, asked);
        if (err !== null) {
          call.cancel();
          finish(null);
        }
      });
      call.on('error', (e: unknown) => finish(isRpcFailure(e) ? e : { code: grpc.status.UNKNOWN, details: String(e), metadata: undefined }));
      call.on('end', () => finish({ code: grpc.status.UNAVAILABLE, details: 'stream ended', metadata: undefined }));
    });
  }

  /** Asks the known nodes in turn for the current view and applies it (leader discovery). */
  async fetchView(): Promise<void> {
    const addrs = this.router.viewAddrs();
    let last = 'no node address known';
    for (const addr of addrs) {
      if (this.closed) throw new ClientClosedError();
      const nc = this.pool.get(addr);
      const asked = this.viewSeq;
      try {
        const v = await new Promise<wire.ClusterView>((resolve, reject) => {
          const call = this.openWatch(nc, Date.now() + DISCOVERY_PER_NODE_MS);
          call.once('data', (msg: wire.ClusterView) => {
            resolve(msg);
            call.cancel();
          });
          call.on('error', reject);
          call.on('end', () => reject(new Error('stream ended without a view')));
        });
        const err = this.applyView(v, addr, true, asked);
        if (err !== null) throw err;
        return;
      } catch (e) {
        if (e instanceof ShardCountMismatchError) throw e;
        last = `WatchCluster on ${addr}: ${isRpcFailure(e) ? e.details : String(e)}`;
      }
    }
    throw new ConnectionError(`norikv: no node sent the cluster view (${last})`, { code: 'UNAVAILABLE' });
  }

  /**
   * Installs a view from node src and queues the topology event.
   *
   * Epochs are comparable only between views of one node: each node counts
   * its own, and a restarted node counts again. So a view is taken when it
   * is newer than the last one seen from the same node, or when it is the
   * first answer of a new stream or fetch (fresh) and no other view was
   * applied since it was asked for (asked), which covers a restarted node
   * without letting a slow answer undo a newer view. A fresh view equal in
   * content to the current one only lends its epoch and sends no event.
   * A view whose shard count differs from config.totalShards is refused.
   */
  private applyView(p: wire.ClusterView, src: string, fresh: boolean, asked: number): Error | null {
    if (this.closed) return null;
    const cur = this.view;
    const v = viewFromWire(p);
    if (cur !== null) {
      const last = this.srcEpoch.get(src);
      const newer = last !== undefined && v.epoch > last;
      if (!newer && !(fresh && this.viewSeq === asked)) return null;
      this.noteSrcEpoch(src, v.epoch);
      if (!(newer && src === this.viewSrc) && viewsEqual(cur, v)) {
        if (v.epoch !== cur.epoch) this.view = { ...cur, epoch: v.epoch };
        this.viewSrc = src;
        return null;
      }
    }
    const n = v.shards.length;
    if (n !== 0 && n !== this.config.totalShards) {
      const err = new ShardCountMismatchError(
        `norikv: config.totalShards is ${this.config.totalShards} but the cluster has ${n} shards ` +
          `(view epoch ${v.epoch} from ${src}); set totalShards: ${n}`,
        { code: 'FAILED_PRECONDITION', node: src },
      );
      this.onReady(err);
      return err;
    }
    this.router.applyIndex(new ViewIndex(v, this.config.totalShards));
    this.view = v;
    this.viewSrc = src;
    this.viewSeq++;
    this.noteSrcEpoch(src, v.epoch);
    this.queueEvent(cur, v);

    const keep = new Set<string>(this.config.nodes);
    for (const node of v.nodes) if (node.role !== 'left') keep.add(node.addr);
    // A leader learned from a hint may not be in the view yet.
    for (const l of this.router.leaders) if (l !== null) keep.add(l.addr);
    this.pool.prune(keep);
    this.onReady(null);
    return null;
  }

  private noteSrcEpoch(src: string, epoch: bigint): void {
    if (this.srcEpoch.size >= 256) this.srcEpoch.clear();
    this.srcEpoch.set(src, epoch);
  }

  private queueEvent(prev: ClusterView | null, cur: ClusterView): void {
    if (this.pending.length >= MAX_PENDING_EVENTS) this.pending[this.pending.length - 1]!.cur = cur;
    else this.pending.push({ prev, cur });
    if (!this.dispatchScheduled) {
      this.dispatchScheduled = true;
      setImmediate(() => {
        this.dispatchScheduled = false;
        this.dispatch();
      });
    }
  }

  private dispatch(): void {
    const items = this.pending;
    this.pending = [];
    for (const it of items) {
      if (this.listeners.size === 0) continue;
      const ev = diffViews(it.prev, it.cur);
      for (const fn of [...this.listeners.values()]) {
        try {
          fn(ev);
        } catch (e) {
          process.emitWarning(`norikv: a topology listener threw: ${String(e)}`);
        }
      }
    }
  }
}
