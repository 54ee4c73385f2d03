// Package ephemeral starts a real norikv-server for tests and examples:
// `norikv-server --ephemeral` keeps everything in memory, takes free ports
// for the listeners it is not given, and prints
//
//	READY grpc=<host:port> http=<host:port>
//
// on stdout once it serves. Start waits for that line; Stop sends SIGTERM
// and waits for the process to exit. There is no fake server here: the
// binary is the project's C server.
//
// The binary is found, in order, through the NORIKV_SERVER_BIN environment
// variable (when it names an existing file), then norikv-server on PATH,
// then build/src/server/norikv-server in the repository that contains the
// working directory. When none exists, Start returns ErrServerNotFound and
// StartT skips the test.
//
// A Server is safe for concurrent use; each Server owns its process and its
// captured output (the last outputLimit bytes).
package ephemeral

import (
	"bufio"
	"context"
	"errors"
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
)

// EnvBinary names the environment variable that points at the server binary.
const EnvBinary = "NORIKV_SERVER_BIN"

// ErrServerNotFound: no norikv-server binary could be found.
var ErrServerNotFound = errors.New("ephemeral: norikv-server binary not found")

const (
	binaryName     = "norikv-server"
	repoBinaryPath = "build/src/server/norikv-server"
	outputLimit    = 256 << 10
	defaultStart   = 60 * time.Second
	stopGrace      = 15 * time.Second
)

// FindBinary returns the path of the norikv-server binary, or an error
// matching ErrServerNotFound that says where it looked.
func FindBinary() (string, error) {
	var looked []string
	if p := os.Getenv(EnvBinary); p != "" {
		if isExecutable(p) {
			return filepath.Abs(p)
		}
		looked = append(looked, fmt.Sprintf("$%s=%s (no such executable)", EnvBinary, p))
	} else {
		looked = append(looked, "$"+EnvBinary+" (unset)")
	}
	if p, err := exec.LookPath(binaryName); err == nil {
		return filepath.Abs(p)
	}
	looked = append(looked, "PATH")
	if wd, err := os.Getwd(); err == nil {
		for dir := wd; ; dir = filepath.Dir(dir) {
			p := filepath.Join(dir, repoBinaryPath)
			if isExecutable(p) {
				return p, nil
			}
			if dir == filepath.Dir(dir) {
				break
			}
		}
		looked = append(looked, repoBinaryPath+" in the parents of "+wd)
	}
	return "", fmt.Errorf("%w (looked at %s)", ErrServerNotFound, strings.Join(looked, ", "))
}

func isExecutable(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0
}

// Options adjust a server. The zero value starts a plain ephemeral server
// on free ports.
type Options struct {
	// Binary overrides FindBinary.
	Binary string
	// Args are extra flags, e.g. "--rpc-addr=127.0.0.1:9001" to serve on a
	// fixed address, or "--cluster-total-shards=256".
	Args []string
	// NotEphemeral leaves out --ephemeral (for servers with a data
	// directory, given in Args).
	NotEphemeral bool
	// ReadyAddr, when set, is the server's gRPC address as configured in
	// Args; the server counts as started once that address accepts a TCP
	// connection, even before (or without) a READY line. For servers
	// started with NotEphemeral.
	ReadyAddr string
	// StartTimeout bounds the wait for the READY line (default 60 s).
	StartTimeout time.Duration
	// Output, when set, also receives the server's stdout and stderr.
	Output io.Writer
}

// Server is a running norikv-server process.
type Server struct {
	// GRPCAddr is the client address from the READY line.
	GRPCAddr string
	// HTTPAddr is the HTTP address from the READY line.
	HTTPAddr string
	// Binary is the executable that runs.
	Binary string

	cmd     *exec.Cmd
	exited  chan struct{}
	waitErr error
	out     *tailBuffer
	stopMu  sync.Mutex
	stopped bool
}

// Start runs the server and waits for its READY line. ctx bounds the start
// only, not the server's life: stop it with Stop.
func Start(ctx context.Context, opts *Options) (*Server, error) {
	if opts == nil {
		opts = &Options{}
	}
	bin := opts.Binary
	if bin == "" {
		var err error
		if bin, err = FindBinary(); err != nil {
			return nil, err
		}
	}
	var args []string
	if !opts.NotEphemeral {
		args = append(args, "--ephemeral")
	}
	args = append(args, opts.Args...)

	s := &Server{Binary: bin, exited: make(chan struct{}), out: &tailBuffer{limit: outputLimit}}
	cmd := exec.Command(bin, args...)
	cmd.SysProcAttr = sysProcAttr()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	var sink io.Writer = s.out
	if opts.Output != nil {
		sink = io.MultiWriter(s.out, opts.Output)
	}
	cmd.Stderr = sink
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("ephemeral: starting %s: %w", bin, err)
	}
	s.cmd = cmd

	ready := make(chan string, 1)
	go func() {
		// Read stdout to the end, so the server never blocks on a full
		// pipe; the first READY line is handed over.
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		sent := false
		for sc.Scan() {
			line := sc.Text()
			fmt.Fprintln(sink, line)
			if !sent && strings.HasPrefix(line, "READY ") {
				select {
				case ready <- line:
				default:
				}
				sent = true
			}
		}
		_, _ = io.Copy(sink, stdout)
		s.waitErr = cmd.Wait()
		close(s.exited)
	}()

	if opts.ReadyAddr != "" {
		go func() {
			for {
				select {
				case <-s.exited:
					return
				default:
				}
				c, err := net.DialTimeout("tcp", opts.ReadyAddr, time.Second)
				if err == nil {
					c.Close()
					select {
					case ready <- "READY grpc=" + opts.ReadyAddr:
					default:
					}
					return
				}
				time.Sleep(50 * time.Millisecond)
			}
		}()
	}

	timeout := opts.StartTimeout
	if timeout <= 0 {
		timeout = defaultStart
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case line := <-ready:
		if err := s.parseReady(line); err != nil {
			s.Stop()
			return nil, err
		}
		return s, nil
	case <-s.exited:
		return nil, fmt.Errorf("ephemeral: %s %s exited before READY (%v); output:\n%s", bin, strings.Join(args, " "), s.waitErr, s.out.String())
	case <-timer.C:
		s.Kill()
		return nil, fmt.Errorf("ephemeral: %s printed no READY line within %v; output:\n%s", bin, timeout, s.out.String())
	case <-ctx.Done():
		s.Kill()
		return nil, fmt.Errorf("ephemeral: waiting for READY: %w", ctx.Err())
	}
}

func (s *Server) parseReady(line string) error {
	for _, f := range strings.Fields(line)[1:] {
		if v, ok := strings.CutPrefix(f, "grpc="); ok {
			s.GRPCAddr = v
		} else if v, ok := strings.CutPrefix(f, "http="); ok {
			s.HTTPAddr = v
		}
	}
	if s.GRPCAddr == "" {
		return fmt.Errorf("ephemeral: READY line %q names no grpc= address", line)
	}
	return nil
}

// PID returns the server's process id.
func (s *Server) PID() int { return s.cmd.Process.Pid }

// Output returns the server's recent stdout and stderr.
func (s *Server) Output() string { return s.out.String() }

// Exited is closed when the process has exited.
func (s *Server) Exited() <-chan struct{} { return s.exited }

// Stop sends SIGTERM and waits for the process to exit (SIGKILL after 15 s).
// It returns an error when the server did not exit cleanly. Idempotent.
func (s *Server) Stop() error {
	s.stopMu.Lock()
	defer s.stopMu.Unlock()
	if s.stopped {
		return nil
	}
	s.stopped = true
	select {
	case <-s.exited:
		return fmt.Errorf("ephemeral: server had already exited: %v", s.waitErr)
	default:
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	t := time.NewTimer(stopGrace)
	defer t.Stop()
	select {
	case <-s.exited:
		if s.waitErr != nil {
			return fmt.Errorf("ephemeral: server exited after SIGTERM with %v", s.waitErr)
		}
		return nil
	case <-t.C:
		_ = s.cmd.Process.Kill()
		<-s.exited
		return fmt.Errorf("ephemeral: server ignored SIGTERM for %v and was killed", stopGrace)
	}
}

// Kill sends SIGKILL (a crash, for failover tests) and waits for the exit.
func (s *Server) Kill() {
	s.stopMu.Lock()
	defer s.stopMu.Unlock()
	s.stopped = true
	_ = s.cmd.Process.Kill()
	<-s.exited
}

// StartT starts a server for a test or benchmark and stops it when the test
// ends. It skips the test when no server binary exists, and fails it when
// the server does not start or does not stop cleanly.
func StartT(t testing.TB, opts *Options) *Server {
	t.Helper()
	if opts == nil || opts.Binary == "" {
		if _, err := FindBinary(); err != nil {
			t.Skipf("no norikv-server binary to test against: %v", err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), defaultStart)
	defer cancel()
	s, err := Start(ctx, opts)
	if err != nil {
		t.Fatalf("%v", err)
	}
	t.Cleanup(func() {
		if err := s.Stop(); err != nil {
			t.Errorf("%v; output:\n%s", err, s.Output())
		}
	})
	return s
}

// tailBuffer keeps the last limit bytes written to it.
type tailBuffer struct {
	mu    sync.Mutex
	buf   []byte
	limit int
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if over := len(b.buf) - b.limit; over > 0 {
		b.buf = append(b.buf[:0], b.buf[over:]...)
	}
	return len(p), nil
}

func (b *tailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.buf)
}

// FreeAddr returns a loopback address whose port was free a moment ago, for
// servers that must be told their addresses in advance (cluster members
// naming each other). Another process may take it meanwhile; callers that
// cannot tolerate that retry.
func FreeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}
