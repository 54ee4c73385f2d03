package integration

// Slow HTTP clients (issue 9, defect 11): connections that trickle a request
// one header line at a time must not take HTTP away from everybody else.

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestSlowHTTPClientsDoNotStarveHealthChecksAndWrites(t *testing.T) {
	if testing.Short() {
		t.Skip("runs ~30 s")
	}
	s := ephemeral(t)
	base := "http://" + s.http
	const slow = 80
	const runFor = 28 * time.Second // the server's receive deadline is 10 s
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var longest atomic.Int64 // ns a slow connection stayed open, the longest seen
	var opened, cut atomic.Int64
	for i := 0; i < slow; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				c, err := net.DialTimeout("tcp", s.http, 2*time.Second)
				if err != nil {
					time.Sleep(100 * time.Millisecond)
					continue
				}
				opened.Add(1)
				t0 := time.Now()
				closed := make(chan struct{})
				go func() { // the server closing the connection shows as EOF
					io.Copy(io.Discard, c)
					close(closed)
				}()
				c.Write([]byte(fmt.Sprintf("GET /kv/slow-%d HTTP/1.1\r\nHost: x\r\n", i)))
				tick := time.NewTicker(3 * time.Second)
				func() {
					defer tick.Stop()
					for n := 0; ; n++ {
						select {
						case <-stop:
							return
						case <-closed:
							cut.Add(1)
							return
						case <-tick.C:
							if _, err := c.Write([]byte(fmt.Sprintf("X-Slow-%d: %d\r\n", n, n))); err != nil {
								<-closed
								cut.Add(1)
								return
							}
						}
					}
				}()
				c.Close()
				if d := int64(time.Since(t0)); d > longest.Load() {
					longest.Store(d)
				}
			}
		}(i)
	}
	// meanwhile: health checks and KV writes and reads from fresh
	// connections, each answered promptly
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	var failures []string
	end := time.Now().Add(runFor)
	time.Sleep(500 * time.Millisecond) // let the slow connections open first
	rounds := 0
	for time.Now().Before(end) {
		rounds++
		check := func(what string, f func() (int, string, error), want int) {
			t0 := time.Now()
			c, b, err := f()
			if err != nil || c != want {
				failures = append(failures, fmt.Sprintf("%s after %v: %d %q %v", what, time.Since(t0).Round(time.Millisecond), c, b, err))
			}
		}
		do := func(method, path, body string) (int, string, error) {
			req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
			r, err := client.Do(req)
			if err != nil {
				return 0, "", err
			}
			defer r.Body.Close()
			b, _ := io.ReadAll(r.Body)
			return r.StatusCode, string(b), nil
		}
		check("GET /healthz", func() (int, string, error) { return do("GET", "/healthz", "") }, 200)
		v := fmt.Sprintf("v%d", rounds)
		check("PUT /kv/fast", func() (int, string, error) { return do("PUT", "/kv/fast", v) }, 200)
		check("GET /kv/fast", func() (int, string, error) {
			c, b, err := do("GET", "/kv/fast", "")
			if err == nil && !strings.Contains(b, `"value":"`+v+`"`) {
				err = fmt.Errorf("read %s, want %s", b, v)
			}
			return c, b, err
		}, 200)
		time.Sleep(250 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	if len(failures) > 0 {
		t.Errorf("%d of %d request rounds failed while %d slow clients trickled headers; first: %s",
			len(failures), rounds, slow, strings.Join(failures[:min(5, len(failures))], "; "))
	}
	t.Logf("%d slow connections opened, %d cut by the server, longest open %v; %d fast rounds",
		opened.Load(), cut.Load(), time.Duration(longest.Load()).Round(time.Millisecond), rounds)
	// the deadline counts from the start of the request, not from the last
	// byte: every slow connection is cut, within the 10 s deadline plus the
	// watchdog's tick and generous slack for a loaded machine
	if cut.Load() < slow {
		t.Errorf("only %d slow connections were cut by the server; want every one of the %d", cut.Load(), slow)
	}
	if l := time.Duration(longest.Load()); l > 20*time.Second {
		t.Errorf("a slow connection stayed open %v; the receive deadline is 10 s", l)
	}
}

// Request bodies are bounded in bytes across all connections, not only per
// connection: 512 connections of 1 MiB each must not all be buffered.
func TestHTTPBodiesInFlightAreBoundedAndOverflowGets429(t *testing.T) {
	s := ephemeral(t)
	const holders = 70 // x 1 MiB: past the 64 MiB budget
	const size = 1 << 20
	body := strings.Repeat("h", size)
	conns := make([]net.Conn, holders)
	var wg sync.WaitGroup
	for i := range conns {
		c, err := net.DialTimeout("tcp", s.http, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		conns[i] = c
		wg.Add(1)
		go func(i int, c net.Conn) { // all of the body but its last byte
			defer wg.Done()
			c.SetWriteDeadline(time.Now().Add(5 * time.Second))
			fmt.Fprintf(c, "PUT /kv/hold-%d HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", i, size)
			c.Write([]byte(body[:size-1]))
		}(i, c)
	}
	wg.Wait()
	time.Sleep(300 * time.Millisecond) // let the server read what was sent
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	put := func(key string) (int, string, error) {
		req, _ := http.NewRequest("PUT", "http://"+s.http+"/kv/"+key, strings.NewReader(body))
		r, err := client.Do(req)
		if err != nil {
			return 0, "", err
		}
		defer r.Body.Close()
		b, _ := io.ReadAll(r.Body)
		return r.StatusCode, string(b), nil
	}
	c, b, err := put("fresh")
	if err != nil || c != 429 || !strings.Contains(b, "67108864") {
		t.Fatalf("a 1 MiB PUT while %d MiB of bodies are held: %d %s %v; want 429 naming the 67108864-byte budget", holders, c, b, err)
	}
	if r, err := client.Get("http://" + s.http + "/healthz"); err != nil || r.StatusCode != 200 {
		t.Fatalf("/healthz while bodies are held: %v %v", r, err)
	}
	for _, c := range conns {
		c.Close()
	}
	// the holders' bytes are released as their connections end
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, b, err := put("after")
		if err == nil && c == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("PUT after the holders left: %d %s %v", c, b, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
