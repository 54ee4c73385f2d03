package io.norikv.client;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import io.norikv.client.testing.EphemeralServer;
import io.norikv.client.testing.EphemeralServerExtension;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionException;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Against a real 3-node cluster (three norikv-server processes with data
 * directories, seeded with each other's peer addresses): requests go to the
 * leaders the view names, and after SIGKILL of the node leading the most
 * shards the client keeps working (every acknowledged write and vector
 * insert readable, new writes and inserts accepted, vector calls routed by
 * namespace to the new leaders) and a topology listener hears leadership move.
 *
 * <p>Skipped while the server refuses cluster.seed_nodes ("not supported by
 * this build") or the processes do not form a cluster within the wait;
 * NORIKV_REQUIRE_CLUSTER=1 makes either a failure.
 */
class ClusterTest {
  static final boolean REQUIRE = "1".equals(System.getenv("NORIKV_REQUIRE_CLUSTER"));

  static final class Node {
    final String id;
    final String rpc = EphemeralServer.freeAddress();
    final String peer = EphemeralServer.freeAddress();
    EphemeralServer srv;

    Node(String id) {
      this.id = id;
    }
  }

  private static void skipOrFail(String msg) {
    if (REQUIRE) {
      fail(msg + " (NORIKV_REQUIRE_CLUSTER=1)");
    }
    Assumptions.abort(msg + "; set NORIKV_REQUIRE_CLUSTER=1 to fail instead");
  }

  private static List<Node> startCluster(String bin, Path dir, int n) {
    List<Node> nodes = new ArrayList<>();
    for (int i = 0; i < n; i++) {
      nodes.add(new Node("n" + (i + 1)));
    }
    // Every member must be running before any can be READY (a member waits
    // for all its seeds), so they start concurrently.
    List<CompletableFuture<EphemeralServer>> starts = new ArrayList<>();
    for (Node nd : nodes) {
      StringBuilder seeds = new StringBuilder();
      for (Node o : nodes) {
        if (o != nd) {
          seeds.append(seeds.length() == 0 ? "" : ",").append(o.peer);
        }
      }
      EphemeralServer srv = EphemeralServer.builder().binary(bin).readyAddr(nd.rpc)
          .startupTimeout(Duration.ofSeconds(60))
          .args("--node-id=" + nd.id, "--rpc-addr=" + nd.rpc, "--peer-addr=" + nd.peer, "--http-addr=127.0.0.1:0",
              "--data-dir=" + dir.resolve(nd.id), "--cluster-seed-nodes=" + seeds)
          .build();
      nd.srv = srv;
      starts.add(CompletableFuture.supplyAsync(srv::start));
    }
    RuntimeException failure = null;
    for (CompletableFuture<EphemeralServer> f : starts) {
      try {
        f.join();
      } catch (CompletionException e) {
        if (failure == null) {
          failure = e.getCause() instanceof RuntimeException ? (RuntimeException) e.getCause() : e;
        }
      }
    }
    if (failure != null) {
      stopAll(nodes);
      if (failure.getMessage() != null && failure.getMessage().contains("not supported by this build")) {
        skipOrFail("the server refuses multi-node clusters (not on main yet): " + firstLine(failure.getMessage()));
      }
      throw failure;
    }
    return nodes;
  }

  private static String firstLine(String s) {
    for (String l : s.split("\n")) {
      if (l.contains("not supported")) {
        return l.trim();
      }
    }
    return s.split("\n")[0];
  }

  private static void stopAll(List<Node> nodes) {
    for (Node nd : nodes) {
      if (nd.srv != null) {
        nd.srv.stop();
      }
    }
  }

  private static int alive(ClusterView v) {
    int n = 0;
    if (v != null) {
      for (ClusterView.Node nd : v.getNodes()) {
        if (nd.getRole().equals("alive")) {
          n++;
        }
      }
    }
    return n;
  }

  private static boolean allLed(ClusterView v) {
    if (v == null || v.getShards().isEmpty()) {
      return false;
    }
    for (ClusterView.Shard s : v.getShards()) {
      if (s.leaderNodeId().isEmpty()) {
        return false;
      }
    }
    return true;
  }

  @Test
  void clientRoutesToLeadersAndSurvivesSigkillOfTheBusiestLeader(@TempDir Path dir) throws Exception {
    String bin = EphemeralServerExtension.requireBinary();
    List<Node> nodes = startCluster(bin, dir, 3);
    try {
      List<String> addrs = new ArrayList<>();
      for (Node nd : nodes) {
        addrs.add(nd.rpc);
      }
      try (NoriKVClient c = NoriKVClient.builder().nodes(addrs).timeout(Duration.ofSeconds(30)).build()) {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(20);
        while (System.nanoTime() < deadline && !(alive(c.getClusterView()) == 3 && allLed(c.getClusterView()))) {
          Thread.sleep(100);
        }
        ClusterView view = c.getClusterView();
        if (!(alive(view) == 3 && allLed(view))) {
          skipOrFail("the servers did not form a 3-node cluster within 20 s (last view: " + alive(view)
              + " alive nodes)");
        }
        LinkedBlockingQueue<TopologyChangeEvent> events = new LinkedBlockingQueue<>();
        c.onTopologyChange(events::add);

        Map<String, Version> versions = new LinkedHashMap<>();
        for (int i = 0; i < 200; i++) {
          String k = "cluster-key-" + i;
          versions.put(k, c.put(k, "v-" + k));
        }
        // Vector namespaces: each lives on the shard its name hashes to, and
        // every vector call goes to that shard's leader.
        Map<String, float[]> vectors = new LinkedHashMap<>();
        for (int i = 0; i < 30; i++) {
          String ns = "cluster-vec-" + i;
          assertTrue(c.vectorCreateIndex(ns, 4, DistanceFunction.EUCLIDEAN,
              i % 2 == 0 ? VectorIndexType.HNSW : VectorIndexType.BRUTE_FORCE));
          float[] v = {i, i + 1, i + 2, i + 3};
          c.vectorInsert(ns, "id-" + i, v);
          c.vectorInsert(ns, "far-" + i, new float[] {-100, -100, -100, -100});
          vectors.put(ns, v);
          assertEquals("id-" + i, c.vectorSearch(ns, v, 1).getMatches().get(0).getId());
        }
        assertEquals(0, c.stats().redirects, "writes and vector calls went straight to the leaders the view names");

        Map<String, Integer> leads = new HashMap<>();
        for (ClusterView.Shard s : view.getShards()) {
          leads.merge(s.leaderNodeId(), 1, Integer::sum);
        }
        Node victim = null;
        String victimId = null;
        for (Node nd : nodes) {
          for (ClusterView.Node vn : view.getNodes()) {
            if (vn.getAddr().equals(nd.rpc)
                && (victim == null || leads.getOrDefault(vn.getId(), 0) > leads.getOrDefault(victimId, 0))) {
              victim = nd;
              victimId = vn.getId();
            }
          }
        }
        assertNotNull(victim);
        Set<Integer> victimLed = new HashSet<>();
        for (ClusterView.Shard s : c.getClusterView().getShards()) {
          if (s.leaderNodeId().equals(victimId)) {
            victimLed.add(s.getId());
          }
        }
        victim.srv.kill();

        for (Map.Entry<String, Version> e : versions.entrySet()) {
          GetResult r = c.get(e.getKey(), GetOptions.of(ConsistencyLevel.LINEARIZABLE));
          assertEquals("v-" + e.getKey(), r.getValueAsString());
          assertEquals(e.getValue(), r.getVersion());
        }
        for (int i = 0; i < 200; i++) {
          c.put("after-kill-" + i, "x");
        }
        int onVictim = 0;
        for (Map.Entry<String, float[]> e : vectors.entrySet()) {
          String ns = e.getKey();
          if (victimLed.contains(c.shardFor(ns.getBytes(StandardCharsets.UTF_8)))) {
            onVictim++;
          }
          VectorSearchResult r = c.vectorSearch(ns, e.getValue(), 2,
              VectorSearchOptions.builder().consistency(ConsistencyLevel.LINEARIZABLE).includeVectors(true).build());
          assertEquals(2, r.getMatches().size(), ns + ": both acknowledged inserts survive the leader's SIGKILL");
          assertArrayEquals(e.getValue(), r.getMatches().get(0).getVector(), ns);
          c.vectorInsert(ns, "after-kill", e.getValue());
          assertArrayEquals(e.getValue(), c.vectorGet(ns, "after-kill", GetOptions.of(ConsistencyLevel.LINEARIZABLE)));
        }
        assertTrue(onVictim > 0, "some vector namespaces lived on shards the killed node led");
        long until = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
        while (System.nanoTime() < until) {
          TopologyChangeEvent ev = events.poll(1, TimeUnit.SECONDS);
          if (ev == null) {
            continue;
          }
          if (ev.getRemovedNodes().contains(victimId)) {
            return;
          }
          for (Map.Entry<Integer, String> lc : ev.getLeaderChanges().entrySet()) {
            if (victimLed.contains(lc.getKey()) && !lc.getValue().equals(victimId)) {
              return;
            }
          }
        }
        fail("no topology event moved leadership off " + victimId + " after SIGKILL");
      }
    } finally {
      stopAll(nodes);
    }
  }
}
