package io.norikv.client;

import io.grpc.Status;

/** NOT_FOUND: the key does not exist or has expired, or no vector index has the namespace. Never retried. */
public class KeyNotFoundException extends NoriKVException {
  private static final long serialVersionUID = 1L;

  public KeyNotFoundException(String message, Status.Code code, String node, int attempts, Throwable cause) {
    super(message, code, node, attempts, cause);
  }

  public KeyNotFoundException(String message) {
    this(message, Status.Code.NOT_FOUND, null, 0, null);
  }
}
