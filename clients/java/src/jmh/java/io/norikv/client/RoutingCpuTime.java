package io.norikv.client;

import java.lang.management.ManagementFactory;
import java.lang.management.ThreadMXBean;
import java.util.function.LongUnaryOperator;

/**
 * The RoutingBench operations timed by this thread's CPU time over a fixed
 * iteration count (after JIT warm-up), best of 5 rounds. On a shared, loaded
 * machine JMH's wall-clock average counts the time the thread spends
 * descheduled; CPU time does not. Run by hand:
 *
 * <pre>
 * java -cp target/benchmarks.jar io.norikv.client.RoutingCpuTime
 * </pre>
 */
public final class RoutingCpuTime {
  private RoutingCpuTime() {}

  static long sink;

  static double measure(String name, long iters, LongUnaryOperator op) {
    ThreadMXBean tm = ManagementFactory.getThreadMXBean();
    long acc = 0;
    for (long i = 0; i < iters; i++) { // warm-up
      acc += op.applyAsLong(i);
    }
    double best = Double.MAX_VALUE;
    for (int round = 0; round < 5; round++) {
      long c0 = tm.getCurrentThreadCpuTime();
      for (long i = 0; i < iters; i++) {
        acc += op.applyAsLong(i);
      }
      long c1 = tm.getCurrentThreadCpuTime();
      best = Math.min(best, (c1 - c0) / (double) iters);
    }
    sink += acc;
    System.out.printf("| %s | %.1f |%n", name, best);
    return best;
  }

  public static void main(String[] args) {
    RoutingBench b = new RoutingBench();
    b.setup();
    long n = args.length > 0 ? Long.parseLong(args[0]) : 50_000_000L;
    byte[] user = b.userKey;
    System.out.println("| operation | CPU ns/op |");
    System.out.println("|---|---:|");
    measure("xxhash64, \"user:12345\" (10 bytes)", n, i -> KeyRouting.xxhash64(user));
    measure("xxhash64, 16 bytes", n, i -> KeyRouting.xxhash64(b.key16));
    measure("xxhash64, 64 bytes", n, i -> KeyRouting.xxhash64(b.key64));
    long h = b.hash;
    measure("jumpConsistentHash, 1024 buckets, one key", n, i -> KeyRouting.jumpConsistentHash(h, 1024));
    measure("jumpConsistentHash, 1024 buckets, a new key each call", n,
        i -> KeyRouting.jumpConsistentHash(i * 0x9E3779B97F4A7C15L, 1024));
    measure("shardForKey(byte[]), \"user:12345\", 1024 shards", n, i -> KeyRouting.shardForKey(user, 1024));
    measure("shardForKey(String), \"user:12345\" (UTF-8 encoding included)", n,
        i -> KeyRouting.shardForKey(b.userKeyString, 1024));
    byte[][] d = b.distinct;
    measure("shardForKey, 4096 distinct keys in turn", n, i -> KeyRouting.shardForKey(d[(int) (i & 4095)], 1024));
    measure("client route: shard + cached leader channel", n,
        i -> System.identityHashCode(b.router.leader(b.router.shardOf(user))));
    b.teardown();
    System.out.println("(sink " + (sink & 1) + ")");
  }
}
