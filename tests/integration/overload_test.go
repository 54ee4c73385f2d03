package integration

// Issue: 60 concurrent 1 MiB PUTs over HTTP ended in a panic ("raft log batch
// is 40001369 bytes; the limit is 33554432"). A round now takes a bounded
// number of bytes; this drives hundreds of maximum-size writes at once over
// gRPC and HTTP and requires the server to stay up and every acknowledged
// write to read back.

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	pb "github.com/norikv/norikv-go/proto"
	"google.golang.org/grpc/codes"
)

func TestHundredsOfConcurrentMaxSizePutsKeepTheServerUpAndEveryAckedWrite(t *testing.T) {
	s := onDisk(t, t.TempDir())
	const grpcN, httpN = 200, 100
	if testing.Short() {
		t.Log("short mode: fewer writes")
	}
	value := func(i int) []byte {
		v := bytes.Repeat([]byte{byte('a' + i%26)}, 1<<20) // the 1 MiB limit exactly
		copy(v, fmt.Sprintf("%06d", i))
		return v
	}
	var mu sync.Mutex
	acked := map[string][]byte{}
	refused := 0
	var wg sync.WaitGroup
	for i := 0; i < grpcN; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			k := fmt.Sprintf("big-grpc-%d", i)
			v := value(i)
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			_, err := s.kv.Put(ctx, &pb.PutRequest{Key: []byte(k), Value: v})
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				acked[k] = v
			case code(err) == codes.ResourceExhausted:
				refused++
			default:
				t.Errorf("put %s: %v", k, err)
			}
		}(i)
	}
	client := &http.Client{Timeout: 60 * time.Second}
	for i := 0; i < httpN; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			k := fmt.Sprintf("big-http-%d", i)
			v := value(grpcN + i)
			req, _ := http.NewRequest(http.MethodPut, "http://"+s.http+"/kv/"+k, bytes.NewReader(v))
			resp, err := client.Do(req)
			if err != nil {
				t.Errorf("http put %s: %v", k, err)
				return
			}
			resp.Body.Close()
			mu.Lock()
			defer mu.Unlock()
			switch resp.StatusCode {
			case http.StatusOK:
				acked[k] = v
			case http.StatusTooManyRequests, http.StatusServiceUnavailable:
				refused++
			default:
				t.Errorf("http put %s: status %d", k, resp.StatusCode)
			}
		}(i)
	}
	wg.Wait()
	if t.Failed() {
		t.Fatalf("server stderr:\n%s", s.stderr.String())
	}
	select {
	case err := <-s.done:
		t.Fatalf("server exited under load: %v\n%s", err, s.stderr.String())
	default:
	}
	t.Logf("%d acknowledged, %d refused with RESOURCE_EXHAUSTED", len(acked), refused)
	if len(acked) < (grpcN+httpN)/2 {
		t.Fatalf("only %d of %d writes acknowledged", len(acked), grpcN+httpN)
	}
	for k, v := range acked {
		g, err := s.kv.Get(ctxT(t), &pb.GetRequest{Key: []byte(k)})
		if err != nil || !bytes.Equal(g.Value, v) {
			t.Fatalf("acknowledged %s does not read back: %v", k, err)
		}
	}
	s.stop()
}
