package cluster

import (
	"bufio"
	"context"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	pb "github.com/norikv/norikv-go/proto"
)

// metricLines returns the /metrics lines of node i that start with name.
func metricLines(t *testing.T, c *Cluster, i int, name string) map[string]float64 {
	t.Helper()
	resp, err := http.Get("http://" + c.Nodes[i].HTTP + "/metrics")
	if err != nil {
		t.Fatalf("n%d /metrics: %v", i+1, err)
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		l := sc.Text()
		if !strings.HasPrefix(l, name) {
			continue
		}
		sp := strings.LastIndexByte(l, ' ')
		v, err := strconv.ParseFloat(l[sp+1:], 64)
		if err != nil {
			t.Fatalf("bad metric line %q", l)
		}
		out[l[:sp]] = v
	}
	return out
}

// On a 3-node cluster every node exports the transport's counters per peer
// (both peers up, Raft bytes flowing both ways, nothing malformed), and its
// gRPC event stream carries the leader changes of the cluster's formation.
func TestEveryNodeExportsPerPeerTransportMetricsAndStreamsLeaderEvents(t *testing.T) {
	c := start3(t)
	for i := range c.Nodes {
		deadline := time.Now().Add(10 * time.Second)
		for {
			up := metricLines(t, c, i, "norikv_transport_peer_up{")
			sent := metricLines(t, c, i, "norikv_transport_sent_bytes_total{")
			recv := metricLines(t, c, i, "norikv_transport_received_bytes_total{")
			nUp, nSent, nRecv := 0, 0, 0
			for _, v := range up {
				if v == 1 {
					nUp++
				}
			}
			for k, v := range sent {
				if strings.Contains(k, `class="raft"`) && v > 0 {
					nSent++
				}
			}
			for k, v := range recv {
				if strings.Contains(k, `class="raft"`) && v > 0 {
					nRecv++
				}
			}
			if nUp == 2 && nSent == 2 && nRecv == 2 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("n%d: peers up %v, raft bytes sent %v received %v (want 2 peers each)",
					i+1, up, sent, recv)
			}
			time.Sleep(200 * time.Millisecond)
		}
		if m := metricLines(t, c, i, "norikv_transport_malformed_total"); m["norikv_transport_malformed_total"] != 0 {
			t.Fatalf("n%d: malformed peer connections %v", i+1, m)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	st, err := c.Nodes[0].Meta().WatchEvents(ctx, &pb.EventsRequest{Kinds: []string{"leader_change"}})
	if err != nil {
		t.Fatal(err)
	}
	e, err := st.Recv()
	if err != nil {
		t.Fatalf("no leader_change event on n1's stream: %v", err)
	}
	if e.Kind != "leader_change" || e.Shard < 0 || e.Node == "" || e.Term == 0 {
		t.Fatalf("leader_change event %v: want its shard, node and term", e)
	}
}
