package io.norikv.client;

/** The structure of a vector index. */
public enum VectorIndexType {
  /** An exact linear scan: every search compares the query with every vector. */
  BRUTE_FORCE(com.norikv.proto.v1.VectorIndexType.VECTOR_INDEX_TYPE_BRUTE_FORCE),
  /** A Hierarchical Navigable Small World graph: approximate, logarithmic search. */
  HNSW(com.norikv.proto.v1.VectorIndexType.VECTOR_INDEX_TYPE_HNSW);

  private final com.norikv.proto.v1.VectorIndexType wire;

  VectorIndexType(com.norikv.proto.v1.VectorIndexType wire) {
    this.wire = wire;
  }

  com.norikv.proto.v1.VectorIndexType wire() {
    return wire;
  }
}
