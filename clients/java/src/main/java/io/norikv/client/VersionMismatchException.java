package io.norikv.client;

import io.grpc.Status;

/**
 * A put or delete with {@code ifMatch} found another version, or no value
 * (FAILED_PRECONDITION "version mismatch"). {@link #getCurrentVersion()} is
 * the key's version when it exists (the server's {@code current-version}
 * trailer), null when the key is absent. Never retried.
 */
public class VersionMismatchException extends NoriKVException {
  private static final long serialVersionUID = 1L;

  private final Version currentVersion;

  public VersionMismatchException(String message, Version currentVersion, String node, int attempts, Throwable cause) {
    super(message, Status.Code.FAILED_PRECONDITION, node, attempts, cause);
    this.currentVersion = currentVersion;
  }

  /** The key's current version, or null when the key does not exist. */
  public Version getCurrentVersion() {
    return currentVersion;
  }
}
