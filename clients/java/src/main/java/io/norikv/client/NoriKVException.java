package io.norikv.client;

import io.grpc.Status;

/**
 * Base of every exception the client throws. It carries the gRPC status code
 * of the answer that ended the call ({@link #getCode()}); client-side failures
 * that had no answer (a closed client, a shard-count mismatch) carry the code
 * that describes them best and say so in the message.
 *
 * <p>Subclasses mirror the Go and Python SDKs: {@link KeyNotFoundException},
 * {@link VersionMismatchException}, {@link AlreadyExistsException},
 * {@link ConnectionException} (with {@link NotLeaderException},
 * {@link DeadlineExceededException} and {@link ResourceExhaustedException}
 * below it), {@link InvalidArgumentException},
 * {@link ShardCountMismatchException}, {@link ClientClosedException} and
 * {@link UnimplementedException}. Unchecked, so that they pass through
 * {@link java.util.concurrent.CompletableFuture} stages unchanged (wrapped in
 * a {@link java.util.concurrent.CompletionException} there).
 */
public class NoriKVException extends RuntimeException {
  private static final long serialVersionUID = 1L;

  private final Status.Code code;
  private final String node;
  private final int attempts;

  public NoriKVException(String message, Status.Code code, String node, int attempts, Throwable cause) {
    super(message, cause);
    this.code = code;
    this.node = node;
    this.attempts = attempts;
  }

  public NoriKVException(String message, Status.Code code) {
    this(message, code, null, 0, null);
  }

  /** The gRPC code of the last answer (or of the client-side failure). */
  public Status.Code getCode() {
    return code;
  }

  /** Address (host:port) of the node that answered last, or null. */
  public String getNode() {
    return node;
  }

  /** How many attempts the call made (0 when none was sent). */
  public int getAttempts() {
    return attempts;
  }
}
