package integration

// Hostile and unusual client input on the gRPC and HTTP entry points
// (issue 9, defects 10 and 12): byte strings are taken with their exact
// lengths, HTTP query parameters are parsed strictly, and requests that
// would decode to far more memory than they occupy are refused.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	pb "github.com/norikv/norikv-go/proto"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
)

func httpDo(t *testing.T, method, url, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	r, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer r.Body.Close()
	b, _ := io.ReadAll(r.Body)
	return r.StatusCode, string(b)
}

// invokeRaw sends bytes as the request of a unary method, bypassing Go's
// proto marshalling (which refuses invalid UTF-8 in strings).
func invokeRaw(ctx context.Context, s *server, method string, body []byte) error {
	return s.conn.Invoke(ctx, method, rawMsg(body), new(pb.PutResponse), grpc.ForceCodecV2(rawCodec{}))
}

func TestHTTPKeysArePercentDecodedWithTheirNULBytes(t *testing.T) {
	s := ephemeral(t)
	base := "http://" + s.http
	if c, b := httpDo(t, "PUT", base+"/kv/a", "just a"); c != 200 {
		t.Fatalf("PUT /kv/a: %d %s", c, b)
	}
	if c, b := httpDo(t, "PUT", base+"/kv/a%00b", "a NUL b"); c != 200 {
		t.Fatalf("PUT /kv/a%%00b: %d %s", c, b)
	}
	// the NUL key is its own 3-byte key; "a" is untouched
	g, err := s.kv.Get(ctxT(t), &pb.GetRequest{Key: []byte("a")})
	if err != nil || string(g.Value) != "just a" {
		t.Fatalf("key a after PUT /kv/a%%00b: %v %v", g, err)
	}
	g, err = s.kv.Get(ctxT(t), &pb.GetRequest{Key: []byte("a\x00b")})
	if err != nil || string(g.Value) != "a NUL b" {
		t.Fatalf("key a\\0b over gRPC: %v %v", g, err)
	}
	// a key written over gRPC with a NUL (and bytes that are not UTF-8) is
	// reachable over HTTP
	if _, err := s.kv.Put(ctxT(t), &pb.PutRequest{Key: []byte("x\x00\xffy"), Value: []byte("bin")}); err != nil {
		t.Fatal(err)
	}
	c, b := httpDo(t, "GET", base+"/kv/x%00%FFy", "")
	var got struct {
		KeyBase64 []byte `json:"key_base64"`
		Value     string `json:"value"`
	}
	if c != 200 || json.Unmarshal([]byte(b), &got) != nil || string(got.KeyBase64) != "x\x00\xffy" || got.Value != "bin" {
		t.Fatalf("GET /kv/x%%00%%FFy: %d %s", c, b)
	}
	if c, b := httpDo(t, "DELETE", base+"/kv/a%00b", ""); c != 200 || !strings.Contains(b, `"tombstoned":true`) {
		t.Fatalf("DELETE /kv/a%%00b: %d %s", c, b)
	}
	if c, _ := httpDo(t, "GET", base+"/kv/a", ""); c != 200 {
		t.Fatalf("DELETE of a\\0b removed a: %d", c)
	}
	// a raw NUL in the request line (illegal in HTTP) is refused, never cut
	for _, line := range []string{"PUT /kv/a\x00b HTTP/1.1", "PUT /kv/a?if_not_exists=true\x00x HTTP/1.1", "PUT\x00X /kv/a HTTP/1.1"} {
		c, b := rawHTTP(t, s.http, line+"\r\nHost: x\r\nContent-Length: 3\r\nConnection: close\r\n\r\nraw")
		if c != 400 || !strings.Contains(b, "NUL") {
			t.Errorf("%q: %d %s; want 400 naming the NUL byte", line, c, b)
		}
	}
	if g, err := s.kv.Get(ctxT(t), &pb.GetRequest{Key: []byte("a")}); err != nil || string(g.Value) != "just a" {
		t.Fatalf("key a after requests with a raw NUL: %v %v", g, err)
	}
	// malformed escapes are refused, not guessed at
	for _, path := range []string{"/kv/bad%zzescape", "/kv/bad%4", "/kv/bad%"} {
		if c, b := rawHTTP(t, s.http, "PUT "+path+" HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nConnection: close\r\n\r\nv"); c != 400 || !strings.Contains(b, "percent") {
			t.Fatalf("PUT %s: %d %s; want 400 naming the percent-encoding", path, c, b)
		}
	}
}

// rawHTTP sends one request exactly as written (Go's client refuses
// malformed escapes) and returns the status and the whole answer.
func rawHTTP(t *testing.T, addr, req string) (int, string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte(req)); err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(c)
	var st int
	fmt.Sscanf(string(b), "HTTP/1.1 %d", &st)
	return st, string(b)
}

// protobuf wire bytes built by hand: Go's marshaller would refuse the
// invalid UTF-8 these tests send on purpose.
func getReq(key, consistency string) []byte {
	var b []byte
	b = protowire.AppendTag(b, 1, protowire.BytesType)
	b = protowire.AppendString(b, key)
	b = protowire.AppendTag(b, 2, protowire.BytesType)
	return protowire.AppendString(b, consistency)
}

func putReq(key, value, idem string) []byte {
	var b []byte
	b = protowire.AppendTag(b, 1, protowire.BytesType)
	b = protowire.AppendString(b, key)
	b = protowire.AppendTag(b, 2, protowire.BytesType)
	b = protowire.AppendString(b, value)
	b = protowire.AppendTag(b, 4, protowire.BytesType)
	return protowire.AppendString(b, idem)
}

func TestGRPCStringsAreComparedWithTheirFullLength(t *testing.T) {
	s := ephemeral(t)
	ctx := ctxT(t)
	mustPut(t, s, "k", "v")
	for _, cs := range []string{"lease\x00\xff", "lease\x00", "linearizable\x00x", "\xff"} {
		err := s.conn.Invoke(ctx, "/norikv.v1.Kv/Get", rawMsg(getReq("k", cs)), new(pb.GetResponse), grpc.ForceCodecV2(rawCodec{}))
		if code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), "consistency") {
			t.Errorf("consistency %q: %v; want INVALID_ARGUMENT naming consistency", cs, err)
		}
	}
	// idempotency keys that are not UTF-8: refused, as docs/rpc.md says
	for _, idem := range []string{"\xff", "ok\xc0\x80", "\xed\xa0\x80"} {
		err := invokeRaw(ctx, s, "/norikv.v1.Kv/Put", putReq("k", "v2", idem))
		if code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), "UTF-8") {
			t.Errorf("put with idempotency key %q: %v; want INVALID_ARGUMENT naming UTF-8", idem, err)
		}
		var d []byte
		d = protowire.AppendTag(d, 1, protowire.BytesType)
		d = protowire.AppendString(d, "k")
		d = protowire.AppendTag(d, 2, protowire.BytesType)
		d = protowire.AppendString(d, idem)
		err = s.conn.Invoke(ctx, "/norikv.v1.Kv/Delete", rawMsg(d), new(pb.DeleteResponse), grpc.ForceCodecV2(rawCodec{}))
		if code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), "UTF-8") {
			t.Errorf("delete with idempotency key %q: %v; want INVALID_ARGUMENT naming UTF-8", idem, err)
		}
	}
	// idempotency keys that differ only after a NUL are different keys: the
	// second write is not mistaken for a retry of the first
	r1, err := s.kv.Put(ctx, &pb.PutRequest{Key: []byte("n1"), Value: []byte("one"), IdempotencyKey: "retry\x00one"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.kv.Put(ctx, &pb.PutRequest{Key: []byte("n1"), Value: []byte("two"), IdempotencyKey: "retry\x00two"}); err != nil {
		t.Fatalf("second idempotency key sharing a prefix up to a NUL: %v", err)
	}
	if g, err := s.kv.Get(ctx, &pb.GetRequest{Key: []byte("n1")}); err != nil || string(g.Value) != "two" {
		t.Fatalf("after two writes with distinct idempotency keys: %v %v", g, err)
	}
	// and the same key with its NUL is a real retry
	r3, err := s.kv.Put(ctx, &pb.PutRequest{Key: []byte("n1"), Value: []byte("one"), IdempotencyKey: "retry\x00one"})
	if err != nil || !sameVersion(r1.Version, r3.Version) {
		t.Fatalf("retry with the same NUL-bearing key: %v %v", r3, err)
	}
}

func TestHTTPQueryParametersAreParsedStrictly(t *testing.T) {
	s := ephemeral(t)
	base := "http://" + s.http
	if c, b := httpDo(t, "PUT", base+"/kv/ine", "first"); c != 200 {
		t.Fatalf("%d %s", c, b)
	}
	value := func() string {
		g, err := s.kv.Get(ctxT(t), &pb.GetRequest{Key: []byte("ine")})
		if err != nil {
			t.Fatal(err)
		}
		return string(g.Value)
	}
	// spellings that are neither true nor false: 400 naming the parameter,
	// and the existing key is not overwritten
	for _, q := range []string{"True", "TRUE", "yes", "on", "t", "", "2", "true%00"} {
		c, b := httpDo(t, "PUT", base+"/kv/ine?if_not_exists="+q, "overwritten")
		if c != 400 || !strings.Contains(b, "if_not_exists") {
			t.Errorf("if_not_exists=%s: %d %s; want 400 naming if_not_exists", q, c, b)
		}
	}
	if c, b := httpDo(t, "PUT", base+"/kv/ine?if_not_exists", "overwritten"); c != 400 || !strings.Contains(b, "if_not_exists") {
		t.Errorf("bare if_not_exists: %d %s", c, b)
	}
	if v := value(); v != "first" {
		t.Fatalf("a refused if_not_exists overwrote the key: %q", v)
	}
	for _, q := range []string{"true", "1"} {
		if c, b := httpDo(t, "PUT", base+"/kv/ine?if_not_exists="+q, "overwritten"); c != 409 {
			t.Errorf("if_not_exists=%s on a live key: %d %s; want 409", q, c, b)
		}
	}
	for _, q := range []string{"false", "0"} {
		if c, b := httpDo(t, "PUT", base+"/kv/ine?if_not_exists="+q, "again "+q); c != 200 {
			t.Errorf("if_not_exists=%s: %d %s; want 200", q, c, b)
		}
	}
	// malformed versions: 400 naming if_match, never a 409 mismatch
	for _, q := range []string{"-1.-1", "+1.+2", "1.+2", "18446744073709551616.1", "1.99999999999999999999999",
		"1.", ".1", "1", "1.2.3", "%201.2", "1.2%20", "0x1.2", "."} {
		for _, m := range []string{"PUT", "DELETE"} {
			c, b := httpDo(t, m, base+"/kv/ine?if_match="+q, "v")
			if c != 400 || !strings.Contains(b, "if_match") {
				t.Errorf("%s if_match=%s: %d %s; want 400 naming if_match", m, q, c, b)
			}
		}
	}
	for _, q := range []string{"-5", "+5", "5.0", "1e3", "18446744073709551616", ""} {
		if c, b := httpDo(t, "PUT", base+"/kv/ine?ttl_ms="+q, "v"); c != 400 || !strings.Contains(b, "ttl_ms") {
			t.Errorf("ttl_ms=%s: %d %s; want 400 naming ttl_ms", q, c, b)
		}
	}
	// the largest version is well-formed: an ordinary mismatch
	if c, b := httpDo(t, "PUT", base+"/kv/ine?if_match=18446744073709551615.18446744073709551615", "v"); c != 409 {
		t.Errorf("maximal if_match: %d %s; want 409", c, b)
	}
	// a long key is 400 on every method (GET answered 500)
	long := strings.Repeat("k", 2000)
	for _, m := range []string{"GET", "PUT", "DELETE"} {
		if c, b := httpDo(t, m, base+"/kv/"+long, "v"); c != 400 || !strings.Contains(b, "1024") {
			t.Errorf("%s of a 2000-byte key: %d %.200s; want 400 naming the 1024-byte limit", m, c, b)
		}
	}
	// idempotency keys that are not UTF-8: 400
	if c, b := httpDo(t, "PUT", base+"/kv/ine?idempotency_key=%FF%FE", "v"); c != 400 || !strings.Contains(b, "idempotency_key") {
		t.Errorf("non-UTF-8 idempotency_key: %d %s", c, b)
	}
	// a NUL in an idempotency key is part of it
	c1, b1 := httpDo(t, "PUT", base+"/kv/idem?idempotency_key=r%00one", "1")
	c2, b2 := httpDo(t, "PUT", base+"/kv/idem?idempotency_key=r%00two", "2")
	if c1 != 200 || c2 != 200 || b1 == b2 {
		t.Errorf("idempotency keys differing after a NUL: %d %s / %d %s", c1, b1, c2, b2)
	}
	// typos and parameters of another method are refused, not ignored
	for _, q := range []string{"/kv/ine?if_not_exist=true", "/kv/ine?consistency=lease", "/kv/ine?ttl_ms=1&ttl_ms=2"} {
		if c, b := httpDo(t, "PUT", base+q, "v"); c != 400 {
			t.Errorf("PUT %s: %d %s; want 400", q, c, b)
		}
	}
	if c, b := httpDo(t, "GET", base+"/kv/ine?ttl_ms=5", ""); c != 400 || !strings.Contains(b, "ttl_ms") {
		t.Errorf("GET with ttl_ms: %d %s", c, b)
	}
	if c, b := httpDo(t, "GET", base+"/kv/ine?consistency=lease%00", ""); c != 400 || !strings.Contains(b, "consistency") {
		t.Errorf("GET with consistency=lease%%00: %d %s", c, b)
	}
	if c, b := httpDo(t, "GET", base+"/kv/ine?consistency=linearizable", ""); c != 200 {
		t.Errorf("GET linearizable: %d %s", c, b)
	}
	if c, _ := httpDo(t, "PUT", base+"/kv/after", "fine"); c != 200 {
		t.Fatalf("the server stopped serving after bad input: %d", c)
	}
}

// vmHWM is the peak resident set of a process in KiB.
func vmHWM(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			return n
		}
	}
	t.Fatal("no VmHWM")
	return 0
}

// repeatedEmpty is a message of n empty sub-messages in field `field`: two
// bytes on the wire each, a struct, a pointer and protobuf-c's bookkeeping
// each once decoded.
func repeatedEmpty(field protowire.Number, n int) []byte {
	b := make([]byte, 0, 2*n)
	for i := 0; i < n; i++ {
		b = protowire.AppendTag(b, field, protowire.BytesType)
		b = protowire.AppendVarint(b, 0)
	}
	return b
}

func TestAmplifyingRequestsAreRefusedBeforeDecoding(t *testing.T) {
	s := ephemeral(t)
	ctx := ctxT(t)
	mustPut(t, s, "warm", "up")
	before := vmHWM(t, s.cmd.Process.Pid)
	const n = 1000000 // 2,000,000 bytes: under the 2 MiB request limit
	bodies := []struct {
		method string
		stream bool
		body   []byte
	}{
		{"/norikv.v1.Meta/WatchCluster", true, repeatedEmpty(2, n)}, // ClusterView.nodes
		{"/norikv.v1.Meta/WatchCluster", true, repeatedEmpty(3, n)}, // ClusterView.shards
		{"/norikv.v1.Admin/TransferShard", false, repeatedEmpty(2, n)}, // ShardInfo.replicas
		{"/norikv.v1.Admin/SnapshotShard", false, repeatedEmpty(2, n)},
	}
	var wg sync.WaitGroup
	errs := make(chan string, 16)
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			c := bodies[i%len(bodies)]
			var err error
			if c.stream {
				var st grpc.ClientStream
				st, err = s.conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true}, c.method, grpc.ForceCodecV2(rawCodec{}))
				if err == nil {
					if err = st.SendMsg(rawMsg(c.body)); err == nil {
						st.CloseSend()
						err = st.RecvMsg(new(pb.ClusterView))
					}
				}
			} else {
				err = s.conn.Invoke(ctx, c.method, rawMsg(c.body), new(pb.ShardInfo), grpc.ForceCodecV2(rawCodec{}))
			}
			msg := status.Convert(err).Message()
			if code(err) != codes.InvalidArgument || !strings.Contains(msg, "decode") || !strings.Contains(msg, "4194304") {
				errs <- fmt.Sprintf("%s: %v; want INVALID_ARGUMENT naming the 4194304-byte decode limit", c.method, err)
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	after := vmHWM(t, s.cmd.Process.Pid)
	t.Logf("VmHWM %d KiB before, %d KiB after 16 amplifying requests", before, after)
	// Decoded, each would take ~100 MB; refused, what remains is gRPC's
	// buffering of the 2 MB requests themselves.
	if grow := after - before; grow > 96*1024 {
		t.Errorf("peak RSS grew by %d KiB serving 16 amplifying requests; want < 96 MiB", grow)
	}
	// the server keeps serving, and legal requests of these kinds still work
	mustPut(t, s, "after", "amplification")
	if _, err := pb.NewAdminClient(s.conn).TransferShard(ctx, &pb.ShardInfo{Id: 3, Replicas: []*pb.ShardReplica{{NodeId: "n"}}}); code(err) != codes.FailedPrecondition {
		t.Fatalf("ordinary TransferShard after the flood: %v", err)
	}
}
