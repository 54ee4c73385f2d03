package io.norikv.client;

/** One result of a vector search. */
public final class VectorMatch {
  private final String id;
  private final float distance;
  private final float[] vector;

  VectorMatch(String id, float distance, float[] vector) {
    this.id = id;
    this.distance = distance;
    this.vector = vector;
  }

  /** The vector of a protobuf match, read without boxing. */
  static VectorMatch fromProto(com.norikv.proto.v1.VectorMatch m) {
    float[] v = new float[m.getVectorCount()];
    for (int i = 0; i < v.length; i++) {
      v[i] = m.getVector(i);
    }
    return new VectorMatch(m.getId(), m.getDistance(), v);
  }

  /** The stored vector of a Get answer, or null when the id was not found. */
  static float[] fromProto(com.norikv.proto.v1.VectorGetResponse r) {
    if (!r.getFound()) {
      return null;
    }
    float[] v = new float[r.getVectorCount()];
    for (int i = 0; i < v.length; i++) {
      v[i] = r.getVector(i);
    }
    return v;
  }

  public String getId() {
    return id;
  }

  /** The distance to the query under the index's {@link DistanceFunction}. */
  public float getDistance() {
    return distance;
  }

  /**
   * The stored vector (an array owned by the caller); empty unless the search
   * asked for {@link VectorSearchOptions.Builder#includeVectors}.
   */
  public float[] getVector() {
    return vector;
  }

  @Override
  public String toString() {
    return "VectorMatch{" + id + ", distance " + distance + "}";
  }
}
