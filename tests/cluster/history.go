package cluster

// The history recorder: every checked operation with its client, input,
// output and its invocation and completion times (monotonic nanoseconds
// since the history began). A write whose outcome is unknown is recorded
// with Return = -1 and gets the end of the history as its completion when
// checked; a read whose outcome is unknown, and any operation that
// certainly did not take effect (NOT_LEADER, a refused connection, a full
// queue), is left out: it changed nothing.

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/anishathalye/porcupine"
)

// Op is one recorded operation.
type Op struct {
	Client int    `json:"client"`
	Input  Input  `json:"input"`
	Output Output `json:"output"`
	Call   int64  `json:"call"`   // ns since the history began
	Return int64  `json:"return"` // ns since the history began; -1: unknown outcome
	Node   string `json:"node,omitempty"`
}

// History is a set of recorded operations plus what produced them.
type History struct {
	Seed     int64    `json:"seed"`
	Schedule []Step   `json:"schedule,omitempty"`
	Notes    []string `json:"notes,omitempty"` // fault actions as they happened
	Ops      []Op     `json:"ops"`

	mu    sync.Mutex
	start time.Time
	// Counters of what was left out (not part of the check).
	Dropped  int `json:"dropped"`
	Failures int `json:"failures"`
}

// NewHistory starts a history now.
func NewHistory(seed int64) *History { return &History{Seed: seed, start: time.Now()} }

// Now is the current time of the history.
func (h *History) Now() int64 { return int64(time.Since(h.start)) }

// Add records an operation.
func (h *History) Add(op Op) {
	h.mu.Lock()
	h.Ops = append(h.Ops, op)
	h.mu.Unlock()
}

// Drop counts an operation left out of the history.
func (h *History) Drop() { h.mu.Lock(); h.Dropped++; h.mu.Unlock() }

// Note records a fault action (with its time) for the saved history.
func (h *History) Note(format string, args ...any) {
	h.mu.Lock()
	h.Notes = append(h.Notes, fmt.Sprintf("%9.3fs ", time.Since(h.start).Seconds())+fmt.Sprintf(format, args...))
	h.mu.Unlock()
}

// Porcupine converts the history for the checker.
func (h *History) Porcupine() []porcupine.Operation {
	h.mu.Lock()
	defer h.mu.Unlock()
	var end int64
	for _, op := range h.Ops {
		if op.Return > end {
			end = op.Return
		}
		if op.Call > end {
			end = op.Call
		}
	}
	out := make([]porcupine.Operation, 0, len(h.Ops))
	for _, op := range h.Ops {
		ret := op.Return
		if ret < 0 {
			ret = end + 1
		}
		out = append(out, porcupine.Operation{ClientId: op.Client, Input: op.Input,
			Output: op.Output, Call: op.Call, Return: ret})
	}
	return out
}

// Stats summarises the history.
func (h *History) Stats() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	kinds := map[string]int{}
	unk := 0
	for _, op := range h.Ops {
		k := string(op.Input.Kind)
		if op.Output.Unknown {
			unk++
		} else if op.Output.Mismatch {
			k += "(mismatch)"
		} else if op.Input.Kind == OpGet && !op.Output.Found {
			k += "(not found)"
		}
		kinds[k]++
	}
	var names []string
	for k := range kinds {
		names = append(names, k)
	}
	sort.Strings(names)
	s := fmt.Sprintf("%d ops (%d unknown outcome, %d left out):", len(h.Ops), unk, h.Dropped)
	for _, k := range names {
		s += fmt.Sprintf(" %s=%d", k, kinds[k])
	}
	return s
}

// Save writes the history (seed, schedule, notes, operations) as JSON.
func (h *History) Save(path string) error {
	h.mu.Lock()
	b, err := json.MarshalIndent(h, "", " ")
	h.mu.Unlock()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}

// LoadHistory reads a history written by Save.
func LoadHistory(path string) (*History, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	h := &History{}
	if err := json.Unmarshal(b, h); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return h, nil
}

// CheckAndReport checks the history; on a violation (or a check that could
// not finish) it saves the history with its seed and a Porcupine
// visualization under dir, prints their paths and the seed, and fails t.
func CheckAndReport(t interface {
	Helper()
	Logf(string, ...any)
	Errorf(string, ...any)
}, h *History, dir string, timeout time.Duration) CheckResult {
	t.Helper()
	r := Check(h, timeout)
	t.Logf("history: %s; seed %d; check: %v", h.Stats(), h.Seed, r.Result)
	if r.Result == porcupine.Ok {
		return r
	}
	path := filepath.Join(dir, "history.json")
	if err := h.Save(path); err != nil {
		t.Errorf("saving the history: %v", err)
	}
	viz := filepath.Join(dir, "history.html")
	if err := porcupine.VisualizePath(Model.ToModel(), r.Info, viz); err != nil {
		t.Logf("visualization: %v", err)
	}
	what := "NOT linearizable"
	if r.Result == porcupine.Unknown {
		what = "could not be checked within " + timeout.String()
	}
	t.Errorf("the history is %s (seed %d). History and schedule: %s; visualization: %s; "+
		"re-check: NORIKV_HISTORY=%s go test -run TestRecheckSavedHistory ./...; "+
		"replay the schedule: NORIKV_CHAOS_SEED=%d", what, h.Seed, path, viz, path, h.Seed)
	return r
}
