package io.norikv.client;

import java.time.Duration;

/**
 * Refines a put. Immutable; build with {@link #builder()}. {@link #NONE} is an
 * unconditional write without expiry or idempotency key.
 *
 * <pre>{@code
 * PutOptions o = PutOptions.builder().ttlMs(60_000).idempotencyKey("order-1").build();
 * }</pre>
 */
public final class PutOptions {
  public static final PutOptions NONE = builder().build();

  private final long ttlMs;
  private final String idempotencyKey;
  private final Version ifMatch;
  private final boolean ifNotExists;
  private final Duration timeout;

  private PutOptions(Builder b) {
    this.ttlMs = b.ttlMs;
    this.idempotencyKey = b.idempotencyKey;
    this.ifMatch = b.ifMatch;
    this.ifNotExists = b.ifNotExists;
    this.timeout = b.timeout;
  }

  public static Builder builder() {
    return new Builder();
  }

  /** Milliseconds after the leader proposes the write at which it expires; 0: never. */
  public long getTtlMs() {
    return ttlMs;
  }

  /** The idempotency key, or "" for none. */
  public String getIdempotencyKey() {
    return idempotencyKey;
  }

  /** The version the key must have for the write to apply (CAS), or null. */
  public Version getIfMatch() {
    return ifMatch;
  }

  public boolean isIfNotExists() {
    return ifNotExists;
  }

  /** This call's timeout (with its retries), or null for the client's. */
  public Duration getTimeout() {
    return timeout;
  }

  /**
   * Whether sending the put again after an unknown outcome cannot change its
   * result: it carries an idempotency key, or it is unconditional.
   */
  boolean retrySafe() {
    return !idempotencyKey.isEmpty() || (ifMatch == null && !ifNotExists);
  }

  public static final class Builder {
    private long ttlMs;
    private String idempotencyKey = "";
    private Version ifMatch;
    private boolean ifNotExists;
    private Duration timeout;

    private Builder() {}

    /** Expire the value this many milliseconds after the leader proposes it (0: never). */
    public Builder ttlMs(long ttlMs) {
      if (ttlMs < 0) {
        throw new IllegalArgumentException("ttlMs = " + ttlMs + ", want >= 0");
      }
      this.ttlMs = ttlMs;
      return this;
    }

    /**
     * Retries of this write (by the client or by you) with the same key and
     * parameters return the first attempt's result instead of writing again.
     * Scoped to the key's shard. Null or "" means none.
     */
    public Builder idempotencyKey(String key) {
      this.idempotencyKey = key == null ? "" : key;
      return this;
    }

    /**
     * Apply only if the key exists and its current version equals this;
     * otherwise the put fails with {@link VersionMismatchException}.
     */
    public Builder ifMatch(Version version) {
      this.ifMatch = version;
      return this;
    }

    /** Apply only when the key has no live value; otherwise {@link AlreadyExistsException}. */
    public Builder ifNotExists(boolean ifNotExists) {
      this.ifNotExists = ifNotExists;
      return this;
    }

    /** Overrides the client's timeout for this call (retries included). */
    public Builder timeout(Duration timeout) {
      this.timeout = Util.positive(timeout, "timeout");
      return this;
    }

    public PutOptions build() {
      return new PutOptions(this);
    }
  }
}
