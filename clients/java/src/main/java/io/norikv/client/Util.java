package io.norikv.client;

import java.time.Duration;

final class Util {
  private Util() {}

  static Duration positive(Duration d, String what) {
    if (d != null && (d.isNegative() || d.isZero())) {
      throw new IllegalArgumentException(what + " = " + d + ", want > 0");
    }
    return d;
  }
}
