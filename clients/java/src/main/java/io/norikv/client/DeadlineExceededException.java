package io.norikv.client;

import io.grpc.Status;

/** The call did not complete within its timeout (the client's, which bounds the call with its retries, or the server's commit deadline). A write that ends so may or may not have been applied. */
public class DeadlineExceededException extends ConnectionException {
  private static final long serialVersionUID = 1L;

  public DeadlineExceededException(String message, Status.Code code, String node, int attempts, Throwable cause) {
    super(message, code, node, attempts, cause);
  }

  public DeadlineExceededException(String message) {
    this(message, Status.Code.DEADLINE_EXCEEDED, null, 0, null);
  }
}
