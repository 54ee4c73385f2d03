package cluster

// Seeded fault schedules. Generate turns a seed into a list of faults, each
// held for a while and then repaired, with quiet gaps between them: kills
// (SIGKILL, restart on the same data directory), pauses (SIGSTOP beyond the
// leader lease, SIGCONT), one node isolated, the leader of the most shards
// cut from its followers, one-way cuts, and slow links. The same seed and
// options give the same schedule; which node "the leader" is gets resolved
// when the step runs (it depends on the cluster), and is written to the
// history's notes.

import (
	"context"
	"fmt"
	"math/rand"
	"time"
)

// Fault kinds.
const (
	FaultKill      = "kill"       // SIGKILL node, restart after Hold
	FaultKillLead  = "kill-lead"  // SIGKILL the node leading the most shards, restart after Hold
	FaultPause     = "pause"      // SIGSTOP node for Hold, SIGCONT
	FaultPauseLead = "pause-lead" // SIGSTOP the node leading the most shards
	FaultIsolate   = "isolate"    // cut every link of node, both ways
	FaultCutLead   = "cut-lead"   // the leader of the most shards cut from its followers
	FaultOneWay    = "one-way"    // bytes from node to peer dropped, the other way flows
	FaultOneWayIn  = "one-way-in" // the leader hears nobody but its followers hear it
	FaultDelay     = "delay"      // every link delayed by Delay
)

// Step is one fault of a schedule.
type Step struct {
	At    time.Duration `json:"at"`    // from the start of the schedule
	Fault string        `json:"fault"` // one of the Fault* kinds
	Node  int           `json:"node"`  // 0-based; resolved at run time for *-lead
	Peer  int           `json:"peer"`  // one-way: the receiving side
	Hold  time.Duration `json:"hold"`  // how long the fault lasts
	Delay time.Duration `json:"delay,omitempty"`
}

func (s Step) String() string {
	switch s.Fault {
	case FaultOneWay:
		return fmt.Sprintf("@%v %s n%d->n%d for %v", s.At, s.Fault, s.Node+1, s.Peer+1, s.Hold)
	case FaultDelay:
		return fmt.Sprintf("@%v delay %v for %v", s.At, s.Delay, s.Hold)
	}
	return fmt.Sprintf("@%v %s n%d for %v", s.At, s.Fault, s.Node+1, s.Hold)
}

// ScheduleOptions shape a schedule.
type ScheduleOptions struct {
	Nodes    int
	Duration time.Duration
	Faults   []string      // kinds to draw from; default: all that fit Nodes
	MinHold  time.Duration // default 1.5 s (beyond a 0.9 s lease)
	MaxHold  time.Duration // default 4 s
	MinQuiet time.Duration // default 1 s
	MaxQuiet time.Duration // default 3 s
}

// Generate makes the schedule of seed. Faults do not overlap: each is
// repaired before the next begins, so a 3-node cluster always has a majority
// that can talk, and progress is expected after every repair.
func Generate(seed int64, o ScheduleOptions) []Step {
	if o.MinHold == 0 {
		o.MinHold = 1500 * time.Millisecond
	}
	if o.MaxHold == 0 {
		o.MaxHold = 4 * time.Second
	}
	if o.MinQuiet == 0 {
		o.MinQuiet = time.Second
	}
	if o.MaxQuiet == 0 {
		o.MaxQuiet = 3 * time.Second
	}
	if len(o.Faults) == 0 {
		o.Faults = []string{FaultKill, FaultPause}
		if o.Nodes > 1 {
			o.Faults = append(o.Faults, FaultKillLead, FaultPauseLead, FaultIsolate, FaultCutLead,
				FaultOneWay, FaultOneWayIn, FaultDelay)
		}
	}
	rng := rand.New(rand.NewSource(seed))
	between := func(a, b time.Duration) time.Duration {
		if b <= a {
			return a
		}
		return a + time.Duration(rng.Int63n(int64(b-a)))
	}
	var out []Step
	at := between(o.MinQuiet, o.MaxQuiet)
	for at < o.Duration {
		s := Step{At: at, Fault: o.Faults[rng.Intn(len(o.Faults))], Node: rng.Intn(o.Nodes),
			Hold: between(o.MinHold, o.MaxHold)}
		if o.Nodes > 1 {
			s.Peer = (s.Node + 1 + rng.Intn(o.Nodes-1)) % o.Nodes
		}
		if s.Fault == FaultDelay {
			s.Delay = between(20*time.Millisecond, 300*time.Millisecond)
		}
		out = append(out, s)
		at += s.Hold + between(o.MinQuiet, o.MaxQuiet)
	}
	return out
}

// Run executes the schedule on c, noting every action in h, until the steps
// are done or ctx ends; it always repairs what it broke before returning.
func (c *Cluster) Run(ctx context.Context, steps []Step, h *History) error {
	start := time.Now()
	defer c.Repair(h)
	for _, s := range steps {
		if err := sleepCtx(ctx, time.Until(start.Add(s.At))); err != nil {
			return nil
		}
		if err := c.apply(ctx, s, h); err != nil {
			return err
		}
	}
	return nil
}

// leaderNow picks the node leading the most shards in some running node's
// view; fallback when no view can be had.
func (c *Cluster) leaderNow(fallback int) int {
	for i, n := range c.Nodes {
		if !n.Running() || n.Paused() {
			continue
		}
		v, err := c.View(i, time.Second)
		if err == nil {
			return c.MostLeader(v)
		}
	}
	return fallback
}

func (c *Cluster) apply(ctx context.Context, s Step, h *History) error {
	node := s.Node
	switch s.Fault {
	case FaultKillLead, FaultPauseLead, FaultCutLead, FaultOneWayIn:
		node = c.leaderNow(s.Node)
	}
	n := c.Nodes[node]
	h.Note("%s (node n%d)", s, node+1)
	switch s.Fault {
	case FaultKill, FaultKillLead:
		n.Kill()
		sleepCtx(ctx, s.Hold)
		h.Note("restart n%d", node+1)
		if err := n.Start(c.Opts.ReadyTimeout); err != nil {
			return fmt.Errorf("restarting n%d: %w", node+1, err)
		}
		h.Note("n%d READY", node+1)
	case FaultPause, FaultPauseLead:
		n.Pause()
		sleepCtx(ctx, s.Hold)
		n.Resume()
		h.Note("SIGCONT n%d", node+1)
	case FaultIsolate, FaultCutLead:
		c.Isolate(node)
		sleepCtx(ctx, s.Hold)
		c.HealAll()
		h.Note("healed")
	case FaultOneWay:
		c.CutOneWay(node, s.Peer)
		sleepCtx(ctx, s.Hold)
		c.HealAll()
		h.Note("healed")
	case FaultOneWayIn:
		for j := range c.Nodes {
			if j != node {
				c.CutOneWay(j, node)
			}
		}
		sleepCtx(ctx, s.Hold)
		c.HealAll()
		h.Note("healed")
	case FaultDelay:
		c.DelayAll(s.Delay)
		sleepCtx(ctx, s.Hold)
		c.HealAll()
		h.Note("healed")
	default:
		return fmt.Errorf("unknown fault %q", s.Fault)
	}
	return nil
}

// Repair heals every link, resumes paused nodes and restarts stopped ones.
func (c *Cluster) Repair(h *History) {
	c.HealAll()
	for i, n := range c.Nodes {
		if n.Paused() {
			n.Resume()
		}
		if !n.Running() {
			if h != nil {
				h.Note("repair: restart n%d", i+1)
			}
			if err := n.Start(c.Opts.ReadyTimeout); err != nil {
				c.T.Errorf("repair: restarting n%d: %v", i+1, err)
			}
		}
	}
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
