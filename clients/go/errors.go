package norikv

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// Sentinel errors; test for them with errors.Is.
var (
	// ErrKeyNotFound: the key does not exist or has expired (NOT_FOUND).
	ErrKeyNotFound = errors.New("norikv: key not found")
	// ErrVersionMismatch: a Put or Delete with IfMatchVersion found another
	// version, or no value (FAILED_PRECONDITION "version mismatch").
	ErrVersionMismatch = errors.New("norikv: version mismatch")
	// ErrAlreadyExists: a Put with IfNotExists found a live value
	// (ALREADY_EXISTS).
	ErrAlreadyExists = errors.New("norikv: key already exists")
	// ErrConnection: the cluster could not be reached or could not serve
	// the request in time (UNAVAILABLE, DEADLINE_EXCEEDED,
	// RESOURCE_EXHAUSTED, ABORTED, after the retries the policy allowed).
	ErrConnection = errors.New("norikv: connection error")
	// ErrNotLeader: the node asked was not the shard's leader. The client
	// follows such answers itself; it surfaces only when the retries ran
	// out, and then errors.Is(err, ErrConnection) holds as well.
	ErrNotLeader = errors.New("norikv: not the shard's leader")
	// ErrClosed: the Client was closed.
	ErrClosed = errors.New("norikv: client is closed")
	// ErrShardCountMismatch: ClientConfig.TotalShards differs from the
	// cluster's shard count.
	ErrShardCountMismatch = errors.New("norikv: TotalShards does not match the cluster")
)

// Trailer keys of CONTRACT.md.
const (
	trailerLeaderHint     = "leader-hint"
	trailerCurrentVersion = "current-version"
)

// Error is the error of a failed Put, Get or Delete. It matches one of the
// sentinel errors through errors.Is, carries the gRPC code (status.Code(err)
// and status.FromError work on it), and unwraps to the underlying cause (the
// gRPC status error, or context.DeadlineExceeded / context.Canceled when the
// caller's context ended).
type Error struct {
	Op      string     // "put", "get" or "delete"
	Node    string     // address of the node that answered last, if any
	Code    codes.Code // gRPC code of the last answer
	Message string     // the server's message
	// CurrentVersion is the key's version when a CAS failed on an existing
	// key (the current-version trailer); nil otherwise.
	CurrentVersion *Version
	// LeaderHint is the leader address a NOT_LEADER answer named, if any.
	LeaderHint string
	// Attempts is how many attempts were made.
	Attempts int

	kind  error // one of the sentinels, or nil
	cause error
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("norikv: ")
	b.WriteString(e.Op)
	if e.Node != "" {
		b.WriteString(" on ")
		b.WriteString(e.Node)
	}
	b.WriteString(": ")
	b.WriteString(e.Code.String())
	if e.Message != "" {
		b.WriteString(": ")
		b.WriteString(e.Message)
	}
	if e.CurrentVersion != nil {
		b.WriteString(" (current version ")
		b.WriteString(e.CurrentVersion.String())
		b.WriteString(")")
	}
	if e.Attempts > 1 {
		fmt.Fprintf(&b, " (after %d attempts)", e.Attempts)
	}
	return b.String()
}

// Is makes errors.Is(err, ErrKeyNotFound) and its siblings work.
func (e *Error) Is(target error) bool {
	if e.kind == nil {
		return false
	}
	if target == e.kind {
		return true
	}
	return e.kind == ErrNotLeader && target == ErrConnection
}

// Unwrap returns the underlying cause.
func (e *Error) Unwrap() error { return e.cause }

// GRPCStatus lets status.Code and status.FromError see the gRPC code.
func (e *Error) GRPCStatus() *status.Status { return status.New(e.Code, e.Message) }

// kindForStatus maps a gRPC answer to its sentinel error, or nil for the
// failures that have none (INVALID_ARGUMENT, PERMISSION_DENIED, ...), which
// are identified by their code.
func kindForStatus(code codes.Code, msg string) error {
	switch code {
	case codes.NotFound:
		return ErrKeyNotFound
	case codes.FailedPrecondition:
		if strings.HasPrefix(msg, "version mismatch") {
			return ErrVersionMismatch
		}
		return nil
	case codes.AlreadyExists:
		return ErrAlreadyExists
	case codes.Unavailable:
		if strings.Contains(msg, "NOT_LEADER") {
			return ErrNotLeader
		}
		return ErrConnection
	case codes.DeadlineExceeded, codes.ResourceExhausted, codes.Aborted:
		return ErrConnection
	}
	return nil
}

// newError builds the Error for a failed call from its status and trailer.
func newError(op, node string, st *status.Status, trailer metadata.MD, attempts int) *Error {
	e := &Error{
		Op:       op,
		Node:     node,
		Code:     st.Code(),
		Message:  st.Message(),
		Attempts: attempts,
		kind:     kindForStatus(st.Code(), st.Message()),
		cause:    st.Err(),
	}
	if v := trailer.Get(trailerLeaderHint); len(v) > 0 {
		e.LeaderHint = v[0]
	}
	if v := trailer.Get(trailerCurrentVersion); len(v) > 0 {
		if ver, ok := parseVersion(v[0]); ok {
			e.CurrentVersion = ver
		}
	}
	return e
}

// contextError is the error returned when the caller's context ended: it
// matches the context's error, and ErrConnection when the deadline passed
// (the cluster did not answer in time), and keeps the last answer's details.
func contextError(op string, ctxErr error, last *Error, attempts int) *Error {
	e := &Error{Op: op, Attempts: attempts, cause: ctxErr}
	if errors.Is(ctxErr, context.DeadlineExceeded) {
		e.Code = codes.DeadlineExceeded
		e.kind = ErrConnection
		e.Message = "deadline exceeded"
	} else {
		e.Code = codes.Canceled
		e.Message = "context canceled"
	}
	if last != nil {
		e.Node = last.Node
		e.Message += " (last answer: " + last.Code.String()
		if last.Message != "" {
			e.Message += ": " + last.Message
		}
		e.Message += ")"
		e.LeaderHint = last.LeaderHint
	}
	return e
}

// parseVersion parses "term.index".
func parseVersion(s string) (*Version, bool) {
	s = strings.TrimSpace(s)
	dot := strings.IndexByte(s, '.')
	if dot <= 0 || dot == len(s)-1 {
		return nil, false
	}
	term, err1 := strconv.ParseUint(s[:dot], 10, 64)
	index, err2 := strconv.ParseUint(s[dot+1:], 10, 64)
	if err1 != nil || err2 != nil {
		return nil, false
	}
	return &Version{Term: term, Index: index}, true
}
