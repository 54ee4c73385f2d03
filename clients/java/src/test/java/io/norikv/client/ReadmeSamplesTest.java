package io.norikv.client;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.norikv.client.testing.EphemeralServer;
import io.norikv.client.testing.EphemeralServerExtension;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;

/**
 * Every Java sample of clients/java/README.md runs here against the real
 * server; {@link #everyReadmeSampleIsTestedCode()} checks that each ```java
 * block of the README appears, line for line, in this file or in
 * ReadmeExtensionSampleTest.java, so the README cannot drift from the code.
 */
@ExtendWith(EphemeralServerExtension.class)
class ReadmeSamplesTest {
  static NoriKVClient client;
  static EphemeralServer server;

  @BeforeAll
  static void connect(EphemeralServer s) {
    server = s;
    client = NoriKVClient.builder().nodes(s.address()).build();
  }

  @AfterAll
  static void close() {
    client.close();
  }

  // The quick start, as a method that takes the node addresses.
  static void quickStart(String... nodes) {
    try (NoriKVClient client = NoriKVClient.builder()
        .nodes(nodes)                       // e.g. "localhost:9001", "localhost:9002"
        .totalShards(1024)
        .timeout(Duration.ofSeconds(5))
        .build()) {
      Version v = client.put("user:alice", "{\"name\":\"Alice\",\"age\":30}");
      System.out.println("wrote version " + v);

      GetResult r = client.get("user:alice");
      System.out.println(r.getValueAsString() + " @ " + r.getVersion());

      boolean removed = client.delete("user:alice");
      System.out.println("deleted: " + removed);
    }
  }

  @Test
  void quickStartRuns() {
    quickStart(server.address());
    assertThrows(KeyNotFoundException.class, () -> client.get("user:alice"));
  }

  private static <T extends Throwable> void assertThrows(Class<T> c, org.junit.jupiter.api.function.Executable e) {
    org.junit.jupiter.api.Assertions.assertThrows(c, e);
  }

  @Test
  void optionsSample() {
    byte[] key = "session:abc123".getBytes(StandardCharsets.UTF_8);
    byte[] value = "{\"user_id\":42}".getBytes(StandardCharsets.UTF_8);

    PutOptions putOpts = PutOptions.builder()
        .ttlMs(3_600_000)                      // expires in 1 hour
        .idempotencyKey("session-create-abc123")
        .build();
    Version version = client.put(key, value, putOpts);

    GetResult result = client.get(key, GetOptions.of(ConsistencyLevel.LINEARIZABLE));

    client.delete(key, DeleteOptions.builder().ifMatch(result.getVersion()).build());

    assertEquals(version, result.getVersion());
    assertThrows(KeyNotFoundException.class, () -> client.get(key));
  }

  @Test
  void casSample() {
    client.put("counter", "0");
    // sample: CAS increment
    while (true) {
      GetResult cur = client.get("counter");
      int n = Integer.parseInt(cur.getValueAsString());
      try {
        client.put("counter", Integer.toString(n + 1), PutOptions.builder().ifMatch(cur.getVersion()).build());
        break;
      } catch (VersionMismatchException e) {
        // someone else wrote first (now at e.getCurrentVersion()): read again
      }
    }
    assertEquals("1", client.get("counter").getValueAsString());
  }

  @Test
  void ifNotExistsAndIdempotencySample() {
    PutOptions once = PutOptions.builder().ifNotExists(true).build();
    client.put("lock:job-7", "worker-1", once);
    try {
      client.put("lock:job-7", "worker-2", once);
    } catch (AlreadyExistsException e) {
      System.out.println("job 7 is taken");
    }

    PutOptions pay = PutOptions.builder().idempotencyKey("payment-8842").build();
    Version first = client.put("payment:8842", "charged", pay);
    Version again = client.put("payment:8842", "charged", pay);  // returns the first result
    assert first.equals(again);

    assertEquals(first, again);
    assertEquals("worker-1", client.get("lock:job-7").getValueAsString());
  }

  @Test
  void asyncSample() {
    List<CompletableFuture<Version>> writes = new ArrayList<>();
    for (int i = 0; i < 100; i++) {
      writes.add(client.putAsync("item:" + i, "v" + i, PutOptions.NONE));
    }
    CompletableFuture.allOf(writes.toArray(new CompletableFuture<?>[0])).join();

    client.getAsync("item:7", GetOptions.NONE)
        .thenApply(GetResult::getValueAsString)
        .thenAccept(System.out::println)
        .join();

    assertEquals("v99", client.get("item:99").getValueAsString());
  }

  @Test
  void exceptionsSample() {
    String key = "maybe-missing";
    try {
      GetResult r = client.get(key);
      System.out.println(r.getValueAsString());
    } catch (KeyNotFoundException e) {
      System.out.println("no such key");
    } catch (ConnectionException e) {
      // unreachable cluster, timeout or overload, after the retries
      System.out.println("cluster trouble: " + e.getCode() + " " + e.getMessage());
    } catch (NoriKVException e) {
      System.out.println("failed: " + e.getCode() + " " + e.getMessage());
    }
  }

  @Test
  void vectorSample() {
    client.vectorCreateIndex("embeddings", 3, DistanceFunction.COSINE, VectorIndexType.HNSW);

    client.vectorInsert("embeddings", "doc-1", new float[] {0.1f, 0.2f, 0.3f});
    client.vectorInsert("embeddings", "doc-2", new float[] {0.9f, 0.1f, 0.0f},
        VectorWriteOptions.idempotent("ingest-doc-2"));

    VectorSearchResult result = client.vectorSearch("embeddings", new float[] {0.1f, 0.2f, 0.25f}, 10,
        VectorSearchOptions.builder().includeVectors(true).build());
    for (VectorMatch m : result.getMatches()) {
      System.out.println(m.getId() + " at distance " + m.getDistance());
    }
    System.out.println("searched in " + result.getSearchTimeUs() + " us");

    float[] stored = client.vectorGet("embeddings", "doc-1");  // null when the id is absent
    if (stored != null) {
      System.out.println(Arrays.toString(stored));
    }

    assertEquals(2, result.getMatches().size());
    assertEquals("doc-1", result.getMatches().get(0).getId());
    assertArrayEquals(new float[] {0.9f, 0.1f, 0.0f}, result.getMatches().get(1).getVector());
    assertArrayEquals(new float[] {0.1f, 0.2f, 0.3f}, stored);

    boolean deleted = client.vectorDelete("embeddings", "doc-1");  // false when it was not there
    try {
      client.vectorInsert("embeddings", "doc-3", new float[] {1, 2});  // the index has 3 dimensions
    } catch (InvalidArgumentException e) {
      System.out.println("refused: " + e.getMessage());  // names the problem
    }
    boolean dropped = client.vectorDropIndex("embeddings");
    try {
      client.vectorSearch("embeddings", new float[] {1, 2, 3}, 1);
    } catch (KeyNotFoundException e) {
      System.out.println("no such index");
    }

    assertTrue(deleted);
    assertTrue(dropped);
    assertThrows(InvalidArgumentException.class,
        () -> client.vectorCreateIndex("embeddings", 0, DistanceFunction.COSINE, VectorIndexType.HNSW));
    assertThrows(KeyNotFoundException.class, () -> client.vectorGet("embeddings", "doc-2"));
  }

  @Test
  void topologySample() throws Exception {
    ClusterView view = client.getClusterView();
    System.out.println("epoch " + view.getEpoch() + ", " + view.getNodes().size() + " nodes, "
        + view.getShards().size() + " shards");

    Subscription sub = client.onTopologyChange(ev ->
        System.out.println("epoch " + ev.getPreviousEpoch() + " -> " + ev.getCurrentEpoch()
            + ", added " + ev.getAddedNodes() + ", removed " + ev.getRemovedNodes()
            + ", " + ev.getLeaderChanges().size() + " shards changed leader"));

    ClientStats stats = client.stats();
    System.out.println(stats.activeConnections + " connections, " + stats.cachedLeaders + " leaders known");
    sub.close();

    assertEquals(1024, view.getShards().size());
    assertEquals(1024, stats.cachedLeaders);
  }

  @Test
  void configurationSample() {
    String[] nodes = {server.address()};
    NoriKVClient client = NoriKVClient.builder()
        .nodes(nodes)
        .totalShards(1024)                    // must equal the cluster's; checked at connect
        .timeout(Duration.ofSeconds(5))       // per call, retries included
        .retry(RetryPolicy.builder()
            .maxAttempts(10)
            .initialDelay(Duration.ofMillis(100))
            .maxDelay(Duration.ofSeconds(5))
            .jitter(Duration.ofMillis(100))
            .build())
        .maxInFlight(512)                     // calls in flight at once
        .build();

    client.put("configured", "yes");
    assertEquals("yes", client.get("configured").getValueAsString());
    client.close();
  }

  @Test
  void ownServer() {
    EphemeralServerExtension.requireBinary(); // skip, like the extension, when there is no binary
    try (EphemeralServer server = EphemeralServer.builder().build().start();
        NoriKVClient client = NoriKVClient.builder().nodes(server.address()).build()) {
      client.put("k", "v");
      server.kill();  // SIGKILL, to test what your code does when the node dies
    }
  }

  private static String normalize(String s) {
    StringBuilder b = new StringBuilder();
    for (String line : s.split("\n")) {
      String t = line.trim();
      if (!t.isEmpty()) {
        b.append(t).append('\n');
      }
    }
    return b.toString();
  }

  @Test
  void everyReadmeSampleIsTestedCode() throws Exception {
    Path root = TestSupport.repoRoot();
    String readme = new String(Files.readAllBytes(root.resolve("clients/java/README.md")), StandardCharsets.UTF_8);
    Path dir = Paths.get(root.toString(), "clients/java/src/test/java/io/norikv/client");
    String tests = normalize(new String(Files.readAllBytes(dir.resolve("ReadmeSamplesTest.java")),
        StandardCharsets.UTF_8)) + normalize(new String(Files.readAllBytes(dir.resolve("ReadmeExtensionSampleTest.java")),
        StandardCharsets.UTF_8));
    int blocks = 0;
    int at = 0;
    while ((at = readme.indexOf("```java\n", at)) >= 0) {
      int end = readme.indexOf("```", at + 8);
      String block = readme.substring(at + 8, end);
      assertTrue(tests.contains(normalize(block)), "README sample is not tested code:\n" + block);
      blocks++;
      at = end + 3;
    }
    assertTrue(blocks >= 10, "expected the README's samples, found " + blocks);
  }
}
