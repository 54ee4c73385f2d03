package integration

// A small client of the Chrome DevTools protocol: starts Debian's headless
// Chromium, attaches to its page over the DevTools websocket, and records
// every console error and uncaught exception of the page. Used by the
// dashboard test (dashboard_test.go).

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/websocket"
)

type browser struct {
	t    *testing.T
	cmd  *exec.Cmd
	ws   *websocket.Conn
	mu   sync.Mutex
	next int
	wait map[int]chan cdpReply
	errs []string // console errors, exceptions and error log entries
	done chan struct{}
}

type cdpReply struct {
	Result json.RawMessage `json:"result"`
	Error  *struct {
		Message string `json:"message"`
	} `json:"error"`
}

// chromiumPath finds the browser scripts/install-deps.sh installs; its
// absence fails the test (a dashboard nobody can check is not tested).
func chromiumPath(t *testing.T) string {
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatalf("chromium is not installed: the dashboard test needs Debian's chromium package " +
		"(run scripts/install-deps.sh)")
	return ""
}

func startBrowser(t *testing.T) *browser {
	t.Helper()
	dir := t.TempDir()
	cmd := exec.Command(chromiumPath(t), "--headless", "--no-sandbox", "--disable-gpu",
		"--disable-dev-shm-usage", "--no-first-run", "--no-default-browser-check",
		"--disable-extensions", "--disable-background-networking", "--disable-sync",
		"--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
		"--remote-allow-origins=*", "--user-data-dir="+dir, "--window-size=1280,1900",
		"about:blank")
	// its own process group: closing kills the renderers and helpers too
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	b := &browser{t: t, cmd: cmd, wait: map[int]chan cdpReply{}, done: make(chan struct{})}
	t.Cleanup(b.close)
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), "DevTools listening on "); ok {
				found <- v
			}
		}
	}()
	var browserWS string
	select {
	case browserWS = <-found:
	case <-time.After(20 * time.Second):
		t.Fatal("chromium did not print its DevTools address within 20 s")
	}
	// ws://127.0.0.1:PORT/devtools/browser/ID -> the page target's socket
	hostport := strings.SplitN(strings.TrimPrefix(browserWS, "ws://"), "/", 2)[0]
	var pageWS string
	deadline := time.Now().Add(10 * time.Second)
	for pageWS == "" && time.Now().Before(deadline) {
		r, err := http.Get("http://" + hostport + "/json/list")
		if err == nil {
			var targets []struct {
				Type string `json:"type"`
				WS   string `json:"webSocketDebuggerUrl"`
			}
			json.NewDecoder(r.Body).Decode(&targets)
			r.Body.Close()
			for _, tg := range targets {
				if tg.Type == "page" {
					pageWS = tg.WS
					break
				}
			}
		}
		if pageWS == "" {
			time.Sleep(100 * time.Millisecond)
		}
	}
	if pageWS == "" {
		t.Fatal("no page target in chromium")
	}
	ws, err := websocket.Dial(pageWS, "", "http://127.0.0.1/")
	if err != nil {
		t.Fatalf("DevTools websocket: %v", err)
	}
	ws.MaxPayloadBytes = 64 << 20
	b.ws = ws
	go b.readLoop()
	b.call("Runtime.enable", nil)
	b.call("Log.enable", nil)
	b.call("Page.enable", nil)
	return b
}

func (b *browser) readLoop() {
	defer close(b.done)
	for {
		var raw []byte
		if err := websocket.Message.Receive(b.ws, &raw); err != nil {
			return
		}
		var m struct {
			ID     int             `json:"id"`
			Method string          `json:"method"`
			Params json.RawMessage `json:"params"`
			cdpReply
		}
		if json.Unmarshal(raw, &m) != nil {
			continue
		}
		if m.ID != 0 {
			b.mu.Lock()
			ch := b.wait[m.ID]
			delete(b.wait, m.ID)
			b.mu.Unlock()
			if ch != nil {
				ch <- m.cdpReply
			}
			continue
		}
		switch m.Method {
		case "Runtime.consoleAPICalled":
			var p struct {
				Type string `json:"type"`
				Args []struct {
					Value       any    `json:"value"`
					Description string `json:"description"`
				} `json:"args"`
			}
			json.Unmarshal(m.Params, &p)
			if p.Type == "error" || p.Type == "assert" {
				var parts []string
				for _, a := range p.Args {
					parts = append(parts, fmt.Sprint(a.Value, a.Description))
				}
				b.addErr("console." + p.Type + ": " + strings.Join(parts, " "))
			}
		case "Runtime.exceptionThrown":
			var p struct {
				Details struct {
					Text      string `json:"text"`
					Exception struct {
						Description string `json:"description"`
					} `json:"exception"`
				} `json:"exceptionDetails"`
			}
			json.Unmarshal(m.Params, &p)
			b.addErr("exception: " + p.Details.Text + " " + p.Details.Exception.Description)
		case "Log.entryAdded":
			var p struct {
				Entry struct {
					Level string `json:"level"`
					Text  string `json:"text"`
					URL   string `json:"url"`
				} `json:"entry"`
			}
			json.Unmarshal(m.Params, &p)
			if p.Entry.Level == "error" {
				b.addErr("log: " + p.Entry.Text + " " + p.Entry.URL)
			}
		}
	}
}

func (b *browser) addErr(s string) {
	b.mu.Lock()
	b.errs = append(b.errs, s)
	b.mu.Unlock()
}

func (b *browser) errors() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.errs...)
}

// call sends one DevTools command and waits (10 s at most) for its answer.
func (b *browser) call(method string, params any) json.RawMessage {
	b.t.Helper()
	b.mu.Lock()
	b.next++
	id := b.next
	ch := make(chan cdpReply, 1)
	b.wait[id] = ch
	b.mu.Unlock()
	msg, _ := json.Marshal(map[string]any{"id": id, "method": method, "params": params})
	if err := websocket.Message.Send(b.ws, string(msg)); err != nil {
		b.t.Fatalf("DevTools %s: %v", method, err)
	}
	select {
	case r := <-ch:
		if r.Error != nil {
			b.t.Fatalf("DevTools %s: %s", method, r.Error.Message)
		}
		return r.Result
	case <-b.done:
		b.t.Fatalf("DevTools connection closed during %s", method)
	case <-time.After(10 * time.Second):
		b.t.Fatalf("DevTools %s: no answer within 10 s", method)
	}
	return nil
}

// eval evaluates a JavaScript expression in the page and returns its value.
func (b *browser) eval(expr string) any {
	b.t.Helper()
	res := b.call("Runtime.evaluate", map[string]any{"expression": expr, "returnByValue": true})
	var r struct {
		Result struct {
			Value any `json:"value"`
		} `json:"result"`
		Exception *struct {
			Text string `json:"text"`
		} `json:"exceptionDetails"`
	}
	json.Unmarshal(res, &r)
	if r.Exception != nil {
		b.t.Fatalf("evaluating %q: %s", expr, r.Exception.Text)
	}
	return r.Result.Value
}

func (b *browser) evalString(expr string) string { return fmt.Sprint(b.eval(expr)) }

// waitFor polls a JavaScript condition until it is true or the time is up.
func (b *browser) waitFor(what, cond string, within time.Duration) {
	b.t.Helper()
	deadline := time.Now().Add(within)
	// while the page loads, document.body may not exist yet: not yet true
	expr := "(() => { try { return !!(" + cond + "); } catch (e) { return false; } })()"
	for time.Now().Before(deadline) {
		if v, ok := b.eval(expr).(bool); ok && v {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	b.t.Fatalf("the dashboard did not show %s within %v (page errors: %v)", what, within,
		b.errors())
}

func (b *browser) screenshot(path string) {
	b.t.Helper()
	res := b.call("Page.captureScreenshot", map[string]any{"format": "png",
		"captureBeyondViewport": true})
	var r struct {
		Data []byte `json:"data"` // base64 in JSON: decoded by encoding/json
	}
	if err := json.Unmarshal(res, &r); err != nil || len(r.Data) == 0 {
		b.t.Fatalf("screenshot: %v", err)
	}
	if err := os.WriteFile(path, r.Data, 0o644); err != nil {
		b.t.Fatal(err)
	}
}

func (b *browser) close() {
	if b.ws != nil {
		b.ws.Close()
	}
	if b.cmd != nil && b.cmd.Process != nil {
		pgid := b.cmd.Process.Pid // Setpgid: the group has the browser's id
		syscall.Kill(-pgid, syscall.SIGKILL)
		b.cmd.Wait()
		// wait for the rest of the group to go before its directory is removed
		for i := 0; i < 50 && syscall.Kill(-pgid, 0) == nil; i++ {
			time.Sleep(100 * time.Millisecond)
		}
		b.cmd = nil
	}
}
