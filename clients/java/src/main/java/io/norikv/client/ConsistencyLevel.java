package io.norikv.client;

/** How a read is served (CONTRACT.md, "Consistency"). */
public enum ConsistencyLevel {
  /**
   * The default: the shard's leader serves while its lease holds. Fast and,
   * barring clock drift beyond the lease's safety margin, current.
   */
  LEASE("lease"),
  /** The leader confirms its leadership with a quorum first (ReadIndex): always current. */
  LINEARIZABLE("linearizable"),
  /** Any replica serves what it has applied; may be stale. */
  STALE_OK("stale_ok");

  private final String wire;

  ConsistencyLevel(String wire) {
    this.wire = wire;
  }

  /** The value sent in {@code GetRequest.consistency}. */
  public String wireName() {
    return wire;
  }
}
