package io.norikv.client;

import java.time.Duration;

/** Refines a delete. Immutable; {@link #NONE} is an unconditional delete. */
public final class DeleteOptions {
  public static final DeleteOptions NONE = builder().build();

  private final String idempotencyKey;
  private final Version ifMatch;
  private final Duration timeout;

  private DeleteOptions(Builder b) {
    this.idempotencyKey = b.idempotencyKey;
    this.ifMatch = b.ifMatch;
    this.timeout = b.timeout;
  }

  public static Builder builder() {
    return new Builder();
  }

  public String getIdempotencyKey() {
    return idempotencyKey;
  }

  public Version getIfMatch() {
    return ifMatch;
  }

  public Duration getTimeout() {
    return timeout;
  }

  boolean retrySafe() {
    return !idempotencyKey.isEmpty() || ifMatch == null;
  }

  public static final class Builder {
    private String idempotencyKey = "";
    private Version ifMatch;
    private Duration timeout;

    private Builder() {}

    /** See {@link PutOptions.Builder#idempotencyKey}. */
    public Builder idempotencyKey(String key) {
      this.idempotencyKey = key == null ? "" : key;
      return this;
    }

    /** Delete only if the key's current version equals this; otherwise {@link VersionMismatchException}. */
    public Builder ifMatch(Version version) {
      this.ifMatch = version;
      return this;
    }

    /** Overrides the client's timeout for this call (retries included). */
    public Builder timeout(Duration timeout) {
      this.timeout = Util.positive(timeout, "timeout");
      return this;
    }

    public DeleteOptions build() {
      return new DeleteOptions(this);
    }
  }
}
