package io.norikv.client;

import static io.norikv.client.TestSupport.key;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.grpc.Status;
import io.norikv.client.testing.EphemeralServer;
import io.norikv.client.testing.EphemeralServerExtension;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

/**
 * Behaviour against the real norikv-server --ephemeral (one per class, from
 * EphemeralServerExtension): CRUD with versions at every consistency level,
 * TTL, CAS, if-not-exists, idempotency, limits, every exception type, the
 * cluster view, and the async API.
 */
@ExtendWith(EphemeralServerExtension.class)
class IntegrationTest {
  static EphemeralServer server;
  static NoriKVClient client;

  @BeforeAll
  static void connect(EphemeralServer s) {
    server = s;
    client = NoriKVClient.builder().nodes(s.address()).build();
  }

  @AfterAll
  static void close() {
    if (client != null) {
      client.close();
    }
  }

  @ParameterizedTest
  @EnumSource(ConsistencyLevel.class)
  void putGetDeleteRoundTripWithVersionsAtEveryConsistencyLevel(ConsistencyLevel level) {
    String k = key("crud-" + level);
    GetOptions opts = GetOptions.of(level);
    Version v1 = client.put(k, "one");
    assertTrue(v1.getTerm() >= 1 && v1.getIndex() >= 1, v1.toString());
    GetResult r1 = client.get(k, opts);
    assertEquals("one", r1.getValueAsString());
    assertEquals(v1, r1.getVersion(), "get returns exactly the version the put returned");

    Version v2 = client.put(k, "two");
    assertNotEquals(v1, v2);
    assertTrue(Long.compareUnsigned(v2.getIndex(), v1.getIndex()) > 0);
    GetResult r2 = client.get(k, opts);
    assertEquals("two", r2.getValueAsString());
    assertEquals(v2, r2.getVersion());

    assertTrue(client.delete(k), "deleting a live value tombstones it");
    assertThrows(KeyNotFoundException.class, () -> client.get(k, opts));
    assertFalse(client.delete(k), "deleting an absent key succeeds with tombstoned = false");
  }

  @Test
  void binaryKeysAndValuesRoundTripByteForByte() {
    byte[] k = {0, (byte) 0xff, 1, 2, (byte) 0x80, 0};
    byte[] v = new byte[4096];
    for (int i = 0; i < v.length; i++) {
      v[i] = (byte) (i * 31);
    }
    Version ver = client.put(k, v);
    GetResult r = client.get(k);
    assertArrayEquals(v, r.getValue());
    assertEquals(ver, r.getVersion());
    assertTrue(client.delete(k));
  }

  @Test
  void ttlValueExpiresAndThenBehavesAsMissing() throws Exception {
    String k = key("ttl");
    String forever = key("no-ttl");
    client.put(k, "soon gone", PutOptions.builder().ttlMs(300).build());
    client.put(forever, "stays");
    assertEquals("soon gone", client.get(k).getValueAsString());
    assertTrue(TestSupport.eventually(Duration.ofSeconds(10), () -> {
      try {
        client.get(k);
        return false;
      } catch (KeyNotFoundException e) {
        return true;
      }
    }), "the value did not expire");
    for (ConsistencyLevel l : ConsistencyLevel.values()) {
      assertThrows(KeyNotFoundException.class, () -> client.get(k, GetOptions.of(l)), l.toString());
    }
    assertEquals("stays", client.get(forever).getValueAsString());
    // an expired key no longer blocks ifNotExists
    client.put(k, "again", PutOptions.builder().ifNotExists(true).build());
  }

  @Test
  void casAppliesOnlyAtTheCurrentVersionAndReportsIt() {
    String k = key("cas");
    Version v1 = client.put(k, "1");
    Version v2 = client.put(k, "2", PutOptions.builder().ifMatch(v1).build());
    VersionMismatchException e = assertThrows(VersionMismatchException.class,
        () -> client.put(k, "stale", PutOptions.builder().ifMatch(v1).build()));
    assertEquals(v2, e.getCurrentVersion(), "the conflict names the key's current version");
    assertEquals(Status.Code.FAILED_PRECONDITION, e.getCode());
    assertEquals(1, e.getAttempts(), "a CAS conflict is not retried");
    assertEquals("2", client.get(k).getValueAsString());

    VersionMismatchException d = assertThrows(VersionMismatchException.class,
        () -> client.delete(k, DeleteOptions.builder().ifMatch(v1).build()));
    assertEquals(v2, d.getCurrentVersion());
    assertTrue(client.delete(k, DeleteOptions.builder().ifMatch(v2).build()));

    VersionMismatchException absent = assertThrows(VersionMismatchException.class,
        () -> client.put(k, "x", PutOptions.builder().ifMatch(v2).build()));
    assertNull(absent.getCurrentVersion(), "no current version when the key does not exist");
  }

  @Test
  void concurrentCasIncrementsLoseNoUpdate() throws Exception {
    String k = key("counter");
    client.put(k, "0");
    int threads = 8;
    int perThread = 25;
    ExecutorService pool = Executors.newFixedThreadPool(threads);
    AtomicInteger conflicts = new AtomicInteger();
    try {
      List<Future<?>> fs = new ArrayList<>();
      for (int t = 0; t < threads; t++) {
        fs.add(pool.submit(() -> {
          for (int i = 0; i < perThread; i++) {
            while (true) {
              GetResult r = client.get(k, GetOptions.of(ConsistencyLevel.LINEARIZABLE));
              int n = Integer.parseInt(r.getValueAsString());
              try {
                client.put(k, Integer.toString(n + 1), PutOptions.builder().ifMatch(r.getVersion()).build());
                break;
              } catch (VersionMismatchException e) {
                conflicts.incrementAndGet();
              }
            }
          }
          return null;
        }));
      }
      for (Future<?> f : fs) {
        f.get(120, TimeUnit.SECONDS);
      }
    } finally {
      pool.shutdownNow();
    }
    assertEquals(Integer.toString(threads * perThread),
        client.get(k, GetOptions.of(ConsistencyLevel.LINEARIZABLE)).getValueAsString(),
        "every increment applied exactly once (" + conflicts.get() + " conflicts retried)");
  }

  @Test
  void ifNotExistsWritesOnlyAnAbsentKey() {
    String k = key("ine");
    PutOptions ine = PutOptions.builder().ifNotExists(true).build();
    Version v = client.put(k, "first", ine);
    AlreadyExistsException e = assertThrows(AlreadyExistsException.class, () -> client.put(k, "second", ine));
    assertEquals(Status.Code.ALREADY_EXISTS, e.getCode());
    assertEquals(v, client.get(k).getVersion());
    client.delete(k);
    client.put(k, "third", ine);
    assertEquals("third", client.get(k).getValueAsString());
  }

  @Test
  void idempotentRetryReturnsTheFirstResultWithoutWritingAgain() {
    String k = key("idem");
    String idem = key("idem-key");
    PutOptions o = PutOptions.builder().idempotencyKey(idem).build();
    Version v1 = client.put(k, "value", o);
    Version v2 = client.put(k, "value", o);
    assertEquals(v1, v2, "the retry returns the stored result");
    assertEquals(v1, client.get(k).getVersion(), "and did not write again");
    // the same key with other parameters is refused
    InvalidArgumentException e = assertThrows(InvalidArgumentException.class, () -> client.put(k, "other", o));
    assertEquals(Status.Code.INVALID_ARGUMENT, e.getCode());
    // a conditional write with an idempotency key: the retry after success is not a conflict
    PutOptions cas = PutOptions.builder().ifMatch(v1).idempotencyKey(key("idem-cas")).build();
    Version c1 = client.put(k, "cas", cas);
    assertEquals(c1, client.put(k, "cas", cas));
    String dk = key("idem-del");
    DeleteOptions d = DeleteOptions.builder().idempotencyKey(dk).build();
    assertTrue(client.delete(k, d));
    assertTrue(client.delete(k, d), "the retried delete reports the first outcome");
  }

  @Test
  void limitsAreEnforcedWithInvalidArgumentNamingThem() {
    byte[] maxKey = new byte[1024];
    Arrays.fill(maxKey, (byte) 'k');
    client.put(maxKey, "ok".getBytes(StandardCharsets.UTF_8));
    byte[] longKey = new byte[1025];
    Arrays.fill(longKey, (byte) 'k');
    InvalidArgumentException e = assertThrows(InvalidArgumentException.class, () -> client.put(longKey, new byte[1]));
    assertTrue(e.getMessage().contains("1024"), e.getMessage());
    assertThrows(InvalidArgumentException.class, () -> client.put(new byte[0], new byte[1]));
    assertThrows(InvalidArgumentException.class, () -> client.get(new byte[0]));
    String k = key("big");
    byte[] mib = new byte[1 << 20];
    client.put(k.getBytes(StandardCharsets.UTF_8), mib);
    assertEquals(mib.length, client.get(k).getValue().length);
    InvalidArgumentException big = assertThrows(InvalidArgumentException.class,
        () -> client.put(k.getBytes(StandardCharsets.UTF_8), new byte[(1 << 20) + 1]));
    assertEquals(1, big.getAttempts());
  }

  @Test
  void clusterViewListsTheNodeAndALeaderForEveryShard() {
    ClusterView v = client.getClusterView();
    assertNotNull(v);
    assertEquals(1, v.getNodes().size());
    assertEquals(server.address(), v.getNodes().get(0).getAddr());
    assertEquals("alive", v.getNodes().get(0).getRole());
    assertEquals(1024, v.getShards().size());
    String id = v.getNodes().get(0).getId();
    Set<Integer> ids = new HashSet<>();
    for (ClusterView.Shard s : v.getShards()) {
      ids.add(s.getId());
      assertEquals(id, s.leaderNodeId(), "shard " + s.getId());
    }
    assertEquals(1024, ids.size());
    ClientStats st = client.stats();
    assertEquals(1024, st.cachedLeaders);
    assertEquals(1, st.totalNodes);
    assertEquals(1024, st.totalShards);
    assertTrue(st.watching, "the WatchCluster stream is open");
    assertEquals(1, st.totalConnections, "one pooled channel for the one node");
    assertEquals(1, st.activeConnections);
    assertTrue(st.succeeded > 0 || st.epoch > 0);
  }

  @Test
  void asyncCallsRunConcurrentlyAndFailWithTheSameExceptions() throws Exception {
    List<CompletableFuture<Version>> puts = new ArrayList<>();
    List<String> keys = new ArrayList<>();
    for (int i = 0; i < 200; i++) {
      String k = key("async-" + i);
      keys.add(k);
      puts.add(client.putAsync(k, "v" + i, PutOptions.NONE));
    }
    CompletableFuture.allOf(puts.toArray(new CompletableFuture<?>[0])).get(60, TimeUnit.SECONDS);
    for (int i = 0; i < keys.size(); i++) {
      GetResult r = client.getAsync(keys.get(i), GetOptions.NONE).get(10, TimeUnit.SECONDS);
      assertEquals("v" + i, r.getValueAsString());
      assertEquals(puts.get(i).get(), r.getVersion());
    }
    CompletableFuture<GetResult> missing = client.getAsync(key("async-missing"), GetOptions.NONE);
    CompletionException e = assertThrows(CompletionException.class, missing::join);
    assertInstanceOf(KeyNotFoundException.class, e.getCause());
    assertTrue(client.deleteAsync(keys.get(0), DeleteOptions.NONE).get(10, TimeUnit.SECONDS));
  }

  @Test
  void wrongTotalShardsFailsAtConnectNamingBothCounts() {
    ShardCountMismatchException e = assertThrows(ShardCountMismatchException.class,
        () -> NoriKVClient.builder().nodes(server.address()).totalShards(256).build());
    assertEquals(256, e.getConfiguredShards());
    assertEquals(1024, e.getClusterShards());
    assertTrue(e.getMessage().contains("256") && e.getMessage().contains("1024"), e.getMessage());
  }

  @Test
  void noReachableNodeFailsAtConnectWithConnectionException() {
    String dead = EphemeralServer.freeAddress();
    long t0 = System.nanoTime();
    ConnectionException e = assertThrows(ConnectionException.class,
        () -> NoriKVClient.builder().nodes(dead).timeout(Duration.ofMillis(800)).build());
    assertTrue(e.getMessage().contains(dead), e.getMessage());
    assertTrue(System.nanoTime() - t0 < TimeUnit.SECONDS.toNanos(30));
  }

  @Test
  void closedClientFailsEveryCallWithClientClosedException() {
    NoriKVClient c = NoriKVClient.builder().nodes(server.address()).build();
    String k = key("closed");
    c.put(k, "v");
    c.close();
    c.close(); // idempotent
    assertThrows(ClientClosedException.class, () -> c.get(k));
    assertThrows(ClientClosedException.class, () -> c.put(k, "v"));
    CompletionException e = assertThrows(CompletionException.class, () -> c.deleteAsync(k, null).join());
    assertInstanceOf(ClientClosedException.class, e.getCause());
  }

  @Test
  void topologyListenerUnsubscribes() {
    AtomicInteger calls = new AtomicInteger();
    Subscription s = client.onTopologyChange(ev -> calls.incrementAndGet());
    s.close();
    s.close();
    assertEquals(0, calls.get());
  }
}
