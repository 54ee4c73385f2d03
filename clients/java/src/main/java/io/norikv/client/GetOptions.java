package io.norikv.client;

import java.time.Duration;

/** Refines a get. Immutable; {@link #NONE} reads with {@link ConsistencyLevel#LEASE}. */
public final class GetOptions {
  public static final GetOptions NONE = builder().build();

  private final ConsistencyLevel consistency;
  private final Duration timeout;

  private GetOptions(Builder b) {
    this.consistency = b.consistency;
    this.timeout = b.timeout;
  }

  public static Builder builder() {
    return new Builder();
  }

  /** Shorthand for {@code builder().consistency(level).build()}. */
  public static GetOptions of(ConsistencyLevel level) {
    return builder().consistency(level).build();
  }

  public ConsistencyLevel getConsistency() {
    return consistency;
  }

  /** This call's timeout (with its retries), or null for the client's. */
  public Duration getTimeout() {
    return timeout;
  }

  public static final class Builder {
    private ConsistencyLevel consistency = ConsistencyLevel.LEASE;
    private Duration timeout;

    private Builder() {}

    public Builder consistency(ConsistencyLevel level) {
      this.consistency = level == null ? ConsistencyLevel.LEASE : level;
      return this;
    }

    /** Overrides the client's timeout for this call (retries included). */
    public Builder timeout(Duration timeout) {
      this.timeout = Util.positive(timeout, "timeout");
      return this;
    }

    public GetOptions build() {
      return new GetOptions(this);
    }
  }
}
