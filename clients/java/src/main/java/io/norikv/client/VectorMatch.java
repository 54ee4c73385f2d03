package io.norikv.client;

import java.util.List;

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

  static float[] floats(List<Float> list) {
    float[] out = new float[list.size()];
    for (int i = 0; i < out.length; i++) {
      out[i] = list.get(i);
    }
    return out;
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
