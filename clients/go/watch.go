package norikv

// Watch: the changes of a key, a prefix or a range, from every shard's
// change feed (docs/watch.md), as one stream of events.
//
// Keys are hash-distributed over shards and each shard has its own log, so
// a watch is one server stream per node that leads some of the shards, and
// the client's position is one revision per shard. Three goroutines kinds
// cooperate:
//
//   - an opener routes a set of shards to their leaders and opens one stream
//     per node with each shard's last revision (retrying the shards no node
//     served after refreshing the view, with backoff, until the watch ends);
//   - a reader per stream receives messages and hands them, in order, to
//   - the dispatcher, the only owner of the per-shard positions: it drops
//     any event not newer than its shard's position before the message (so
//     a resume can never duplicate; one entry's events share a revision and
//     come in one message), advances the positions, delivers the events,
//     and when a stream ends decides: resume its shards (UNAVAILABLE, a lost
//     connection, "watch too slow") or end the watch (compacted, invalid
//     argument, ...). A stream's end reaches the dispatcher after all of its
//     messages, so the resume starts exactly after the last event delivered.
//
// Buffering is bounded: the dispatcher's inbox holds at most watchInbox
// server messages (each at most 256 events / 1 MiB) and the caller's queue
// WatchOptions.Buffer events. A caller that does not read stalls the
// readers, then gRPC's flow control, then the server, which cuts the stream
// off as too slow; the watch then resumes from its positions.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"regexp"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/norikv/norikv-go/hash"
	pb "github.com/norikv/norikv-go/proto"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// EventKind says what a WatchEvent reports.
type EventKind int

const (
	// EventPut: the key was written (Value holds the value unless KeysOnly).
	EventPut EventKind = iota
	// EventDelete: a client deleted the key.
	EventDelete
	// EventExpire: the key's TTL ran out (one event, decided by the shard's
	// replicated time).
	EventExpire
	// EventProgress (only with WatchOptions.Progress): every matching event
	// of Shard up to Version has been delivered. Key and Value are empty.
	EventProgress
)

func (k EventKind) String() string {
	switch k {
	case EventPut:
		return "PUT"
	case EventDelete:
		return "DELETE"
	case EventExpire:
		return "EXPIRE"
	case EventProgress:
		return "PROGRESS"
	}
	return "EventKind(" + strconv.Itoa(int(k)) + ")"
}

// WatchEvent is one change (or, with Progress, one progress mark).
type WatchEvent struct {
	Kind  EventKind
	Key   []byte
	Value []byte
	// Version is the change's revision: the (term, index) of the Raft
	// entry that made it, ordered within its shard.
	Version *Version
	Shard   int
	// ExpiresAtMs: a put with a TTL expires then (ms since the epoch).
	ExpiresAtMs uint64
	// EntryEnd marks the last event of its revision: one entry (a batch)
	// can change several keys, whose events share the revision and come
	// one after the other. A reader that tracks "applied up to revision r"
	// should move to r at this event, not before (progress marks always
	// have it).
	EntryEnd bool
}

// WatchOptions select what a Watch follows. Exactly one of Key, Prefix or
// Start/End (both nil: every key) is used.
type WatchOptions struct {
	Key    []byte
	Prefix []byte
	Start  []byte // inclusive; nil: unbounded
	End    []byte // exclusive; nil: unbounded
	// From gives, per shard, the revision to watch after (the Version of
	// the last event seen, or a RangeIterator.Revisions entry). A shard not
	// listed starts at its current revision (new changes only), which the
	// client learns before Watch returns so that a resume never skips.
	From map[int]*Version
	// KeysOnly leaves WatchEvent.Value empty.
	KeysOnly bool
	// Progress delivers EventProgress marks as the server's progress
	// messages advance a shard without a matching event.
	Progress bool
	// Buffer bounds the events queued for the caller (default 1024).
	Buffer int
}

// ErrCompacted: a watch asked for a revision older than its shard still
// keeps (OUT_OF_RANGE "compacted: ..."). Scan again (Range) and watch from
// the scan's revisions. The error is a *CompactedError.
var ErrCompacted = errors.New("norikv: watch revision compacted")

// CompactedError says which shard compacted past the revision asked and the
// oldest revision it still has (events after Floor are available).
type CompactedError struct {
	Shard int
	Floor *Version
	Err   *Error // the server's answer
}

func (e *CompactedError) Error() string {
	return fmt.Sprintf("norikv: watch: shard %d keeps events after revision %v only (compacted): %v", e.Shard, e.Floor, e.Err)
}

// Is makes errors.Is(err, ErrCompacted) work.
func (e *CompactedError) Is(target error) bool { return target == ErrCompacted }

// Unwrap returns the server's answer.
func (e *CompactedError) Unwrap() error { return e.Err }

var compactedRE = regexp.MustCompile(`shard (\d+) keeps events after revision (?:(\d+)\.)?(\d+)`)

// compactedError parses the OUT_OF_RANGE message of docs/watch.md. The
// floor is "term.index" there; the server sends the index alone (revisions
// are ordered by index within a shard), which leaves Floor.Term 0.
func compactedError(e *Error) error {
	m := compactedRE.FindStringSubmatch(e.Message)
	if m == nil {
		return &CompactedError{Shard: -1, Err: e}
	}
	sh, _ := strconv.Atoi(m[1])
	var term uint64
	if m[2] != "" {
		term, _ = strconv.ParseUint(m[2], 10, 64)
	}
	idx, _ := strconv.ParseUint(m[3], 10, 64)
	return &CompactedError{Shard: sh, Floor: &Version{Term: term, Index: idx}, Err: e}
}

// newer reports whether a is a later revision of a shard than b (nil b:
// nothing seen). Indexes order a shard's log; the term breaks no ties in
// practice but keeps the order total.
func newer(a, b *Version) bool {
	if b == nil {
		return true
	}
	if a == nil {
		return false
	}
	if a.Index != b.Index {
		return a.Index > b.Index
	}
	return a.Term > b.Term
}

const (
	watchInbox         = 8    // server messages queued for the dispatcher
	watchDefaultBuffer = 1024 // events queued for the caller
	watchMaxBackoff    = 2 * time.Second
)

// Watcher is a running Watch. Read it with Next/Event/Err (or All) from one
// goroutine; Close may be called from any goroutine.
type Watcher struct {
	c      *Client
	ctx    context.Context
	cancel context.CancelFunc
	base   *pb.WatchRequest
	shards []uint32 // every shard the watch covers
	prog   bool

	inbox chan watchMsg
	out   chan *WatchEvent
	wg    sync.WaitGroup

	posMu sync.Mutex
	pos   map[int]*Version // dispatcher: what was queued (the resume point)

	resumes atomic.Int64

	doneMu sync.Mutex
	done   map[int]*Version // Next: what the caller has been given, whole entries

	errMu sync.Mutex
	err   error

	cur *WatchEvent
}

// watchMsg is what readers and openers tell the dispatcher.
type watchMsg struct {
	resp   *pb.WatchResponse
	ended  []uint32 // a stream over these shards ended with err
	err    error    // with ended: why; alone: the watch must end
	opened bool     // resp is a stream's first message
}

// Watch starts following the changes opts selects and returns once every
// shard has a stream (or fails: UNIMPLEMENTED on a server without Kv.Watch,
// INVALID_ARGUMENT, ErrCompacted, ErrConnection when ctx ends first). ctx
// bounds the whole watch: cancelling it ends the watch like Close. The
// watch resumes by itself after NOT_LEADER, a server shutdown or restart, a
// lost connection and leader changes, from each shard's last revision, so
// every event is delivered once, in per-shard revision order.
func (c *Client) Watch(ctx context.Context, opts *WatchOptions) (*Watcher, error) {
	if c.closed.Load() {
		return nil, ErrClosed
	}
	var o WatchOptions
	if opts != nil {
		o = *opts
	}
	n := 0
	for _, set := range [][]byte{o.Key, o.Prefix} {
		if len(set) > 0 {
			n++
		}
	}
	if len(o.Start) > 0 || len(o.End) > 0 {
		n++
	}
	if n > 1 {
		return nil, &Error{Op: "watch", Code: codes.InvalidArgument, Message: "watch: give one of Key, Prefix or Start/End"}
	}
	w := &Watcher{c: c, prog: o.Progress, pos: make(map[int]*Version)}
	w.ctx, w.cancel = context.WithCancel(ctx)
	w.base = &pb.WatchRequest{Key: o.Key, Prefix: o.Prefix, Start: o.Start, End: o.End, KeysOnly: o.KeysOnly}
	if len(o.Key) > 0 {
		w.shards = []uint32{uint32(hash.GetShardForKey(o.Key, c.cfg.TotalShards))}
	} else {
		w.shards = make([]uint32, c.cfg.TotalShards)
		for i := range w.shards {
			w.shards[i] = uint32(i)
		}
	}
	for s, v := range o.From {
		if v != nil && s >= 0 && s < c.cfg.TotalShards {
			vv := *v
			w.pos[s] = &vv
		}
	}
	if err := w.learnStart(); err != nil {
		w.cancel()
		return nil, err
	}
	w.done = make(map[int]*Version, len(w.pos))
	for s, v := range w.pos {
		w.done[s] = v
	}
	buf := o.Buffer
	if buf <= 0 {
		buf = watchDefaultBuffer
	}
	w.inbox = make(chan watchMsg, watchInbox)
	w.out = make(chan *WatchEvent, buf)
	if err := w.open(w.shards, true); err != nil {
		w.cancel()
		w.wg.Wait()
		return nil, err
	}
	w.wg.Add(1)
	go w.dispatch()
	return w, nil
}

// learnStart fills in the current revision of every watched shard that has
// no From: a one-entry keys-only scan reports each shard's applied
// revision. Without it, a stream that ended before its shard's first event
// or progress would resume "from current" and skip what happened between.
func (w *Watcher) learnStart() error {
	missing := false
	for _, s := range w.shards {
		if w.pos[int(s)] == nil {
			missing = true
			break
		}
	}
	if !missing {
		return nil
	}
	it := w.c.RangeIter(w.ctx, &RangeOptions{Limit: 1, PageSize: 1, KeysOnly: true, Consistency: ConsistencyLinearizable})
	it.Next()
	it.Close()
	if err := it.Err(); err != nil {
		return err
	}
	for s, v := range it.Revisions() {
		if w.pos[s] == nil {
			w.pos[s] = v
		}
	}
	return nil
}

// Next waits for the next event; false once the watch ended (Err says why;
// nil after Close or when ctx was cancelled).
func (w *Watcher) Next() bool {
	for {
		ev, ok := <-w.out
		if !ok {
			w.cur = nil
			return false
		}
		if ev.EntryEnd {
			w.doneMu.Lock()
			if newer(ev.Version, w.done[ev.Shard]) {
				w.done[ev.Shard] = ev.Version
			}
			w.doneMu.Unlock()
		}
		if ev.Kind == EventProgress && !w.prog {
			continue
		}
		w.cur = ev
		return true
	}
}

// Event is the current event (valid after Next returned true).
func (w *Watcher) Event() *WatchEvent { return w.cur }

// Err is the error that ended the watch, if any: an *Error (with its gRPC
// code), or a *CompactedError matching ErrCompacted.
func (w *Watcher) Err() error {
	w.errMu.Lock()
	defer w.errMu.Unlock()
	return w.err
}

// Revisions returns, per shard, the revision up to which Next has handed
// out every event (whole entries: a batch's events count once the last of
// them, EntryEnd, was returned; progress marks count too). A later Watch
// with From set to it continues with the next entry, so nothing the caller
// has seen comes again and nothing after is skipped. A copy; safe to call
// from any goroutine.
func (w *Watcher) Revisions() map[int]*Version {
	w.doneMu.Lock()
	defer w.doneMu.Unlock()
	out := make(map[int]*Version, len(w.done))
	for s, v := range w.done {
		vv := *v
		out[s] = &vv
	}
	return out
}

// Resumes is how many times a stream ended and its shards were sent again
// (to their leader, from their positions).
func (w *Watcher) Resumes() int { return int(w.resumes.Load()) }

// Close ends the watch and waits for its goroutines. Idempotent.
func (w *Watcher) Close() {
	w.cancel()
	w.wg.Wait()
}

// All yields the events until the watch ends; a final (nil, err) pair when
// it ended with an error. Breaking out of the loop closes the watcher.
func (w *Watcher) All() iter.Seq2[*WatchEvent, error] {
	return func(yield func(*WatchEvent, error) bool) {
		defer w.Close()
		for w.Next() {
			if !yield(w.Event(), nil) {
				return
			}
		}
		if err := w.Err(); err != nil {
			yield(nil, err)
		}
	}
}

func (w *Watcher) fail(err error) {
	w.errMu.Lock()
	if w.err == nil {
		w.err = err
	}
	w.errMu.Unlock()
}

// dispatch owns the positions; see the file comment.
func (w *Watcher) dispatch() {
	defer w.wg.Done()
	defer close(w.out)
	for {
		var m watchMsg
		select {
		case <-w.ctx.Done():
			return
		case m = <-w.inbox:
		}
		if m.ended == nil && m.err != nil {
			w.fail(m.err)
			w.cancel()
			return
		}
		if m.resp != nil {
			if !w.deliver(m.resp) {
				return
			}
		}
		if m.ended != nil {
			if perm := watchEndIsFinal(m.err); perm != nil {
				w.fail(perm)
				w.cancel()
				return
			}
			shards := m.ended
			w.resumes.Add(1)
			w.wg.Add(1)
			go func() {
				defer w.wg.Done()
				if err := w.open(shards, false); err != nil {
					select {
					case w.inbox <- watchMsg{err: err}:
					case <-w.ctx.Done():
					}
				}
			}()
		}
	}
}

// deliver passes resp's new events to the caller and advances positions;
// false when the watch was closed meanwhile.
//
// One entry (a batch) can change several keys: its events share a revision
// and the server never splits them over two responses. So an event is new
// when its revision is past its shard's position as it was before this
// response, and a resume (which starts after a position) never cuts an
// entry in two.
func (w *Watcher) deliver(resp *pb.WatchResponse) bool {
	var base map[int]*Version // shard -> position before this response
	// entryEnd[i]: no later event of this response has event i's shard and
	// revision (a reverse pass over the response)
	evs := resp.GetEvents()
	entryEnd := make([]bool, len(evs))
	nextOf := map[uint32]*pb.Version{}
	for i := len(evs) - 1; i >= 0; i-- {
		e := evs[i]
		nv, ok := nextOf[e.GetShard()]
		entryEnd[i] = !ok || nv.GetIndex() != e.GetVersion().GetIndex() || nv.GetTerm() != e.GetVersion().GetTerm()
		nextOf[e.GetShard()] = e.GetVersion()
	}
	for i, e := range evs {
		sh := int(e.GetShard())
		if e.GetKind() > pb.WatchEvent_EXPIRE {
			continue // a kind this client does not know
		}
		v := versionFromPB(e.GetVersion())
		w.posMu.Lock()
		if base == nil {
			base = make(map[int]*Version)
		}
		b, ok := base[sh]
		if !ok {
			b = w.pos[sh]
			base[sh] = b
		}
		fresh := newer(v, b)
		if fresh && newer(v, w.pos[sh]) {
			w.pos[sh] = v
		}
		w.posMu.Unlock()
		if !fresh {
			continue // already delivered before a resume
		}
		ev := &WatchEvent{Kind: EventKind(e.GetKind()), Key: e.GetKey(), Value: e.GetValue(), Version: v, Shard: sh,
			ExpiresAtMs: e.GetExpiresAtMs(), EntryEnd: entryEnd[i]}
		select {
		case w.out <- ev:
		case <-w.ctx.Done():
			return false
		}
	}
	for _, p := range resp.GetProgress() {
		sh := int(p.GetShard())
		v := versionFromPB(p.GetApplied())
		w.posMu.Lock()
		fresh := v != nil && newer(v, w.pos[sh])
		if fresh {
			w.pos[sh] = v
		}
		w.posMu.Unlock()
		// progress marks always go through the queue, behind the events,
		// so that Revisions moves with what Next handed out
		if fresh {
			select {
			case w.out <- &WatchEvent{Kind: EventProgress, Version: v, Shard: sh, EntryEnd: true}:
			case <-w.ctx.Done():
				return false
			}
		}
	}
	return true
}

// watchEndIsFinal returns the error that ends the whole watch for a stream
// that ended with err, or nil when its shards are to be resumed.
func watchEndIsFinal(err error) error {
	var e *Error
	if !errors.As(err, &e) {
		return nil // a stream that ended without a status: resume
	}
	switch e.Code {
	case codes.OutOfRange:
		return compactedError(e)
	case codes.InvalidArgument, codes.Unimplemented, codes.PermissionDenied, codes.Unauthenticated, codes.FailedPrecondition:
		return e
	case codes.ResourceExhausted:
		if classify(e.GRPCStatus()) == failPermanent {
			return e // over the message size limit: the same every time
		}
	}
	return nil
}

// open routes shards to their leaders and starts one stream per node with
// the shards' positions, until each shard is served. first: this is the
// Watch call's initial open, which gives up after the retry policy's
// attempts (or ctx) and reports permanent answers; a resume keeps trying
// until the watch ends.
func (w *Watcher) open(shards []uint32, first bool) error {
	c := w.c
	pending := slices.Clone(shards)
	var last *Error
	for attempt := 1; len(pending) > 0; attempt++ {
		groups := w.group(pending)
		pending = nil
		for _, g := range groups {
			covered, err := w.start(g)
			if err != nil {
				last = err
				f := classify(err.GRPCStatus())
				if final := watchEndIsFinal(err); final != nil {
					return final
				}
				if nodeDown(err.GRPCStatus(), f) {
					c.router.nodeFailed(g.nc)
				}
				pending = append(pending, g.shards...)
				continue
			}
			for _, sh := range g.shards {
				if _, ok := slices.BinarySearch(covered, sh); !ok {
					pending = append(pending, sh)
				}
			}
		}
		if len(pending) == 0 {
			return nil
		}
		if w.ctx.Err() != nil {
			return contextError("watch", w.ctx.Err(), last, attempt)
		}
		if first && attempt >= c.cfg.Retry.MaxAttempts+4 {
			if last != nil {
				return last
			}
			return fmt.Errorf("%w: watch: %d shards found no node to serve them", ErrConnection, len(pending))
		}
		slices.Sort(pending)
		if c.router.discover != nil {
			_ = c.router.discover(w.ctx)
		}
		d := c.cfg.Retry.backoff(attempt)
		if d > watchMaxBackoff {
			d = watchMaxBackoff
		}
		t := time.NewTimer(d)
		select {
		case <-w.ctx.Done():
			t.Stop()
			return contextError("watch", w.ctx.Err(), last, attempt)
		case <-t.C:
		}
	}
	return nil
}

// group assigns shards to their cached leaders, else to any node (which
// serves what it leads; the rest is routed again).
func (w *Watcher) group(shards []uint32) []shardGroup {
	c := w.c
	byAddr := map[string]*shardGroup{}
	var order []string
	for _, sh := range shards {
		nc := c.router.leaders[sh].Load()
		if nc == nil {
			var err error
			nc, err = c.router.fallback(int(sh), "")
			if err != nil {
				continue
			}
		}
		g := byAddr[nc.addr]
		if g == nil {
			g = &shardGroup{nc: nc}
			byAddr[nc.addr] = g
			order = append(order, nc.addr)
		}
		g.shards = append(g.shards, sh)
	}
	out := make([]shardGroup, 0, len(order))
	for _, a := range order {
		out = append(out, *byAddr[a])
	}
	return out
}

// start opens one stream for g, waits for its first message (the shards
// served) and hands the stream to a reader. It returns the shards served.
func (w *Watcher) start(g shardGroup) ([]uint32, *Error) {
	req := &pb.WatchRequest{Key: w.base.Key, Prefix: w.base.Prefix, Start: w.base.Start, End: w.base.End,
		KeysOnly: w.base.KeysOnly, Shards: g.shards}
	w.posMu.Lock()
	for _, sh := range g.shards {
		if v := w.pos[int(sh)]; v != nil {
			req.From = append(req.From, &pb.ShardRevision{Shard: sh, Applied: v.toPB()})
		}
	}
	w.posMu.Unlock()
	sctx, scancel := context.WithCancel(w.ctx)
	var trailer metadata.MD
	stream, err := g.nc.kv.Watch(sctx, req, grpc.Trailer(&trailer))
	var first *pb.WatchResponse
	if err == nil {
		first, err = stream.Recv()
	}
	if err != nil {
		scancel()
		if w.ctx.Err() != nil {
			return nil, contextError("watch", w.ctx.Err(), nil, 1)
		}
		return nil, newError("watch", g.nc.addr, status.Convert(err), trailer, 1)
	}
	served := slices.Clone(first.GetShards())
	slices.Sort(served)
	// keep only what was asked (a server never serves more, but the
	// positions are per asked shard)
	served = slices.DeleteFunc(served, func(s uint32) bool {
		_, ok := slices.BinarySearch(g.shards, s)
		return !ok
	})
	if len(served) == 0 {
		scancel()
		return nil, nil
	}
	w.wg.Add(1)
	go w.read(sctx, scancel, g.nc, stream, first, served, &trailer)
	return served, nil
}

// read forwards a stream's messages to the dispatcher, then its end.
func (w *Watcher) read(ctx context.Context, cancel context.CancelFunc, nc *nodeConn, stream pb.Kv_WatchClient, first *pb.WatchResponse, served []uint32, trailer *metadata.MD) {
	defer w.wg.Done()
	defer cancel()
	send := func(m watchMsg) bool {
		select {
		case w.inbox <- m:
			return true
		case <-ctx.Done():
			return false
		}
	}
	if !send(watchMsg{resp: first, opened: true}) {
		return
	}
	for {
		resp, err := stream.Recv()
		if err != nil {
			if w.ctx.Err() != nil {
				return
			}
			st := status.Convert(err)
			if errors.Is(err, io.EOF) || st.Code() == codes.OK {
				// a clean end without a status: the server stopped serving
				st = status.New(codes.Unavailable, "watch stream ended")
			}
			e := newError("watch", nc.addr, st, *trailer, 1)
			f := classify(st)
			if f == failNotLeader {
				for _, sh := range served {
					w.c.router.forget(int(sh), nc)
				}
			} else if nodeDown(st, f) {
				w.c.router.nodeFailed(nc)
			}
			send(watchMsg{ended: served, err: e})
			return
		}
		if !send(watchMsg{resp: resp}) {
			return
		}
	}
}
