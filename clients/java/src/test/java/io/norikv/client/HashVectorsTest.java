package io.norikv.client;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import org.junit.jupiter.api.Test;

/** Routing is bit-exact with the server: every vector of testdata/hash-vectors.json. */
class HashVectorsTest {
  private static JsonObject vectors() throws Exception {
    Path p = TestSupport.repoRoot().resolve("testdata/hash-vectors.json");
    return JsonParser.parseString(new String(Files.readAllBytes(p), StandardCharsets.UTF_8)).getAsJsonObject();
  }

  private static byte[] hex(String h) {
    byte[] b = new byte[h.length() / 2];
    for (int i = 0; i < b.length; i++) {
      b[i] = (byte) Integer.parseInt(h.substring(2 * i, 2 * i + 2), 16);
    }
    return b;
  }

  @Test
  void everyKeyVectorHashesAndRoutesLikeTheServer() throws Exception {
    JsonArray keys = vectors().getAsJsonArray("keys");
    assertTrue(keys.size() >= 80, "expected the full vector file, got " + keys.size() + " keys");
    int checked = 0;
    for (JsonElement e : keys) {
      JsonObject k = e.getAsJsonObject();
      byte[] key = hex(k.get("hex").getAsString());
      assertEquals(k.get("len").getAsInt(), key.length);
      long want = Long.parseUnsignedLong(k.get("xxhash64").getAsString());
      assertEquals(want, KeyRouting.xxhash64(key), "xxhash64 of " + k.get("hex"));
      if (k.has("text")) {
        // a string key routes as its UTF-8 bytes
        assertEquals(want, KeyRouting.xxhash64(k.get("text").getAsString().getBytes(StandardCharsets.UTF_8)));
      }
      for (Map.Entry<String, JsonElement> s : k.getAsJsonObject("shards").entrySet()) {
        int n = Integer.parseInt(s.getKey());
        assertEquals(s.getValue().getAsInt(), KeyRouting.shardForKey(key, n), "shard of " + k.get("hex") + " of " + n);
        checked++;
      }
    }
    assertTrue(checked >= 4 * keys.size());
  }

  @Test
  void everyJumpVectorMatches() throws Exception {
    JsonArray jump = vectors().getAsJsonArray("jump");
    assertTrue(jump.size() >= 50);
    for (JsonElement e : jump) {
      JsonObject j = e.getAsJsonObject();
      long key = Long.parseUnsignedLong(j.get("key").getAsString());
      int buckets = j.get("buckets").getAsInt();
      assertEquals(j.get("bucket").getAsInt(), KeyRouting.jumpConsistentHash(key, buckets),
          "jump(" + Long.toUnsignedString(key) + ", " + buckets + ")");
    }
  }

  @Test
  void contractKnownValues() {
    assertEquals(Long.parseUnsignedLong("2794345569481354659"), KeyRouting.xxhash64("hello".getBytes(StandardCharsets.UTF_8)));
    assertEquals(309, KeyRouting.shardForKey("hello", 1024));
    assertEquals(118, KeyRouting.shardForKey("hello", 256));
    assertEquals(Long.parseUnsignedLong("17241709254077376921"), KeyRouting.xxhash64(new byte[0]));
    assertEquals(332, KeyRouting.shardForKey("", 1024));
    assertEquals(40, KeyRouting.shardForKey("", 256));
  }

  @Test
  void jumpRejectsZeroBuckets() {
    assertThrows(IllegalArgumentException.class, () -> KeyRouting.jumpConsistentHash(1, 0));
  }
}
