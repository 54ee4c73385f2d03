package io.norikv.client;

import java.time.Duration;

/**
 * Refines a vector search. Immutable; {@link #NONE} searches at
 * {@link ConsistencyLevel#LEASE} without returning the matches' vectors.
 */
public final class VectorSearchOptions {
  public static final VectorSearchOptions NONE = builder().build();

  private final boolean includeVectors;
  private final ConsistencyLevel consistency;
  private final Duration timeout;

  private VectorSearchOptions(Builder b) {
    this.includeVectors = b.includeVectors;
    this.consistency = b.consistency;
    this.timeout = b.timeout;
  }

  public static Builder builder() {
    return new Builder();
  }

  public boolean isIncludeVectors() {
    return includeVectors;
  }

  public ConsistencyLevel getConsistency() {
    return consistency;
  }

  /** This call's timeout (with its retries), or null for the client's. */
  public Duration getTimeout() {
    return timeout;
  }

  public static final class Builder {
    private boolean includeVectors;
    private ConsistencyLevel consistency = ConsistencyLevel.LEASE;
    private Duration timeout;

    private Builder() {}

    /** Returns each match's stored vector too (default false: ids and distances only). */
    public Builder includeVectors(boolean include) {
      this.includeVectors = include;
      return this;
    }

    /** As for get; {@link ConsistencyLevel#STALE_OK} searches go to one of the shard's replicas. */
    public Builder consistency(ConsistencyLevel level) {
      this.consistency = level == null ? ConsistencyLevel.LEASE : level;
      return this;
    }

    /** Overrides the client's timeout for this call (retries included). */
    public Builder timeout(Duration timeout) {
      this.timeout = Util.positive(timeout, "timeout");
      return this;
    }

    public VectorSearchOptions build() {
      return new VectorSearchOptions(this);
    }
  }
}
