package cluster

// The checked clients speak raw norikv.v1 gRPC stubs (the SDK's generated
// package) with their own leader routing, not the SDK's Client: the SDK
// retries on its own (redirects, reconnects, idempotent retries), and a
// checker must know exactly which requests may have reached a leader. Here
// every attempt is classified:
//
//	OK / NOT_FOUND / FAILED_PRECONDITION / ALREADY_EXISTS  definite outcome
//	UNAVAILABLE NOT_LEADER (+ leader-hint)                  not applied: follow the hint
//	UNAVAILABLE before the request left (dial failed)       not applied: try another node
//	RESOURCE_EXHAUSTED                                      not applied (refused before queueing)
//	anything else (DEADLINE_EXCEEDED, QUORUM_UNAVAILABLE,
//	connection lost mid-call, shutting down, ...)           unknown: a write is recorded as
//	                                                        possibly applied; never retried
//
// Routing: shard = jump(xxhash64(key)) as CONTRACT.md; the leader of each
// shard is learned from NOT_LEADER hints and ClusterViews, else the client
// tries nodes in turn.

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/norikv/norikv-go/hash"
	pb "github.com/norikv/norikv-go/proto"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// Router keeps each shard's believed leader.
type Router struct {
	C     *Cluster
	mu    sync.Mutex
	lead  map[uint32]int
	rr    int
	Stats RouterStats
}

// RouterStats counts what the clients saw.
type RouterStats struct {
	NotLeader, Hinted, BadHint, NotSent, Exhausted, Unknown int
	// Why outcomes were unknown: gRPC code and the start of the message.
	UnknownWhy map[string]int
}

func NewRouter(c *Cluster) *Router { return &Router{C: c, lead: map[uint32]int{}} }

// Shard of a key, as every SDK computes it.
func (r *Router) Shard(key string) uint32 {
	return uint32(hash.GetShardForKey([]byte(key), r.C.Opts.TotalShards))
}

func (r *Router) target(shard uint32, avoid int) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	if l, ok := r.lead[shard]; ok && l != avoid {
		return l
	}
	r.rr++
	n := len(r.C.Nodes)
	i := r.rr % n
	if i == avoid && n > 1 {
		i = (i + 1) % n
	}
	return i
}

func (r *Router) learn(shard uint32, node int) {
	r.mu.Lock()
	if node >= 0 {
		r.lead[shard] = node
	} else {
		delete(r.lead, shard)
	}
	r.mu.Unlock()
}

func (r *Router) count(f func(s *RouterStats)) { r.mu.Lock(); f(&r.Stats); r.mu.Unlock() }

// LearnView takes every shard's leader from a ClusterView.
func (r *Router) LearnView(v *pb.ClusterView) {
	for s, l := range r.C.Leaders(v) {
		if l >= 0 {
			r.learn(s, l)
		}
	}
}

// Result of one operation.
type Result int

const (
	Definite   Result = iota // Output holds the outcome
	NotApplied               // certainly had no effect
	Unknown                  // may or may not have taken effect
)

// Attempt classification.
type attempt int

const (
	attOK attempt = iota
	attNotLeader
	attNotSent
	attUnknown
)

// Do runs one operation against the cluster: it follows NOT_LEADER hints
// and tries other nodes while the request certainly did not take effect,
// until budget is spent, and stops at the first attempt whose outcome is
// definite or unknown. attemptTimeout bounds each call.
func (r *Router) Do(in Input, attemptTimeout, budget time.Duration) (Output, Result, string) {
	shard := r.Shard(in.Key)
	deadline := time.Now().Add(budget)
	avoid := -1
	for {
		node := r.target(shard, avoid)
		out, att, hint := r.once(node, in, attemptTimeout)
		switch att {
		case attOK:
			r.learn(shard, node)
			return out, Definite, r.C.Nodes[node].ID
		case attUnknown:
			r.count(func(s *RouterStats) { s.Unknown++ })
			r.learn(shard, -1)
			return Output{Unknown: true}, Unknown, r.C.Nodes[node].ID
		case attNotLeader:
			r.count(func(s *RouterStats) { s.NotLeader++ })
			h := r.C.NodeByAddr(hint)
			if hint != "" && h < 0 {
				r.count(func(s *RouterStats) { s.BadHint++ })
			}
			if h >= 0 && h != node {
				r.count(func(s *RouterStats) { s.Hinted++ })
				r.learn(shard, h)
				avoid = -1
			} else {
				r.learn(shard, -1)
				avoid = node
			}
		case attNotSent:
			r.count(func(s *RouterStats) { s.NotSent++ })
			r.learn(shard, -1)
			avoid = node
		}
		if time.Now().After(deadline) {
			return Output{}, NotApplied, r.C.Nodes[node].ID
		}
		if att != attNotLeader || hint == "" {
			time.Sleep(20 * time.Millisecond) // no leader known: elections take a moment
		}
	}
}

func (r *Router) once(node int, in Input, timeout time.Duration) (Output, attempt, string) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	kv := r.C.Nodes[node].KV()
	var md metadata.MD
	tr := grpc.Trailer(&md)
	var out Output
	var err error
	switch in.Kind {
	case OpGet:
		var resp *pb.GetResponse
		resp, err = kv.Get(ctx, &pb.GetRequest{Key: []byte(in.Key), Consistency: in.Consistency}, tr)
		if err == nil {
			out = Output{Found: true, Value: string(resp.Value), Version: ver(resp.Version)}
		} else if status.Code(err) == codes.NotFound {
			return Output{Found: false}, attOK, ""
		}
	case OpPut, OpCasPut:
		req := &pb.PutRequest{Key: []byte(in.Key), Value: []byte(in.Value)}
		if in.Kind == OpCasPut {
			req.IfMatch = &pb.Version{Term: in.IfMatch.Term, Index: in.IfMatch.Index}
		}
		var resp *pb.PutResponse
		resp, err = kv.Put(ctx, req, tr)
		if err == nil {
			out = Output{Version: ver(resp.Version)}
		}
	case OpDelete, OpCasDelete:
		req := &pb.DeleteRequest{Key: []byte(in.Key)}
		if in.Kind == OpCasDelete {
			req.IfMatch = &pb.Version{Term: in.IfMatch.Term, Index: in.IfMatch.Index}
		}
		var resp *pb.DeleteResponse
		resp, err = kv.Delete(ctx, req, tr)
		if err == nil {
			out = Output{Found: resp.Tombstoned, Version: ver(resp.Version)}
		}
	default:
		panic("unknown op kind " + in.Kind)
	}
	if err == nil {
		return out, attOK, ""
	}
	st := status.Convert(err)
	switch st.Code() {
	case codes.FailedPrecondition:
		if (in.Kind == OpCasPut || in.Kind == OpCasDelete) &&
			strings.HasPrefix(st.Message(), "version mismatch") {
			out = Output{Mismatch: true}
			if cv := md.Get("current-version"); len(cv) > 0 {
				v, perr := ParseVersion(cv[0])
				if perr != nil {
					panic(fmt.Sprintf("malformed current-version trailer %q: %v", cv[0], perr))
				}
				out.HasCurrent, out.Current = true, v
			}
			return out, attOK, ""
		}
	case codes.Unavailable:
		if strings.Contains(st.Message(), "NOT_LEADER") {
			hint := ""
			if h := md.Get("leader-hint"); len(h) > 0 {
				hint = h[0]
			}
			return Output{}, attNotLeader, hint
		}
		if notSent(st.Message()) {
			return Output{}, attNotSent, ""
		}
	case codes.ResourceExhausted:
		r.count(func(s *RouterStats) { s.Exhausted++ })
		return Output{}, attNotSent, ""
	}
	why := st.Code().String() + ": " + st.Message()
	if len(why) > 90 {
		why = why[:90]
	}
	r.count(func(s *RouterStats) {
		if s.UnknownWhy == nil {
			s.UnknownWhy = map[string]int{}
		}
		if len(s.UnknownWhy) < 20 {
			s.UnknownWhy[why]++
		}
	})
	return Output{}, attUnknown, ""
}

// notSent recognises gRPC-Go's fail-fast errors for a connection that never
// became ready: the request was not written to any socket. gRPC-Go reports
// a failure to establish the transport (dial refused, reset while reading
// the server's preface) as "connection error: desc = ..." from the picker,
// before any stream exists; a failure after the request was written reads
// "error reading from server", "transport is closing" and the like, which
// stay unknown.
func notSent(msg string) bool {
	return strings.HasPrefix(msg, "connection error:") ||
		strings.Contains(msg, "Error while dialing") ||
		strings.Contains(msg, "connect: connection refused")
}

func ver(v *pb.Version) Version {
	if v == nil {
		return Version{}
	}
	return Version{Term: v.Term, Index: v.Index}
}

// ParseVersion parses "term.index".
func ParseVersion(s string) (Version, error) {
	a, b, ok := strings.Cut(strings.TrimSpace(s), ".")
	if !ok {
		return Version{}, fmt.Errorf("no '.'")
	}
	t, err1 := strconv.ParseUint(a, 10, 64)
	i, err2 := strconv.ParseUint(b, 10, 64)
	if err1 != nil || err2 != nil {
		return Version{}, fmt.Errorf("not term.index")
	}
	return Version{Term: t, Index: i}, nil
}

// ProbeResult is the outcome of one direct call to a chosen node.
type ProbeResult int

const (
	ProbeOK        ProbeResult = iota // a definite answer (Output)
	ProbeNotLeader                    // NOT_LEADER (hint returned)
	ProbeNotSent                      // the request never left (or a full queue)
	ProbeUnknown                      // anything else (timeout, QUORUM_UNAVAILABLE, ...)
)

func (p ProbeResult) String() string {
	return [...]string{"ok", "NOT_LEADER", "not sent", "unknown"}[p]
}

// Probe sends one request to node, without routing or retries: what tests
// use to ask a specific node (a follower, a paused or cut-off leader).
func (r *Router) Probe(node int, in Input, timeout time.Duration) (Output, ProbeResult, string) {
	out, att, hint := r.once(node, in, timeout)
	switch att {
	case attOK:
		return out, ProbeOK, ""
	case attNotLeader:
		return out, ProbeNotLeader, hint
	case attNotSent:
		return out, ProbeNotSent, ""
	}
	return Output{Unknown: true}, ProbeUnknown, ""
}

// KeyForShard finds a key (prefix + a number) that routes to shard s.
func KeyForShard(prefix string, s uint32, total int, n int) string {
	for i := 0; ; i++ {
		k := fmt.Sprintf("%s%d-%d", prefix, s, i)
		if uint32(hash.GetShardForKey([]byte(k), total)) == s {
			if n == 0 {
				return k
			}
			n--
		}
	}
}
