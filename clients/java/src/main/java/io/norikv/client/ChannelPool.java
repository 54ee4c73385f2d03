package io.norikv.client;

import io.grpc.ConnectivityState;
import io.grpc.Grpc;
import io.grpc.InsecureChannelCredentials;
import io.grpc.ManagedChannel;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;

/**
 * One gRPC channel per node address. gRPC multiplexes every concurrent call
 * over a channel's HTTP/2 connection, so one per node suffices. The pool is
 * bounded by the number of distinct addresses the client knows: the seeds,
 * the nodes of the current view and leader hints; {@link #prune} closes the
 * channels of addresses that left the view. Thread-safe.
 */
final class ChannelPool {
  /** The pooled channel to one node. */
  static final class Node {
    final String addr;
    final ManagedChannel channel;
    /** System.nanoTime() when a call last found the node unreachable; 0: never. */
    final AtomicLong failedAt = new AtomicLong();
    /** When resetConnectBackoff was last called (rate limit). */
    final AtomicLong backoffResetAt = new AtomicLong();

    Node(String addr, ManagedChannel channel) {
      this.addr = addr;
      this.channel = channel;
    }

    /** Whether the node failed within the last second (optional routing avoids it). */
    boolean recentlyFailed() {
      long t = failedAt.get();
      return t != 0 && System.nanoTime() - t < TimeUnit.SECONDS.toNanos(1);
    }

    /**
     * Makes a channel waiting out gRPC's reconnect backoff (which grows to
     * two minutes) try again now: a node restarted after a crash should be
     * found within the client's own, shorter, retry backoff. At most every
     * 50 ms per node.
     */
    void reconnectNow() {
      long now = System.nanoTime();
      long last = backoffResetAt.get();
      if (now - last > TimeUnit.MILLISECONDS.toNanos(50) && backoffResetAt.compareAndSet(last, now)) {
        channel.resetConnectBackoff();
      }
    }

    @Override
    public String toString() {
      return addr;
    }
  }

  private final Map<String, Node> nodes = new ConcurrentHashMap<>();
  private volatile boolean closed;
  private final boolean direct;

  /**
   * direct: run call callbacks on gRPC's network threads (directExecutor)
   * instead of handing each to gRPC's shared executor; see
   * NoriKVClient.Builder#directExecutor.
   */
  ChannelPool(boolean direct) {
    this.direct = direct;
  }

  /** The channel to addr, created (connecting lazily) when there is none yet. */
  Node get(String addr) {
    if (closed) {
      throw new ClientClosedException("the client is closed");
    }
    Node n = nodes.get(addr);
    if (n != null) {
      return n;
    }
    synchronized (this) {
      if (closed) {
        throw new ClientClosedException("the client is closed");
      }
      return nodes.computeIfAbsent(addr, a -> {
        io.grpc.ManagedChannelBuilder<?> b = Grpc.newChannelBuilder(a, InsecureChannelCredentials.create())
            // values are up to 1 MiB; leave room for the envelope
            .maxInboundMessageSize(4 << 20);
        if (direct) {
          b.directExecutor();
        }
        return new Node(a, b.build());
      });
    }
  }

  /** Closes the channels whose address is not in keep. */
  void prune(Set<String> keep) {
    List<Node> drop = new ArrayList<>();
    synchronized (this) {
      for (Node n : nodes.values()) {
        if (!keep.contains(n.addr)) {
          drop.add(n);
        }
      }
      for (Node n : drop) {
        nodes.remove(n.addr, n);
      }
    }
    for (Node n : drop) {
      n.channel.shutdown();
    }
  }

  int[] stats() {
    int active = 0;
    int total = 0;
    for (Node n : nodes.values()) {
      total++;
      ConnectivityState s = n.channel.getState(false);
      if (s != ConnectivityState.TRANSIENT_FAILURE && s != ConnectivityState.SHUTDOWN) {
        active++;
      }
    }
    return new int[] {active, total};
  }

  void close() {
    List<Node> all;
    synchronized (this) {
      closed = true;
      all = new ArrayList<>(nodes.values());
      nodes.clear();
    }
    for (Node n : all) {
      n.channel.shutdownNow();
    }
    for (Node n : all) {
      try {
        n.channel.awaitTermination(2, TimeUnit.SECONDS);
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        return;
      }
    }
  }
}
