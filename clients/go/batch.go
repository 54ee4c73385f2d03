package norikv

import (
	"context"
	"fmt"

	"github.com/norikv/norikv-go/hash"
	pb "github.com/norikv/norikv-go/proto"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
)

// BatchOp is one operation of a Batch: a put (Delete false) or a delete.
type BatchOp struct {
	Key   []byte
	Value []byte // put only
	// Delete makes the op a delete of Key.
	Delete bool
	// TTLMs > 0 makes a put's value expire TTLMs ms after the leader
	// proposes the batch.
	TTLMs uint64
	// IfMatchVersion: the op (put or delete) requires the key's current
	// version to equal it.
	IfMatchVersion *Version
	// IfNotExists: the put requires that the key has no live value.
	IfNotExists bool
}

// BatchOptions refine a Batch.
type BatchOptions struct {
	// IdempotencyKey, when not empty, makes retries of this batch return
	// the first execution's result instead of executing again.
	IdempotencyKey string
}

// BatchOpResult is the outcome of one op of a Batch.
type BatchOpResult struct {
	// Code: codes.OK; codes.FailedPrecondition (version mismatch);
	// codes.AlreadyExists (IfNotExists on a live key); codes.Aborted (the
	// op was fine but another op's condition failed, so nothing applied).
	Code codes.Code
	// Tombstoned: a delete removed a live value.
	Tombstoned bool
	// Current is the key's version when its condition failed on an
	// existing key.
	Current *Version
}

// BatchResult is the outcome of a Batch.
type BatchResult struct {
	// Applied is true when every op was applied (all share Version).
	Applied bool
	Version *Version
	Results []BatchOpResult
}

// Batch applies ops atomically: all of them in one Raft entry, or none
// (docs/batch.md). Every key must be on one shard (hash.GetShardForKey);
// otherwise Batch fails before sending with an error naming the shards.
// When a condition fails nothing is applied: Batch returns the result (with
// each op's outcome) and an *Error matching ErrVersionMismatch or
// ErrAlreadyExists for the first failed op.
func (c *Client) Batch(ctx context.Context, ops []BatchOp, options *BatchOptions) (*BatchResult, error) {
	if len(ops) == 0 {
		return nil, &Error{Op: "batch", Code: codes.InvalidArgument, Message: "batch has no operations"}
	}
	req := &pb.BatchRequest{Ops: make([]*pb.BatchOp, len(ops))}
	safe := true
	shard0 := hash.GetShardForKey(ops[0].Key, c.cfg.TotalShards)
	for i, o := range ops {
		if s := hash.GetShardForKey(o.Key, c.cfg.TotalShards); s != shard0 {
			return nil, &Error{Op: "batch", Code: codes.FailedPrecondition,
				Message: fmt.Sprintf("batch spans shards %d (op 0) and %d (op %d): a batch's keys must all be on one shard", shard0, s, i)}
		}
		req.Ops[i] = &pb.BatchOp{Delete: o.Delete, Key: o.Key, Value: o.Value, TtlMs: o.TTLMs,
			IfMatch: o.IfMatchVersion.toPB(), IfNotExists: o.IfNotExists}
		if o.IfMatchVersion != nil || o.IfNotExists {
			safe = false
		}
	}
	if options != nil {
		req.IdempotencyKey = options.IdempotencyKey
		if options.IdempotencyKey != "" {
			safe = true
		}
	}
	var resp *pb.BatchResponse
	err := c.invoke(ctx, "batch", ops[0].Key, safe, false, func(ctx context.Context, nc *nodeConn, opts ...grpc.CallOption) error {
		r, err := nc.kv.Batch(ctx, req, opts...)
		resp = r
		return err
	})
	if err != nil {
		return nil, err
	}
	res := &BatchResult{Applied: resp.GetApplied(), Version: versionFromPB(resp.GetVersion())}
	var firstFail *Error
	for i, r := range resp.GetResults() {
		or := BatchOpResult{Code: codes.Code(r.GetCode()), Tombstoned: r.GetTombstoned(), Current: versionFromPB(r.GetCurrent())}
		res.Results = append(res.Results, or)
		if firstFail == nil && (or.Code == codes.FailedPrecondition || or.Code == codes.AlreadyExists) {
			msg := fmt.Sprintf("batch op %d: version mismatch; nothing was applied", i)
			if or.Code == codes.AlreadyExists {
				msg = fmt.Sprintf("batch op %d: key already exists (if_not_exists); nothing was applied", i)
			}
			firstFail = &Error{Op: "batch", Code: or.Code, Message: msg, CurrentVersion: or.Current,
				kind: kindForStatus(or.Code, "version mismatch")}
		}
	}
	if !res.Applied {
		if firstFail == nil {
			firstFail = &Error{Op: "batch", Code: codes.FailedPrecondition, Message: "batch was not applied", kind: ErrVersionMismatch}
		}
		return res, firstFail
	}
	return res, nil
}
