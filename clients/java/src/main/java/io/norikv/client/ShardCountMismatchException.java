package io.norikv.client;

import io.grpc.Status;

/**
 * The client's {@code totalShards} differs from the cluster's shard count.
 * Thrown by {@link NoriKVClient.Builder#build()} instead of routing keys to
 * the wrong shards.
 */
public class ShardCountMismatchException extends NoriKVException {
  private static final long serialVersionUID = 1L;

  private final int configured;
  private final int cluster;

  public ShardCountMismatchException(String message, int configured, int cluster) {
    super(message, Status.Code.FAILED_PRECONDITION, null, 0, null);
    this.configured = configured;
    this.cluster = cluster;
  }

  /** The shard count the client was built with. */
  public int getConfiguredShards() {
    return configured;
  }

  /** The shard count of the cluster's view. */
  public int getClusterShards() {
    return cluster;
  }
}
