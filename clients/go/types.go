package norikv

import (
	"fmt"

	pb "github.com/norikv/norikv-go/proto"
)

// Version identifies the write that produced a value: the (term, index) of
// its Raft entry. Versions are compared by equality only.
type Version struct {
	Term  uint64
	Index uint64
}

// String formats a version as "term.index", the form of the server's
// current-version trailer.
func (v *Version) String() string {
	if v == nil {
		return "<nil>"
	}
	return fmt.Sprintf("%d.%d", v.Term, v.Index)
}

// Equal reports whether v and o name the same write. Two nil versions are
// equal.
func (v *Version) Equal(o *Version) bool {
	if v == nil || o == nil {
		return v == o
	}
	return v.Term == o.Term && v.Index == o.Index
}

func versionFromPB(p *pb.Version) *Version {
	if p == nil {
		return nil
	}
	return &Version{Term: p.GetTerm(), Index: p.GetIndex()}
}

func (v *Version) toPB() *pb.Version {
	if v == nil {
		return nil
	}
	return &pb.Version{Term: v.Term, Index: v.Index}
}

// ConsistencyLevel selects how a read is served. The zero value is the
// server's default, ConsistencyLease.
type ConsistencyLevel string

const (
	// ConsistencyLease is served by the shard's leader while its lease holds:
	// fast and, barring clock drift beyond the lease's safety margin, current.
	ConsistencyLease ConsistencyLevel = "lease"
	// ConsistencyLinearizable confirms leadership with a quorum (ReadIndex)
	// before serving: always current, one heartbeat round slower.
	ConsistencyLinearizable ConsistencyLevel = "linearizable"
	// ConsistencyStaleOK may be served by any replica and may be stale.
	ConsistencyStaleOK ConsistencyLevel = "stale_ok"
)

// PutOptions refine a Put. A nil *PutOptions is an unconditional write
// without expiry or idempotency key.
type PutOptions struct {
	// TTLMs, when set and > 0, makes the value expire TTLMs milliseconds
	// after the leader proposes the write.
	TTLMs *uint64
	// IdempotencyKey, when not empty, makes retries of this write (by the
	// client or by you) return the first attempt's result instead of
	// writing again. Scoped to the key's shard.
	IdempotencyKey string
	// IfMatchVersion, when set, applies the write only if the key exists and
	// its current version equals it; otherwise the Put fails with
	// ErrVersionMismatch.
	IfMatchVersion *Version
	// IfNotExists applies the write only when the key has no live value;
	// otherwise the Put fails with ErrAlreadyExists.
	IfNotExists bool
}

// GetOptions refine a Get. A nil *GetOptions reads with ConsistencyLease.
type GetOptions struct {
	Consistency ConsistencyLevel
}

// GetResult is a value read by Get.
type GetResult struct {
	Value   []byte
	Version *Version
	// Metadata is what the server attached to the response, if anything.
	Metadata map[string]string
}

// DeleteOptions refine a Delete. A nil *DeleteOptions is an unconditional
// delete.
type DeleteOptions struct {
	IdempotencyKey string
	// IfMatchVersion, when set, deletes only if the key's current version
	// equals it; otherwise the Delete fails with ErrVersionMismatch.
	IfMatchVersion *Version
}

// ClusterView is the cluster's layout as the client last learned it: which
// nodes exist and which replicas, and which leader, every shard has. Epoch
// increases exactly when the view changes.
type ClusterView struct {
	Epoch  uint64
	Nodes  []ClusterNode
	Shards []ShardInfo
}

// ClusterNode is one member of the cluster.
type ClusterNode struct {
	ID string
	// Addr is the node's client (gRPC) address, host:port.
	Addr string
	// Role is the membership state: "alive", "suspect", "dead" or "left".
	Role string
}

// ShardInfo lists a shard's replicas.
type ShardInfo struct {
	ID       uint32
	Replicas []ShardReplica
}

// ShardReplica is one replica of a shard; Leader marks the shard's leader.
type ShardReplica struct {
	NodeID string
	Leader bool
}

func viewFromPB(p *pb.ClusterView) *ClusterView {
	v := &ClusterView{Epoch: p.GetEpoch()}
	v.Nodes = make([]ClusterNode, 0, len(p.GetNodes()))
	for _, n := range p.GetNodes() {
		v.Nodes = append(v.Nodes, ClusterNode{ID: n.GetId(), Addr: n.GetAddr(), Role: n.GetRole()})
	}
	v.Shards = make([]ShardInfo, 0, len(p.GetShards()))
	for _, s := range p.GetShards() {
		si := ShardInfo{ID: s.GetId(), Replicas: make([]ShardReplica, 0, len(s.GetReplicas()))}
		for _, r := range s.GetReplicas() {
			si.Replicas = append(si.Replicas, ShardReplica{NodeID: r.GetNodeId(), Leader: r.GetLeader()})
		}
		v.Shards = append(v.Shards, si)
	}
	return v
}

func (v *ClusterView) clone() *ClusterView {
	if v == nil {
		return nil
	}
	c := &ClusterView{Epoch: v.Epoch, Nodes: append([]ClusterNode(nil), v.Nodes...)}
	c.Shards = make([]ShardInfo, len(v.Shards))
	for i, s := range v.Shards {
		c.Shards[i] = ShardInfo{ID: s.ID, Replicas: append([]ShardReplica(nil), s.Replicas...)}
	}
	return c
}

// TopologyChangeEvent tells an OnTopologyChange listener that the cluster
// view changed.
//
// Epochs are those of the node that served the view. They increase with
// every change while the client follows one node; after the client moves to
// another node, or its node restarts, CurrentEpoch may be lower than
// PreviousEpoch. An event is sent only when the view's content changed.
type TopologyChangeEvent struct {
	PreviousEpoch uint64 // 0 for the first view the client learns
	CurrentEpoch  uint64
	// AddedNodes and RemovedNodes are node IDs. A node counts as present
	// while its role is "alive" or "suspect" (or empty); a node that becomes
	// "dead" or "left", or disappears from the view, is removed.
	AddedNodes   []string
	RemovedNodes []string
	// LeaderChanges maps each shard whose leader changed to the new leader's
	// node ID ("" when the shard has no known leader now).
	LeaderChanges map[uint32]string
	// View is a copy of the new view; listeners may keep it.
	View *ClusterView
}

// ClientStats is a snapshot of the client's internal state.
type ClientStats struct {
	Pool     PoolStats
	Router   RouterStats
	Topology TopologyStats
}

// PoolStats describes the connection pool (one connection per node).
type PoolStats struct {
	// ActiveConnections counts pooled connections that are usable: connected,
	// connecting or idle, not failed.
	ActiveConnections int
	// TotalConnections counts every pooled connection.
	TotalConnections int
}

// RouterStats describes routing.
type RouterStats struct {
	// TotalNodes is the number of nodes in the cluster view (the configured
	// seed nodes before a view is known).
	TotalNodes  int
	TotalShards int
	// Redirects counts NOT_LEADER answers followed to a hinted leader.
	Redirects uint64
	// Discoveries counts leader look-ups actually sent to the cluster
	// (concurrent look-ups of one shard share one).
	Discoveries uint64
}

// TopologyStats describes what the client knows of the cluster's layout.
type TopologyStats struct {
	Epoch uint64
	// CachedLeaders is the number of shards whose leader is known.
	CachedLeaders int
	// Watching is true while the WatchCluster stream is open.
	Watching bool
}
