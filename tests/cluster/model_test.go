package cluster

// The model and the checker on hand-made histories: a correct concurrent
// history passes, and each kind of anomaly a broken cluster could produce
// fails.

import (
	"os"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

func v(t, i uint64) Version { return Version{Term: t, Index: i} }

// op builds a recorded operation; ret < 0 means unknown outcome.
func op(client int, call, ret int64, in Input, out Output) Op {
	return Op{Client: client, Input: in, Output: out, Call: call, Return: ret}
}

func put(k, val string) Input { return Input{Kind: OpPut, Key: k, Value: val} }
func get(k string) Input      { return Input{Kind: OpGet, Key: k} }
func del(k string) Input      { return Input{Kind: OpDelete, Key: k} }
func casPut(k, val string, m Version) Input {
	return Input{Kind: OpCasPut, Key: k, Value: val, IfMatch: m}
}
func casDel(k string, m Version) Input { return Input{Kind: OpCasDelete, Key: k, IfMatch: m} }

func at(ver Version) Output              { return Output{Version: ver} }
func got(val string, ver Version) Output { return Output{Found: true, Value: val, Version: ver} }
func missing() Output                    { return Output{} }
func unknown() Output                    { return Output{Unknown: true} }
func mismatch(cur *Version) Output {
	if cur == nil {
		return Output{Mismatch: true}
	}
	return Output{Mismatch: true, HasCurrent: true, Current: *cur}
}

func check(t *testing.T, ops ...Op) porcupine.CheckResult {
	t.Helper()
	h := &History{Ops: ops}
	return Check(h, 10*time.Second).Result
}

func wantOK(t *testing.T, ops ...Op) {
	t.Helper()
	if r := check(t, ops...); r != porcupine.Ok {
		t.Fatalf("history judged %v, want linearizable", r)
	}
}

func wantIllegal(t *testing.T, ops ...Op) {
	t.Helper()
	if r := check(t, ops...); r != porcupine.Illegal {
		t.Fatalf("history judged %v, want a violation", r)
	}
}

func TestModelAcceptsACorrectConcurrentHistory(t *testing.T) {
	cur := v(1, 4)
	wantOK(t,
		// key a: overlapping put and get; the get may see either state.
		op(0, 0, 10, put("a", "x"), at(v(1, 3))),
		op(1, 5, 12, get("a"), got("x", v(1, 3))),
		op(2, 1, 4, get("a"), missing()),
		// a concurrent put wins later; CAS on the old version is refused
		// with the current one; CAS on the current one applies.
		op(0, 20, 30, put("a", "y"), at(v(1, 4))),
		op(1, 21, 25, casPut("a", "z", v(1, 3)), mismatch(&cur)),
		op(2, 31, 40, casPut("a", "w", v(1, 4)), at(v(2, 9))),
		op(1, 41, 45, Input{Kind: OpGet, Key: "a", Consistency: "linearizable"}, got("w", v(2, 9))),
		op(0, 46, 50, casDel("a", v(2, 9)), Output{Found: true, Version: v(2, 10)}),
		op(1, 51, 55, get("a"), missing()),
		op(2, 56, 60, del("a"), Output{Found: false, Version: v(2, 11)}),
		op(0, 61, 65, casPut("a", "q", v(2, 9)), mismatch(nil)),
		// key b is independent of a.
		op(3, 0, 100, put("b", "1"), at(v(1, 2))),
		op(4, 101, 110, get("b"), got("1", v(1, 2))),
	)
}

func TestModelAcceptsUnknownOutcomesEitherWay(t *testing.T) {
	// A timed-out put that did apply: a later read sees it (and reveals
	// its version); one that did not: a later read does not.
	wantOK(t,
		op(0, 0, -1, put("a", "x"), unknown()),
		op(1, 10, 20, get("a"), got("x", v(3, 7))),
		op(1, 21, 30, get("a"), got("x", v(3, 7))),
	)
	wantOK(t,
		op(0, 0, -1, put("a", "x"), unknown()),
		op(1, 10, 20, get("a"), missing()),
		op(1, 21, 30, put("a", "y"), at(v(1, 5))),
		op(1, 31, 40, get("a"), got("y", v(1, 5))),
	)
	// An unknown CAS against a hidden version: both ways are possible.
	wantOK(t,
		op(0, 0, -1, put("a", "x"), unknown()),
		op(1, 10, -1, casPut("a", "y", v(2, 8)), unknown()),
		op(2, 20, 30, get("a"), got("y", v(2, 9))),
	)
}

func TestModelRejectsAStaleRead(t *testing.T) {
	// The read starts after the second write was acknowledged and still
	// returns the first value (a deposed leader serving from its lease).
	wantIllegal(t,
		op(0, 0, 10, put("a", "x"), at(v(1, 3))),
		op(0, 11, 20, put("a", "y"), at(v(1, 4))),
		op(1, 21, 30, get("a"), got("x", v(1, 3))),
	)
}

func TestModelRejectsALostAcknowledgedWrite(t *testing.T) {
	// Acknowledged, then gone after a crash: the read finds nothing.
	wantIllegal(t,
		op(0, 0, 10, put("a", "x"), at(v(1, 3))),
		op(1, 50, 60, get("a"), missing()),
	)
	// ... or an acknowledged delete undone.
	wantIllegal(t,
		op(0, 0, 10, put("a", "x"), at(v(1, 3))),
		op(0, 11, 20, del("a"), Output{Found: true, Version: v(1, 4)}),
		op(1, 30, 40, get("a"), got("x", v(1, 3))),
	)
}

func TestModelRejectsCASAnomalies(t *testing.T) {
	cur := v(1, 3)
	// Two CAS puts on the same version both succeed (a lost update).
	wantIllegal(t,
		op(0, 0, 10, put("a", "x"), at(v(1, 3))),
		op(1, 11, 20, casPut("a", "y", v(1, 3)), at(v(1, 4))),
		op(2, 21, 30, casPut("a", "z", v(1, 3)), at(v(1, 5))),
	)
	// A CAS refused although the version matched.
	wantIllegal(t,
		op(0, 0, 10, put("a", "x"), at(v(1, 3))),
		op(1, 11, 20, casPut("a", "y", v(1, 3)), mismatch(&cur)),
	)
	// A refusal naming a current version that is not the key's.
	wrong := v(1, 2)
	wantIllegal(t,
		op(0, 0, 10, put("a", "x"), at(v(1, 3))),
		op(1, 11, 20, casPut("a", "y", v(1, 1)), mismatch(&wrong)),
	)
	// A CAS delete that succeeds on a missing key.
	wantIllegal(t,
		op(0, 0, 10, casDel("a", v(1, 3)), Output{Found: true, Version: v(1, 4)}),
	)
}

func TestModelRejectsVersionAnomalies(t *testing.T) {
	// A read returns the right value with another version.
	wantIllegal(t,
		op(0, 0, 10, put("a", "x"), at(v(1, 3))),
		op(1, 11, 20, get("a"), got("x", v(1, 9))),
	)
	// A later write of the key got a lower index than an earlier one.
	wantIllegal(t,
		op(0, 0, 10, put("a", "x"), at(v(1, 8))),
		op(0, 11, 20, put("a", "y"), at(v(1, 5))),
	)
	// A delete reports tombstoned on a key that was absent.
	wantIllegal(t,
		op(0, 0, 10, del("a"), Output{Found: true, Version: v(1, 2)}),
	)
}

func TestHistoryRoundTripsThroughJSON(t *testing.T) {
	h := NewHistory(42)
	h.Schedule = Generate(42, ScheduleOptions{Nodes: 3, Duration: 20 * time.Second})
	h.Add(op(0, 1, 2, put("a", "x"), at(v(1, 3))))
	h.Add(op(1, 3, -1, casPut("a", "y", v(1, 3)), unknown()))
	p := t.TempDir() + "/h.json"
	if err := h.Save(p); err != nil {
		t.Fatal(err)
	}
	g, err := LoadHistory(p)
	if err != nil {
		t.Fatal(err)
	}
	if g.Seed != 42 || len(g.Ops) != 2 || g.Ops[1].Return != -1 || g.Ops[1].Input.IfMatch != v(1, 3) ||
		len(g.Schedule) != len(h.Schedule) {
		t.Fatalf("round trip lost data: %+v", g)
	}
	if r := Check(g, time.Second).Result; r != porcupine.Ok {
		t.Fatalf("reloaded history judged %v", r)
	}
}

func TestScheduleIsAFunctionOfItsSeed(t *testing.T) {
	o := ScheduleOptions{Nodes: 3, Duration: 60 * time.Second}
	a, b, c := Generate(7, o), Generate(7, o), Generate(8, o)
	if len(a) == 0 || len(a) != len(b) {
		t.Fatalf("seed 7 gave %d and %d steps", len(a), len(b))
	}
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("step %d differs for one seed: %v vs %v", i, a[i], b[i])
		}
	}
	same := len(a) == len(c)
	for i := 0; same && i < len(a); i++ {
		same = a[i] == c[i]
	}
	if same {
		t.Fatalf("seeds 7 and 8 gave the same schedule")
	}
	for i, s := range a {
		if s.Node == s.Peer || s.Hold < 1500*time.Millisecond || s.At >= o.Duration {
			t.Fatalf("step %d out of bounds: %v", i, s)
		}
		if i > 0 && s.At < a[i-1].At+a[i-1].Hold {
			t.Fatalf("step %d overlaps the previous one: %v after %v", i, s, a[i-1])
		}
	}
}

// TestRecheckSavedHistory re-checks a history saved by a failing run:
// NORIKV_HISTORY=path go test -run TestRecheckSavedHistory ./...
func TestRecheckSavedHistory(t *testing.T) {
	p := os.Getenv("NORIKV_HISTORY")
	if p == "" {
		t.Skip("set NORIKV_HISTORY to a saved history.json to re-check it")
	}
	h, err := LoadHistory(p)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range h.Notes {
		t.Log(n)
	}
	CheckAndReport(t, h, t.TempDir(), 5*time.Minute)
}
