/**
 * The cluster view as the client routes by it: conversion from the wire,
 * comparison, change events, and the router, which maps a shard to the
 * connection of its leader.
 *
 * Routing is a hash and an array read; the per-shard leader cache is filled
 * from each new ClusterView and corrected by NOT_LEADER hints. When a
 * shard's leader is unknown, one view fetch is shared by every request that
 * waits for it (single flight).
 */
import type * as wire from './gen/norikv.js';
import type { NodeConn, Pool } from './pool.js';
import type { ClusterView, TopologyChangeEvent } from './types.js';
import { toBigInt } from './wire.js';

export function viewFromWire(p: wire.ClusterView): ClusterView {
  return {
    epoch: toBigInt(p.epoch),
    nodes: (p.nodes ?? []).map((n) => ({ id: n.id ?? '', addr: n.addr ?? '', role: n.role ?? '' })),
    shards: (p.shards ?? []).map((s) => ({
      id: s.id ?? 0,
      replicas: (s.replicas ?? []).map((r) => ({ nodeId: r.node_id ?? '', leader: r.leader ?? false })),
    })),
  };
}

export function cloneView(v: ClusterView): ClusterView {
  return {
    epoch: v.epoch,
    nodes: v.nodes.map((n) => ({ ...n })),
    shards: v.shards.map((s) => ({ id: s.id, replicas: s.replicas.map((r) => ({ ...r })) })),
  };
}

/** Whether two views describe the same cluster, epochs aside. */
export function viewsEqual(a: ClusterView, b: ClusterView): boolean {
  if (a.nodes.length !== b.nodes.length || a.shards.length !== b.shards.length) return false;
  for (let i = 0; i < a.nodes.length; i++) {
    const x = a.nodes[i]!;
    const y = b.nodes[i]!;
    if (x.id !== y.id || x.addr !== y.addr || x.role !== y.role) return false;
  }
  for (let i = 0; i < a.shards.length; i++) {
    const x = a.shards[i]!;
    const y = b.shards[i]!;
    if (x.id !== y.id || x.replicas.length !== y.replicas.length) return false;
    for (let j = 0; j < x.replicas.length; j++) {
      const r = x.replicas[j]!;
      const q = y.replicas[j]!;
      if (r.nodeId !== q.nodeId || r.leader !== q.leader) return false;
    }
  }
  return true;
}

/** A node counts as present while alive or suspect (or of unknown role). */
export function nodePresent(role: string): boolean {
  return role === '' || role === 'alive' || role === 'suspect';
}

function shardLeader(s: ClusterView['shards'][number]): string {
  for (const r of s.replicas) if (r.leader) return r.nodeId;
  return '';
}

/** The event for the change from prev (null: none) to cur. */
export function diffViews(prev: ClusterView | null, cur: ClusterView): TopologyChangeEvent {
  const before = new Set<string>();
  const prevLeader = new Map<number, string>();
  if (prev !== null) {
    for (const n of prev.nodes) if (nodePresent(n.role)) before.add(n.id);
    for (const s of prev.shards) prevLeader.set(s.id, shardLeader(s));
  }
  const after = new Set<string>();
  const added: string[] = [];
  for (const n of cur.nodes) {
    if (nodePresent(n.role)) {
      after.add(n.id);
      if (!before.has(n.id)) added.push(n.id);
    }
  }
  const removed = [...before].filter((id) => !after.has(id));
  const leaderChanges = new Map<number, string>();
  for (const s of cur.shards) {
    const l = shardLeader(s);
    const old = prevLeader.get(s.id);
    if ((old !== undefined && old !== l) || (old === undefined && l !== '')) leaderChanges.set(s.id, l);
  }
  return {
    previousEpoch: prev === null ? 0n : prev.epoch,
    currentEpoch: cur.epoch,
    addedNodes: added.sort(),
    removedNodes: removed.sort(),
    leaderChanges,
    view: cloneView(cur),
  };
}

/** A ClusterView prepared for routing. Immutable once built. */
export class ViewIndex {
  readonly view: ClusterView;
  /** shard id -> replica addresses, leader first */
  readonly replicas: string[][];
  /** shard id -> leader address, '' when none is flagged */
  readonly leader: string[];
  /** addresses of nodes that are alive or suspect */
  readonly live: string[];

  constructor(v: ClusterView, totalShards: number) {
    this.view = v;
    const addrById = new Map<string, string>();
    this.live = [];
    for (const n of v.nodes) {
      addrById.set(n.id, n.addr);
      if (nodePresent(n.role) && n.addr !== '') this.live.push(n.addr);
    }
    this.replicas = Array.from({ length: totalShards }, () => []);
    this.leader = new Array<string>(totalShards).fill('');
    for (const s of v.shards) {
      if (s.id >= totalShards) continue;
      const reps: string[] = [];
      for (const r of s.replicas) {
        const a = addrById.get(r.nodeId);
        if (a === undefined || a === '') continue;
        if (r.leader) {
          this.leader[s.id] = a;
          reps.unshift(a);
        } else {
          reps.push(a);
        }
      }
      this.replicas[s.id] = reps;
    }
  }
}

export class Router {
  readonly totalShards: number;
  readonly leaders: (NodeConn | null)[];
  index: ViewIndex | null = null;
  redirects = 0;
  discoveries = 0;
  private rr = 0;
  private flight: Promise<void> | null = null;

  constructor(
    totalShards: number,
    private readonly pool: Pool,
    private readonly seeds: string[],
    /** Fetches and applies a fresh view (leader discovery). */
    private readonly discover: () => Promise<void>,
  ) {
    this.totalShards = totalShards;
    this.leaders = new Array<NodeConn | null>(totalShards).fill(null);
  }

  /** Installs a new view: the cache takes the view's leaders. */
  applyIndex(ix: ViewIndex): void {
    this.index = ix;
    const conns = new Map<string, NodeConn>();
    for (let shard = 0; shard < this.totalShards; shard++) {
      const addr = ix.leader[shard]!;
      let nc: NodeConn | null = null;
      if (addr !== '') {
        nc = conns.get(addr) ?? null;
        if (nc === null) {
          nc = this.pool.get(addr);
          conns.set(addr, nc);
        }
      }
      this.leaders[shard] = nc;
    }
  }

  /** Records a leader learned from a NOT_LEADER hint. */
  setLeader(shard: number, addr: string): NodeConn {
    const nc = this.pool.get(addr);
    this.leaders[shard] = nc;
    this.redirects++;
    return nc;
  }

  /** Drops the shard's cached leader if it is still nc. */
  forget(shard: number, nc: NodeConn): void {
    if (this.leaders[shard] === nc) this.leaders[shard] = null;
  }

  /** nc is unreachable: every shard it led needs a new look-up. */
  nodeFailed(nc: NodeConn): void {
    nc.failedAt = Date.now();
    for (let i = 0; i < this.leaders.length; i++) if (this.leaders[i] === nc) this.leaders[i] = null;
  }

  /**
   * Where to send a request for shard: the cached leader unless it is avoid
   * (the address that just failed); else, after one shared view fetch, the
   * leader it names; else any other replica or node, which will redirect.
   */
  async target(shard: number, avoid: string): Promise<NodeConn> {
    const cached = this.leaders[shard];
    if (cached != null && cached.addr !== avoid) return cached;
    if (this.flight === null) {
      this.discoveries++;
      this.flight = this.discover().finally(() => {
        this.flight = null;
      });
    }
    try {
      await this.flight;
      const nc = this.leaders[shard];
      if (nc != null && nc.addr !== avoid) return nc;
    } catch {
      // No node answered the fetch: fall back to any known address.
    }
    return this.fallback(shard, avoid);
  }

  /** A node other than avoid: the shard's replicas, then live nodes, then the seeds. */
  fallback(shard: number, avoid: string): NodeConn {
    const cands: string[] = [];
    const ix = this.index;
    if (ix !== null) {
      cands.push(...ix.replicas[shard]!);
      if (cands.length === 0) cands.push(...ix.live);
    }
    cands.push(...this.seeds);
    const start = this.rr++;
    for (let i = 0; i < cands.length; i++) {
      const addr = cands[(start + i) % cands.length]!;
      if (addr !== avoid) return this.pool.get(addr);
    }
    // The node that failed is the only one known: try it again.
    return this.pool.get(avoid !== '' ? avoid : this.seeds[0]!);
  }

  /** One of the shard's replicas in turn, for reads any replica may serve; null when none is known. */
  replica(shard: number): NodeConn | null {
    const reps = this.index?.replicas[shard];
    if (reps === undefined || reps.length === 0) return null;
    const start = this.rr++;
    for (let i = 0; i < reps.length; i++) {
      const nc = this.pool.get(reps[(start + i) % reps.length]!);
      if (!nc.recentlyFailed()) return nc;
    }
    return null;
  }

  cachedLeaders(): number {
    let n = 0;
    for (const l of this.leaders) if (l !== null) n++;
    return n;
  }

  /** Addresses worth asking for the view: live nodes of the view first, then the seeds. */
  viewAddrs(): string[] {
    const out = new Set<string>(this.index?.live ?? []);
    for (const s of this.seeds) out.add(s);
    return [...out];
  }
}
