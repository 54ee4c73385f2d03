package io.norikv.client;

/**
 * How a vector index measures distance (CONTRACT.md, "Vector semantics").
 * Smaller is closer everywhere: search matches come by ascending distance,
 * ties by id.
 */
public enum DistanceFunction {
  /** The L2 distance, {@code sqrt(sum (a_i - b_i)^2)}. */
  EUCLIDEAN(com.norikv.proto.v1.DistanceFunction.DISTANCE_FUNCTION_EUCLIDEAN),
  /** {@code 1 - cosine similarity}, in [0, 2]; 1 when either vector is zero. */
  COSINE(com.norikv.proto.v1.DistanceFunction.DISTANCE_FUNCTION_COSINE),
  /** The negative inner product, {@code -(a.b)}. */
  INNER_PRODUCT(com.norikv.proto.v1.DistanceFunction.DISTANCE_FUNCTION_INNER_PRODUCT);

  private final com.norikv.proto.v1.DistanceFunction wire;

  DistanceFunction(com.norikv.proto.v1.DistanceFunction wire) {
    this.wire = wire;
  }

  com.norikv.proto.v1.DistanceFunction wire() {
    return wire;
  }
}
