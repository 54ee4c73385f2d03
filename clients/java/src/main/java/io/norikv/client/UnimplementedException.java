package io.norikv.client;

import io.grpc.Status;

/** The server does not implement the method (UNIMPLEMENTED). */
public class UnimplementedException extends NoriKVException {
  private static final long serialVersionUID = 1L;

  public UnimplementedException(String message, Status.Code code, String node, int attempts, Throwable cause) {
    super(message, code, node, attempts, cause);
  }

  public UnimplementedException(String message) {
    this(message, Status.Code.UNIMPLEMENTED, null, 0, null);
  }
}
