package norikv

import (
	"context"

	pb "github.com/norikv/norikv-go/proto"
	"google.golang.org/grpc"
)

// DistanceFunction is how a vector index measures distance. Matches are
// sorted by ascending distance.
type DistanceFunction int32

const (
	// DistanceEuclidean is the L2 distance.
	DistanceEuclidean DistanceFunction = DistanceFunction(pb.DistanceFunction_DISTANCE_FUNCTION_EUCLIDEAN)
	// DistanceCosine is 1 - cosine similarity (1 when either vector is zero).
	DistanceCosine DistanceFunction = DistanceFunction(pb.DistanceFunction_DISTANCE_FUNCTION_COSINE)
	// DistanceInnerProduct is the negative inner product, -(a.b).
	DistanceInnerProduct DistanceFunction = DistanceFunction(pb.DistanceFunction_DISTANCE_FUNCTION_INNER_PRODUCT)
)

// VectorIndexType is the structure of a vector index.
type VectorIndexType int32

const (
	// VectorIndexBruteForce is an exact linear scan.
	VectorIndexBruteForce VectorIndexType = VectorIndexType(pb.VectorIndexType_VECTOR_INDEX_TYPE_BRUTE_FORCE)
	// VectorIndexHNSW is a Hierarchical Navigable Small World graph:
	// approximate, logarithmic search.
	VectorIndexHNSW VectorIndexType = VectorIndexType(pb.VectorIndexType_VECTOR_INDEX_TYPE_HNSW)
)

// CreateVectorIndexOptions refine VectorCreateIndex; nil is fine.
type CreateVectorIndexOptions struct {
	// IdempotencyKey, when not empty, makes retries return the first
	// attempt's result. Scoped to the namespace's shard.
	IdempotencyKey string
}

// VectorDropIndexOptions refine VectorDropIndex; nil is fine.
type VectorDropIndexOptions struct {
	IdempotencyKey string
}

// VectorInsertOptions refine VectorInsert; nil is fine.
type VectorInsertOptions struct {
	IdempotencyKey string
}

// VectorDeleteOptions refine VectorDelete; nil is fine.
type VectorDeleteOptions struct {
	IdempotencyKey string
}

// VectorSearchOptions refine VectorSearch; nil searches with
// ConsistencyLease and without the vectors.
type VectorSearchOptions struct {
	// IncludeVectors returns each match's vector too.
	IncludeVectors bool
	// Consistency as for Get.
	Consistency ConsistencyLevel
}

// VectorGetOptions refine VectorGet.
type VectorGetOptions struct {
	Consistency ConsistencyLevel
}

// VectorMatch is one result of a search.
type VectorMatch struct {
	ID       string
	Distance float32
	Vector   []float32 // only with VectorSearchOptions.IncludeVectors
}

// VectorSearchResult is what VectorSearch returns.
type VectorSearchResult struct {
	Matches      []VectorMatch // ascending distance, at most k
	SearchTimeUs uint64        // the server's search time
}

// Vector calls route by namespace: a namespace lives whole on the shard its
// name hashes to, exactly like a key. Writes are safe to retry after an
// unknown outcome (re-applying one leaves the same state), so they retry
// like an unconditional Put. A missing index fails with ErrKeyNotFound;
// bad input (wrong dimensions, NaN, k out of range ...) with
// codes.InvalidArgument naming the problem.

// VectorCreateIndex creates the index namespace. It returns false when the
// index exists already with the same dimensions, distance and type; other
// parameters fail with ErrAlreadyExists.
func (c *Client) VectorCreateIndex(ctx context.Context, namespace string, dimensions uint32,
	distance DistanceFunction, indexType VectorIndexType, options *CreateVectorIndexOptions) (bool, error) {
	req := &pb.CreateVectorIndexRequest{Namespace: namespace, Dimensions: dimensions,
		Distance: pb.DistanceFunction(distance), IndexType: pb.VectorIndexType(indexType)}
	if options != nil {
		req.IdempotencyKey = options.IdempotencyKey
	}
	var resp *pb.CreateVectorIndexResponse
	err := c.invoke(ctx, "vector_create_index", []byte(namespace), true, false, func(ctx context.Context, nc *nodeConn, opts ...grpc.CallOption) error {
		r, err := nc.vec.CreateIndex(ctx, req, opts...)
		resp = r
		return err
	})
	if err != nil {
		return false, err
	}
	return resp.GetCreated(), nil
}

// VectorDropIndex drops the index namespace and every vector in it. It
// returns false when there was no such index.
func (c *Client) VectorDropIndex(ctx context.Context, namespace string, options *VectorDropIndexOptions) (bool, error) {
	req := &pb.DropVectorIndexRequest{Namespace: namespace}
	if options != nil {
		req.IdempotencyKey = options.IdempotencyKey
	}
	var resp *pb.DropVectorIndexResponse
	err := c.invoke(ctx, "vector_drop_index", []byte(namespace), true, false, func(ctx context.Context, nc *nodeConn, opts ...grpc.CallOption) error {
		r, err := nc.vec.DropIndex(ctx, req, opts...)
		resp = r
		return err
	})
	if err != nil {
		return false, err
	}
	return resp.GetDropped(), nil
}

// VectorInsert stores vector under id in namespace (replacing the vector an
// id already has) and returns the write's version.
func (c *Client) VectorInsert(ctx context.Context, namespace, id string, vector []float32, options *VectorInsertOptions) (*Version, error) {
	req := &pb.VectorInsertRequest{Namespace: namespace, Id: id, Vector: vector}
	if options != nil {
		req.IdempotencyKey = options.IdempotencyKey
	}
	var resp *pb.VectorInsertResponse
	err := c.invoke(ctx, "vector_insert", []byte(namespace), true, false, func(ctx context.Context, nc *nodeConn, opts ...grpc.CallOption) error {
		r, err := nc.vec.Insert(ctx, req, opts...)
		resp = r
		return err
	})
	if err != nil {
		return nil, err
	}
	return versionFromPB(resp.GetVersion()), nil
}

// VectorDelete removes id from namespace; false when it was not there.
func (c *Client) VectorDelete(ctx context.Context, namespace, id string, options *VectorDeleteOptions) (bool, error) {
	req := &pb.VectorDeleteRequest{Namespace: namespace, Id: id}
	if options != nil {
		req.IdempotencyKey = options.IdempotencyKey
	}
	var resp *pb.VectorDeleteResponse
	err := c.invoke(ctx, "vector_delete", []byte(namespace), true, false, func(ctx context.Context, nc *nodeConn, opts ...grpc.CallOption) error {
		r, err := nc.vec.Delete(ctx, req, opts...)
		resp = r
		return err
	})
	if err != nil {
		return false, err
	}
	return resp.GetDeleted(), nil
}

// VectorSearch returns the k vectors of namespace nearest to query.
func (c *Client) VectorSearch(ctx context.Context, namespace string, query []float32, k uint32, options *VectorSearchOptions) (*VectorSearchResult, error) {
	req := &pb.VectorSearchRequest{Namespace: namespace, Query: query, K: k}
	anyReplica := false
	if options != nil {
		req.IncludeVectors = options.IncludeVectors
		req.Consistency = string(options.Consistency)
		anyReplica = anyReplicaMayServe(options.Consistency)
	}
	var resp *pb.VectorSearchResponse
	err := c.invoke(ctx, "vector_search", []byte(namespace), true, anyReplica, func(ctx context.Context, nc *nodeConn, opts ...grpc.CallOption) error {
		r, err := nc.vec.Search(ctx, req, opts...)
		resp = r
		return err
	})
	if err != nil {
		return nil, err
	}
	out := &VectorSearchResult{SearchTimeUs: resp.GetSearchTimeUs(), Matches: make([]VectorMatch, len(resp.GetMatches()))}
	for i, m := range resp.GetMatches() {
		out.Matches[i] = VectorMatch{ID: m.GetId(), Distance: m.GetDistance(), Vector: m.GetVector()}
	}
	return out, nil
}

// VectorGet returns the vector stored under id in namespace, or nil (and no
// error) when the id is absent. A missing index fails with ErrKeyNotFound.
func (c *Client) VectorGet(ctx context.Context, namespace, id string, options ...*VectorGetOptions) ([]float32, error) {
	req := &pb.VectorGetRequest{Namespace: namespace, Id: id}
	anyReplica := false
	if len(options) > 0 && options[0] != nil {
		req.Consistency = string(options[0].Consistency)
		anyReplica = anyReplicaMayServe(options[0].Consistency)
	}
	var resp *pb.VectorGetResponse
	err := c.invoke(ctx, "vector_get", []byte(namespace), true, anyReplica, func(ctx context.Context, nc *nodeConn, opts ...grpc.CallOption) error {
		r, err := nc.vec.Get(ctx, req, opts...)
		resp = r
		return err
	})
	if err != nil {
		return nil, err
	}
	if !resp.GetFound() {
		return nil, nil
	}
	v := resp.GetVector()
	if v == nil {
		v = []float32{}
	}
	return v, nil
}
