package io.norikv.client;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;
import java.util.concurrent.atomic.AtomicReferenceArray;

/**
 * Maps keys to the channel of their shard's leader.
 *
 * <p>The hot path ({@link #shardOf}, {@link #leader}) hashes the key and reads
 * one array slot: no lock, no allocation. The per-shard leader cache is
 * filled from each new cluster view and corrected by NOT_LEADER hints.
 * Thread-safe.
 */
final class Router {
  /** A cluster view prepared for routing. Immutable once published. */
  static final class ViewIndex {
    final ClusterView view;
    final String[][] replicas; // shard id -> replica addresses, leader first
    final String[] leader; // shard id -> leader address, null when none is flagged
    final List<String> live; // addresses of nodes that are alive or suspect

    ViewIndex(ClusterView v, int totalShards) {
      this.view = v;
      Map<String, String> addrById = new HashMap<>();
      List<String> lv = new ArrayList<>();
      for (ClusterView.Node n : v.getNodes()) {
        addrById.put(n.getId(), n.getAddr());
        if (n.isPresent() && !n.getAddr().isEmpty()) {
          lv.add(n.getAddr());
        }
      }
      this.live = lv;
      this.replicas = new String[totalShards][];
      this.leader = new String[totalShards];
      for (ClusterView.Shard s : v.getShards()) {
        if (s.getId() < 0 || s.getId() >= totalShards) {
          continue;
        }
        List<String> reps = new ArrayList<>();
        for (ClusterView.Replica r : s.getReplicas()) {
          String a = addrById.get(r.getNodeId());
          if (a == null || a.isEmpty()) {
            continue;
          }
          if (r.isLeader()) {
            leader[s.getId()] = a;
            reps.add(0, a);
          } else {
            reps.add(a);
          }
        }
        replicas[s.getId()] = reps.toArray(new String[0]);
      }
    }
  }

  private final int totalShards;
  private final AtomicReferenceArray<ChannelPool.Node> leaders;
  private final AtomicReference<ViewIndex> index = new AtomicReference<>();
  private final ChannelPool pool;
  private final List<String> seeds;
  private final AtomicLong rr = new AtomicLong();
  final AtomicLong redirects = new AtomicLong();

  Router(int totalShards, ChannelPool pool, List<String> seeds) {
    this.totalShards = totalShards;
    this.leaders = new AtomicReferenceArray<>(totalShards);
    this.pool = pool;
    this.seeds = seeds;
  }

  int shardOf(byte[] key) {
    return KeyRouting.shardForKey(key, totalShards);
  }

  /** The shard's cached leader, or null. */
  ChannelPool.Node leader(int shard) {
    return leaders.get(shard);
  }

  ViewIndex index() {
    return index.get();
  }

  /** Installs a new view: the cache takes the view's leaders. */
  void apply(ViewIndex ix) {
    index.set(ix);
    Map<String, ChannelPool.Node> conns = new HashMap<>();
    for (int s = 0; s < totalShards; s++) {
      ChannelPool.Node n = null;
      String a = ix.leader[s];
      if (a != null) {
        n = conns.get(a);
        if (n == null) {
          n = pool.get(a);
          conns.put(a, n);
        }
      }
      leaders.set(s, n);
    }
  }

  /** Records a leader learned from a NOT_LEADER hint. */
  ChannelPool.Node setLeader(int shard, String addr) {
    ChannelPool.Node n = pool.get(addr);
    leaders.set(shard, n);
    redirects.incrementAndGet();
    return n;
  }

  /** Drops the shard's cached leader if it is still n. */
  void forget(int shard, ChannelPool.Node n) {
    leaders.compareAndSet(shard, n, null);
  }

  /** n is unreachable: every shard it led needs a new look-up. */
  void nodeFailed(ChannelPool.Node n) {
    n.failedAt.set(System.nanoTime());
    for (int s = 0; s < totalShards; s++) {
      leaders.compareAndSet(s, n, null);
    }
  }

  /**
   * A node other than avoid for the shard, when its leader is unknown:
   * the shard's replicas first, then live nodes, then the seeds (round
   * robin). Returns avoid itself when it is the only node known.
   */
  ChannelPool.Node fallback(int shard, String avoid) {
    List<String> cands = new ArrayList<>();
    ViewIndex ix = index.get();
    if (ix != null) {
      String[] reps = ix.replicas[shard];
      if (reps != null && reps.length > 0) {
        for (String r : reps) {
          cands.add(r);
        }
      } else {
        cands.addAll(ix.live);
      }
    }
    cands.addAll(seeds);
    int n = cands.size();
    long start = rr.incrementAndGet();
    for (int i = 0; i < n; i++) {
      String a = cands.get((int) ((start + i) % n));
      if (!a.equals(avoid)) {
        return pool.get(a);
      }
    }
    if (avoid != null) {
      return pool.get(avoid);
    }
    throw new ConnectionException("no node address known");
  }

  /** One of the shard's replicas, in turn, for reads any replica may serve; null when none is known. */
  ChannelPool.Node replica(int shard) {
    ViewIndex ix = index.get();
    if (ix == null || ix.replicas[shard] == null || ix.replicas[shard].length == 0) {
      return null;
    }
    String[] reps = ix.replicas[shard];
    long start = rr.incrementAndGet();
    for (int i = 0; i < reps.length; i++) {
      ChannelPool.Node n = pool.get(reps[(int) ((start + i) % reps.length)]);
      if (!n.recentlyFailed()) {
        return n;
      }
    }
    return null;
  }

  int cachedLeaders() {
    int c = 0;
    for (int s = 0; s < totalShards; s++) {
      if (leaders.get(s) != null) {
        c++;
      }
    }
    return c;
  }

  /** Addresses the router still points at (kept by pruning). */
  void leaderAddrs(java.util.Set<String> out) {
    for (int s = 0; s < totalShards; s++) {
      ChannelPool.Node n = leaders.get(s);
      if (n != null) {
        out.add(n.addr);
      }
    }
  }
}
