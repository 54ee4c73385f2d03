package integration

// Durability of every kind of write, not only fresh unconditional puts: CAS
// puts and deletes, if_not_exists, unconditional deletes and TTL puts, while
// the server is SIGKILLed at random points. Each writer owns its keys and
// keeps a model of them; a write whose call failed (the server died under
// it) may or may not have applied, so the model accepts either outcome for
// that key once, then follows what the server holds.

import (
	"context"
	"fmt"
	"math/rand"
	"sync"
	"testing"
	"time"

	pb "github.com/norikv/norikv-go/proto"
	"google.golang.org/grpc/codes"
)

type keyState struct {
	live    bool
	value   string
	version *pb.Version
	// a write whose outcome is unknown: afterwards the key holds either the
	// state above or this one (alt.version unknown when it applied)
	uncertain bool
	alt       struct {
		live  bool
		value string
	}
}

type opsWriter struct {
	id   int
	keys map[string]*keyState
	rng  *rand.Rand
	n    int
}

func (w *opsWriter) keyName(i int) string { return fmt.Sprintf("ops-w%d-k%d", w.id, i) }

// step performs one random write; false when the server is gone.
func (w *opsWriter) step(s *server, round int) bool {
	k := w.keyName(w.rng.Intn(12))
	st := w.keys[k]
	if st.uncertain {
		return true // settled at the next verification
	}
	w.n++
	val := fmt.Sprintf("r%d-w%d-%d", round, w.id, w.n)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var req *pb.PutRequest
	del := false
	var dreq *pb.DeleteRequest
	switch op := w.rng.Intn(5); {
	case op == 0 && st.live: // CAS put
		req = &pb.PutRequest{Key: []byte(k), Value: []byte(val), IfMatch: st.version}
	case op == 1 && !st.live: // create only
		req = &pb.PutRequest{Key: []byte(k), Value: []byte(val), IfNotExists: true}
	case op == 2 && st.live: // CAS delete
		del = true
		dreq = &pb.DeleteRequest{Key: []byte(k), IfMatch: st.version}
	case op == 3: // unconditional delete
		del = true
		dreq = &pb.DeleteRequest{Key: []byte(k)}
	default: // TTL put: an hour, so it must still be there after every restart
		req = &pb.PutRequest{Key: []byte(k), Value: []byte(val), TtlMs: 3600 * 1000}
	}
	if del {
		r, err := s.kv.Delete(ctx, dreq)
		if err != nil {
			st.uncertain = true
			st.alt.live = false
			return false
		}
		if r.Tombstoned != st.live {
			panic(fmt.Sprintf("%s: delete tombstoned=%v but the model says live=%v", k, r.Tombstoned, st.live))
		}
		st.live, st.value, st.version = false, "", nil
		return true
	}
	r, err := s.kv.Put(ctx, req)
	if err != nil {
		switch code(err) {
		case codes.FailedPrecondition, codes.AlreadyExists:
			panic(fmt.Sprintf("%s: %v although the model says live=%v version=%v", k, err, st.live, st.version))
		}
		st.uncertain = true
		st.alt.live = true
		st.alt.value = val
		return false
	}
	st.live, st.value, st.version = true, val, r.Version
	return true
}

// verify checks every key against the model and settles uncertain ones.
func (w *opsWriter) verify(t *testing.T, s *server, what string) {
	t.Helper()
	for k, st := range w.keys {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		g, err := s.kv.Get(ctx, &pb.GetRequest{Key: []byte(k), Consistency: "linearizable"})
		cancel()
		live := err == nil
		if err != nil && code(err) != codes.NotFound {
			t.Fatalf("%s: get %s: %v", what, k, err)
		}
		matchesModel := live == st.live &&
			(!live || (string(g.Value) == st.value && sameVersion(g.Version, st.version)))
		matchesAlt := st.uncertain && live == st.alt.live && (!live || string(g.Value) == st.alt.value)
		if !matchesModel && !matchesAlt {
			t.Fatalf("%s: %s holds live=%v %v; acknowledged state live=%v value=%q version=%v (uncertain=%v alt=%+v)",
				what, k, live, g, st.live, st.value, st.version, st.uncertain, st.alt)
		}
		st.uncertain = false
		st.live = live
		if live {
			st.value, st.version = string(g.Value), g.Version
		} else {
			st.value, st.version = "", nil
		}
	}
}

func TestSIGKILLKeepsEveryAcknowledgedConditionalDeleteAndTTLWrite(t *testing.T) {
	dir := t.TempDir()
	seed := time.Now().UnixNano()
	rng := rand.New(rand.NewSource(seed))
	t.Logf("seed %d", seed)
	writers := make([]*opsWriter, 6)
	for i := range writers {
		w := &opsWriter{id: i, keys: map[string]*keyState{}, rng: rand.New(rand.NewSource(seed + int64(i)))}
		for j := 0; j < 12; j++ {
			w.keys[w.keyName(j)] = &keyState{}
		}
		writers[i] = w
	}
	kills := 12
	if testing.Short() {
		kills = 4
	}
	total := 0
	for round := 0; round < kills; round++ {
		s := onDisk(t, dir)
		for _, w := range writers {
			w.verify(t, s, fmt.Sprintf("round %d (seed %d)", round, seed))
		}
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for _, w := range writers {
			wg.Add(1)
			go func(w *opsWriter) {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					if !w.step(s, round) {
						return
					}
				}
			}(w)
		}
		time.Sleep(time.Duration(100+rng.Intn(300)) * time.Millisecond)
		s.kill()
		close(stop)
		wg.Wait()
	}
	s := onDisk(t, dir)
	for _, w := range writers {
		w.verify(t, s, fmt.Sprintf("final (seed %d)", seed))
		total += w.n
	}
	t.Logf("%d kills, %d conditional/delete/TTL writes, every acknowledged one present", kills, total)
	s.stop()
}
