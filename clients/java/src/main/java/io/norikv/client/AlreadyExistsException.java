package io.norikv.client;

import io.grpc.Status;

/**
 * ALREADY_EXISTS: a put with {@code ifNotExists} found a live value, or a vector
 * index exists under the namespace with other parameters. Never retried.
 */
public class AlreadyExistsException extends NoriKVException {
  private static final long serialVersionUID = 1L;

  public AlreadyExistsException(String message, Status.Code code, String node, int attempts, Throwable cause) {
    super(message, code, node, attempts, cause);
  }

  public AlreadyExistsException(String message) {
    this(message, Status.Code.ALREADY_EXISTS, null, 0, null);
  }
}
