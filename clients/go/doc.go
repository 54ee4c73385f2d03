// Package norikv is the Go client of NoriKV, a sharded, Raft-replicated
// key-value store.
//
// A Client routes every request itself: it hashes the key to its shard
// (package hash: JumpConsistentHash(XXHash64(key), TotalShards)), looks up that
// shard's leader in the ClusterView it follows through Meta.WatchCluster, and
// calls the leader directly over one pooled gRPC connection per node. A
// NOT_LEADER answer with a leader-hint updates the cached leader and the
// request is sent again at once; transient failures are retried with
// exponential backoff and jitter, and a write whose outcome is unknown is
// retried only when that cannot apply it twice (see RetryConfig).
//
// A Client is safe for concurrent use by many goroutines; create one and
// share it. Errors can be tested with errors.Is against ErrKeyNotFound,
// ErrVersionMismatch, ErrAlreadyExists and ErrConnection; every error that
// came from the server also carries its gRPC code (status.Code(err)).
package norikv
