package io.norikv.client;

/** A snapshot of the client's internal state ({@link NoriKVClient#stats()}). */
public final class ClientStats {
  /** Pooled connections (one per node) that are usable: connected, connecting or idle. */
  public final int activeConnections;
  /** Every pooled connection. */
  public final int totalConnections;
  /** Nodes in the cluster view (the configured seed nodes before a view is known). */
  public final int totalNodes;
  public final int totalShards;
  /** NOT_LEADER answers followed to a hinted leader. */
  public final long redirects;
  /** Leader look-ups sent to the cluster (concurrent look-ups share one). */
  public final long discoveries;
  /** Epoch of the view the client routes by (0: none yet). */
  public final long epoch;
  /** Shards whose leader is known. */
  public final int cachedLeaders;
  /** Whether the WatchCluster stream is open. */
  public final boolean watching;
  /** Calls in flight now, and the bound on them. */
  public final int inFlight;
  public final int maxInFlight;
  /** Calls completed so far: successes, failures, and attempts beyond the first (retries). */
  public final long succeeded;
  public final long failed;
  public final long retries;

  ClientStats(int activeConnections, int totalConnections, int totalNodes, int totalShards, long redirects,
      long discoveries, long epoch, int cachedLeaders, boolean watching, int inFlight, int maxInFlight,
      long succeeded, long failed, long retries) {
    this.activeConnections = activeConnections;
    this.totalConnections = totalConnections;
    this.totalNodes = totalNodes;
    this.totalShards = totalShards;
    this.redirects = redirects;
    this.discoveries = discoveries;
    this.epoch = epoch;
    this.cachedLeaders = cachedLeaders;
    this.watching = watching;
    this.inFlight = inFlight;
    this.maxInFlight = maxInFlight;
    this.succeeded = succeeded;
    this.failed = failed;
    this.retries = retries;
  }

  @Override
  public String toString() {
    return "ClientStats{connections " + activeConnections + "/" + totalConnections + ", nodes " + totalNodes
        + ", shards " + totalShards + ", redirects " + redirects + ", discoveries " + discoveries + ", epoch "
        + epoch + ", cachedLeaders " + cachedLeaders + ", watching " + watching + ", inFlight " + inFlight + "/"
        + maxInFlight + ", succeeded " + succeeded + ", failed " + failed + ", retries " + retries + "}";
  }
}
