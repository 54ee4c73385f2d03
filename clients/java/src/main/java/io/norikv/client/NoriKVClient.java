package io.norikv.client;

import com.google.protobuf.ByteString;
import com.norikv.proto.v1.CreateVectorIndexRequest;
import com.norikv.proto.v1.CreateVectorIndexResponse;
import com.norikv.proto.v1.DeleteRequest;
import com.norikv.proto.v1.DeleteResponse;
import com.norikv.proto.v1.DropVectorIndexRequest;
import com.norikv.proto.v1.DropVectorIndexResponse;
import com.norikv.proto.v1.GetRequest;
import com.norikv.proto.v1.GetResponse;
import com.norikv.proto.v1.KvGrpc;
import com.norikv.proto.v1.PutRequest;
import com.norikv.proto.v1.PutResponse;
import com.norikv.proto.v1.VectorDeleteRequest;
import com.norikv.proto.v1.VectorDeleteResponse;
import com.norikv.proto.v1.VectorGetRequest;
import com.norikv.proto.v1.VectorGrpc;
import com.norikv.proto.v1.VectorInsertRequest;
import com.norikv.proto.v1.VectorInsertResponse;
import com.norikv.proto.v1.VectorSearchRequest;
import com.norikv.proto.v1.VectorSearchResponse;
import io.grpc.CallOptions;
import io.grpc.ClientCall;
import io.grpc.Metadata;
import io.grpc.MethodDescriptor;
import io.grpc.Status;
import io.grpc.stub.ClientCalls;
import io.grpc.stub.StreamObserver;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.List;
import java.util.Objects;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionException;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ScheduledThreadPoolExecutor;
import java.util.concurrent.Semaphore;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.Consumer;
import java.util.function.Function;

/**
 * A NoriKV client. Thread-safe: create one per process and share it, since it
 * owns the connection pool (one gRPC channel per node) and the cluster view.
 *
 * <pre>{@code
 * try (NoriKVClient client = NoriKVClient.builder()
 *     .nodes("localhost:9001", "localhost:9002")
 *     .totalShards(1024)
 *     .timeout(Duration.ofSeconds(5))
 *     .build()) {
 *   Version v = client.put("user:alice", "{\"name\":\"Alice\"}");
 *   GetResult r = client.get("user:alice");
 *   client.delete("user:alice");
 * }
 * }</pre>
 *
 * <p>Every operation routes the key to its shard ({@link KeyRouting}) and
 * sends it to the shard's leader as the cluster view names it, follows a
 * NOT_LEADER answer's {@code leader-hint} at once, and retries transient
 * failures as {@link RetryPolicy} describes, all within the call's timeout.
 * The synchronous methods throw the {@link NoriKVException} subclasses; the
 * {@code ...Async} methods complete their future exceptionally with the same
 * exceptions. Futures complete on gRPC's or the client's threads: do not
 * block in their continuations, or pass your own executor to the
 * {@code ...Async} stages of {@link CompletableFuture}.
 *
 * <p>Vector calls ({@code vectorCreateIndex}, {@code vectorInsert},
 * {@code vectorSearch}...) route by namespace the same way: a namespace lives
 * whole on the shard its name hashes to.
 *
 * <p>At most {@code maxInFlight} calls (default 512) are in flight at once;
 * beyond that, starting a call waits, up to the call's timeout, for one to
 * finish, and then fails with {@link ResourceExhaustedException}.
 */
public final class NoriKVClient implements AutoCloseable {
  /** How many NOT_LEADER hints one call follows (two nodes naming each other cannot bounce it forever). */
  static final int MAX_REDIRECTS = 8;

  private final List<String> nodes;
  private final int totalShards;
  private final Duration timeout;
  private final RetryPolicy retry;
  private final int maxInFlight;

  private final ChannelPool pool;
  private final boolean direct;
  private final Router router;
  private final Topology topology;
  private final ScheduledThreadPoolExecutor scheduler;
  private final Semaphore inFlight;
  private final AtomicBoolean closed = new AtomicBoolean();
  private final AtomicLong succeeded = new AtomicLong();
  private final AtomicLong failed = new AtomicLong();
  private final AtomicLong retries = new AtomicLong();

  private NoriKVClient(Builder b) {
    this.nodes = Collections.unmodifiableList(new ArrayList<>(b.nodes));
    this.totalShards = b.totalShards;
    this.timeout = b.timeout;
    this.retry = b.retry;
    this.maxInFlight = b.maxInFlight;
    this.direct = b.directExecutor;
    this.pool = new ChannelPool(direct);
    this.router = new Router(totalShards, pool, nodes);
    this.topology = new Topology(totalShards, nodes, pool, router);
    this.inFlight = new Semaphore(maxInFlight);
    this.scheduler = new ScheduledThreadPoolExecutor(1, r -> {
      Thread t = new Thread(r, "norikv-retry");
      t.setDaemon(true);
      return t;
    });
    this.scheduler.setRemoveOnCancelPolicy(true);
  }

  public static Builder builder() {
    return new Builder();
  }

  /** Configures and connects a {@link NoriKVClient}. */
  public static final class Builder {
    private final List<String> nodes = new ArrayList<>();
    private int totalShards = 1024;
    private Duration timeout = Duration.ofSeconds(5);
    private RetryPolicy retry = RetryPolicy.DEFAULT;
    private int maxInFlight = 512;
    private boolean directExecutor;

    private Builder() {}

    /**
     * Client (gRPC) addresses, host:port, of some cluster members; the client
     * learns the rest from the cluster view. Required. Replaces earlier calls.
     */
    public Builder nodes(String... addrs) {
      return nodes(Arrays.asList(addrs));
    }

    public Builder nodes(List<String> addrs) {
      nodes.clear();
      for (String a : addrs) {
        if (a == null || a.trim().isEmpty()) {
          throw new IllegalArgumentException("nodes: an address is empty; give host:port");
        }
        nodes.add(a.trim());
      }
      return this;
    }

    /**
     * The cluster's shard count (default 1024). {@link #build()} fails with
     * {@link ShardCountMismatchException} when the cluster has another,
     * rather than send keys to the wrong shards.
     */
    public Builder totalShards(int n) {
      if (n < 1) {
        throw new IllegalArgumentException("totalShards = " + n + ", want >= 1");
      }
      this.totalShards = n;
      return this;
    }

    /** Bounds each call, its retries included, and the connect in {@link #build()}. Default 5 s. */
    public Builder timeout(Duration d) {
      if (d == null || d.isZero() || d.isNegative()) {
        throw new IllegalArgumentException("timeout = " + d + ", want > 0");
      }
      this.timeout = d;
      return this;
    }

    public Builder retry(RetryPolicy policy) {
      this.retry = Objects.requireNonNull(policy, "retry");
      return this;
    }

    /** The bound on calls in flight at once (default 512). */
    public Builder maxInFlight(int n) {
      if (n < 1) {
        throw new IllegalArgumentException("maxInFlight = " + n + ", want >= 1");
      }
      this.maxInFlight = n;
      return this;
    }

    /**
     * Completes the {@code ...Async} futures on gRPC's network (Netty event
     * loop) threads instead of handing each answer to another thread first.
     * This about halves the client's CPU per call (docs/benchmarks.md), at a
     * price: a continuation that blocks stalls the connection it runs on, so
     * continuations must not block, nor make synchronous calls of this client
     * (which fail with IllegalStateException there rather than deadlock).
     * Default false.
     */
    public Builder directExecutor(boolean direct) {
      this.directExecutor = direct;
      return this;
    }

    /**
     * Connects: follows the cluster view from one of the nodes and returns
     * once the first view has arrived, checking the shard count.
     *
     * @throws IllegalArgumentException when no node is given
     * @throws ConnectionException when no node sent the view within the timeout
     * @throws ShardCountMismatchException when the cluster's shard count differs from totalShards
     */
    public NoriKVClient build() {
      if (nodes.isEmpty()) {
        throw new IllegalArgumentException("nodes: give at least one node address (host:port)");
      }
      NoriKVClient c = new NoriKVClient(this);
      c.topology.start();
      try {
        c.topology.ready.get(timeout.toNanos(), TimeUnit.NANOSECONDS);
        return c;
      } catch (ExecutionException e) {
        c.close();
        if (e.getCause() instanceof NoriKVException) {
          throw (NoriKVException) e.getCause();
        }
        throw new ConnectionException("connect: " + e.getCause(), Status.Code.UNAVAILABLE, null, 0, e.getCause());
      } catch (TimeoutException e) {
        String last = c.topology.lastWatchError();
        c.close();
        throw new ConnectionException("connect: no node of " + nodes + " sent the cluster view within "
            + timeout.toMillis() + " ms (last error: " + last + ")", Status.Code.UNAVAILABLE, null, 0, null);
      } catch (InterruptedException e) {
        c.close();
        Thread.currentThread().interrupt();
        throw new ConnectionException("connect: interrupted", Status.Code.CANCELLED, null, 0, e);
      }
    }
  }

  // ----------------------------------------------------------------- put

  /** Writes value under key unconditionally and returns the new value's version. */
  public Version put(byte[] key, byte[] value) {
    return sync(() -> putAsync(key, value, PutOptions.NONE));
  }

  /** Writes a UTF-8 string value under a UTF-8 string key. */
  public Version put(String key, String value) {
    return sync(() -> putAsync(utf8(key), utf8(value), PutOptions.NONE));
  }

  public Version put(byte[] key, byte[] value, PutOptions options) {
    return sync(() -> putAsync(key, value, options));
  }

  public Version put(String key, String value, PutOptions options) {
    return sync(() -> putAsync(utf8(key), utf8(value), options));
  }

  public CompletableFuture<Version> putAsync(String key, String value, PutOptions options) {
    return putAsync(utf8(key), utf8(value), options);
  }

  /**
   * Writes value under key with options (TTL, idempotency key, CAS by
   * ifMatch, ifNotExists) and completes with the new value's version.
   */
  public CompletableFuture<Version> putAsync(byte[] key, byte[] value, PutOptions options) {
    Objects.requireNonNull(key, "key");
    Objects.requireNonNull(value, "value");
    PutOptions o = options == null ? PutOptions.NONE : options;
    PutRequest.Builder rb = PutRequest.newBuilder()
        .setKey(ByteString.copyFrom(key))
        .setValue(ByteString.copyFrom(value))
        .setTtlMs(o.getTtlMs())
        .setIdempotencyKey(o.getIdempotencyKey())
        .setIfNotExists(o.isIfNotExists());
    if (o.getIfMatch() != null) {
      rb.setIfMatch(toProto(o.getIfMatch()));
    }
    return invoke("put", KvGrpc.getPutMethod(), rb.build(), key, o.retrySafe(), false, o.getTimeout(),
        (PutResponse r) -> fromProto(r.getVersion()));
  }

  // ----------------------------------------------------------------- get

  /** Reads key (lease consistency). A missing or expired key throws {@link KeyNotFoundException}. */
  public GetResult get(byte[] key) {
    return sync(() -> getAsync(key, GetOptions.NONE));
  }

  public GetResult get(String key) {
    return sync(() -> getAsync(utf8(key), GetOptions.NONE));
  }

  public GetResult get(byte[] key, GetOptions options) {
    return sync(() -> getAsync(key, options));
  }

  public GetResult get(String key, GetOptions options) {
    return sync(() -> getAsync(utf8(key), options));
  }

  public CompletableFuture<GetResult> getAsync(String key, GetOptions options) {
    return getAsync(utf8(key), options);
  }

  /**
   * Reads key at the options' consistency level. {@link ConsistencyLevel#STALE_OK}
   * reads go to one of the shard's replicas in turn (the leader on retries).
   */
  public CompletableFuture<GetResult> getAsync(byte[] key, GetOptions options) {
    Objects.requireNonNull(key, "key");
    GetOptions o = options == null ? GetOptions.NONE : options;
    GetRequest req = GetRequest.newBuilder()
        .setKey(ByteString.copyFrom(key))
        .setConsistency(o.getConsistency().wireName())
        .build();
    return invoke("get", KvGrpc.getGetMethod(), req, key, true, o.getConsistency() == ConsistencyLevel.STALE_OK,
        o.getTimeout(),
        (GetResponse r) -> new GetResult(r.getValue().toByteArray(), fromProto(r.getVersion()), r.getMetaMap()));
  }

  // -------------------------------------------------------------- delete

  /**
   * Deletes key. Returns true when a live value was removed, false when the
   * key was absent (still a success).
   */
  public boolean delete(byte[] key) {
    return sync(() -> deleteAsync(key, DeleteOptions.NONE));
  }

  public boolean delete(String key) {
    return sync(() -> deleteAsync(utf8(key), DeleteOptions.NONE));
  }

  public boolean delete(byte[] key, DeleteOptions options) {
    return sync(() -> deleteAsync(key, options));
  }

  public boolean delete(String key, DeleteOptions options) {
    return sync(() -> deleteAsync(utf8(key), options));
  }

  public CompletableFuture<Boolean> deleteAsync(String key, DeleteOptions options) {
    return deleteAsync(utf8(key), options);
  }

  public CompletableFuture<Boolean> deleteAsync(byte[] key, DeleteOptions options) {
    Objects.requireNonNull(key, "key");
    DeleteOptions o = options == null ? DeleteOptions.NONE : options;
    DeleteRequest.Builder rb = DeleteRequest.newBuilder()
        .setKey(ByteString.copyFrom(key))
        .setIdempotencyKey(o.getIdempotencyKey());
    if (o.getIfMatch() != null) {
      rb.setIfMatch(toProto(o.getIfMatch()));
    }
    return invoke("delete", KvGrpc.getDeleteMethod(), rb.build(), key, o.retrySafe(), false, o.getTimeout(),
        DeleteResponse::getTombstoned);
  }

  // ------------------------------------------------------------- vectors
  //
  // A namespace lives whole on one shard: vector calls route by the UTF-8
  // bytes of the namespace name exactly as a key routes (same jump(xxhash64)),
  // to that shard's leader, following NOT_LEADER hints and retrying as for
  // put. Every vector write is safe to repeat after an unknown outcome
  // (create and drop are idempotent by parameters, insert replaces, delete
  // of an absent id is a no-op; only the returned flag may differ, which an
  // idempotency key pins), so writes retry like an unconditional put. A
  // missing index is KeyNotFoundException; bad input (wrong dimensions,
  // NaN, k out of 1..1000 ...) InvalidArgumentException naming the problem.

  /**
   * Creates the vector index namespace. Returns true when created, false
   * when an index with the same dimensions, distance and type exists; other
   * parameters throw {@link AlreadyExistsException}.
   */
  public boolean vectorCreateIndex(String namespace, int dimensions, DistanceFunction distance,
      VectorIndexType indexType) {
    return sync(() -> vectorCreateIndexAsync(namespace, dimensions, distance, indexType, VectorWriteOptions.NONE));
  }

  public boolean vectorCreateIndex(String namespace, int dimensions, DistanceFunction distance,
      VectorIndexType indexType, VectorWriteOptions options) {
    return sync(() -> vectorCreateIndexAsync(namespace, dimensions, distance, indexType, options));
  }

  public CompletableFuture<Boolean> vectorCreateIndexAsync(String namespace, int dimensions,
      DistanceFunction distance, VectorIndexType indexType, VectorWriteOptions options) {
    Objects.requireNonNull(distance, "distance");
    Objects.requireNonNull(indexType, "indexType");
    VectorWriteOptions o = options == null ? VectorWriteOptions.NONE : options;
    if (dimensions < 0) {
      return invalid("vectorCreateIndex: dimensions is " + dimensions + "; it must be 1 to 4096");
    }
    CreateVectorIndexRequest req = CreateVectorIndexRequest.newBuilder()
        .setNamespace(Objects.requireNonNull(namespace, "namespace"))
        .setDimensions(dimensions)
        .setDistance(distance.wire())
        .setIndexType(indexType.wire())
        .setIdempotencyKey(o.getIdempotencyKey())
        .build();
    return invoke("vectorCreateIndex", VectorGrpc.getCreateIndexMethod(), req, utf8(namespace), true, false,
        o.getTimeout(), CreateVectorIndexResponse::getCreated);
  }

  /** Drops the vector index namespace and every vector in it; false when there was none. */
  public boolean vectorDropIndex(String namespace) {
    return sync(() -> vectorDropIndexAsync(namespace, VectorWriteOptions.NONE));
  }

  public boolean vectorDropIndex(String namespace, VectorWriteOptions options) {
    return sync(() -> vectorDropIndexAsync(namespace, options));
  }

  public CompletableFuture<Boolean> vectorDropIndexAsync(String namespace, VectorWriteOptions options) {
    VectorWriteOptions o = options == null ? VectorWriteOptions.NONE : options;
    DropVectorIndexRequest req = DropVectorIndexRequest.newBuilder()
        .setNamespace(Objects.requireNonNull(namespace, "namespace"))
        .setIdempotencyKey(o.getIdempotencyKey())
        .build();
    return invoke("vectorDropIndex", VectorGrpc.getDropIndexMethod(), req, utf8(namespace), true, false,
        o.getTimeout(), DropVectorIndexResponse::getDropped);
  }

  /** Stores vector under id in namespace, replacing the vector the id had, and returns the write's version. */
  public Version vectorInsert(String namespace, String id, float[] vector) {
    return sync(() -> vectorInsertAsync(namespace, id, vector, VectorWriteOptions.NONE));
  }

  public Version vectorInsert(String namespace, String id, float[] vector, VectorWriteOptions options) {
    return sync(() -> vectorInsertAsync(namespace, id, vector, options));
  }

  public CompletableFuture<Version> vectorInsertAsync(String namespace, String id, float[] vector,
      VectorWriteOptions options) {
    Objects.requireNonNull(vector, "vector");
    VectorWriteOptions o = options == null ? VectorWriteOptions.NONE : options;
    VectorInsertRequest.Builder rb = VectorInsertRequest.newBuilder()
        .setNamespace(Objects.requireNonNull(namespace, "namespace"))
        .setId(Objects.requireNonNull(id, "id"))
        .setIdempotencyKey(o.getIdempotencyKey());
    for (float f : vector) {
      rb.addVector(f);
    }
    return invoke("vectorInsert", VectorGrpc.getInsertMethod(), rb.build(), utf8(namespace), true, false,
        o.getTimeout(), (VectorInsertResponse r) -> fromProto(r.getVersion()));
  }

  /** Removes id from namespace; false when it was not there (still a success). */
  public boolean vectorDelete(String namespace, String id) {
    return sync(() -> vectorDeleteAsync(namespace, id, VectorWriteOptions.NONE));
  }

  public boolean vectorDelete(String namespace, String id, VectorWriteOptions options) {
    return sync(() -> vectorDeleteAsync(namespace, id, options));
  }

  public CompletableFuture<Boolean> vectorDeleteAsync(String namespace, String id, VectorWriteOptions options) {
    VectorWriteOptions o = options == null ? VectorWriteOptions.NONE : options;
    VectorDeleteRequest req = VectorDeleteRequest.newBuilder()
        .setNamespace(Objects.requireNonNull(namespace, "namespace"))
        .setId(Objects.requireNonNull(id, "id"))
        .setIdempotencyKey(o.getIdempotencyKey())
        .build();
    return invoke("vectorDelete", VectorGrpc.getDeleteMethod(), req, utf8(namespace), true, false,
        o.getTimeout(), VectorDeleteResponse::getDeleted);
  }

  /** The k (1..1000) vectors of namespace nearest to query, nearest first. */
  public VectorSearchResult vectorSearch(String namespace, float[] query, int k) {
    return sync(() -> vectorSearchAsync(namespace, query, k, VectorSearchOptions.NONE));
  }

  public VectorSearchResult vectorSearch(String namespace, float[] query, int k, VectorSearchOptions options) {
    return sync(() -> vectorSearchAsync(namespace, query, k, options));
  }

  /**
   * Searches at the options' consistency level; {@link ConsistencyLevel#STALE_OK}
   * searches go to one of the shard's replicas in turn (the leader on retries).
   */
  public CompletableFuture<VectorSearchResult> vectorSearchAsync(String namespace, float[] query, int k,
      VectorSearchOptions options) {
    Objects.requireNonNull(query, "query");
    VectorSearchOptions o = options == null ? VectorSearchOptions.NONE : options;
    if (k < 0) {
      return invalid("vectorSearch: k is " + k + "; it must be 1 to 1000");
    }
    VectorSearchRequest.Builder rb = VectorSearchRequest.newBuilder()
        .setNamespace(Objects.requireNonNull(namespace, "namespace"))
        .setK(k)
        .setIncludeVectors(o.isIncludeVectors())
        .setConsistency(o.getConsistency().wireName());
    for (float f : query) {
      rb.addQuery(f);
    }
    return invoke("vectorSearch", VectorGrpc.getSearchMethod(), rb.build(), utf8(namespace), true,
        o.getConsistency() == ConsistencyLevel.STALE_OK, o.getTimeout(), VectorSearchResult::fromProto);
  }

  /** The vector stored under id in namespace (an array owned by the caller), or null when the id is absent. */
  public float[] vectorGet(String namespace, String id) {
    return sync(() -> vectorGetAsync(namespace, id, GetOptions.NONE));
  }

  public float[] vectorGet(String namespace, String id, GetOptions options) {
    return sync(() -> vectorGetAsync(namespace, id, options));
  }

  /** Reads at the options' consistency level (and timeout), as {@link #getAsync(byte[], GetOptions)}. */
  public CompletableFuture<float[]> vectorGetAsync(String namespace, String id, GetOptions options) {
    GetOptions o = options == null ? GetOptions.NONE : options;
    VectorGetRequest req = VectorGetRequest.newBuilder()
        .setNamespace(Objects.requireNonNull(namespace, "namespace"))
        .setId(Objects.requireNonNull(id, "id"))
        .setConsistency(o.getConsistency().wireName())
        .build();
    return invoke("vectorGet", VectorGrpc.getGetMethod(), req, utf8(namespace), true,
        o.getConsistency() == ConsistencyLevel.STALE_OK, o.getTimeout(),
        VectorMatch::fromProto);
  }

  // ------------------------------------------------------ view and stats

  /** The cluster view the client routes by, or null when it has none (a server without Meta). */
  public ClusterView getClusterView() {
    return topology.view();
  }

  /**
   * Registers a listener called after each change of the cluster view made
   * from now on, in order, on a thread of the client (it may call the client,
   * and should not block for long). Close the returned subscription to
   * unregister.
   */
  public Subscription onTopologyChange(Consumer<TopologyChangeEvent> listener) {
    return topology.addListener(Objects.requireNonNull(listener, "listener"));
  }

  /** A snapshot of the pool, router and topology state and call counters. */
  public ClientStats stats() {
    int[] p = pool.stats();
    Router.ViewIndex ix = router.index();
    int totalNodes = ix != null ? ix.view.getNodes().size() : nodes.size();
    return new ClientStats(p[0], p[1], totalNodes, totalShards, router.redirects.get(),
        topology.discoveries.get(), topology.epoch(), router.cachedLeaders(), topology.watching.get(),
        maxInFlight - inFlight.availablePermits(), maxInFlight, succeeded.get(), failed.get(), retries.get());
  }

  /** The shard a key routes to under this client's shard count. */
  public int shardFor(byte[] key) {
    return router.shardOf(key);
  }

  /**
   * Stops following the cluster and closes every connection. Calls in
   * progress fail with {@link ClientClosedException}, and so do later calls.
   * Idempotent.
   */
  @Override
  public void close() {
    if (!closed.compareAndSet(false, true)) {
      return;
    }
    topology.close();
    pool.close();
    // delayed retries still run, see the client closed and fail their call
    scheduler.shutdown();
  }

  // ------------------------------------------------------------ internals

  private static byte[] utf8(String s) {
    return Objects.requireNonNull(s, "key/value").getBytes(StandardCharsets.UTF_8);
  }

  private static com.norikv.proto.v1.Version toProto(Version v) {
    return com.norikv.proto.v1.Version.newBuilder().setTerm(v.getTerm()).setIndex(v.getIndex()).build();
  }

  private static Version fromProto(com.norikv.proto.v1.Version v) {
    return new Version(v.getTerm(), v.getIndex());
  }

  /** A call refused before it is sent: a future failed with InvalidArgumentException. */
  private static <T> CompletableFuture<T> invalid(String message) {
    CompletableFuture<T> f = new CompletableFuture<>();
    f.completeExceptionally(new InvalidArgumentException(message));
    return f;
  }

  /** Waits for a future and throws its NoriKVException as it is. */
  private <T> T sync(java.util.function.Supplier<CompletableFuture<T>> call) {
    if (direct && onNetworkThread()) {
      throw new IllegalStateException("a synchronous NoriKVClient call on a gRPC network thread would deadlock "
          + "(the client was built with directExecutor(true)): use the ...Async methods in continuations");
    }
    CompletableFuture<T> f = call.get();
    try {
      return f.get();
    } catch (ExecutionException e) {
      throw unwrap(e.getCause());
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new NoriKVException("interrupted while waiting for the call", Status.Code.CANCELLED, null, 0, e);
    }
  }

  private static boolean onNetworkThread() {
    return Thread.currentThread() instanceof io.grpc.netty.shaded.io.netty.util.concurrent.FastThreadLocalThread;
  }

  private static RuntimeException unwrap(Throwable t) {
    while ((t instanceof CompletionException || t instanceof ExecutionException) && t.getCause() != null) {
      t = t.getCause();
    }
    if (t instanceof RuntimeException) {
      return (RuntimeException) t;
    }
    if (t instanceof Error) {
      throw (Error) t;
    }
    return new NoriKVException(String.valueOf(t), Status.Code.UNKNOWN, null, 0, t);
  }

  private <Req, Resp, T> CompletableFuture<T> invoke(String op, MethodDescriptor<Req, Resp> method, Req req,
      byte[] key, boolean writeSafe, boolean anyReplica, Duration callTimeout, Function<Resp, T> convert) {
    CompletableFuture<T> out = new CompletableFuture<>();
    if (closed.get()) {
      out.completeExceptionally(new ClientClosedException(op + ": the client is closed"));
      return out;
    }
    long timeoutNanos = (callTimeout != null ? callTimeout : timeout).toNanos();
    long deadline = System.nanoTime() + timeoutNanos;
    if (!inFlight.tryAcquire()) {
      boolean got;
      try {
        got = inFlight.tryAcquire(timeoutNanos, TimeUnit.NANOSECONDS);
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        out.completeExceptionally(new NoriKVException(op + ": interrupted", Status.Code.CANCELLED, null, 0, e));
        return out;
      }
      if (!got) {
        failed.incrementAndGet();
        out.completeExceptionally(new ResourceExhaustedException(op + ": " + maxInFlight
            + " calls were in flight for the whole timeout (maxInFlight)", Status.Code.RESOURCE_EXHAUSTED, null, 0,
            null));
        return out;
      }
    }
    Call<Req, Resp, T> c = new Call<>(op, method, req, router.shardOf(key), writeSafe, anyReplica, deadline,
        timeoutNanos, convert, out);
    out.whenComplete((v, t) -> inFlight.release());
    c.next();
    return out;
  }

  /**
   * One request through its attempts: pick the shard's leader (looking it up
   * when unknown), send, and on failure follow a leader hint at once, or
   * back off and retry as far as the policy and the request's retry safety
   * allow, or complete the caller's future with the exception.
   */
  private final class Call<Req, Resp, T> {
    final String op;
    final MethodDescriptor<Req, Resp> method;
    final Req req;
    final int shard;
    final boolean writeSafe;
    final boolean anyReplica;
    final long deadline;
    final long timeoutNanos;
    final Function<Resp, T> convert;
    final CompletableFuture<T> out;
    int attempts;
    int redirects;
    String avoid;
    NoriKVException last;

    Call(String op, MethodDescriptor<Req, Resp> method, Req req, int shard, boolean writeSafe, boolean anyReplica,
        long deadline, long timeoutNanos, Function<Resp, T> convert, CompletableFuture<T> out) {
      this.op = op;
      this.method = method;
      this.req = req;
      this.shard = shard;
      this.writeSafe = writeSafe;
      this.anyReplica = anyReplica;
      this.deadline = deadline;
      this.timeoutNanos = timeoutNanos;
      this.convert = convert;
      this.out = out;
    }

    void fail(NoriKVException e) {
      failed.incrementAndGet();
      out.completeExceptionally(e);
    }

    /** Starts the next attempt. */
    void next() {
      if (closed.get()) {
        fail(new ClientClosedException(op + ": the client is closed"));
        return;
      }
      try {
        ChannelPool.Node n = null;
        if (anyReplica && attempts == 0 && redirects == 0) {
          n = router.replica(shard);
        }
        if (n == null) {
          n = router.leader(shard);
          if (n != null && n.addr.equals(avoid)) {
            n = null;
          }
        }
        if (n != null) {
          send(n);
          return;
        }
        // The leader is unknown: look it up (shared with concurrent calls),
        // then send to it, or to any other node, which will redirect.
        topology.discover().whenComplete((v, t) -> afterDiscovery());
      } catch (NoriKVException e) {
        fail(e);
      } catch (RuntimeException e) {
        fail(internal(e));
      }
    }

    /** An unexpected exception inside the client: the call fails with it rather than never completing. */
    private NoriKVException internal(RuntimeException e) {
      return new NoriKVException(op + ": internal error in the client: " + e, Status.Code.INTERNAL, null, attempts, e);
    }

    private void afterDiscovery() {
      if (closed.get()) {
        fail(new ClientClosedException(op + ": the client is closed"));
        return;
      }
      try {
        ChannelPool.Node n = router.leader(shard);
        if (n == null || n.addr.equals(avoid)) {
          n = router.fallback(shard, avoid);
        }
        send(n);
      } catch (NoriKVException e) {
        fail(e);
      } catch (RuntimeException e) {
        fail(internal(e));
      }
    }

    private void send(ChannelPool.Node n) {
      long remaining = deadline - System.nanoTime();
      if (remaining <= 0) {
        fail(Failures.deadline(op, timeoutNanos, last, attempts));
        return;
      }
      attempts++;
      if (attempts > 1) {
        retries.incrementAndGet();
      }
      ClientCall<Req, Resp> call =
          n.channel.newCall(method, CallOptions.DEFAULT.withDeadlineAfter(remaining, TimeUnit.NANOSECONDS));
      ClientCalls.asyncUnaryCall(call, req, new StreamObserver<Resp>() {
        private Resp resp;

        @Override
        public void onNext(Resp r) {
          resp = r;
        }

        @Override
        public void onError(Throwable t) {
          try {
            onFailure(n, t);
          } catch (RuntimeException e) {
            fail(internal(e));
          }
        }

        @Override
        public void onCompleted() {
          T v;
          try {
            v = convert.apply(resp);
          } catch (RuntimeException e) {
            fail(new NoriKVException(op + ": malformed response from " + n.addr + ": " + e, Status.Code.INTERNAL,
                n.addr, attempts, e));
            return;
          }
          succeeded.incrementAndGet();
          out.complete(v);
        }
      });
    }

    private void onFailure(ChannelPool.Node n, Throwable t) {
      Status st = Status.fromThrowable(t);
      Metadata trailers = Status.trailersFromThrowable(t);
      NoriKVException e = Failures.toException(op, n.addr, st, trailers, attempts);
      last = e;
      if (closed.get()) {
        fail(new ClientClosedException(op + ": the client was closed during the call", st.getCode(), n.addr,
            attempts, e));
        return;
      }
      if (deadline - System.nanoTime() <= 0 && st.getCode() == Status.Code.DEADLINE_EXCEEDED) {
        fail(Failures.deadline(op, timeoutNanos, e, attempts));
        return;
      }
      Failures.Kind k = Failures.classify(st);
      if (k == Failures.Kind.NOT_LEADER) {
        String hint = Failures.hint(trailers);
        if (hint != null && !hint.equals(n.addr) && redirects < MAX_REDIRECTS) {
          redirects++;
          attempts--; // following a hint is routing, not a retry
          try {
            router.setLeader(shard, hint);
          } catch (NoriKVException ce) {
            fail(ce);
            return;
          }
          next();
          return;
        }
        router.forget(shard, n);
      }
      if (!Failures.mayRetry(k, writeSafe) || attempts >= retry.getMaxAttempts()) {
        fail(e);
        return;
      }
      avoid = null;
      if (Failures.nodeDown(st, k)) {
        router.nodeFailed(n);
        avoid = n.addr;
        n.reconnectNow();
      }
      long delay = Math.min(retry.backoffNanos(attempts), Math.max(0, deadline - System.nanoTime()));
      try {
        scheduler.schedule(this::next, delay, TimeUnit.NANOSECONDS);
      } catch (java.util.concurrent.RejectedExecutionException re) {
        fail(new ClientClosedException(op + ": the client is closed"));
      }
    }
  }
}
