package integration

import (
	"bufio"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
)

// scrape returns /metrics as series -> value (the text exposition format).
func scrape(t *testing.T, s *server) map[string]float64 {
	t.Helper()
	r, err := http.Get("http://" + s.http + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	b, _ := io.ReadAll(r.Body)
	out := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(string(b)))
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("bad /metrics line %q", line)
		}
		out[line[:i]] = v
	}
	return out
}

// After a write burst /metrics carries the Raft, LSM, event and process
// families with values that match what happened.
func TestMetricsShowRaftLSMEventAndProcessTotals(t *testing.T) {
	s := ephemeral(t, "--storage-memtable-size", "1MiB")
	writeBurst(t, s, "metrics", 2000, 4096)
	m := scrape(t, s)
	checks := []struct {
		series string
		ok     func(float64) bool
		want   string
	}{
		{"norikv_raft_proposals_total", func(v float64) bool { return v >= 2000 }, ">= 2000"},
		{"norikv_raft_leader_changes_total", func(v float64) bool { return v >= 1024 }, ">= 1024 (every shard got a leader)"},
		{"norikv_lsm_flushes_total", func(v float64) bool { return v >= 3 }, ">= 3 (8 MiB into 1 MiB memtables)"},
		{"norikv_lsm_flush_written_bytes_total", func(v float64) bool { return v >= 3<<20 }, ">= 3 MiB"},
		{"norikv_events_total", func(v float64) bool { return v >= 5 }, ">= 5"},
		{"norikv_process_resident_memory_bytes", func(v float64) bool { return v > 1<<20 }, "> 1 MiB"},
		{"norikv_process_open_fds", func(v float64) bool { return v > 3 }, "> 3"},
		{"norikv_process_threads", func(v float64) bool { return v > 1 }, "> 1"},
		{"norikv_process_cpu_microseconds_total", func(v float64) bool { return v > 0 }, "> 0"},
		{"norikv_http_event_streams", func(v float64) bool { return v == 0 }, "0"},
		{"norikv_cluster_members", func(v float64) bool { return v == 1 }, "1 (a one-node cluster)"},
		{"norikv_transport_frames_bad_total", func(v float64) bool { return v == 0 }, "0"},
	}
	for _, c := range checks {
		v, ok := m[c.series]
		if !ok {
			t.Errorf("/metrics has no %s", c.series)
			continue
		}
		if !c.ok(v) {
			t.Errorf("%s = %v, want %s", c.series, v, c.want)
		}
	}
	for _, name := range []string{"norikv_raft_snapshots_sent_total", "norikv_raft_snapshots_installed_total",
		"norikv_raft_log_compactions_total", "norikv_raft_log_entries", "norikv_lsm_compactions_total",
		"norikv_lsm_write_stalls_total", "norikv_lsm_memtable_bytes"} {
		if _, ok := m[name]; !ok {
			t.Errorf("/metrics has no %s", name)
		}
	}
}
