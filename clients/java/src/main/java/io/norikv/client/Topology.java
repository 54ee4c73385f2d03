package io.norikv.client;

import com.norikv.proto.v1.MetaGrpc;
import io.grpc.CallOptions;
import io.grpc.ClientCall;
import io.grpc.Context;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.stub.ClientCallStreamObserver;
import io.grpc.stub.ClientCalls;
import io.grpc.stub.ClientResponseObserver;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ThreadLocalRandom;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;
import java.util.function.Consumer;
import java.util.logging.Level;
import java.util.logging.Logger;

/**
 * Follows the cluster's layout through Meta.WatchCluster: one stream, kept
 * open on a thread of its own, to one node at a time; when it breaks the
 * client moves to the next known node, and backs off (100 ms doubling to 5 s,
 * with jitter) once every known node has failed in a row. Leader look-ups
 * (discovery) fetch the current view with a short WatchCluster call of their
 * own; concurrent look-ups share one. Listeners are called on a dispatcher
 * thread of the client, in order, outside every lock (a listener may call the
 * client); at most 256 changes wait for them, beyond which the newest pending
 * change absorbs the next one.
 */
final class Topology {
  private static final Logger LOG = Logger.getLogger(Topology.class.getName());
  static final long WATCH_BACKOFF_BASE_MS = 100;
  static final long WATCH_BACKOFF_MAX_MS = 5000;
  static final long DISCOVERY_PER_NODE_MS = 2000;
  static final int MAX_PENDING_EVENTS = 256;

  private final int totalShards;
  private final List<String> seeds;
  private final ChannelPool pool;
  private final Router router;

  private final Object viewLock = new Object();
  private ClusterView view; // guarded by viewLock
  private String viewSrc; // address the current view came from
  private long viewSeq; // views applied so far
  private final Map<String, Long> srcEpoch = new HashMap<>(); // last epoch seen per node address
  private final AtomicLong epoch = new AtomicLong();
  final AtomicBoolean watching = new AtomicBoolean();
  final AtomicLong discoveries = new AtomicLong();

  final CompletableFuture<Void> ready = new CompletableFuture<>();
  private final AtomicReference<String> lastWatchError = new AtomicReference<>("none yet");
  private final AtomicReference<CompletableFuture<Void>> flight = new AtomicReference<>();

  private final Context.CancellableContext life = Context.current().withCancellation();
  private volatile boolean closed;
  private final Thread watcher;
  private final Thread dispatcher;

  /** A view change waiting for the listeners; seq orders it against listener registrations. */
  private static final class Change {
    final ClusterView prev;
    ClusterView cur;
    long seq;

    Change(ClusterView prev, ClusterView cur, long seq) {
      this.prev = prev;
      this.cur = cur;
      this.seq = seq;
    }
  }

  /** A registered listener; it hears only changes made after it registered (seq > since). */
  private static final class Listener {
    final Consumer<TopologyChangeEvent> fn;
    final long since;

    Listener(Consumer<TopologyChangeEvent> fn, long since) {
      this.fn = fn;
      this.since = since;
    }
  }

  private final ArrayDeque<Change> events = new ArrayDeque<>(); // guarded by itself
  private final AtomicLong changeSeq = new AtomicLong();
  private final Map<Long, Listener> listeners = new LinkedHashMap<>(); // guarded by itself
  private long nextListenerId;

  Topology(int totalShards, List<String> seeds, ChannelPool pool, Router router) {
    this.totalShards = totalShards;
    this.seeds = seeds;
    this.pool = pool;
    this.router = router;
    this.watcher = new Thread(this::watchLoop, "norikv-watch");
    this.watcher.setDaemon(true);
    this.dispatcher = new Thread(this::dispatchLoop, "norikv-events");
    this.dispatcher.setDaemon(true);
  }

  void start() {
    watcher.start();
    dispatcher.start();
  }

  long epoch() {
    return epoch.get();
  }

  ClusterView view() {
    synchronized (viewLock) {
      return view;
    }
  }

  String lastWatchError() {
    return lastWatchError.get();
  }

  /** Addresses worth asking for the view: live nodes of the current view, then the seeds. */
  private List<String> viewAddrs() {
    Set<String> out = new LinkedHashSet<>();
    Router.ViewIndex ix = router.index();
    if (ix != null) {
      out.addAll(ix.live);
    }
    out.addAll(seeds);
    return new ArrayList<>(out);
  }

  private long viewSeqNow() {
    synchronized (viewLock) {
      return viewSeq;
    }
  }

  // ------------------------------------------------------------- the watch

  private void watchLoop() {
    int failures = 0;
    while (!closed) {
      List<String> addrs = viewAddrs();
      String addr = addrs.get(failures % addrs.size());
      boolean got = false;
      Status st;
      try {
        got = watchOnce(addr);
        st = Status.UNAVAILABLE.withDescription("stream ended");
      } catch (StatusRuntimeException e) {
        st = e.getStatus();
        got = got || watchGot;
      } catch (ShardCountMismatchException e) {
        st = Status.FAILED_PRECONDITION.withDescription(e.getMessage());
        got = true;
      } catch (ClientClosedException e) {
        return;
      } catch (Exception e) {
        st = Status.fromThrowable(e);
      }
      watching.set(false);
      if (closed) {
        return;
      }
      lastWatchError.set("WatchCluster on " + addr + ": " + st.getCode()
          + (st.getDescription() == null ? "" : ": " + st.getDescription()));
      if (st.getCode() == Status.Code.UNIMPLEMENTED) {
        // A server without Meta: route by the seeds and NOT_LEADER hints alone.
        ready.complete(null);
      }
      if (got) {
        failures = 0;
      }
      failures++;
      long delayMs = 0;
      int round = failures / addrs.size();
      if (failures % addrs.size() == 0 && round > 0) {
        delayMs = Math.min(WATCH_BACKOFF_BASE_MS << Math.min(round - 1, 6), WATCH_BACKOFF_MAX_MS);
        delayMs += ThreadLocalRandom.current().nextLong(delayMs / 2 + 1);
      }
      try {
        if (delayMs > 0) {
          Thread.sleep(delayMs);
        }
      } catch (InterruptedException e) {
        if (closed) {
          return;
        }
      }
      // the node may be back: do not let gRPC's own reconnect backoff delay the next try
      try {
        pool.get(addrs.get(failures % addrs.size())).reconnectNow();
      } catch (ClientClosedException e) {
        return;
      }
    }
  }

  private volatile boolean watchGot;

  /** Follows one WatchCluster stream until it breaks; true when it delivered a view. */
  private boolean watchOnce(String addr) throws Exception {
    ChannelPool.Node n = pool.get(addr);
    watchGot = false;
    Context.CancellableContext ctx = life.withCancellation();
    try {
      return ctx.call(() -> {
        // Epoch 0: the node answers at once with its current view. Epochs
        // are counted by each node and restart with it, so the client's
        // own epoch says nothing to a node it has not been watching.
        long asked = viewSeqNow();
        Iterator<com.norikv.proto.v1.ClusterView> it =
            MetaGrpc.newBlockingStub(n.channel).watchCluster(com.norikv.proto.v1.ClusterView.getDefaultInstance());
        boolean got = false;
        while (it.hasNext()) {
          com.norikv.proto.v1.ClusterView v = it.next();
          watching.set(true);
          applyView(v, addr, !got, asked);
          got = true;
          watchGot = true;
        }
        return got;
      });
    } finally {
      ctx.cancel(null);
    }
  }

  // ------------------------------------------------------------ discovery

  /**
   * Fetches the current view from the known nodes in turn and applies it.
   * Concurrent callers share one fetch. Completes normally also when no node
   * answered (the caller then falls back to any node, which redirects).
   */
  CompletableFuture<Void> discover() {
    CompletableFuture<Void> f = flight.get();
    if (f != null) {
      return f;
    }
    CompletableFuture<Void> mine = new CompletableFuture<>();
    if (!flight.compareAndSet(null, mine)) {
      CompletableFuture<Void> other = flight.get();
      return other != null ? other : discover();
    }
    discoveries.incrementAndGet();
    List<String> addrs = viewAddrs();
    int start = ThreadLocalRandom.current().nextInt(addrs.size());
    fetchFrom(addrs, start, 0, mine);
    mine.whenComplete((v, t) -> flight.compareAndSet(mine, null));
    return mine;
  }

  private void fetchFrom(List<String> addrs, int start, int i, CompletableFuture<Void> done) {
    if (i >= addrs.size() || closed) {
      done.complete(null);
      return;
    }
    String addr = addrs.get((start + i) % addrs.size());
    long asked = viewSeqNow();
    fetchOne(addr).whenComplete((v, t) -> {
      try {
        if (t == null) {
          applyView(v, addr, true, asked);
          done.complete(null);
        } else {
          fetchFrom(addrs, start, i + 1, done);
        }
      } catch (RuntimeException e) {
        // a mismatching view (reported through ready), or a closed client:
        // the waiting calls go on and see it
        done.complete(null);
      }
    });
  }

  /** The first view a node sends on a fresh WatchCluster call. */
  private CompletableFuture<com.norikv.proto.v1.ClusterView> fetchOne(String addr) {
    CompletableFuture<com.norikv.proto.v1.ClusterView> f = new CompletableFuture<>();
    ChannelPool.Node n;
    try {
      n = pool.get(addr);
    } catch (RuntimeException e) {
      f.completeExceptionally(e);
      return f;
    }
    ClientCall<com.norikv.proto.v1.ClusterView, com.norikv.proto.v1.ClusterView> call = n.channel.newCall(
        MetaGrpc.getWatchClusterMethod(),
        CallOptions.DEFAULT.withDeadlineAfter(DISCOVERY_PER_NODE_MS, TimeUnit.MILLISECONDS));
    // The node sends its view as soon as it has the request, so onNext (which
    // cancels the call) can run on a gRPC thread before this one has
    // half-closed; halfClose then throws. That is the success path: the view
    // is in f. Any other synchronous failure fails the fetch.
    try {
      ClientCalls.asyncServerStreamingCall(call, com.norikv.proto.v1.ClusterView.getDefaultInstance(),
        new ClientResponseObserver<com.norikv.proto.v1.ClusterView, com.norikv.proto.v1.ClusterView>() {
          private ClientCallStreamObserver<com.norikv.proto.v1.ClusterView> stream;

          @Override
          public void beforeStart(ClientCallStreamObserver<com.norikv.proto.v1.ClusterView> s) {
            stream = s;
          }

          @Override
          public void onNext(com.norikv.proto.v1.ClusterView v) {
            if (f.complete(v)) {
              stream.cancel("view received", null);
            }
          }

          @Override
          public void onError(Throwable t) {
            f.completeExceptionally(t);
          }

          @Override
          public void onCompleted() {
            f.completeExceptionally(Status.UNAVAILABLE.withDescription("stream ended without a view").asException());
          }
        });
    } catch (RuntimeException e) {
      f.completeExceptionally(e);
    }
    return f;
  }

  // --------------------------------------------------------- applying views

  static ClusterView fromProto(com.norikv.proto.v1.ClusterView p) {
    List<ClusterView.Node> nodes = new ArrayList<>(p.getNodesCount());
    for (com.norikv.proto.v1.ClusterNode n : p.getNodesList()) {
      nodes.add(new ClusterView.Node(n.getId(), n.getAddr(), n.getRole()));
    }
    List<ClusterView.Shard> shards = new ArrayList<>(p.getShardsCount());
    for (com.norikv.proto.v1.ShardInfo s : p.getShardsList()) {
      List<ClusterView.Replica> reps = new ArrayList<>(s.getReplicasCount());
      for (com.norikv.proto.v1.ShardReplica r : s.getReplicasList()) {
        reps.add(new ClusterView.Replica(r.getNodeId(), r.getLeader()));
      }
      shards.add(new ClusterView.Shard(s.getId(), reps));
    }
    return new ClusterView(p.getEpoch(), nodes, shards);
  }

  /**
   * Installs a view from node src and queues the topology event.
   *
   * <p>Epochs are comparable only between views of one node: each node
   * counts its own, and a restarted node counts again. So a view is taken
   * when it is newer than the last one seen from the same node, or when it
   * is the first answer of a new stream or fetch (fresh) and no other view
   * was applied since it was asked for (asked: viewSeq then), which covers
   * a restarted node and a node not heard from before, without letting a
   * slow answer undo a newer view. A fresh answer equal in content to the
   * current view only lends its epoch, and sends no event.
   *
   * <p>A view whose shard count differs from totalShards is refused:
   * routing by it would misplace keys.
   *
   * @throws ShardCountMismatchException for such a view
   */
  void applyView(com.norikv.proto.v1.ClusterView p, String src, boolean fresh, long asked) {
    ClusterView v = fromProto(p);
    Set<String> keep = new HashSet<>();
    synchronized (viewLock) {
      ClusterView cur = view;
      if (cur != null) {
        Long last = srcEpoch.get(src);
        boolean newer = last != null && Long.compareUnsigned(v.getEpoch(), last) > 0;
        if (!newer && !(fresh && viewSeq == asked)) {
          return;
        }
        noteSrcEpoch(src, v.getEpoch());
        if (!(newer && src.equals(viewSrc)) && cur.sameContent(v)) {
          if (v.getEpoch() != cur.getEpoch()) {
            view = cur.withEpoch(v.getEpoch());
            epoch.set(v.getEpoch());
          }
          viewSrc = src;
          return;
        }
      }
      int n = v.getShards().size();
      if (n != 0 && n != totalShards) {
        ShardCountMismatchException e = new ShardCountMismatchException("the client was built with totalShards "
            + totalShards + " but the cluster has " + n + " shards (view epoch " + v.getEpoch() + " from " + src
            + "); build the client with totalShards(" + n + ")", totalShards, n);
        ready.completeExceptionally(e);
        throw e;
      }
      router.apply(new Router.ViewIndex(v, totalShards));
      view = v;
      viewSrc = src;
      viewSeq++;
      noteSrcEpoch(src, v.getEpoch());
      epoch.set(v.getEpoch());
      pushEvent(cur, v);
      for (ClusterView.Node nd : v.getNodes()) {
        if (!nd.getRole().equals("left")) {
          keep.add(nd.getAddr());
        }
      }
      keep.addAll(seeds);
      // a leader learned from a hint may not be in the view (yet)
      router.leaderAddrs(keep);
    }
    pool.prune(keep);
    ready.complete(null);
  }

  /** Bounded: cleared when it holds more addresses than any cluster has nodes. */
  private void noteSrcEpoch(String src, long e) {
    if (srcEpoch.size() >= 256) {
      srcEpoch.clear();
    }
    srcEpoch.put(src, e);
  }

  // ------------------------------------------------------------- listeners

  Subscription addListener(Consumer<TopologyChangeEvent> fn) {
    long id;
    synchronized (listeners) {
      id = nextListenerId++;
      listeners.put(id, new Listener(fn, changeSeq.get()));
    }
    AtomicBoolean done = new AtomicBoolean();
    return () -> {
      if (done.compareAndSet(false, true)) {
        synchronized (listeners) {
          listeners.remove(id);
        }
      }
    };
  }

  private void pushEvent(ClusterView prev, ClusterView cur) {
    synchronized (events) {
      long seq = changeSeq.incrementAndGet();
      if (events.size() >= MAX_PENDING_EVENTS) {
        Change last = events.peekLast();
        last.cur = cur;
        last.seq = seq;
      } else {
        events.addLast(new Change(prev, cur, seq));
      }
      events.notifyAll();
    }
  }

  private void dispatchLoop() {
    while (true) {
      Change ch;
      synchronized (events) {
        while (events.isEmpty() && !closed) {
          try {
            events.wait();
          } catch (InterruptedException e) {
            if (closed) {
              return;
            }
          }
        }
        if (closed) {
          return;
        }
        ch = events.pollFirst();
      }
      TopologyChangeEvent ev = TopologyChangeEvent.diff(ch.prev, ch.cur);
      List<Listener> fns;
      synchronized (listeners) {
        fns = new ArrayList<>(listeners.values());
      }
      for (Listener l : fns) {
        if (ch.seq <= l.since) {
          continue; // the change was made before the listener registered
        }
        try {
          l.fn.accept(ev);
        } catch (RuntimeException e) {
          LOG.log(Level.WARNING, "norikv: a topology listener threw", e);
        }
      }
    }
  }

  void close() {
    closed = true;
    life.cancel(null);
    synchronized (events) {
      events.notifyAll();
    }
    watcher.interrupt();
    try {
      watcher.join(2000);
      dispatcher.join(2000);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
  }
}
