package io.norikv.client;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.grpc.Status;
import java.time.Duration;
import java.util.HashSet;
import java.util.Set;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * Error paths with injected answers (FakeNode): leader hints, retry safety
 * of writes with unknown outcome, what is and is not retried, and how each
 * failure surfaces.
 */
class InjectedFailuresTest {
  static final int SHARDS = 16;
  FakeNode a;
  FakeNode b;

  @BeforeEach
  void start() throws Exception {
    a = new FakeNode("a");
    b = new FakeNode("b");
    a.view = FakeNode.viewOf(SHARDS, a, a, b);
    b.view = a.view;
  }

  @AfterEach
  void stop() throws Exception {
    a.close();
    b.close();
  }

  private NoriKVClient client(RetryPolicy retry) {
    return NoriKVClient.builder().nodes(a.addr).totalShards(SHARDS).timeout(Duration.ofSeconds(5)).retry(retry)
        .build();
  }

  /** Retries that could not happen within the 5 s timeout: a call that succeeds did not back off. */
  private static RetryPolicy noTimeForBackoff() {
    return RetryPolicy.builder().initialDelay(Duration.ofSeconds(60)).maxDelay(Duration.ofSeconds(60)).build();
  }

  private static RetryPolicy fast(int attempts) {
    return RetryPolicy.builder().maxAttempts(attempts).initialDelay(Duration.ofMillis(1)).maxDelay(Duration.ofMillis(5))
        .jitter(Duration.ofMillis(1)).build();
  }

  @Test
  void notLeaderHintIsFollowedAtOnceAndCachedAsTheShardsLeader() {
    try (NoriKVClient c = client(noTimeForBackoff())) {
      a.script.add(FakeNode.Fail.notLeader(b.addr));
      c.put("k", "v");
      assertEquals(1, a.calls.get());
      assertEquals(1, b.calls.get());
      assertEquals(1, c.stats().redirects);
      assertEquals(0, c.stats().retries, "following a hint is not a retry");
      c.put("k", "v2");
      assertEquals(1, a.calls.get(), "the hinted leader is cached for the shard");
      assertEquals(2, b.calls.get());
    }
  }

  @Test
  void notLeaderRedirectLoopsAreBounded() {
    try (NoriKVClient c = client(fast(2))) {
      a.always = FakeNode.Fail.notLeader(b.addr);
      b.always = FakeNode.Fail.notLeader(a.addr);
      NotLeaderException e = assertThrows(NotLeaderException.class, () -> c.put("k", "v"));
      assertTrue(e.getLeaderHint() != null);
      int calls = a.calls.get() + b.calls.get();
      assertTrue(calls <= 2 * (NoriKVClient.MAX_REDIRECTS + 2), "calls " + calls);
      assertInstanceOf(ConnectionException.class, e);
    }
  }

  @Test
  void notLeaderWithoutHintIsRetriedAtAnotherReplicaWithBackoff() {
    try (NoriKVClient c = client(fast(5))) {
      a.script.add(FakeNode.Fail.notLeader(null));
      b.script.add(FakeNode.Fail.notLeader(null));
      c.put("k", "v");
      int calls = a.calls.get() + b.calls.get();
      assertTrue(calls >= 2, "a=" + a.calls + " b=" + b.calls);
      assertEquals(calls - 1, c.stats().retries, "each refused attempt was followed by a retry");
      assertEquals(0, c.stats().redirects);
    }
  }

  @Test
  void conditionalWriteWithUnknownOutcomeIsNotRetriedWithoutIdempotencyKey() {
    try (NoriKVClient c = client(fast(5))) {
      a.script.add(new FakeNode.Fail(Status.UNAVAILABLE.withDescription("QUORUM_UNAVAILABLE")));
      ConnectionException e = assertThrows(ConnectionException.class,
          () -> c.put("k", "v", PutOptions.builder().ifMatch(new Version(1, 1)).build()));
      assertEquals(1, a.calls.get(), "a CAS put whose outcome is unknown is returned, not resent");
      assertEquals(Status.Code.UNAVAILABLE, e.getCode());

      a.script.add(new FakeNode.Fail(Status.DEADLINE_EXCEEDED.withDescription("COMMIT_TIMEOUT")));
      DeadlineExceededException d = assertThrows(DeadlineExceededException.class,
          () -> c.put("k", "v", PutOptions.builder().ifNotExists(true).build()));
      assertEquals(1, d.getAttempts());
      assertEquals(2, a.calls.get());

      a.script.add(new FakeNode.Fail(Status.UNAVAILABLE.withDescription("QUORUM_UNAVAILABLE")));
      assertThrows(ConnectionException.class,
          () -> c.delete("k", DeleteOptions.builder().ifMatch(new Version(1, 1)).build()));
      assertEquals(3, a.calls.get());
    }
  }

  @Test
  void writesWithUnknownOutcomeAreRetriedWhenIdempotentOrUnconditional() {
    try (NoriKVClient c = client(fast(5))) {
      a.script.add(new FakeNode.Fail(Status.UNAVAILABLE.withDescription("QUORUM_UNAVAILABLE")));
      c.put("k", "v", PutOptions.builder().ifMatch(new Version(1, 1)).idempotencyKey("i").build());
      assertEquals(2, a.calls.get());
      a.script.add(new FakeNode.Fail(Status.DEADLINE_EXCEEDED.withDescription("COMMIT_TIMEOUT")));
      c.put("k", "v");
      assertEquals(4, a.calls.get());
      a.script.add(new FakeNode.Fail(Status.UNAVAILABLE.withDescription("QUORUM_UNAVAILABLE")));
      c.delete("k");
      assertEquals(6, a.calls.get());
      a.script.add(new FakeNode.Fail(Status.ABORTED));
      c.get("k");
      assertEquals(8, a.calls.get());
    }
  }

  @Test
  void vectorCallsFollowLeaderHintsAndRetryWritesWithUnknownOutcome() {
    try (NoriKVClient c = client(fast(5))) {
      a.script.add(FakeNode.Fail.notLeader(b.addr));
      c.vectorInsert("ns", "id", new float[] {1, 2});
      assertEquals(1, a.calls.get());
      assertEquals(1, b.calls.get());
      assertEquals(1, c.stats().redirects);
      assertEquals("b", c.vectorSearch("ns", new float[] {1, 2}, 1).getMatches().get(0).getId(),
          "the hinted leader is cached for the namespace's shard");
      assertEquals(1, a.calls.get());

      // An insert replaces: resending one whose outcome is unknown is harmless.
      b.script.add(new FakeNode.Fail(Status.UNAVAILABLE.withDescription("QUORUM_UNAVAILABLE")));
      c.vectorInsert("ns", "id", new float[] {1, 2});
      assertEquals(4, b.calls.get());

      b.script.add(new FakeNode.Fail(Status.INVALID_ARGUMENT.withDescription("vector has 2 values")));
      InvalidArgumentException e = assertThrows(InvalidArgumentException.class,
          () -> c.vectorInsert("ns", "id", new float[] {1, 2}));
      assertEquals(1, e.getAttempts(), "a permanent answer is not retried");
      assertEquals(5, b.calls.get());
    }
  }

  @Test
  void overloadIsRetriedAndSurfacesAsResourceExhaustedWhenAttemptsRunOut() {
    try (NoriKVClient c = client(fast(3))) {
      a.always = new FakeNode.Fail(Status.RESOURCE_EXHAUSTED.withDescription("proposal queue full"));
      ResourceExhaustedException e = assertThrows(ResourceExhaustedException.class,
          () -> c.put("k", "v", PutOptions.builder().ifNotExists(true).build()));
      assertEquals(3, a.calls.get(), "rejected before proposal: safe to retry even a conditional write");
      assertEquals(3, e.getAttempts());
      assertTrue(e.getMessage().contains("after 3 attempts"), e.getMessage());
    }
  }

  @Test
  void permanentAnswersAreNeverRetried() {
    try (NoriKVClient c = client(fast(5))) {
      a.script.add(new FakeNode.Fail(Status.INVALID_ARGUMENT.withDescription("key is 1025 bytes, limit 1024")));
      assertThrows(InvalidArgumentException.class, () -> c.put("k", "v"));
      a.script.add(new FakeNode.Fail(Status.NOT_FOUND.withDescription("key not found")));
      assertThrows(KeyNotFoundException.class, () -> c.get("k"));
      a.script.add(new FakeNode.Fail(Status.ALREADY_EXISTS));
      assertThrows(AlreadyExistsException.class, () -> c.put("k", "v"));
      a.script.add(new FakeNode.Fail(Status.UNIMPLEMENTED));
      UnimplementedException u = assertThrows(UnimplementedException.class, () -> c.put("k", "v"));
      assertEquals(Status.Code.UNIMPLEMENTED, u.getCode());
      a.script.add(new FakeNode.Fail(Status.PERMISSION_DENIED));
      NoriKVException p = assertThrows(NoriKVException.class, () -> c.put("k", "v"));
      assertEquals(Status.Code.PERMISSION_DENIED, p.getCode());
      assertEquals(5, a.calls.get());
      assertEquals(0, c.stats().retries);
    }
  }

  @Test
  void staleReadsSpreadOverReplicasWhileOtherReadsGoToTheLeader() {
    try (NoriKVClient c = client(fast(3))) {
      Set<String> servedBy = new HashSet<>();
      for (int i = 0; i < 40; i++) {
        servedBy.add(c.get("k", GetOptions.of(ConsistencyLevel.STALE_OK)).getValueAsString());
      }
      assertEquals(new HashSet<>(java.util.Arrays.asList("a", "b")), servedBy);
      int before = b.calls.get();
      for (int i = 0; i < 10; i++) {
        assertEquals("a", c.get("k", GetOptions.of(ConsistencyLevel.LINEARIZABLE)).getValueAsString());
        assertEquals("a", c.get("k").getValueAsString());
      }
      assertEquals(before, b.calls.get());
    }
  }

  @Test
  void aPushedViewMovesRoutingAndOnlyLaterChangesReachANewListener() throws Exception {
    try (NoriKVClient c = client(fast(3))) {
      java.util.concurrent.LinkedBlockingQueue<TopologyChangeEvent> events = new java.util.concurrent.LinkedBlockingQueue<>();
      c.onTopologyChange(events::add); // right after connect: the initial view is not a change it hears
      c.put("k", "v");
      assertEquals(1, a.calls.get());
      com.norikv.proto.v1.ClusterView moved = FakeNode.viewOf(2, SHARDS, b, a, b);
      b.view = moved;
      a.push(moved);
      TopologyChangeEvent ev = events.poll(10, java.util.concurrent.TimeUnit.SECONDS);
      assertTrue(ev != null, "no event for the pushed view");
      assertEquals(1, ev.getPreviousEpoch());
      assertEquals(2, ev.getCurrentEpoch());
      assertEquals(SHARDS, ev.getLeaderChanges().size());
      assertTrue(ev.getAddedNodes().isEmpty() && ev.getRemovedNodes().isEmpty());
      assertEquals(2, c.stats().epoch);
      c.put("k", "v2");
      assertEquals(1, a.calls.get(), "requests follow the new view's leader");
      assertEquals(1, b.calls.get());
      assertEquals(0, c.stats().redirects);
      assertEquals(null, events.poll(200, java.util.concurrent.TimeUnit.MILLISECONDS), "one change, one event");
    }
  }

  @Test
  void aServerWithoutMetaIsServedThroughItsSeedAddress() {
    a.metaUnimplemented = true;
    try (NoriKVClient c = client(fast(3))) {
      c.put("k", "v");
      assertEquals(1, a.calls.get());
      assertEquals(null, c.getClusterView());
    }
  }
}
