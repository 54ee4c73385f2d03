package io.norikv.client.testing;

import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.extension.AfterAllCallback;
import org.junit.jupiter.api.extension.ExtensionContext;
import org.junit.jupiter.api.extension.ParameterContext;
import org.junit.jupiter.api.extension.ParameterResolutionException;
import org.junit.jupiter.api.extension.ParameterResolver;

/**
 * JUnit 5 extension that runs one real {@code norikv-server --ephemeral} per
 * test class and injects it as an {@link EphemeralServer} parameter (of test
 * methods, lifecycle methods or the constructor):
 *
 * <pre>{@code
 * @ExtendWith(EphemeralServerExtension.class)
 * class MyTest {
 *   @Test
 *   void roundTrip(EphemeralServer server) {
 *     try (NoriKVClient c = NoriKVClient.builder().nodes(server.address()).build()) { ... }
 *   }
 * }
 * }</pre>
 *
 * <p>The server starts when first asked for and is stopped with SIGTERM after
 * the class's tests. When no binary is found ({@link EphemeralServer#findBinary()})
 * the tests that ask for it are skipped, naming where it looked, unless the
 * environment sets {@code NORIKV_REQUIRE_SERVER=1}, which makes that a failure.
 * A test that needs a server of its own (to kill it, say) builds one with
 * {@link EphemeralServer#builder()}.
 */
public final class EphemeralServerExtension implements ParameterResolver, AfterAllCallback {
  private static final ExtensionContext.Namespace NS = ExtensionContext.Namespace.create(EphemeralServerExtension.class);
  private static final String KEY = "server";

  @Override
  public boolean supportsParameter(ParameterContext pc, ExtensionContext ec) {
    return pc.getParameter().getType() == EphemeralServer.class;
  }

  @Override
  public Object resolveParameter(ParameterContext pc, ExtensionContext ec) {
    ExtensionContext classCtx = classContext(ec);
    ExtensionContext.Store store = classCtx.getStore(NS);
    EphemeralServer s = store.get(KEY, EphemeralServer.class);
    if (s != null) {
      return s;
    }
    requireBinary();
    try {
      s = EphemeralServer.builder().build().start();
    } catch (RuntimeException e) {
      throw new ParameterResolutionException("starting norikv-server --ephemeral failed: " + e.getMessage(), e);
    }
    store.put(KEY, s);
    return s;
  }

  /** Skips the calling test (or fails it, under NORIKV_REQUIRE_SERVER=1) when no server binary exists. */
  public static String requireBinary() {
    java.util.Optional<String> b = EphemeralServer.findBinary();
    if (!b.isPresent()) {
      String msg = "no norikv-server binary to test against (looked at " + EphemeralServer.describeSearch() + ")";
      if ("1".equals(System.getenv("NORIKV_REQUIRE_SERVER"))) {
        throw new IllegalStateException(msg + "; NORIKV_REQUIRE_SERVER=1 makes this a failure");
      }
      Assumptions.abort(msg);
    }
    return b.get();
  }

  private static ExtensionContext classContext(ExtensionContext ec) {
    ExtensionContext c = ec;
    while (c.getTestMethod().isPresent() && c.getParent().isPresent()) {
      c = c.getParent().get();
    }
    return c;
  }

  @Override
  public void afterAll(ExtensionContext ec) {
    EphemeralServer s = ec.getStore(NS).remove(KEY, EphemeralServer.class);
    if (s != null) {
      s.stop();
    }
  }
}
