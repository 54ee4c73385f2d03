// Package integration runs the real norikv-server binary (NORIKV_SERVER_BIN,
// or build/src/server/norikv-server) as child processes on 127.0.0.1 and
// drives it through gRPC stubs generated from proto/norikv/v1/norikv.proto,
// exactly as any NoriKV v1 client would.
package integration

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	pb "github.com/norikv/norikv-go/proto"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

func serverBin(t testing.TB) string {
	if p := os.Getenv("NORIKV_SERVER_BIN"); p != "" {
		return p
	}
	p, _ := filepath.Abs("../../build/src/server/norikv-server")
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("norikv-server not found at %s (set NORIKV_SERVER_BIN)", p)
	}
	return p
}

// server is one norikv-server child process.
type server struct {
	t      testing.TB
	cmd    *exec.Cmd
	grpc   string
	http   string
	stderr *lockedBuf
	done   chan error
	conn   *grpc.ClientConn
	kv     pb.KvClient
}

type lockedBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// start runs the server with args and waits for its READY line.
func start(t testing.TB, args ...string) *server {
	t.Helper()
	s, err := tryStart(t, args...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func tryStart(t testing.TB, args ...string) (*server, error) {
	cmd := exec.Command(serverBin(t), args...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	s := &server{t: t, cmd: cmd, stderr: &lockedBuf{}, done: make(chan error, 1)}
	cmd.Stderr = s.stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "READY ") {
				ready <- sc.Text()
			}
		}
		io.Copy(io.Discard, stdout)
	}()
	go func() { s.done <- cmd.Wait() }()
	select {
	case line := <-ready:
		for _, f := range strings.Fields(line)[1:] {
			if v, ok := strings.CutPrefix(f, "grpc="); ok {
				s.grpc = v
			}
			if v, ok := strings.CutPrefix(f, "http="); ok {
				s.http = v
			}
		}
	case err := <-s.done:
		return nil, fmt.Errorf("server exited before READY (%v): %s", err, s.stderr.String())
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		return nil, fmt.Errorf("no READY line within 30s: %s", s.stderr.String())
	}
	conn, err := grpc.NewClient(s.grpc, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		cmd.Process.Kill()
		return nil, err
	}
	s.conn = conn
	s.kv = pb.NewKvClient(conn)
	t.Cleanup(func() { s.kill() })
	return s, nil
}

// stop sends SIGTERM and requires a clean exit.
func (s *server) stop() {
	s.t.Helper()
	if s.cmd == nil {
		return
	}
	s.conn.Close()
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-s.done:
		s.cmd = nil
		if err != nil {
			s.t.Fatalf("server exit after SIGTERM: %v\n%s", err, s.stderr.String())
		}
	case <-time.After(30 * time.Second):
		s.cmd.Process.Kill()
		<-s.done
		s.cmd = nil
		s.t.Fatalf("server did not stop within 30s of SIGTERM")
	}
}

// kill sends SIGKILL (a crash) and reaps the process.
func (s *server) kill() {
	if s.cmd == nil {
		return
	}
	s.conn.Close()
	s.cmd.Process.Kill()
	<-s.done
	s.cmd = nil
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func freePort(t testing.TB) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func ephemeral(t testing.TB, extra ...string) *server {
	return start(t, append([]string{"--ephemeral", "--rpc-addr", "127.0.0.1:0",
		"--http-addr", "127.0.0.1:0"}, extra...)...)
}

func onDisk(t testing.TB, dir string, extra ...string) *server {
	return start(t, append([]string{"--data-dir", dir, "--rpc-addr", "127.0.0.1:0",
		"--http-addr", "127.0.0.1:0"}, extra...)...)
}

func code(err error) codes.Code { return status.Code(err) }

func mustPut(t testing.TB, s *server, key, val string) *pb.Version {
	t.Helper()
	r, err := s.kv.Put(ctxT(t), &pb.PutRequest{Key: []byte(key), Value: []byte(val)})
	if err != nil {
		t.Fatalf("put %q: %v", key, err)
	}
	return r.Version
}
