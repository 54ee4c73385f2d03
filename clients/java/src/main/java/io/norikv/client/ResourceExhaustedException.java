package io.norikv.client;

import io.grpc.Status;

/** The server's queues were full (RESOURCE_EXHAUSTED) after the retries the policy allowed, or the client's bound on calls in flight stayed reached until the call's deadline. */
public class ResourceExhaustedException extends ConnectionException {
  private static final long serialVersionUID = 1L;

  public ResourceExhaustedException(String message, Status.Code code, String node, int attempts, Throwable cause) {
    super(message, code, node, attempts, cause);
  }

  public ResourceExhaustedException(String message) {
    this(message, Status.Code.RESOURCE_EXHAUSTED, null, 0, null);
  }
}
