package io.norikv.client;

import static io.norikv.client.TestSupport.key;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.grpc.Status;
import io.norikv.client.testing.EphemeralServer;
import io.norikv.client.testing.EphemeralServerExtension;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionException;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

/**
 * The vector API against the real norikv-server --ephemeral: search results
 * equal a brute-force reference computed here for every distance (exactly
 * for flat indexes, by recall for HNSW), create/insert/get/delete/drop
 * semantics of CONTRACT.md, idempotency keys, consistency levels, the async
 * forms, and bad input refused with InvalidArgumentException naming the
 * problem while the server keeps serving.
 */
@ExtendWith(EphemeralServerExtension.class)
class VectorIntegrationTest {
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

  // ------------------------------------------------------------ reference

  /** The distance as CONTRACT.md defines it, computed in double. */
  static double distance(DistanceFunction d, float[] a, float[] b) {
    double dot = 0;
    double na = 0;
    double nb = 0;
    double l2 = 0;
    for (int i = 0; i < a.length; i++) {
      dot += (double) a[i] * b[i];
      na += (double) a[i] * a[i];
      nb += (double) b[i] * b[i];
      double diff = (double) a[i] - b[i];
      l2 += diff * diff;
    }
    switch (d) {
      case EUCLIDEAN:
        return Math.sqrt(l2);
      case COSINE:
        if (na == 0 || nb == 0) {
          return 1;
        }
        return Math.min(2, Math.max(0, 1 - dot / (Math.sqrt(na) * Math.sqrt(nb))));
      default:
        return -dot;
    }
  }

  /** The ids of the k nearest by the reference distance (ties by id). */
  static List<String> nearest(DistanceFunction d, Map<String, float[]> data, float[] q, int k) {
    List<String> ids = new ArrayList<>(data.keySet());
    Map<String, Double> dist = new HashMap<>();
    for (String id : ids) {
      dist.put(id, distance(d, data.get(id), q));
    }
    ids.sort(Comparator.<String>comparingDouble(dist::get).thenComparing(Comparator.naturalOrder()));
    return ids.subList(0, Math.min(k, ids.size()));
  }

  static float[] randomVector(Random rnd, int dims) {
    float[] v = new float[dims];
    for (int i = 0; i < dims; i++) {
      v[i] = (float) (rnd.nextGaussian());
    }
    return v;
  }

  /** Inserts n random vectors concurrently through the async API and returns them by id. */
  static Map<String, float[]> fill(String ns, Random rnd, int n, int dims) {
    Map<String, float[]> data = new HashMap<>();
    List<CompletableFuture<Version>> writes = new ArrayList<>();
    for (int i = 0; i < n; i++) {
      String id = "v" + i;
      float[] v = randomVector(rnd, dims);
      data.put(id, v);
      writes.add(client.vectorInsertAsync(ns, id, v, VectorWriteOptions.NONE));
    }
    CompletableFuture.allOf(writes.toArray(new CompletableFuture<?>[0])).join();
    return data;
  }

  /** A tolerance for float32 distances the server computes against the double reference. */
  static double tol(double ref) {
    return 1e-4 * Math.max(1, Math.abs(ref));
  }

  // ---------------------------------------------------------------- tests

  @ParameterizedTest
  @EnumSource(DistanceFunction.class)
  void flatSearchEqualsBruteForceReference(DistanceFunction d) {
    String ns = key("flat-" + d);
    int dims = 16;
    assertTrue(client.vectorCreateIndex(ns, dims, d, VectorIndexType.BRUTE_FORCE));
    Random rnd = new Random(42 + d.ordinal());
    Map<String, float[]> data = fill(ns, rnd, 300, dims);
    for (int q = 0; q < 20; q++) {
      float[] query = randomVector(rnd, dims);
      int k = 1 + rnd.nextInt(25);
      VectorSearchResult r = client.vectorSearch(ns, query, k,
          VectorSearchOptions.builder().includeVectors(true).build());
      List<String> ref = nearest(d, data, query, k);
      assertEquals(k, r.getMatches().size(), "a search over 300 vectors returns exactly k matches");
      Set<String> seen = new HashSet<>();
      for (int i = 0; i < k; i++) {
        VectorMatch m = r.getMatches().get(i);
        assertTrue(seen.add(m.getId()), "match ids are distinct: " + r);
        float[] stored = data.get(m.getId());
        assertNotNull(stored, "the match is an inserted id: " + m.getId());
        assertArrayEquals(stored, m.getVector(), "includeVectors returns the stored vector bit for bit");
        double own = distance(d, stored, query);
        assertEquals(own, m.getDistance(), tol(own), "the reported distance is the match's true " + d + " distance");
        // Exact search: the i-th match is as near as the reference's i-th
        // (ids may swap only between equal distances).
        double want = distance(d, data.get(ref.get(i)), query);
        assertEquals(want, m.getDistance(), tol(want), "match " + i + " of " + r + " vs reference " + ref);
        if (i > 0) {
          assertTrue(m.getDistance() >= r.getMatches().get(i - 1).getDistance(), "ascending distance: " + r);
        }
      }
      assertTrue(r.getSearchTimeUs() >= 0);
    }
    assertTrue(client.vectorDropIndex(ns));
  }

  @ParameterizedTest
  @EnumSource(DistanceFunction.class)
  void hnswSearchFindsTheReferenceNeighbours(DistanceFunction d) {
    String ns = key("hnsw-" + d);
    int dims = 16;
    int k = 10;
    assertTrue(client.vectorCreateIndex(ns, dims, d, VectorIndexType.HNSW));
    Random rnd = new Random(7 + d.ordinal());
    Map<String, float[]> data = fill(ns, rnd, 500, dims);
    int found = 0;
    int queries = 30;
    for (int q = 0; q < queries; q++) {
      float[] query = randomVector(rnd, dims);
      VectorSearchResult r = client.vectorSearch(ns, query, k);
      assertEquals(k, r.getMatches().size());
      Set<String> ref = new HashSet<>(nearest(d, data, query, k));
      for (VectorMatch m : r.getMatches()) {
        double own = distance(d, data.get(m.getId()), query);
        assertEquals(own, m.getDistance(), tol(own), "the reported distance is the match's true distance");
        assertEquals(0, m.getVector().length, "no vectors without includeVectors");
        if (ref.contains(m.getId())) {
          found++;
        }
      }
    }
    double recall = (double) found / (queries * k);
    assertTrue(recall >= 0.9, d + " HNSW recall@10 over 500 vectors = " + recall + ", want >= 0.9");
    assertTrue(client.vectorDropIndex(ns));
  }

  @Test
  void createInsertGetDeleteDropFollowTheContract() {
    String ns = key("crud");
    assertTrue(client.vectorCreateIndex(ns, 3, DistanceFunction.EUCLIDEAN, VectorIndexType.HNSW));
    assertFalse(client.vectorCreateIndex(ns, 3, DistanceFunction.EUCLIDEAN, VectorIndexType.HNSW),
        "the same parameters again: exists, not created");
    AlreadyExistsException ae = assertThrows(AlreadyExistsException.class,
        () -> client.vectorCreateIndex(ns, 4, DistanceFunction.EUCLIDEAN, VectorIndexType.HNSW));
    assertEquals(Status.Code.ALREADY_EXISTS, ae.getCode());
    assertThrows(AlreadyExistsException.class,
        () -> client.vectorCreateIndex(ns, 3, DistanceFunction.COSINE, VectorIndexType.HNSW));
    assertThrows(AlreadyExistsException.class,
        () -> client.vectorCreateIndex(ns, 3, DistanceFunction.EUCLIDEAN, VectorIndexType.BRUTE_FORCE));

    Version v1 = client.vectorInsert(ns, "doc-1", new float[] {0.1f, 0.2f, 0.3f});
    assertTrue(v1.getTerm() >= 1 && v1.getIndex() >= 1, v1.toString());
    client.vectorInsert(ns, "doc-2", new float[] {1, 1, 1});
    assertArrayEquals(new float[] {0.1f, 0.2f, 0.3f}, client.vectorGet(ns, "doc-1"));
    assertNull(client.vectorGet(ns, "absent"), "a missing id is null, not an exception");

    VectorSearchResult r = client.vectorSearch(ns, new float[] {0.1f, 0.2f, 0.3f}, 5,
        VectorSearchOptions.builder().includeVectors(true).build());
    assertEquals(2, r.getMatches().size());
    assertEquals("doc-1", r.getMatches().get(0).getId());
    assertEquals(0f, r.getMatches().get(0).getDistance());
    assertEquals("doc-2", r.getMatches().get(1).getId());
    assertArrayEquals(new float[] {1, 1, 1}, r.getMatches().get(1).getVector());

    Version v2 = client.vectorInsert(ns, "doc-1", new float[] {5, 5, 5});
    assertTrue(Long.compareUnsigned(v2.getIndex(), v1.getIndex()) > 0, v1 + " then " + v2);
    assertArrayEquals(new float[] {5, 5, 5}, client.vectorGet(ns, "doc-1"), "insert of an existing id replaces");
    assertEquals("doc-2", client.vectorSearch(ns, new float[] {0, 0, 0}, 1).getMatches().get(0).getId());

    assertTrue(client.vectorDelete(ns, "doc-1"));
    assertFalse(client.vectorDelete(ns, "doc-1"), "deleting an absent id succeeds with false");
    assertNull(client.vectorGet(ns, "doc-1"));
    assertEquals(1, client.vectorSearch(ns, new float[] {5, 5, 5}, 10).getMatches().size());

    assertTrue(client.vectorDropIndex(ns));
    assertFalse(client.vectorDropIndex(ns), "dropping an absent index succeeds with false");
    KeyNotFoundException nf = assertThrows(KeyNotFoundException.class,
        () -> client.vectorSearch(ns, new float[] {1, 2, 3}, 1));
    assertTrue(nf.getMessage().contains("vectorSearch"), nf.getMessage());
    assertThrows(KeyNotFoundException.class, () -> client.vectorGet(ns, "doc-2"));
    assertThrows(KeyNotFoundException.class, () -> client.vectorInsert(ns, "x", new float[] {1, 2, 3}));

    assertTrue(client.vectorCreateIndex(ns, 2, DistanceFunction.INNER_PRODUCT, VectorIndexType.BRUTE_FORCE),
        "a dropped namespace can be created again with other parameters");
    assertTrue(client.vectorSearch(ns, new float[] {1, 2}, 3).getMatches().isEmpty(), "and it starts empty");
    assertTrue(client.vectorDropIndex(ns));
  }

  @Test
  void idempotencyKeysReturnTheFirstResult() {
    String ns = key("idem");
    VectorWriteOptions create = VectorWriteOptions.idempotent(ns + "-create");
    assertTrue(client.vectorCreateIndex(ns, 2, DistanceFunction.COSINE, VectorIndexType.BRUTE_FORCE, create));
    assertTrue(client.vectorCreateIndex(ns, 2, DistanceFunction.COSINE, VectorIndexType.BRUTE_FORCE, create),
        "the retry returns the first result (created), not false");

    VectorWriteOptions ins = VectorWriteOptions.idempotent(ns + "-ins");
    Version first = client.vectorInsert(ns, "a", new float[] {1, 0}, ins);
    Version again = client.vectorInsert(ns, "a", new float[] {1, 0}, ins);
    assertEquals(first, again, "the retry returns the first version without writing again");
    InvalidArgumentException reused = assertThrows(InvalidArgumentException.class,
        () -> client.vectorInsert(ns, "a", new float[] {0, 1}, ins));
    assertTrue(reused.getMessage().toLowerCase().contains("idempotency"), reused.getMessage());

    VectorWriteOptions del = VectorWriteOptions.idempotent(ns + "-del");
    assertTrue(client.vectorDelete(ns, "a", del));
    assertTrue(client.vectorDelete(ns, "a", del), "the retry returns the first result (deleted)");
    assertFalse(client.vectorDelete(ns, "a"));

    VectorWriteOptions drop = VectorWriteOptions.idempotent(ns + "-drop");
    assertTrue(client.vectorDropIndex(ns, drop));
    assertTrue(client.vectorDropIndex(ns, drop), "the retry returns the first result (dropped)");
  }

  @ParameterizedTest
  @EnumSource(ConsistencyLevel.class)
  void searchAndGetServeAtEveryConsistencyLevel(ConsistencyLevel level) {
    String ns = key("cons-" + level);
    client.vectorCreateIndex(ns, 2, DistanceFunction.EUCLIDEAN, VectorIndexType.BRUTE_FORCE);
    client.vectorInsert(ns, "p", new float[] {3, 4});
    VectorSearchResult r = client.vectorSearch(ns, new float[] {0, 0}, 1,
        VectorSearchOptions.builder().consistency(level).build());
    assertEquals("p", r.getMatches().get(0).getId());
    assertEquals(5f, r.getMatches().get(0).getDistance(), 1e-6f);
    assertArrayEquals(new float[] {3, 4}, client.vectorGet(ns, "p", GetOptions.of(level)));
    assertNull(client.vectorGet(ns, "q", GetOptions.of(level)));
    client.vectorDropIndex(ns);
  }

  @Test
  void badInputIsInvalidArgumentNamingTheProblemAndTheServerKeepsServing() {
    String ns = key("bad");
    assertTrue(client.vectorCreateIndex(ns, 3, DistanceFunction.EUCLIDEAN, VectorIndexType.HNSW));
    client.vectorInsert(ns, "ok", new float[] {1, 2, 3});

    InvalidArgumentException dim = assertThrows(InvalidArgumentException.class,
        () -> client.vectorInsert(ns, "bad", new float[] {1, 2}));
    assertEquals(Status.Code.INVALID_ARGUMENT, dim.getCode());
    assertEquals(1, dim.getAttempts(), "never retried");
    assertTrue(dim.getMessage().contains("dimension"), dim.getMessage());
    InvalidArgumentException qdim = assertThrows(InvalidArgumentException.class,
        () -> client.vectorSearch(ns, new float[] {1, 2, 3, 4}, 1));
    assertTrue(qdim.getMessage().contains("dimension"), qdim.getMessage());

    String[] named = {
        msg(() -> client.vectorSearch(ns, new float[] {1, 2, 3}, 0)),
        msg(() -> client.vectorSearch(ns, new float[] {1, 2, 3}, 1001)),
        msg(() -> client.vectorSearch(ns, new float[] {1, 2, 3}, -1)),
        msg(() -> client.vectorInsert(ns, "nan", new float[] {1, Float.NaN, 3})),
        msg(() -> client.vectorInsert(ns, "inf", new float[] {1, Float.POSITIVE_INFINITY, 3})),
        msg(() -> client.vectorInsert(ns, "", new float[] {1, 2, 3})),
        msg(() -> client.vectorInsert(ns, "empty", new float[0])),
        msg(() -> client.vectorCreateIndex("", 3, DistanceFunction.EUCLIDEAN, VectorIndexType.HNSW)),
        msg(() -> client.vectorCreateIndex(key("d0"), 0, DistanceFunction.EUCLIDEAN, VectorIndexType.HNSW)),
        msg(() -> client.vectorCreateIndex(key("d9"), 4097, DistanceFunction.EUCLIDEAN, VectorIndexType.HNSW)),
        msg(() -> client.vectorCreateIndex(key("dn"), -3, DistanceFunction.EUCLIDEAN, VectorIndexType.HNSW)),
        msg(() -> client.vectorCreateIndex(new String(new char[256]).replace('\0', 'n'), 3,
            DistanceFunction.EUCLIDEAN, VectorIndexType.HNSW)),
    };
    String[] words = {"k", "k", "k", "nan", "inf", "id", "vector", "namespace", "dimensions", "dimensions",
        "dimensions", "namespace"};
    for (int i = 0; i < named.length; i++) {
      assertTrue(named[i].toLowerCase().contains(words[i]), "case " + i + " names '" + words[i] + "': " + named[i]);
    }

    // The server keeps serving vectors and KV.
    assertArrayEquals(new float[] {1, 2, 3}, client.vectorGet(ns, "ok"));
    assertEquals("ok", client.vectorSearch(ns, new float[] {1, 2, 3}, 1).getMatches().get(0).getId());
    String k = key("after-bad-vectors");
    client.put(k, "fine");
    assertEquals("fine", client.get(k).getValueAsString());
    assertTrue(server.isRunning());
    client.vectorDropIndex(ns);
  }

  private static String msg(org.junit.jupiter.api.function.Executable call) {
    return assertThrows(InvalidArgumentException.class, call).getMessage();
  }

  @Test
  void asyncFormsCompleteWithResultsAndFailWithTheSameExceptions() {
    String ns = key("async");
    assertTrue(client.vectorCreateIndexAsync(ns, 2, DistanceFunction.EUCLIDEAN, VectorIndexType.BRUTE_FORCE,
        null).join());
    Version v = client.vectorInsertAsync(ns, "x", new float[] {1, 1}, null).join();
    assertNotNull(v);
    assertArrayEquals(new float[] {1, 1}, client.vectorGetAsync(ns, "x", null).join());
    assertEquals("x", client.vectorSearchAsync(ns, new float[] {0, 0}, 1, null).join().getMatches().get(0).getId());
    CompletionException e = assertThrows(CompletionException.class,
        () -> client.vectorInsertAsync(ns, "y", new float[] {1, 1, 1}, null).join());
    assertInstanceOf(InvalidArgumentException.class, e.getCause());
    assertTrue(client.vectorDeleteAsync(ns, "x", null).join());
    assertTrue(client.vectorDropIndexAsync(ns, null).join());
    CompletionException gone = assertThrows(CompletionException.class,
        () -> client.vectorGetAsync(ns, "x", GetOptions.NONE).join());
    assertInstanceOf(KeyNotFoundException.class, gone.getCause());
  }
}
