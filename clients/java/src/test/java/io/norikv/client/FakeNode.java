package io.norikv.client;

import com.norikv.proto.v1.ClusterNode;
import com.norikv.proto.v1.ClusterView;
import com.norikv.proto.v1.DeleteRequest;
import com.norikv.proto.v1.DeleteResponse;
import com.norikv.proto.v1.GetRequest;
import com.norikv.proto.v1.GetResponse;
import com.norikv.proto.v1.KvGrpc;
import com.norikv.proto.v1.MetaGrpc;
import com.norikv.proto.v1.PutRequest;
import com.norikv.proto.v1.PutResponse;
import com.norikv.proto.v1.ShardInfo;
import com.norikv.proto.v1.ShardReplica;
import com.norikv.proto.v1.VectorGrpc;
import com.norikv.proto.v1.VectorInsertRequest;
import com.norikv.proto.v1.VectorInsertResponse;
import com.norikv.proto.v1.VectorSearchRequest;
import com.norikv.proto.v1.VectorSearchResponse;
import com.norikv.proto.v1.Version;
import io.grpc.Metadata;
import io.grpc.Server;
import io.grpc.Status;
import io.grpc.netty.shaded.io.grpc.netty.NettyServerBuilder;
import io.grpc.stub.StreamObserver;
import java.io.IOException;
import java.net.InetSocketAddress;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;

/**
 * A gRPC server in the test JVM, on 127.0.0.1, that answers Kv calls from a
 * script of injected failures: for the error paths the real server cannot be
 * made to produce on demand (NOT_LEADER with hints, QUORUM_UNAVAILABLE,
 * COMMIT_TIMEOUT, overload). Behaviour tests use the real server.
 */
final class FakeNode implements AutoCloseable {
  /** An injected answer: a status (with optional trailers), or null for success. */
  static final class Fail {
    final Status status;
    final Metadata trailers = new Metadata();

    Fail(Status status) {
      this.status = status;
    }

    static Fail notLeader(String hint) {
      Fail f = new Fail(Status.UNAVAILABLE.withDescription("NOT_LEADER: shard is led elsewhere"));
      if (hint != null) {
        f.trailers.put(Failures.LEADER_HINT, hint);
      }
      return f;
    }
  }

  final String id;
  final Server server;
  final String addr;
  /** Answers for the next Kv calls, in order; empty: success. */
  final ConcurrentLinkedQueue<Fail> script = new ConcurrentLinkedQueue<>();
  /** When set, every Kv call fails so (after the script). */
  volatile Fail always;
  final AtomicInteger calls = new AtomicInteger();
  final AtomicLong index = new AtomicLong();
  volatile ClusterView view;
  volatile boolean metaUnimplemented;
  final java.util.List<StreamObserver<ClusterView>> watchers = new java.util.concurrent.CopyOnWriteArrayList<>();

  /** Installs a new view and sends it on every open WatchCluster stream. */
  void push(ClusterView v) {
    view = v;
    for (StreamObserver<ClusterView> w : watchers) {
      synchronized (w) {
        try {
          w.onNext(v);
        } catch (RuntimeException e) {
          watchers.remove(w); // the stream was cancelled
        }
      }
    }
  }

  FakeNode(String id) throws IOException {
    this.id = id;
    this.server = NettyServerBuilder.forAddress(new InetSocketAddress("127.0.0.1", 0))
        .addService(new Kv())
        .addService(new Meta())
        .addService(new Vec())
        .build()
        .start();
    this.addr = "127.0.0.1:" + server.getPort();
  }

  /** A view of these nodes with every one of totalShards shards led by leader (followers: the others). */
  static ClusterView viewOf(int totalShards, FakeNode leader, FakeNode... nodes) {
    return viewOf(1, totalShards, leader, nodes);
  }

  static ClusterView viewOf(long epoch, int totalShards, FakeNode leader, FakeNode... nodes) {
    ClusterView.Builder v = ClusterView.newBuilder().setEpoch(epoch);
    for (FakeNode n : nodes) {
      v.addNodes(ClusterNode.newBuilder().setId(n.id).setAddr(n.addr).setRole("alive"));
    }
    for (int s = 0; s < totalShards; s++) {
      ShardInfo.Builder si = ShardInfo.newBuilder().setId(s);
      for (FakeNode n : nodes) {
        si.addReplicas(ShardReplica.newBuilder().setNodeId(n.id).setLeader(n == leader));
      }
      v.addShards(si);
    }
    return v.build();
  }

  private boolean failed(StreamObserver<?> obs) {
    calls.incrementAndGet();
    Fail f = script.poll();
    if (f == null) {
      f = always;
    }
    if (f != null) {
      obs.onError(f.status.asRuntimeException(f.trailers));
      return true;
    }
    return false;
  }

  private Version next() {
    return Version.newBuilder().setTerm(1).setIndex(index.incrementAndGet()).build();
  }

  private final class Kv extends KvGrpc.KvImplBase {
    @Override
    public void put(PutRequest req, StreamObserver<PutResponse> obs) {
      if (!failed(obs)) {
        obs.onNext(PutResponse.newBuilder().setVersion(next()).build());
        obs.onCompleted();
      }
    }

    @Override
    public void get(GetRequest req, StreamObserver<GetResponse> obs) {
      if (!failed(obs)) {
        obs.onNext(GetResponse.newBuilder().setValue(com.google.protobuf.ByteString.copyFromUtf8(id))
            .setVersion(next()).build());
        obs.onCompleted();
      }
    }

    @Override
    public void delete(DeleteRequest req, StreamObserver<DeleteResponse> obs) {
      if (!failed(obs)) {
        obs.onNext(DeleteResponse.newBuilder().setTombstoned(true).setVersion(next()).build());
        obs.onCompleted();
      }
    }
  }

  /** Vector Insert and Search, scripted like Kv (the other methods stay UNIMPLEMENTED). */
  private final class Vec extends VectorGrpc.VectorImplBase {
    @Override
    public void insert(VectorInsertRequest req, StreamObserver<VectorInsertResponse> obs) {
      if (!failed(obs)) {
        obs.onNext(VectorInsertResponse.newBuilder().setInserted(true).setVersion(next()).build());
        obs.onCompleted();
      }
    }

    @Override
    public void search(VectorSearchRequest req, StreamObserver<VectorSearchResponse> obs) {
      if (!failed(obs)) {
        obs.onNext(VectorSearchResponse.newBuilder()
            .addMatches(com.norikv.proto.v1.VectorMatch.newBuilder().setId(id).setDistance(0)).build());
        obs.onCompleted();
      }
    }
  }

  private final class Meta extends MetaGrpc.MetaImplBase {
    @Override
    public void watchCluster(ClusterView req, StreamObserver<ClusterView> obs) {
      if (metaUnimplemented || view == null) {
        obs.onError(Status.UNIMPLEMENTED.withDescription("no Meta here").asRuntimeException());
        return;
      }
      synchronized (obs) {
        obs.onNext(view); // and keep the stream open
      }
      watchers.add(obs);
    }
  }

  @Override
  public void close() throws InterruptedException {
    server.shutdownNow();
    server.awaitTermination(5, TimeUnit.SECONDS);
  }
}
