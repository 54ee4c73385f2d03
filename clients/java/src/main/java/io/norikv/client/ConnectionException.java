package io.norikv.client;

import io.grpc.Status;

/** The cluster could not be reached or could not serve the request, after the retries the policy allowed (UNAVAILABLE, or one of the subclasses: {@link NotLeaderException}, {@link DeadlineExceededException}, {@link ResourceExhaustedException}). */
public class ConnectionException extends NoriKVException {
  private static final long serialVersionUID = 1L;

  public ConnectionException(String message, Status.Code code, String node, int attempts, Throwable cause) {
    super(message, code, node, attempts, cause);
  }

  public ConnectionException(String message) {
    this(message, Status.Code.UNAVAILABLE, null, 0, null);
  }
}
