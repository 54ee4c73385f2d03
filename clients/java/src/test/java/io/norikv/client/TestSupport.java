package io.norikv.client;

import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.time.Duration;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.BooleanSupplier;

final class TestSupport {
  private TestSupport() {}

  private static final AtomicLong SEQ = new AtomicLong();

  /** The repository root (surefire sets norikv.repo.root; else found above the working directory). */
  static Path repoRoot() {
    String p = System.getProperty("norikv.repo.root");
    if (p != null) {
      return Paths.get(p).toAbsolutePath().normalize();
    }
    for (Path d = Paths.get("").toAbsolutePath(); d != null; d = d.getParent()) {
      if (Files.exists(d.resolve("testdata/hash-vectors.json"))) {
        return d;
      }
    }
    throw new IllegalStateException("repository root not found");
  }

  /** A key unique to this run and call site. */
  static String key(String what) {
    return "java-" + ProcessHandle.current().pid() + "-" + SEQ.incrementAndGet() + "-" + what;
  }

  /** Polls cond every 20 ms until it holds or within passes; returns its last value. */
  static boolean eventually(Duration within, BooleanSupplier cond) throws InterruptedException {
    long deadline = System.nanoTime() + within.toNanos();
    while (System.nanoTime() < deadline) {
      if (cond.getAsBoolean()) {
        return true;
      }
      Thread.sleep(20);
    }
    return cond.getAsBoolean();
  }
}
