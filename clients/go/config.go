package norikv

import (
	"fmt"
	"time"
)

// Defaults used for zero fields of ClientConfig and RetryConfig.
const (
	DefaultTotalShards  = 1024
	DefaultTimeout      = 5 * time.Second
	DefaultMaxAttempts  = 10
	DefaultInitialDelay = 100 * time.Millisecond
	DefaultMaxDelay     = 5 * time.Second
	DefaultJitter       = 100 * time.Millisecond
)

// ClientConfig configures a Client.
type ClientConfig struct {
	// Nodes are client (gRPC) addresses, host:port, of some cluster
	// members. The client learns the rest from the cluster view. Required.
	Nodes []string
	// TotalShards must equal the cluster's shard count (1024 unless the
	// cluster was bootstrapped otherwise); NewClient fails when it does not,
	// rather than sending keys to the wrong shards. 0 means 1024.
	TotalShards int
	// Timeout bounds each call (including its retries) whose context has
	// no deadline. 0 means 5 s.
	Timeout time.Duration
	// Retry is the retry policy; nil means the defaults.
	Retry *RetryConfig
}

// RetryConfig is the retry policy for transient failures. The n-th retry
// waits min(InitialDelay * 2^(n-1), MaxDelay) plus a random extra delay in
// [0, Jitter). A zero field takes its default; a negative Jitter disables
// jitter.
//
// Retried: UNAVAILABLE (no leader, no quorum, refused connection, node
// shutting down), ABORTED, RESOURCE_EXHAUSTED and a server-side
// DEADLINE_EXCEEDED (commit timeout). Not retried: INVALID_ARGUMENT,
// NOT_FOUND, FAILED_PRECONDITION, ALREADY_EXISTS, PERMISSION_DENIED and
// others. A NOT_LEADER answer with a leader hint is followed at once without
// backoff.
//
// A write whose outcome is unknown (the request may have reached a leader:
// deadline, connection lost mid-call, no quorum) is retried only when it
// carries an IdempotencyKey or is an unconditional Put or Delete, for which
// a second application is harmless; a Put with IfMatchVersion or IfNotExists
// and no idempotency key is returned to the caller instead, since a retry
// could report a conflict caused by its own first attempt.
type RetryConfig struct {
	// MaxAttempts is the total number of attempts, the first included.
	MaxAttempts  int
	InitialDelay time.Duration
	MaxDelay     time.Duration
	Jitter       time.Duration
}

// DefaultClientConfig returns a configuration for the given nodes with
// every other field at its default: 1024 shards, a 5 s timeout, and up to
// 10 attempts with backoff from 100 ms to 5 s and 100 ms jitter.
func DefaultClientConfig(nodes []string) *ClientConfig {
	return &ClientConfig{
		Nodes:       append([]string(nil), nodes...),
		TotalShards: DefaultTotalShards,
		Timeout:     DefaultTimeout,
		Retry:       DefaultRetryConfig(),
	}
}

// DefaultRetryConfig returns the default retry policy.
func DefaultRetryConfig() *RetryConfig {
	return &RetryConfig{
		MaxAttempts:  DefaultMaxAttempts,
		InitialDelay: DefaultInitialDelay,
		MaxDelay:     DefaultMaxDelay,
		Jitter:       DefaultJitter,
	}
}

// normalized returns a copy of c with defaults filled in, or an error naming
// the invalid field.
func (c *ClientConfig) normalized() (ClientConfig, error) {
	if c == nil {
		return ClientConfig{}, fmt.Errorf("norikv: nil ClientConfig")
	}
	out := *c
	if len(out.Nodes) == 0 {
		return out, fmt.Errorf("norikv: ClientConfig.Nodes is empty; give at least one node address (host:port)")
	}
	out.Nodes = append([]string(nil), c.Nodes...)
	for i, n := range out.Nodes {
		if n == "" {
			return out, fmt.Errorf("norikv: ClientConfig.Nodes[%d] is empty", i)
		}
	}
	if out.TotalShards == 0 {
		out.TotalShards = DefaultTotalShards
	}
	if out.TotalShards < 0 || out.TotalShards > 1<<31-1 {
		return out, fmt.Errorf("norikv: ClientConfig.TotalShards = %d, want 1..2147483647", c.TotalShards)
	}
	if out.Timeout == 0 {
		out.Timeout = DefaultTimeout
	}
	if out.Timeout < 0 {
		return out, fmt.Errorf("norikv: ClientConfig.Timeout = %v, want > 0", c.Timeout)
	}
	r := DefaultRetryConfig()
	if c.Retry != nil {
		if c.Retry.MaxAttempts < 0 || c.Retry.InitialDelay < 0 || c.Retry.MaxDelay < 0 {
			return out, fmt.Errorf("norikv: RetryConfig %+v has a negative field", *c.Retry)
		}
		if c.Retry.MaxAttempts != 0 {
			r.MaxAttempts = c.Retry.MaxAttempts
		}
		if c.Retry.InitialDelay != 0 {
			r.InitialDelay = c.Retry.InitialDelay
		}
		if c.Retry.MaxDelay != 0 {
			r.MaxDelay = c.Retry.MaxDelay
		}
		if c.Retry.Jitter < 0 {
			r.Jitter = 0
		} else if c.Retry.Jitter != 0 {
			r.Jitter = c.Retry.Jitter
		}
		if r.MaxDelay < r.InitialDelay {
			r.MaxDelay = r.InitialDelay
		}
	}
	out.Retry = r
	return out, nil
}
