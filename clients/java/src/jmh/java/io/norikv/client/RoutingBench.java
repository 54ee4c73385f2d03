package io.norikv.client;

import java.nio.charset.StandardCharsets;
import java.util.Collections;
import java.util.concurrent.TimeUnit;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Level;
import org.openjdk.jmh.annotations.Measurement;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.TearDown;
import org.openjdk.jmh.annotations.Warmup;

/**
 * Routing cost (JMH, average time per operation, one thread): xxhash64, the
 * jump hash, key to shard, and the client's route (shard + cached leader
 * channel). Compared in docs/benchmarks.md with the seed README's figures
 * (Go: xxhash64 ~2.5 ns, jump ~14 ns, GetShardForKey ~23 ns; TypeScript and
 * Python: routing < 100 ns). Run by hand:
 *
 * <pre>
 * mvn -q -B -P jmh package -DskipTests
 * java -jar target/benchmarks.jar RoutingBench
 * </pre>
 */
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.NANOSECONDS)
@Warmup(iterations = 3, time = 1)
@Measurement(iterations = 5, time = 1)
@Fork(1)
@State(Scope.Thread)
public class RoutingBench {
  byte[] userKey;
  byte[] key16;
  byte[] key64;
  String userKeyString;
  byte[][] distinct;
  int next;
  long hash;
  Router router;
  ChannelPool pool;

  @Setup(Level.Trial)
  public void setup() {
    userKey = "user:12345".getBytes(StandardCharsets.UTF_8);
    userKeyString = "user:12345";
    key16 = "0123456789abcdef".getBytes(StandardCharsets.UTF_8);
    key64 = new byte[64];
    for (int i = 0; i < 64; i++) {
      key64[i] = (byte) ('a' + i % 26);
    }
    distinct = new byte[4096][];
    for (int i = 0; i < distinct.length; i++) {
      distinct[i] = ("user:" + (1_000_000 + i)).getBytes(StandardCharsets.UTF_8);
    }
    hash = KeyRouting.xxhash64(userKey);
    // A router holding a view in which one node leads all 1024 shards (its
    // channel is created but never used: routing does not touch the network).
    pool = new ChannelPool(false);
    router = new Router(1024, pool, Collections.singletonList("127.0.0.1:9001"));
    java.util.List<ClusterView.Shard> shards = new java.util.ArrayList<>();
    for (int s = 0; s < 1024; s++) {
      shards.add(new ClusterView.Shard(s, Collections.singletonList(new ClusterView.Replica("n1", true))));
    }
    ClusterView v = new ClusterView(1,
        Collections.singletonList(new ClusterView.Node("n1", "127.0.0.1:9001", "alive")), shards);
    router.apply(new Router.ViewIndex(v, 1024));
  }

  @TearDown(Level.Trial)
  public void teardown() {
    pool.close();
  }

  @Benchmark
  public long xxhash64UserKey10Bytes() {
    return KeyRouting.xxhash64(userKey);
  }

  @Benchmark
  public long xxhash64Key16Bytes() {
    return KeyRouting.xxhash64(key16);
  }

  @Benchmark
  public long xxhash64Key64Bytes() {
    return KeyRouting.xxhash64(key64);
  }

  @Benchmark
  public int jumpConsistentHash1024OneKey() {
    return KeyRouting.jumpConsistentHash(hash, 1024);
  }

  @Benchmark
  public int shardForKeyUserKey() {
    return KeyRouting.shardForKey(userKey, 1024);
  }

  @Benchmark
  public int shardForKeyStringUserKey() {
    return KeyRouting.shardForKey(userKeyString, 1024);
  }

  @Benchmark
  public int shardForKey4096DistinctKeys() {
    byte[] k = distinct[next++ & 4095];
    return KeyRouting.shardForKey(k, 1024);
  }

  @Benchmark
  public Object routeShardAndCachedLeader() {
    return router.leader(router.shardOf(userKey));
  }
}
