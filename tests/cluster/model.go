package cluster

// The sequential specification NoriKV's KV API must be linearizable to, for
// Porcupine. One key's state is absent, or a value with its Version (the
// Raft entry that wrote it). Versions make the model strong: a Get must
// return exactly the Version the Put that wrote the value returned, and a
// key's writes get increasing indexes in the order they take effect (they
// are entries of one shard's log, applied in log order).
//
// Unknown outcomes (a write that timed out or lost its connection after it
// may have reached a leader) are operations whose Return is the end of the
// history: Porcupine may place them anywhere after their call, including
// after everything else (which is how "it was never applied" is expressed).
// Such a write, if applied, created a Version nobody saw; the state then
// holds the value with an unknown Version, which the first later operation
// that reveals it (a Get, a CAS's outcome) binds.
//
// The checker partitions the history by key (Porcupine checks each key on
// its own, which is sound because keys are independent objects).

import (
	"fmt"
	"sort"
	"time"

	"github.com/anishathalye/porcupine"
)

// Version is a (term, index) pair, as in CONTRACT.md.
type Version struct {
	Term  uint64 `json:"term"`
	Index uint64 `json:"index"`
}

func (v Version) String() string { return fmt.Sprintf("%d.%d", v.Term, v.Index) }

// OpKind names an operation of the model.
type OpKind string

const (
	OpGet       OpKind = "get"
	OpPut       OpKind = "put"
	OpCasPut    OpKind = "cas-put"
	OpDelete    OpKind = "delete"
	OpCasDelete OpKind = "cas-delete"
)

// Input of one operation. Values written are unique across a history (the
// workload makes them so), which is what lets a read identify its write.
type Input struct {
	Kind        OpKind  `json:"kind"`
	Key         string  `json:"key"`
	Value       string  `json:"value,omitempty"`
	IfMatch     Version `json:"if_match,omitempty"`
	Consistency string  `json:"consistency,omitempty"` // gets: "" (lease) or linearizable
}

// Output of one operation.
type Output struct {
	Unknown bool `json:"unknown,omitempty"` // writes only: may or may not have taken effect
	// Get: the key was found. Delete: tombstoned (a live value was removed).
	Found    bool    `json:"found,omitempty"`
	Value    string  `json:"value,omitempty"`
	Version  Version `json:"version,omitempty"`  // Get: the value's; Put/Delete: the entry's
	Mismatch bool    `json:"mismatch,omitempty"` // CAS refused: FAILED_PRECONDITION version mismatch
	// The current-version trailer of a refused CAS (present when the key exists).
	HasCurrent bool    `json:"has_current,omitempty"`
	Current    Version `json:"current,omitempty"`
}

// kvState is one key's state. A comparable struct, so states compare with ==.
type kvState struct {
	Exists   bool
	Value    string
	Ver      Version
	VerKnown bool   // false after an unknown-outcome write whose Version is not revealed yet
	Last     uint64 // highest log index known to have written this key
}

func stepKV(s kvState, in Input, out Output) []kvState {
	switch in.Kind {
	case OpGet:
		if !out.Found {
			if s.Exists {
				return nil
			}
			return []kvState{s}
		}
		if !s.Exists || s.Value != out.Value {
			return nil
		}
		if s.VerKnown {
			if s.Ver != out.Version {
				return nil
			}
			return []kvState{s}
		}
		return bind(s, out.Version)

	case OpPut:
		if out.Unknown {
			return []kvState{{Exists: true, Value: in.Value, Last: s.Last}}
		}
		if out.Version.Index <= s.Last {
			return nil
		}
		return []kvState{{Exists: true, Value: in.Value, Ver: out.Version, VerKnown: true,
			Last: out.Version.Index}}

	case OpDelete:
		if out.Unknown {
			return []kvState{{Last: s.Last}}
		}
		if out.Found != s.Exists || out.Version.Index <= s.Last {
			return nil
		}
		return []kvState{{Last: out.Version.Index}}

	case OpCasPut, OpCasDelete:
		m := in.IfMatch
		applied := func(v Version, known bool, last uint64) kvState {
			if in.Kind == OpCasDelete {
				return kvState{Last: last}
			}
			return kvState{Exists: true, Value: in.Value, Ver: v, VerKnown: known, Last: last}
		}
		// Does the key's current Version equal m? definitely, possibly
		// (unknown Version), or not.
		match := s.Exists && s.VerKnown && s.Ver == m
		maybe := s.Exists && !s.VerKnown && m.Index > s.Last
		if out.Unknown {
			switch {
			case match:
				return []kvState{applied(Version{}, false, s.Last)}
			case maybe:
				// Either the hidden Version was m (then it applied) or not.
				return []kvState{applied(Version{}, false, m.Index), s}
			default:
				return []kvState{s}
			}
		}
		if !out.Mismatch {
			if !match && !maybe {
				return nil
			}
			last := s.Last
			if m.Index > last {
				last = m.Index
			}
			if out.Version.Index <= last {
				return nil
			}
			if in.Kind == OpCasDelete && !out.Found {
				return nil // a CAS delete removes a live value: tombstoned
			}
			return []kvState{applied(out.Version, true, out.Version.Index)}
		}
		// Refused.
		if !s.Exists {
			if out.HasCurrent {
				return nil
			}
			return []kvState{s}
		}
		if !out.HasCurrent || out.Current == m {
			return nil
		}
		if s.VerKnown {
			if s.Ver == m || s.Ver != out.Current {
				return nil
			}
			return []kvState{s}
		}
		return bind(s, out.Current)
	}
	return nil
}

// bind fixes a hidden Version revealed by a read or a refused CAS.
func bind(s kvState, v Version) []kvState {
	if v.Index <= s.Last {
		return nil
	}
	s.Ver, s.VerKnown, s.Last = v, true, v.Index
	return []kvState{s}
}

// Model is the Porcupine model of one NoriKV key space.
var Model = porcupine.NondeterministicModel{
	Partition: func(h []porcupine.Operation) [][]porcupine.Operation {
		byKey := map[string][]porcupine.Operation{}
		var keys []string
		for _, op := range h {
			k := op.Input.(Input).Key
			if _, ok := byKey[k]; !ok {
				keys = append(keys, k)
			}
			byKey[k] = append(byKey[k], op)
		}
		sort.Strings(keys)
		out := make([][]porcupine.Operation, 0, len(keys))
		for _, k := range keys {
			out = append(out, byKey[k])
		}
		return out
	},
	Init: func() []interface{} { return []interface{}{kvState{}} },
	Step: func(state, input, output interface{}) []interface{} {
		next := stepKV(state.(kvState), input.(Input), output.(Output))
		out := make([]interface{}, len(next))
		for i, s := range next {
			out[i] = s
		}
		return out
	},
	DescribeOperation: func(input, output interface{}) string {
		return describeOp(input.(Input), output.(Output))
	},
	DescribeState: func(state interface{}) string {
		s := state.(kvState)
		if !s.Exists {
			return fmt.Sprintf("absent (last %d)", s.Last)
		}
		if !s.VerKnown {
			return fmt.Sprintf("%q@? (last %d)", s.Value, s.Last)
		}
		return fmt.Sprintf("%q@%v", s.Value, s.Ver)
	},
}

func describeOp(in Input, out Output) string {
	var call string
	switch in.Kind {
	case OpGet:
		call = fmt.Sprintf("get(%s%s)", in.Key, map[bool]string{true: ", " + in.Consistency}[in.Consistency != ""])
	case OpPut:
		call = fmt.Sprintf("put(%s, %q)", in.Key, in.Value)
	case OpCasPut:
		call = fmt.Sprintf("cas-put(%s, %q, if %v)", in.Key, in.Value, in.IfMatch)
	case OpDelete:
		call = fmt.Sprintf("delete(%s)", in.Key)
	case OpCasDelete:
		call = fmt.Sprintf("cas-delete(%s, if %v)", in.Key, in.IfMatch)
	}
	switch {
	case out.Unknown:
		return call + " -> ?"
	case out.Mismatch && out.HasCurrent:
		return call + fmt.Sprintf(" -> mismatch (current %v)", out.Current)
	case out.Mismatch:
		return call + " -> mismatch (absent)"
	case in.Kind == OpGet && !out.Found:
		return call + " -> not found"
	case in.Kind == OpGet:
		return call + fmt.Sprintf(" -> %q@%v", out.Value, out.Version)
	case in.Kind == OpDelete || in.Kind == OpCasDelete:
		return call + fmt.Sprintf(" -> tombstoned=%v @%v", out.Found, out.Version)
	default:
		return call + fmt.Sprintf(" -> @%v", out.Version)
	}
}

// CheckResult is the verdict on a history.
type CheckResult struct {
	Result porcupine.CheckResult // Ok, Illegal or Unknown (timed out)
	Info   porcupine.LinearizationInfo
	Ops    int
	Unk    int // operations with unknown outcome
}

// Check checks a history for linearizability within timeout.
func Check(h *History, timeout time.Duration) CheckResult {
	ops := h.Porcupine()
	unk := 0
	for _, op := range h.Ops {
		if op.Output.Unknown {
			unk++
		}
	}
	res, info := porcupine.CheckOperationsVerbose(Model.ToModel(), ops, timeout)
	return CheckResult{Result: res, Info: info, Ops: len(ops), Unk: unk}
}
