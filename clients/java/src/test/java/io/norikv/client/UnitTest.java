package io.norikv.client;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.grpc.Metadata;
import io.grpc.Status;
import java.net.ConnectException;
import java.time.Duration;
import java.util.Arrays;
import java.util.Collections;
import java.util.List;
import org.junit.jupiter.api.Test;

/** Pure logic: versions, options, retry policy, failure classification, error mapping, topology diffs. */
class UnitTest {
  @Test
  void versionParsesAndPrintsTermDotIndex() {
    Version v = Version.parse("3.17");
    assertEquals(3, v.getTerm());
    assertEquals(17, v.getIndex());
    assertEquals("3.17", v.toString());
    assertEquals(new Version(3, 17), v);
    assertEquals(new Version(3, 17).hashCode(), v.hashCode());
    assertEquals("18446744073709551615.1", Version.parse("18446744073709551615.1").toString());
    for (String bad : Arrays.asList("", "3", "3.", ".4", "a.b", "1.2.3")) {
      assertThrows(IllegalArgumentException.class, () -> Version.parse(bad), bad);
    }
  }

  @Test
  void retryBackoffDoublesUpToMaxPlusBoundedJitter() {
    RetryPolicy p = RetryPolicy.builder().initialDelay(Duration.ofMillis(100)).maxDelay(Duration.ofMillis(1000))
        .jitter(Duration.ofMillis(10)).build();
    long ms = 1_000_000;
    long[] base = {100, 200, 400, 800, 1000, 1000, 1000};
    for (int n = 1; n <= base.length; n++) {
      for (int i = 0; i < 50; i++) {
        long d = p.backoffNanos(n);
        assertTrue(d >= base[n - 1] * ms && d < (base[n - 1] + 10) * ms, "retry " + n + ": " + d);
      }
    }
    RetryPolicy noJitter = RetryPolicy.builder().jitter(Duration.ZERO).build();
    assertEquals(100 * ms, noJitter.backoffNanos(1));
    assertEquals(5000 * ms, noJitter.backoffNanos(60));
    assertThrows(IllegalArgumentException.class, () -> RetryPolicy.builder().maxAttempts(0));
    assertThrows(IllegalArgumentException.class, () -> RetryPolicy.builder().jitter(Duration.ofMillis(-1)));
  }

  @Test
  void onlyIdempotentOrUnconditionalWritesAreRetrySafe() {
    assertTrue(PutOptions.NONE.retrySafe());
    assertTrue(PutOptions.builder().ttlMs(5).build().retrySafe());
    assertFalse(PutOptions.builder().ifMatch(new Version(1, 2)).build().retrySafe());
    assertFalse(PutOptions.builder().ifNotExists(true).build().retrySafe());
    assertTrue(PutOptions.builder().ifNotExists(true).idempotencyKey("k").build().retrySafe());
    assertTrue(DeleteOptions.NONE.retrySafe());
    assertFalse(DeleteOptions.builder().ifMatch(new Version(1, 2)).build().retrySafe());
    assertTrue(DeleteOptions.builder().ifMatch(new Version(1, 2)).idempotencyKey("k").build().retrySafe());
    assertThrows(IllegalArgumentException.class, () -> PutOptions.builder().ttlMs(-1));
  }

  @Test
  void failuresAreClassifiedByWhatTheySayAboutTheRequestsFate() {
    assertEquals(Failures.Kind.NOT_LEADER, Failures.classify(Status.UNAVAILABLE.withDescription("NOT_LEADER: shard 3")));
    assertEquals(Failures.Kind.NOT_SENT,
        Failures.classify(Status.UNAVAILABLE.withDescription("io exception").withCause(new ConnectException("x"))));
    assertEquals(Failures.Kind.UNKNOWN, Failures.classify(Status.UNAVAILABLE.withDescription("QUORUM_UNAVAILABLE")));
    assertEquals(Failures.Kind.UNKNOWN, Failures.classify(Status.DEADLINE_EXCEEDED.withDescription("COMMIT_TIMEOUT")));
    assertEquals(Failures.Kind.NOT_SENT, Failures.classify(Status.RESOURCE_EXHAUSTED.withDescription("queue full")));
    assertEquals(Failures.Kind.PERMANENT,
        Failures.classify(Status.RESOURCE_EXHAUSTED.withDescription("message larger than max (5 vs. 4)")));
    for (Status s : Arrays.asList(Status.NOT_FOUND, Status.INVALID_ARGUMENT, Status.FAILED_PRECONDITION,
        Status.ALREADY_EXISTS, Status.PERMISSION_DENIED, Status.UNIMPLEMENTED)) {
      assertEquals(Failures.Kind.PERMANENT, Failures.classify(s), s.toString());
    }
    assertTrue(Failures.mayRetry(Failures.Kind.NOT_SENT, false));
    assertTrue(Failures.mayRetry(Failures.Kind.NOT_LEADER, false));
    assertFalse(Failures.mayRetry(Failures.Kind.UNKNOWN, false));
    assertTrue(Failures.mayRetry(Failures.Kind.UNKNOWN, true));
    assertFalse(Failures.mayRetry(Failures.Kind.PERMANENT, true));
  }

  @Test
  void everyStatusMapsToItsExceptionType() {
    Metadata tr = new Metadata();
    tr.put(Failures.CURRENT_VERSION, "2.9");
    tr.put(Failures.LEADER_HINT, "127.0.0.1:9002");
    assertInstanceOf(KeyNotFoundException.class, Failures.toException("get", "n", Status.NOT_FOUND, null, 1));
    NoriKVException vm = Failures.toException("put", "n",
        Status.FAILED_PRECONDITION.withDescription("version mismatch: key has 2.9"), tr, 1);
    assertInstanceOf(VersionMismatchException.class, vm);
    assertEquals(new Version(2, 9), ((VersionMismatchException) vm).getCurrentVersion());
    assertEquals(Status.Code.FAILED_PRECONDITION, vm.getCode());
    NoriKVException absent = Failures.toException("put", "n",
        Status.FAILED_PRECONDITION.withDescription("version mismatch: key does not exist"), new Metadata(), 1);
    assertNull(((VersionMismatchException) absent).getCurrentVersion());
    assertInstanceOf(AlreadyExistsException.class, Failures.toException("put", "n", Status.ALREADY_EXISTS, null, 1));
    NoriKVException nl = Failures.toException("put", "n", Status.UNAVAILABLE.withDescription("NOT_LEADER"), tr, 1);
    assertInstanceOf(NotLeaderException.class, nl);
    assertInstanceOf(ConnectionException.class, nl);
    assertEquals("127.0.0.1:9002", ((NotLeaderException) nl).getLeaderHint());
    assertInstanceOf(ConnectionException.class, Failures.toException("put", "n", Status.UNAVAILABLE, null, 3));
    assertInstanceOf(DeadlineExceededException.class,
        Failures.toException("put", "n", Status.DEADLINE_EXCEEDED, null, 1));
    assertInstanceOf(ResourceExhaustedException.class,
        Failures.toException("put", "n", Status.RESOURCE_EXHAUSTED, null, 1));
    assertInstanceOf(InvalidArgumentException.class,
        Failures.toException("put", "n", Status.INVALID_ARGUMENT.withDescription("key is empty"), null, 1));
    assertInstanceOf(UnimplementedException.class, Failures.toException("put", "n", Status.UNIMPLEMENTED, null, 1));
    NoriKVException other = Failures.toException("put", "n", Status.PERMISSION_DENIED, null, 1);
    assertEquals(NoriKVException.class, other.getClass());
    assertEquals(Status.Code.PERMISSION_DENIED, other.getCode());
    assertTrue(Failures.toException("put", "127.0.0.1:1", Status.UNAVAILABLE.withDescription("x"), null, 3)
        .getMessage().contains("after 3 attempts"));
  }

  private static ClusterView view(long epoch, List<ClusterView.Node> nodes, String... leaders) {
    ClusterView.Shard[] shards = new ClusterView.Shard[leaders.length];
    for (int i = 0; i < leaders.length; i++) {
      shards[i] = new ClusterView.Shard(i, Collections.singletonList(new ClusterView.Replica(leaders[i], true)));
    }
    return new ClusterView(epoch, nodes, Arrays.asList(shards));
  }

  @Test
  void topologyEventsNameAddedRemovedNodesAndLeaderMoves() {
    ClusterView.Node a = new ClusterView.Node("a", "h:1", "alive");
    ClusterView.Node b = new ClusterView.Node("b", "h:2", "alive");
    ClusterView.Node bDead = new ClusterView.Node("b", "h:2", "dead");
    ClusterView.Node c = new ClusterView.Node("c", "h:3", "suspect");
    ClusterView v1 = view(1, Arrays.asList(a, b), "a", "b");
    ClusterView v2 = view(2, Arrays.asList(a, bDead, c), "a", "c");
    TopologyChangeEvent first = TopologyChangeEvent.diff(null, v1);
    assertEquals(0, first.getPreviousEpoch());
    assertEquals(Arrays.asList("a", "b"), first.getAddedNodes());
    assertEquals(2, first.getLeaderChanges().size());
    TopologyChangeEvent ev = TopologyChangeEvent.diff(v1, v2);
    assertEquals(1, ev.getPreviousEpoch());
    assertEquals(2, ev.getCurrentEpoch());
    assertEquals(Collections.singletonList("c"), ev.getAddedNodes());
    assertEquals(Collections.singletonList("b"), ev.getRemovedNodes());
    assertEquals(Collections.singletonMap(1, "c"), ev.getLeaderChanges());
    assertTrue(v1.sameContent(v1.withEpoch(9)));
    assertFalse(v1.sameContent(v2));
  }

  @Test
  void builderRejectsBadConfiguration() {
    assertThrows(IllegalArgumentException.class, () -> NoriKVClient.builder().build());
    assertThrows(IllegalArgumentException.class, () -> NoriKVClient.builder().nodes(""));
    assertThrows(IllegalArgumentException.class, () -> NoriKVClient.builder().totalShards(0));
    assertThrows(IllegalArgumentException.class, () -> NoriKVClient.builder().timeout(Duration.ZERO));
    assertThrows(IllegalArgumentException.class, () -> NoriKVClient.builder().maxInFlight(0));
  }

  @Test
  void vectorOptionsHaveTheDocumentedDefaultsAndRejectBadTimeouts() {
    assertEquals("", VectorWriteOptions.NONE.getIdempotencyKey());
    assertNull(VectorWriteOptions.NONE.getTimeout());
    assertEquals("k1", VectorWriteOptions.idempotent("k1").getIdempotencyKey());
    assertEquals("", VectorWriteOptions.builder().idempotencyKey(null).build().getIdempotencyKey());
    assertFalse(VectorSearchOptions.NONE.isIncludeVectors());
    assertEquals(ConsistencyLevel.LEASE, VectorSearchOptions.NONE.getConsistency());
    assertEquals(ConsistencyLevel.LEASE, VectorSearchOptions.builder().consistency(null).build().getConsistency());
    assertThrows(IllegalArgumentException.class, () -> VectorSearchOptions.builder().timeout(Duration.ZERO));
    assertThrows(IllegalArgumentException.class, () -> VectorWriteOptions.builder().timeout(Duration.ofMillis(-1)));
  }

  @Test
  void vectorEnumsMapToTheWireValues() {
    assertEquals(1, DistanceFunction.EUCLIDEAN.wire().getNumber());
    assertEquals(2, DistanceFunction.COSINE.wire().getNumber());
    assertEquals(3, DistanceFunction.INNER_PRODUCT.wire().getNumber());
    assertEquals(1, VectorIndexType.BRUTE_FORCE.wire().getNumber());
    assertEquals(2, VectorIndexType.HNSW.wire().getNumber());
  }
}
