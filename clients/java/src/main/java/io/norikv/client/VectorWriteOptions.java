package io.norikv.client;

import java.time.Duration;

/**
 * Refines a vector write (create index, drop index, insert, delete).
 * Immutable; {@link #NONE} has no idempotency key and the client's timeout.
 */
public final class VectorWriteOptions {
  public static final VectorWriteOptions NONE = builder().build();

  private final String idempotencyKey;
  private final Duration timeout;

  private VectorWriteOptions(Builder b) {
    this.idempotencyKey = b.idempotencyKey;
    this.timeout = b.timeout;
  }

  public static Builder builder() {
    return new Builder();
  }

  /** Shorthand for {@code builder().idempotencyKey(key).build()}. */
  public static VectorWriteOptions idempotent(String key) {
    return builder().idempotencyKey(key).build();
  }

  public String getIdempotencyKey() {
    return idempotencyKey;
  }

  /** This call's timeout (with its retries), or null for the client's. */
  public Duration getTimeout() {
    return timeout;
  }

  public static final class Builder {
    private String idempotencyKey = "";
    private Duration timeout;

    private Builder() {}

    /**
     * A retry with the same key and parameters returns the first attempt's
     * result exactly (the created/dropped/deleted flag and the version)
     * instead of applying again; scoped to the namespace's shard. The same
     * key with other parameters is {@link InvalidArgumentException}.
     */
    public Builder idempotencyKey(String key) {
      this.idempotencyKey = key == null ? "" : key;
      return this;
    }

    /** Overrides the client's timeout for this call (retries included). */
    public Builder timeout(Duration timeout) {
      this.timeout = Util.positive(timeout, "timeout");
      return this;
    }

    public VectorWriteOptions build() {
      return new VectorWriteOptions(this);
    }
  }
}
