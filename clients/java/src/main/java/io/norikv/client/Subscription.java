package io.norikv.client;

/** Handle of a registered topology listener; {@link #close()} unregisters it (idempotent). */
public interface Subscription extends AutoCloseable {
  @Override
  void close();
}
