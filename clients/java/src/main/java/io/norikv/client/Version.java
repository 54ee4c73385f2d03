package io.norikv.client;

/**
 * Identifies the write that produced a value: the (term, index) of its Raft
 * entry, both at least 1. Versions are compared by equality only; a get
 * returns exactly the version its put returned. Immutable.
 */
public final class Version {
  private final long term;
  private final long index;

  public Version(long term, long index) {
    this.term = term;
    this.index = index;
  }

  /** Raft term of the entry (unsigned 64-bit; see {@link Long#toUnsignedString}). */
  public long getTerm() {
    return term;
  }

  /** Raft log index of the entry (unsigned 64-bit). */
  public long getIndex() {
    return index;
  }

  /**
   * Parses "term.index", the form of the server's {@code current-version}
   * trailer and of {@link #toString()}.
   *
   * @throws IllegalArgumentException when the text is not of that form
   */
  public static Version parse(String s) {
    String t = s.trim();
    int dot = t.indexOf('.');
    if (dot <= 0 || dot == t.length() - 1) {
      throw new IllegalArgumentException("version \"" + s + "\" is not of the form term.index");
    }
    try {
      return new Version(Long.parseUnsignedLong(t.substring(0, dot)), Long.parseUnsignedLong(t.substring(dot + 1)));
    } catch (NumberFormatException e) {
      throw new IllegalArgumentException("version \"" + s + "\" is not of the form term.index", e);
    }
  }

  @Override
  public boolean equals(Object o) {
    if (this == o) {
      return true;
    }
    if (!(o instanceof Version)) {
      return false;
    }
    Version v = (Version) o;
    return term == v.term && index == v.index;
  }

  @Override
  public int hashCode() {
    return Long.hashCode(term) * 31 + Long.hashCode(index);
  }

  @Override
  public String toString() {
    return Long.toUnsignedString(term) + "." + Long.toUnsignedString(index);
  }
}
