package io.norikv.client;

import java.time.Duration;
import java.util.concurrent.ThreadLocalRandom;

/**
 * The retry policy for transient failures. Retry n (n >= 1) waits
 * {@code min(initialDelay * 2^(n-1), maxDelay)} plus a uniform random extra in
 * {@code [0, jitter)}. Defaults: 10 attempts, 100 ms to 5 s, 100 ms jitter.
 *
 * <p>Retried: UNAVAILABLE (no leader, no quorum, refused connection, node
 * shutting down), ABORTED, RESOURCE_EXHAUSTED and a server-side
 * DEADLINE_EXCEEDED (commit timeout). Not retried: INVALID_ARGUMENT,
 * NOT_FOUND, FAILED_PRECONDITION, ALREADY_EXISTS and the rest. A NOT_LEADER
 * answer with a leader hint is followed at once, without backoff and without
 * counting as an attempt (at most 8 hints per call).
 *
 * <p>A write whose outcome is unknown (it may have reached a leader: deadline,
 * connection lost mid-call, no quorum) is sent again only when it carries an
 * idempotency key or is an unconditional put or delete, for which a second
 * application is harmless. A conditional write (ifMatch, ifNotExists) without
 * an idempotency key is returned to the caller instead, since a retry could
 * report a conflict caused by its own first attempt. A refused connection or
 * NOT_LEADER answer means nothing was executed, and is always retried.
 */
public final class RetryPolicy {
  public static final RetryPolicy DEFAULT = builder().build();

  private final int maxAttempts;
  private final Duration initialDelay;
  private final Duration maxDelay;
  private final Duration jitter;

  private RetryPolicy(Builder b) {
    this.maxAttempts = b.maxAttempts;
    this.initialDelay = b.initialDelay;
    this.maxDelay = b.maxDelay.compareTo(b.initialDelay) < 0 ? b.initialDelay : b.maxDelay;
    this.jitter = b.jitter;
  }

  public static Builder builder() {
    return new Builder();
  }

  /** The total number of attempts, the first included. */
  public int getMaxAttempts() {
    return maxAttempts;
  }

  public Duration getInitialDelay() {
    return initialDelay;
  }

  public Duration getMaxDelay() {
    return maxDelay;
  }

  public Duration getJitter() {
    return jitter;
  }

  /** The wait before retry number n (n >= 1), in nanoseconds, jitter included. */
  long backoffNanos(int n) {
    long d = initialDelay.toNanos();
    long max = maxDelay.toNanos();
    for (int i = 1; i < n && d < max; i++) {
      d *= 2;
    }
    d = Math.min(d, max);
    long j = jitter.toNanos();
    if (j > 0) {
      d += ThreadLocalRandom.current().nextLong(j);
    }
    return d;
  }

  @Override
  public String toString() {
    return "RetryPolicy{maxAttempts " + maxAttempts + ", initialDelay " + initialDelay + ", maxDelay " + maxDelay
        + ", jitter " + jitter + "}";
  }

  public static final class Builder {
    private int maxAttempts = 10;
    private Duration initialDelay = Duration.ofMillis(100);
    private Duration maxDelay = Duration.ofSeconds(5);
    private Duration jitter = Duration.ofMillis(100);

    private Builder() {}

    /** Total attempts, the first included (>= 1; 1 disables retries). */
    public Builder maxAttempts(int n) {
      if (n < 1) {
        throw new IllegalArgumentException("maxAttempts = " + n + ", want >= 1");
      }
      this.maxAttempts = n;
      return this;
    }

    public Builder initialDelay(Duration d) {
      this.initialDelay = nonNegative(d, "initialDelay");
      return this;
    }

    public Builder maxDelay(Duration d) {
      this.maxDelay = nonNegative(d, "maxDelay");
      return this;
    }

    /** Upper bound of the random extra delay; zero disables jitter. */
    public Builder jitter(Duration d) {
      this.jitter = nonNegative(d, "jitter");
      return this;
    }

    private static Duration nonNegative(Duration d, String what) {
      if (d == null || d.isNegative()) {
        throw new IllegalArgumentException(what + " = " + d + ", want >= 0");
      }
      return d;
    }

    public RetryPolicy build() {
      return new RetryPolicy(this);
    }
  }
}
