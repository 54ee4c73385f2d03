package io.norikv.client;

import java.util.ArrayList;
import java.util.Collections;
import java.util.List;

/** What a vector search returns: the matches by ascending distance, and the server's search time. */
public final class VectorSearchResult {
  private final List<VectorMatch> matches;
  private final long searchTimeUs;

  VectorSearchResult(List<VectorMatch> matches, long searchTimeUs) {
    this.matches = Collections.unmodifiableList(matches);
    this.searchTimeUs = searchTimeUs;
  }

  static VectorSearchResult fromProto(com.norikv.proto.v1.VectorSearchResponse r) {
    List<VectorMatch> matches = new ArrayList<>(r.getMatchesCount());
    for (com.norikv.proto.v1.VectorMatch m : r.getMatchesList()) {
      matches.add(VectorMatch.fromProto(m));
    }
    return new VectorSearchResult(matches, r.getSearchTimeUs());
  }

  /** At most k matches, nearest first (ties by id). */
  public List<VectorMatch> getMatches() {
    return matches;
  }

  /** Microseconds the server spent searching the index (not queueing, not the network). */
  public long getSearchTimeUs() {
    return searchTimeUs;
  }

  @Override
  public String toString() {
    return "VectorSearchResult{" + matches + ", " + searchTimeUs + " us}";
  }
}
