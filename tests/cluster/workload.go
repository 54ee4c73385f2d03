package cluster

// The checked workload: concurrent clients run put / get (lease and
// linearizable) / CAS put / delete / CAS delete on a small set of keys and
// record everything in a History.

import (
	"context"
	"fmt"
	"math/rand"
	"sync"
	"time"
)

// WorkloadOptions shape the clients.
type WorkloadOptions struct {
	Clients        int           // default 4
	Keys           int           // default 8
	Seed           int64         // for the clients' choices
	AttemptTimeout time.Duration // one call; default 1 s
	Budget         time.Duration // retries while certainly not applied; default 3 s
	KeyPrefix      string        // default "lin-"
}

func (o *WorkloadOptions) fill() {
	if o.Clients == 0 {
		o.Clients = 4
	}
	if o.Keys == 0 {
		o.Keys = 8
	}
	if o.AttemptTimeout == 0 {
		o.AttemptTimeout = time.Second
	}
	if o.Budget == 0 {
		o.Budget = 3 * time.Second
	}
	if o.KeyPrefix == "" {
		o.KeyPrefix = "lin-"
	}
}

// Keys lists the workload's keys.
func (o WorkloadOptions) KeyList() []string {
	o.fill()
	out := make([]string, o.Keys)
	for i := range out {
		out[i] = fmt.Sprintf("%s%d", o.KeyPrefix, i)
	}
	return out
}

// RunWorkload runs the clients until ctx ends and records into h.
func RunWorkload(ctx context.Context, r *Router, h *History, o WorkloadOptions) {
	o.fill()
	keys := o.KeyList()
	var wg sync.WaitGroup
	for c := 0; c < o.Clients; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			rng := rand.New(rand.NewSource(o.Seed*1000 + int64(c)))
			known := map[string]Version{} // last Version this client saw per key
			for seq := 0; ctx.Err() == nil; seq++ {
				key := keys[rng.Intn(len(keys))]
				in := Input{Key: key}
				p := rng.Intn(100)
				v, haveV := known[key]
				switch {
				case p < 20:
					in.Kind = OpGet
				case p < 35:
					in.Kind, in.Consistency = OpGet, "linearizable"
				case p < 60 || (p < 90 && !haveV):
					in.Kind = OpPut
				case p < 80:
					in.Kind, in.IfMatch = OpCasPut, v
				case p < 90:
					in.Kind, in.IfMatch = OpCasDelete, v
				default:
					in.Kind = OpDelete
				}
				if in.Kind == OpPut || in.Kind == OpCasPut {
					in.Value = fmt.Sprintf("c%d-%d", c, seq)
				}
				call := h.Now()
				out, res, node := r.Do(in, o.AttemptTimeout, o.Budget)
				ret := h.Now()
				switch res {
				case NotApplied:
					h.Drop()
					continue
				case Unknown:
					delete(known, key)
					if in.Kind == OpGet {
						h.Drop()
						continue
					}
					ret = -1
				case Definite:
					switch {
					case in.Kind == OpGet && out.Found:
						known[key] = out.Version
					case in.Kind == OpGet:
						delete(known, key)
					case out.Mismatch && out.HasCurrent:
						known[key] = out.Current
					case out.Mismatch:
						delete(known, key)
					case in.Kind == OpPut || in.Kind == OpCasPut:
						known[key] = out.Version
					default:
						delete(known, key)
					}
				}
				h.Add(Op{Client: c, Input: in, Output: out, Call: call, Return: ret, Node: node})
			}
		}(c)
	}
	wg.Wait()
}

// FinalReads reads every key linearizably once the cluster is healthy again
// (retrying until a definite answer, up to within), so that a write lost at
// the end of the run shows up in the history.
func FinalReads(r *Router, h *History, o WorkloadOptions, within time.Duration) error {
	o.fill()
	for _, key := range o.KeyList() {
		deadline := time.Now().Add(within)
		for {
			in := Input{Kind: OpGet, Key: key, Consistency: "linearizable"}
			call := h.Now()
			out, res, node := r.Do(in, o.AttemptTimeout, o.Budget)
			if res == Definite {
				h.Add(Op{Client: o.Clients, Input: in, Output: out, Call: call, Return: h.Now(), Node: node})
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("final read of %s: no definite answer within %v", key, within)
			}
		}
	}
	return nil
}
