package io.norikv.client;

import io.grpc.Status;

/**
 * The node asked was not the shard's leader (UNAVAILABLE "NOT_LEADER"). The
 * client follows such answers itself, at once, to the leader named by the
 * {@code leader-hint} trailer; this surfaces only when the retries ran out.
 */
public class NotLeaderException extends ConnectionException {
  private static final long serialVersionUID = 1L;

  private final String leaderHint;

  public NotLeaderException(String message, String leaderHint, String node, int attempts, Throwable cause) {
    super(message, Status.Code.UNAVAILABLE, node, attempts, cause);
    this.leaderHint = leaderHint;
  }

  /** The leader's client address the last answer named, or null. */
  public String getLeaderHint() {
    return leaderHint;
  }
}
