package cluster

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"
)

// roleOf is node `of`'s role in node i's view ("" when unreachable).
func roleOf(c *Cluster, i, of int) string {
	v, err := c.View(i, time.Second)
	if err != nil {
		return ""
	}
	for _, n := range v.Nodes {
		if n.Id == c.Nodes[of].ID {
			return n.Role
		}
	}
	return ""
}

// swimHealth is the "swim" object of node i's /health.
func swimHealth(t *testing.T, c *Cluster, i int) map[string]float64 {
	t.Helper()
	resp, err := http.Get("http://" + c.Nodes[i].HTTP + "/health")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var h struct {
		Swim map[string]float64 `json:"swim"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&h); err != nil {
		t.Fatal(err)
	}
	if h.Swim == nil {
		t.Fatalf("n%d /health has no swim section", i+1)
	}
	return h.Swim
}

// A SIGSTOPped node is declared suspect, then dead, by both other nodes
// within SWIM's detection bound for the cluster's size (reported by
// /health), and alive again once it resumes (it refutes with a higher
// incarnation). The measured times are printed.
func TestSWIMDeclaresAStoppedNodeSuspectThenDeadWithinItsBoundAndAliveOnceItResumes(t *testing.T) {
	c := start3(t)
	bound := time.Duration(swimHealth(t, c, 0)["detection_bound_ms"]) * time.Millisecond
	if bound <= 0 || bound > time.Minute {
		t.Fatalf("detection bound %v", bound)
	}
	for _, i := range []int{0, 1} {
		if r := roleOf(c, i, 2); r != "alive" {
			t.Fatalf("before: n%d sees n3 %q", i+1, r)
		}
	}
	victim := c.Nodes[2].Proc
	if err := victim.Pause(); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	resumed := false
	defer func() {
		if !resumed {
			victim.Resume()
		}
	}()
	var suspectAt, deadAt [2]time.Duration
	// polling adds up to a poll interval and a view fetch to what is measured
	deadline := t0.Add(bound + 3*time.Second)
	for (deadAt[0] == 0 || deadAt[1] == 0) && time.Now().Before(deadline) {
		for k, i := range []int{0, 1} {
			switch roleOf(c, i, 2) {
			case "suspect":
				if suspectAt[k] == 0 {
					suspectAt[k] = time.Since(t0)
				}
			case "dead":
				if suspectAt[k] == 0 {
					suspectAt[k] = time.Since(t0) // went by between two polls
				}
				if deadAt[k] == 0 {
					deadAt[k] = time.Since(t0)
				}
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("SWIM detection of a SIGSTOPped node (3 members, bound %v): n1 suspect %v dead %v; n2 suspect %v dead %v",
		bound, suspectAt[0], deadAt[0], suspectAt[1], deadAt[1])
	for k := range deadAt {
		if suspectAt[k] == 0 || deadAt[k] == 0 {
			t.Fatalf("n%d did not declare the stopped n3 suspect then dead within %v (suspect %v, dead %v)",
				k+1, bound, suspectAt[k], deadAt[k])
		}
	}
	victim.Resume()
	resumed = true
	t1 := time.Now()
	for {
		if roleOf(c, 0, 2) == "alive" && roleOf(c, 1, 2) == "alive" {
			break
		}
		if time.Since(t1) > 15*time.Second {
			t.Fatalf("n3 not alive again 15 s after SIGCONT: n1 sees %q, n2 %q", roleOf(c, 0, 2), roleOf(c, 1, 2))
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("alive again %v after SIGCONT", time.Since(t1))
	if inc := swimHealth(t, c, 2)["incarnation"]; inc == 0 {
		t.Fatalf("n3's incarnation is 0 after refuting")
	}
}

// suspicionsBy sums norikv_swim_suspicions_total over nodes 0 and 1.
func suspicionsBy(t *testing.T, c *Cluster) float64 {
	var n float64
	for _, i := range []int{0, 1} {
		n += metricLines(t, c, i, "norikv_swim_suspicions_total")["norikv_swim_suspicions_total"]
	}
	return n
}

// A node that is merely slow (every byte and datagram to and from it
// delayed 300 ms, so no ack of its comes back within a 500 ms protocol
// period) is suspected but never declared dead: it refutes each suspicion
// before the suspicion times out. The false suspicions are counted (from
// the nodes' own counters) and printed.
func TestSWIMDoesNotDeclareAMerelySlowNodeDead(t *testing.T) {
	c := start3(t)
	before := suspicionsBy(t, c)
	for _, l := range []*Link{c.Link(0, 2), c.Link(2, 0), c.Link(1, 2), c.Link(2, 1)} {
		l.SetDelay(300 * time.Millisecond)
	}
	defer c.HealAll()
	suspicions := 0
	last := [2]string{"alive", "alive"}
	end := time.Now().Add(15 * time.Second)
	for time.Now().Before(end) {
		for k, i := range []int{0, 1} {
			r := roleOf(c, i, 2)
			if r == "" {
				continue
			}
			if r == "dead" || r == "left" {
				t.Fatalf("n%d declared the slow n3 %s after %d suspicions", i+1, r, suspicions)
			}
			if r == "suspect" && last[k] != "suspect" {
				suspicions++
			}
			last[k] = r
		}
		time.Sleep(50 * time.Millisecond)
	}
	raised := suspicionsBy(t, c) - before
	t.Logf("slow member (300 ms each way, probe period 500 ms) over 15 s: %.0f false suspicions raised (%d seen in views), 0 deaths",
		raised, suspicions)
	if raised == 0 {
		t.Fatalf("no suspicion at all: the delay did not make n3 look slow to SWIM")
	}
	c.HealAll()
	for _, i := range []int{0, 1} {
		deadline := time.Now().Add(10 * time.Second)
		for roleOf(c, i, 2) != "alive" {
			if time.Now().After(deadline) {
				t.Fatalf("n%d does not see n3 alive after the delay ended", i+1)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}
