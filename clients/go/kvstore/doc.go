// Package kvstore is a typed key-value client with a local copy: the API of
// seed 004 (a KV store client with pluggable local storage, hooks and
// read-your-writes) on NoriKV.
//
// # Model
//
// A Client owns one namespace: its key k is the NoriKV key namespace+"/"+k
// (the seed's topic becomes this key prefix; keys are hash-distributed over
// every shard). NewClient scans the prefix (Kv.Range, linearizable) into the
// local Storage, removes from the Storage the keys the scan did not find,
// and then follows Kv.Watch of the prefix from the per-shard revisions the
// scan read at. One goroutine applies the watch's events to the Storage and
// fires the hooks, in per-shard revision order, each change once (the SDK's
// watch resumes after NOT_LEADER, server restarts, lost connections and
// leader changes from the last revision of every shard). If the cluster has
// compacted its change feed past the client's position (ErrCompacted), the
// client scans again and follows a new watch.
//
// Reads (Get, Range) are served from the Storage: fast, and as fresh as the
// watch. Writes go to the cluster (Kv.Put; Delete and Batch through
// Kv.Batch) and return only once the write's revision has been applied to
// this client's Storage (read-your-writes); other clients see it when
// their watches deliver it.
//
// # Batches
//
// NoriKV commits a batch atomically per shard. A Batch's operations are
// grouped by the shard of their keys and sent as one Kv.Batch per shard (at
// most 1000 operations each): operations on one shard apply all or nothing,
// on different shards independently. Several operations on one key in one
// Batch collapse to the last.
//
// # Storage
//
// Storage is the local copy: NewMemoryStorage (a map and a sorted key
// index) or OpenBoltStorage (go.etcd.io/bbolt, one file, persistent: a
// restarted client starts from the file and the bootstrap scan brings it up
// to date, firing OnDelete for keys deleted meanwhile). Both implement
// BatchStorage, used for the bootstrap. Any other Storage works; its Get
// must return ErrNotFound for a missing key.
//
// # Hooks
//
// WithOnSetHook and WithOnDeleteHook fire after the Storage applied a
// change: for every key of the bootstrap scan, and for every live change
// (this client's writes and others', TTL expiries as deletes). They run on
// the watch goroutine, so they must be quick and must not call Put, Delete
// or Batch of the same Client. WrapOnSet/WrapOnDelete give typed hooks.
//
// # Options that differ from the seed
//
// WithBrokers takes NoriKV node addresses (any one suffices). The seed's
// Kafka-only options have NoriKV counterparts or none:
// WithKafkaOptions is replaced by WithNoriKVConfig (the SDK's ClientConfig:
// TotalShards, Timeout, Retry) and WithNoriKVClient (share one SDK client
// between namespaces); WithReplicationFactor has none (replication is the
// cluster's configuration); the Proto serde's Schema Registry options have
// none (values are plain protobuf bytes), WithDeterministic is added.
//
// # Errors
//
// Get returns ErrNotFound for a missing key; every call on a closed Client
// returns ErrClientClosed. A typed Range stops on the first value that does
// not deserialize. Once the client cannot follow the cluster any more (the
// watch failed for good, or the Storage failed), writes fail with that
// error; NoriKV errors keep their gRPC code (status.Code(err)).
package kvstore
