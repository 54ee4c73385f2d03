package norikv

import (
	"math/rand/v2"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// failure classifies a failed attempt by what it says about the request's
// fate, which decides whether it may be sent again (CONTRACT.md, "Errors").
type failure int

const (
	// failPermanent: the server decided (not found, CAS conflict, bad
	// argument, ...). Sending it again gives the same answer.
	failPermanent failure = iota
	// failNotLeader: the node refused because it is not the leader; nothing
	// was executed. Always safe to retry, at the hinted leader if any.
	failNotLeader
	// failNotSent: the request never reached a server that could execute it
	// (refused or failed connection) or was rejected before execution
	// (overload). Always safe to retry.
	failNotSent
	// failUnknown: the request may have reached a leader and may yet be
	// applied (deadline, commit timeout, connection lost mid-call, no
	// quorum, shutdown). A write is retried only when that is harmless.
	failUnknown
)

func (f failure) String() string {
	switch f {
	case failPermanent:
		return "permanent"
	case failNotLeader:
		return "not-leader"
	case failNotSent:
		return "not-sent"
	case failUnknown:
		return "unknown-outcome"
	}
	return "?"
}

// Messages gRPC-Go gives a call that failed before any byte of it reached a
// server: the connection could not be made.
var notSentMarkers = []string{
	"connection refused",
	"while dialing",
	"server preface",
	"no such host",
	"produced zero addresses",
	"connection active but received",
	"network is unreachable",
}

// classify tells what a failed attempt's status says about its fate.
func classify(st *status.Status) failure {
	msg := st.Message()
	switch st.Code() {
	case codes.Unavailable:
		if strings.Contains(msg, "NOT_LEADER") {
			return failNotLeader
		}
		for _, m := range notSentMarkers {
			if strings.Contains(msg, m) {
				return failNotSent
			}
		}
		// QUORUM_UNAVAILABLE (the leader may have proposed the entry),
		// shutdown, connection reset mid-call.
		return failUnknown
	case codes.ResourceExhausted:
		// A message over gRPC's size limit fails the same way every time.
		if strings.Contains(msg, "larger than max") {
			return failPermanent
		}
		// The server's queues were full: rejected before proposal.
		return failNotSent
	case codes.DeadlineExceeded, codes.Aborted:
		return failUnknown
	case codes.Canceled:
		// Only reached when the caller's context is still live: the
		// connection was closed under the call.
		return failUnknown
	}
	return failPermanent
}

// nodeDown reports whether the failure says the node itself is unreachable,
// so that the next attempt should go elsewhere.
func nodeDown(st *status.Status, f failure) bool {
	if st.Code() != codes.Unavailable && st.Code() != codes.Canceled {
		return false
	}
	if f == failNotLeader || strings.Contains(st.Message(), "QUORUM_UNAVAILABLE") {
		return false
	}
	return f == failNotSent || f == failUnknown
}

// mayRetry reports whether an attempt that failed with f may be sent again.
// writeSafe is true for reads, for writes that carry an idempotency key and
// for unconditional puts and deletes: for them a duplicate application is
// either impossible or harmless.
func mayRetry(f failure, writeSafe bool) bool {
	switch f {
	case failNotLeader, failNotSent:
		return true
	case failUnknown:
		return writeSafe
	}
	return false
}

// putIsRetrySafe: a Put may be re-sent after an unknown outcome when a
// second application cannot change its result.
func putIsRetrySafe(o *PutOptions) bool {
	return o == nil || o.IdempotencyKey != "" || (o.IfMatchVersion == nil && !o.IfNotExists)
}

// deleteIsRetrySafe is putIsRetrySafe for Delete.
func deleteIsRetrySafe(o *DeleteOptions) bool {
	return o == nil || o.IdempotencyKey != "" || o.IfMatchVersion == nil
}

// backoff returns how long to wait before retry number n (n >= 1):
// min(InitialDelay * 2^(n-1), MaxDelay) plus a uniform jitter in [0, Jitter).
func (r *RetryConfig) backoff(n int) time.Duration {
	d := r.InitialDelay
	for i := 1; i < n && d < r.MaxDelay; i++ {
		d *= 2
	}
	if d > r.MaxDelay {
		d = r.MaxDelay
	}
	if r.Jitter > 0 {
		d += rand.N(r.Jitter)
	}
	return d
}
