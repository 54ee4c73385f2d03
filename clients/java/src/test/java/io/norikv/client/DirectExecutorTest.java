package io.norikv.client;

import static io.norikv.client.TestSupport.key;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.norikv.client.testing.EphemeralServer;
import io.norikv.client.testing.EphemeralServerExtension;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;

/** directExecutor(true) against the real server: same results, and no deadlock from a sync call in a continuation. */
@ExtendWith(EphemeralServerExtension.class)
class DirectExecutorTest {
  @Test
  void asyncAndSyncCallsWorkWithDirectExecutor(EphemeralServer server) throws Exception {
    try (NoriKVClient c = NoriKVClient.builder().nodes(server.address()).directExecutor(true).build()) {
      List<CompletableFuture<Version>> puts = new ArrayList<>();
      for (int i = 0; i < 200; i++) {
        puts.add(c.putAsync(key("direct-" + i), "v" + i, PutOptions.NONE));
      }
      CompletableFuture.allOf(puts.toArray(new CompletableFuture<?>[0])).get(60, TimeUnit.SECONDS);
      String k = key("direct-sync");
      Version v = c.put(k, "x");
      assertEquals(v, c.get(k).getVersion());
      // chained async calls from a continuation are fine
      String chained = c.putAsync(k, "y", PutOptions.NONE)
          .thenCompose(ver -> c.getAsync(k, GetOptions.NONE))
          .thenApply(GetResult::getValueAsString)
          .get(10, TimeUnit.SECONDS);
      assertEquals("y", chained);
      assertThrows(KeyNotFoundException.class, () -> c.get(key("direct-missing")));
    }
  }

  @Test
  void aSyncCallInsideAContinuationFailsInsteadOfDeadlocking(EphemeralServer server) throws Exception {
    try (NoriKVClient c = NoriKVClient.builder().nodes(server.address()).directExecutor(true).build()) {
      String k = key("direct-guard");
      c.put(k, "v");
      // The continuation must run on the gRPC thread that completes the
      // call: when the call completed before thenApply was attached, it runs
      // on this thread instead (where a sync call is fine), so try again.
      Thread self = Thread.currentThread();
      for (int attempt = 0; ; attempt++) {
        Thread[] ranOn = new Thread[1];
        CompletableFuture<String> f = c.getAsync(k, GetOptions.NONE).thenApply(r -> {
          ranOn[0] = Thread.currentThread();
          return c.get(k).getValueAsString();
        });
        ExecutionException e = null;
        try {
          f.get(10, TimeUnit.SECONDS);
        } catch (ExecutionException ex) {
          e = ex;
        }
        if (ranOn[0] == self && attempt < 50) {
          continue;
        }
        assertTrue(e != null, "a sync call on the gRPC thread did not fail (attempt " + attempt + ")");
        assertInstanceOf(IllegalStateException.class, e.getCause());
        assertTrue(e.getCause().getMessage().contains("directExecutor"), e.getCause().getMessage());
        return;
      }
    }
  }
}
