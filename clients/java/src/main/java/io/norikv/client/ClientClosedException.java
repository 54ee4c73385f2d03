package io.norikv.client;

import io.grpc.Status;

/** The client was closed (before or during the call). */
public class ClientClosedException extends NoriKVException {
  private static final long serialVersionUID = 1L;

  public ClientClosedException(String message, Status.Code code, String node, int attempts, Throwable cause) {
    super(message, code, node, attempts, cause);
  }

  public ClientClosedException(String message) {
    this(message, Status.Code.CANCELLED, null, 0, null);
  }
}
