package io.norikv.client;

import java.nio.charset.StandardCharsets;
import net.openhft.hashing.LongHashFunction;

/**
 * Routing of keys to shards, bit-exact with the server and every other SDK
 * (CONTRACT.md, "Routing"):
 * {@code shard = jumpConsistentHash(xxhash64(key bytes, seed 0), totalShards)};
 * a string key is its UTF-8 bytes.
 *
 * <p>xxhash64 is OpenHFT's zero-allocation-hashing ({@code LongHashFunction.xx()},
 * XXH64 with seed 0); the jump hash is the loop of Lamping and Veach. Both are
 * checked against testdata/hash-vectors.json. Thread-safe, allocation-free.
 */
public final class KeyRouting {
  private static final LongHashFunction XX = LongHashFunction.xx(0);

  private KeyRouting() {}

  /** XXH64 of the bytes with seed 0. */
  public static long xxhash64(byte[] key) {
    return XX.hashBytes(key);
  }

  /**
   * Jump Consistent Hash: the bucket in [0, buckets) of a 64-bit key.
   *
   * @throws IllegalArgumentException when buckets < 1
   */
  public static int jumpConsistentHash(long key, int buckets) {
    if (buckets < 1) {
      throw new IllegalArgumentException("buckets = " + buckets + ", want >= 1");
    }
    long b = -1;
    long j = 0;
    while (j < buckets) {
      b = j;
      key = key * 2862933555777941757L + 1;
      // (key >>> 33) + 1 fits in 31 bits, so the signed conversion is exact.
      j = (long) ((double) (b + 1) * ((double) (1L << 31) / (double) ((key >>> 33) + 1)));
    }
    return (int) b;
  }

  /** The shard of a key. */
  public static int shardForKey(byte[] key, int totalShards) {
    return jumpConsistentHash(xxhash64(key), totalShards);
  }

  /** The shard of a string key (its UTF-8 bytes). */
  public static int shardForKey(String key, int totalShards) {
    return shardForKey(key.getBytes(StandardCharsets.UTF_8), totalShards);
  }
}
