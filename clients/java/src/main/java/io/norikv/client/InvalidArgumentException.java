package io.norikv.client;

import io.grpc.Status;

/** The server rejected the request as malformed (INVALID_ARGUMENT): a limit (key 1..1024 bytes, value at most 1 MiB), an unknown consistency level, an idempotency key reused with other parameters. The message names the problem. Never retried. */
public class InvalidArgumentException extends NoriKVException {
  private static final long serialVersionUID = 1L;

  public InvalidArgumentException(String message, Status.Code code, String node, int attempts, Throwable cause) {
    super(message, code, node, attempts, cause);
  }

  public InvalidArgumentException(String message) {
    this(message, Status.Code.INVALID_ARGUMENT, null, 0, null);
  }
}
