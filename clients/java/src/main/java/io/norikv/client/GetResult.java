package io.norikv.client;

import java.nio.charset.StandardCharsets;
import java.util.Collections;
import java.util.Map;

/** A value read by get, with the version of the write that produced it. */
public final class GetResult {
  private final byte[] value;
  private final Version version;
  private final Map<String, String> metadata;

  GetResult(byte[] value, Version version, Map<String, String> metadata) {
    this.value = value;
    this.version = version;
    this.metadata = Collections.unmodifiableMap(metadata);
  }

  /** The value's bytes (a fresh array owned by the caller). */
  public byte[] getValue() {
    return value;
  }

  /** The value decoded as UTF-8. */
  public String getValueAsString() {
    return new String(value, StandardCharsets.UTF_8);
  }

  public Version getVersion() {
    return version;
  }

  /** What the server attached to the response, if anything. */
  public Map<String, String> getMetadata() {
    return metadata;
  }

  @Override
  public String toString() {
    return "GetResult{" + value.length + " bytes, version " + version + "}";
  }
}
