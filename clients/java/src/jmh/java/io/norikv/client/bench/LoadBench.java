package io.norikv.client.bench;

import io.norikv.client.ClientStats;
import io.norikv.client.GetOptions;
import io.norikv.client.NoriKVClient;
import io.norikv.client.PutOptions;
import io.norikv.client.testing.EphemeralServer;
import java.lang.management.ManagementFactory;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.Arrays;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;

/**
 * End-to-end throughput of the Java client against one real
 * {@code norikv-server --ephemeral}: puts, then gets of the keys written,
 * each phase with CONCURRENCY calls always in flight (async chains sharing one
 * client), 16-byte keys and 256-byte values. Prints ops/s, latency
 * percentiles and the client process's CPU per operation.
 *
 * <pre>
 * mvn -q -B -P jmh package -DskipTests
 * NORIKV_SERVER_BIN=../../build/src/server/norikv-server \
 *   java -cp target/benchmarks.jar io.norikv.client.bench.LoadBench [seconds=5] [concurrency=64] [direct] [addr]
 * </pre>
 *
 * "direct" builds the client with directExecutor(true) ("pooled" or anything
 * else: the default). With an address, runs against that server instead of
 * starting one.
 */
public final class LoadBench {
  private LoadBench() {}

  interface Op {
    CompletableFuture<?> run(long i);
  }

  static final class Result {
    long ops;
    long errors;
    double seconds;
    long[] lat;
    double cpuUsPerOp;
  }

  static Result phase(Op op, int concurrency, double seconds) throws InterruptedException {
    long[][] lat = new long[concurrency][];
    int[] counts = new int[concurrency];
    AtomicLong seq = new AtomicLong();
    AtomicLong errors = new AtomicLong();
    CountDownLatch done = new CountDownLatch(concurrency);
    long cpu0 = cpuNanos();
    long t0 = System.nanoTime();
    long end = t0 + (long) (seconds * 1e9);
    for (int w = 0; w < concurrency; w++) {
      lat[w] = new long[1 << 16]; // per worker; beyond that latencies are not sampled
      int worker = w;
      new Object() {
        void next() {
          long now = System.nanoTime();
          if (now >= end) {
            done.countDown();
            return;
          }
          op.run(seq.getAndIncrement()).whenComplete((v, t) -> {
            if (t != null && errors.incrementAndGet() <= 3) {
              System.err.println("error: " + t);
            }
            long[] l = lat[worker];
            if (counts[worker] < l.length) {
              l[counts[worker]] = System.nanoTime() - now;
            }
            counts[worker]++;
            next();
          });
        }
      }.next();
    }
    done.await();
    Result r = new Result();
    r.seconds = (System.nanoTime() - t0) / 1e9;
    long cpu = cpuNanos() - cpu0;
    int n = 0;
    for (int c : counts) {
      n += c;
    }
    r.ops = n;
    r.errors = errors.get();
    r.lat = new long[n];
    int at = 0;
    for (int w = 0; w < concurrency; w++) {
      int c = Math.min(counts[w], lat[w].length);
      System.arraycopy(lat[w], 0, r.lat, at, c);
      at += c;
    }
    r.lat = Arrays.copyOf(r.lat, at);
    Arrays.sort(r.lat);
    r.cpuUsPerOp = n == 0 ? 0 : cpu / 1e3 / n;
    return r;
  }

  static long cpuNanos() {
    java.lang.management.OperatingSystemMXBean os = ManagementFactory.getOperatingSystemMXBean();
    if (os instanceof com.sun.management.OperatingSystemMXBean) {
      return ((com.sun.management.OperatingSystemMXBean) os).getProcessCpuTime();
    }
    return 0;
  }

  static double pct(long[] sorted, double p) {
    if (sorted.length == 0) {
      return 0;
    }
    return sorted[Math.min(sorted.length - 1, (int) (p * sorted.length))] / 1e6;
  }

  static void print(String name, int conc, Result r) {
    System.out.printf("| %s | %d | %,.0f | %.2f | %.2f | %.0f | %d |%n", name, conc, r.ops / r.seconds,
        pct(r.lat, 0.50), pct(r.lat, 0.99), r.cpuUsPerOp, r.errors);
  }

  public static void main(String[] args) throws Exception {
    double seconds = args.length > 0 ? Double.parseDouble(args[0]) : 5;
    int conc = args.length > 1 ? Integer.parseInt(args[1]) : 64;
    boolean direct = args.length > 2 && args[2].equals("direct");
    EphemeralServer server = null;
    String addr;
    if (args.length > 3) {
      addr = args[3];
    } else {
      server = EphemeralServer.builder().build().start();
      addr = server.address();
      System.out.println("server: " + server.binary() + " pid " + server.pid() + " at " + addr);
    }
    byte[] value = new byte[256];
    Arrays.fill(value, (byte) 'v');
    try (NoriKVClient c = NoriKVClient.builder().nodes(addr).timeout(Duration.ofSeconds(30))
        .maxInFlight(Math.max(512, conc)).directExecutor(direct).build()) {
      // warm-up: JIT, connections
      long warm = Math.min(4096, phase(i -> c.putAsync(key(i % 4096), value, PutOptions.NONE), conc, 2).ops);
      phase(i -> c.getAsync(key(i % Math.max(1, warm)), GetOptions.NONE), conc, 1);
      Result put = phase(i -> c.putAsync(key(i), value, PutOptions.NONE), conc, seconds);
      long written = put.ops;
      Result get = phase(i -> c.getAsync(key(i % Math.max(1, written)), GetOptions.NONE), conc, seconds);
      System.out.printf("Java %s, %d s per phase, 16-byte keys, 256-byte values, directExecutor %s%n",
          System.getProperty("java.version"), (int) seconds, direct);
      System.out.println("| op | concurrency | ops/s | p50 ms | p99 ms | client CPU µs/op | errors |");
      System.out.println("|---|---:|---:|---:|---:|---:|---:|");
      print("put", conc, put);
      print("get", conc, get);
      ClientStats st = c.stats();
      System.out.println(st);
    } finally {
      if (server != null) {
        server.stop();
      }
    }
    TimeUnit.MILLISECONDS.sleep(10);
  }

  static byte[] key(long i) {
    return String.format("bench-%010d", i).getBytes(StandardCharsets.UTF_8);
  }
}
