package io.norikv.client;

import static io.norikv.client.TestSupport.key;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.norikv.client.testing.EphemeralServer;
import io.norikv.client.testing.EphemeralServerExtension;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionException;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Servers of the tests' own (not the shared one): crash and restart,
 * SIGSTOP for deadlines and the in-flight bound.
 */
class RestartTest {
  private static List<String> diskArgs(String rpc, Path dir) {
    List<String> a = new ArrayList<>();
    a.add("--rpc-addr=" + rpc);
    a.add("--http-addr=127.0.0.1:0");
    a.add("--peer-addr=127.0.0.1:0");
    a.add("--data-dir=" + dir);
    return a;
  }

  @Test
  void clientRecoversFromServerSigkillAndRestartAndEveryAcknowledgedWriteSurvives(@TempDir Path dir)
      throws Exception {
    String bin = EphemeralServerExtension.requireBinary();
    String rpc = EphemeralServer.freeAddress();
    EphemeralServer first = EphemeralServer.builder().binary(bin).args(diskArgs(rpc, dir)).readyAddr(rpc).build()
        .start();
    EphemeralServer second = null;
    RetryPolicy patient = RetryPolicy.builder().maxAttempts(100).initialDelay(Duration.ofMillis(50))
        .maxDelay(Duration.ofMillis(200)).jitter(Duration.ofMillis(20)).build();
    try (NoriKVClient c = NoriKVClient.builder().nodes(rpc).timeout(Duration.ofSeconds(30)).retry(patient).build()) {
      List<TopologyChangeEvent> events = new CopyOnWriteArrayList<>();
      c.onTopologyChange(events::add);
      Map<String, Version> acked = new LinkedHashMap<>();
      for (int i = 0; i < 100; i++) {
        String k = key("crash-" + i);
        acked.put(k, c.put(k, "v" + i));
      }
      long epochBefore = c.stats().epoch;

      first.kill(); // SIGKILL: no clean shutdown
      assertTrue(TestSupport.eventually(Duration.ofSeconds(10), () -> !c.stats().watching));
      // Issued while nothing listens: an unconditional put is retried
      // (refused connections are always safe to retry) until the new
      // process answers.
      CompletableFuture<Version> during = c.putAsync(key("during-outage"), "x", PutOptions.NONE);
      Thread.sleep(500);
      assertTrue(!during.isDone(), "the put during the outage waits for the server");
      second = EphemeralServer.builder().binary(bin).args(diskArgs(rpc, dir)).readyAddr(rpc).build().start();
      Version dv;
      try {
        dv = during.get(40, TimeUnit.SECONDS);
      } catch (java.util.concurrent.TimeoutException e) {
        StringBuilder dump = new StringBuilder();
        for (java.lang.management.ThreadInfo ti : java.lang.management.ManagementFactory.getThreadMXBean()
            .dumpAllThreads(false, false)) {
          dump.append(ti);
        }
        throw new AssertionError("the put issued during the outage never completed; " + c.stats() + "\n" + dump);
      }
      assertTrue(dv.getIndex() >= 1);

      for (Map.Entry<String, Version> e : acked.entrySet()) {
        GetResult r = c.get(e.getKey(), GetOptions.of(ConsistencyLevel.LINEARIZABLE));
        assertEquals(e.getValue(), r.getVersion(), "acknowledged write " + e.getKey() + " survived the crash");
      }
      assertTrue(TestSupport.eventually(Duration.ofSeconds(20), () -> c.stats().watching),
          "the watch reconnects to the restarted server");
      assertTrue(TestSupport.eventually(Duration.ofSeconds(20), () -> !events.isEmpty() || c.stats().epoch != epochBefore),
          "the restarted server's view was installed");
      assertTrue(c.stats().retries > 0, "the outage was ridden out by retries");
    } finally {
      first.kill();
      if (second != null) {
        second.stop();
      }
    }
  }

  @Test
  void topologyListenerHearsTheNodeReplacedOnTheSameAddress() throws Exception {
    String bin = EphemeralServerExtension.requireBinary();
    String rpc = EphemeralServer.freeAddress();
    EphemeralServer first = EphemeralServer.builder().binary(bin)
        .args("--ephemeral", "--node-id=old", "--rpc-addr=" + rpc, "--http-addr=127.0.0.1:0", "--peer-addr=127.0.0.1:0")
        .build().start();
    EphemeralServer second = null;
    try (NoriKVClient c = NoriKVClient.builder().nodes(rpc).timeout(Duration.ofSeconds(20)).build()) {
      assertEquals("old", c.getClusterView().getNodes().get(0).getId());
      java.util.concurrent.LinkedBlockingQueue<TopologyChangeEvent> events = new java.util.concurrent.LinkedBlockingQueue<>();
      Subscription sub = c.onTopologyChange(events::add);
      assertEquals(0, first.stop(), "SIGTERM stops the server cleanly");
      second = EphemeralServer.builder().binary(bin)
          .args("--ephemeral", "--node-id=new", "--rpc-addr=" + rpc, "--http-addr=127.0.0.1:0", "--peer-addr=127.0.0.1:0")
          .build().start();
      TopologyChangeEvent ev = events.poll(20, TimeUnit.SECONDS);
      assertTrue(ev != null, "no topology event after the node was replaced; " + c.stats());
      assertEquals(java.util.Collections.singletonList("new"), ev.getAddedNodes());
      assertEquals(java.util.Collections.singletonList("old"), ev.getRemovedNodes());
      assertEquals(1024, ev.getLeaderChanges().size(), "every shard's leader moved to the new node");
      assertTrue(ev.getLeaderChanges().values().stream().allMatch("new"::equals));
      assertEquals("new", c.getClusterView().getNodes().get(0).getId());
      sub.close();
      c.put(key("after-replace"), "v");
      assertEquals(1024, c.stats().cachedLeaders);
    } finally {
      first.stop();
      if (second != null) {
        second.stop();
      }
    }
  }

  @Test
  void callsToAStoppedServerEndAtTheirTimeoutWithDeadlineExceeded() throws Exception {
    String bin = EphemeralServerExtension.requireBinary();
    try (EphemeralServer s = EphemeralServer.builder().binary(bin).build().start();
        NoriKVClient c = NoriKVClient.builder().nodes(s.address()).build()) {
      String k = key("stopped");
      c.put(k, "v");
      s.signal("STOP");
      try {
        long t0 = System.nanoTime();
        DeadlineExceededException e = assertThrows(DeadlineExceededException.class,
            () -> c.get(k, GetOptions.builder().timeout(Duration.ofMillis(300)).build()));
        long took = System.nanoTime() - t0;
        assertTrue(took >= TimeUnit.MILLISECONDS.toNanos(290), "ended before its timeout: " + took);
        assertTrue(e.getAttempts() >= 1);
        assertInstanceOf(ConnectionException.class, e);
      } finally {
        s.signal("CONT");
      }
      assertEquals("v", c.get(k).getValueAsString(), "the client works again once the server does");
    }
  }

  @Test
  void callsBeyondMaxInFlightWaitThenFailWithResourceExhausted() throws Exception {
    String bin = EphemeralServerExtension.requireBinary();
    try (EphemeralServer s = EphemeralServer.builder().binary(bin).build().start();
        NoriKVClient c = NoriKVClient.builder().nodes(s.address()).maxInFlight(2).build()) {
      String k = key("bounded");
      c.put(k, "v");
      s.signal("STOP");
      List<CompletableFuture<GetResult>> held = new ArrayList<>();
      try {
        GetOptions slow = GetOptions.builder().timeout(Duration.ofSeconds(20)).build();
        held.add(c.getAsync(k, slow));
        held.add(c.getAsync(k, slow));
        assertEquals(2, c.stats().inFlight);
        CompletableFuture<GetResult> third = c.getAsync(k, GetOptions.builder().timeout(Duration.ofMillis(200)).build());
        CompletionException e = assertThrows(CompletionException.class, third::join);
        assertInstanceOf(ResourceExhaustedException.class, e.getCause());
        assertTrue(e.getCause().getMessage().contains("maxInFlight"), e.getCause().getMessage());
      } finally {
        s.signal("CONT");
      }
      for (CompletableFuture<GetResult> f : held) {
        assertEquals("v", f.get(30, TimeUnit.SECONDS).getValueAsString());
      }
      assertEquals(0, c.stats().inFlight);
    }
  }
}
