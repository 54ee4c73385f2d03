package ephemeral

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// writeScript writes an executable shell script. These scripts stand in for
// the binary only to test this package's process handling (finding,
// READY parsing, SIGTERM, early exit, timeout); they serve nothing.
func writeScript(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "norikv-server")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestFindBinaryPrefersTheEnvironmentVariable(t *testing.T) {
	p := writeScript(t, "exit 0\n")
	t.Setenv(EnvBinary, p)
	got, err := FindBinary()
	if err != nil || got != p {
		t.Fatalf("FindBinary() = %q, %v; want %q", got, err, p)
	}
}

func TestFindBinaryFallsBackToPathWhenTheVariableNamesNoFile(t *testing.T) {
	p := writeScript(t, "exit 0\n")
	t.Setenv(EnvBinary, filepath.Join(t.TempDir(), "missing"))
	t.Setenv("PATH", filepath.Dir(p))
	got, err := FindBinary()
	if err != nil || got != p {
		t.Fatalf("FindBinary() = %q, %v; want %q from PATH", got, err, p)
	}
}

func TestFindBinaryFallsBackToTheRepositoryBuildDir(t *testing.T) {
	root := t.TempDir()
	bin := filepath.Join(root, "build", "src", "server", "norikv-server")
	if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	wd := filepath.Join(root, "clients", "go", "examples")
	if err := os.MkdirAll(wd, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Chdir(wd)
	t.Setenv(EnvBinary, "")
	t.Setenv("PATH", t.TempDir())
	got, err := FindBinary()
	if err != nil || got != bin {
		t.Fatalf("FindBinary() = %q, %v; want %q", got, err, bin)
	}
}

func TestFindBinaryReportsWhereItLooked(t *testing.T) {
	t.Chdir(t.TempDir())
	t.Setenv(EnvBinary, "/nonexistent/norikv-server")
	t.Setenv("PATH", t.TempDir())
	_, err := FindBinary()
	if !errors.Is(err, ErrServerNotFound) || !strings.Contains(err.Error(), "/nonexistent/norikv-server") {
		t.Fatalf("FindBinary() error %v: want ErrServerNotFound naming the variable's path", err)
	}
}

func TestStartParsesReadyAndStopSendsSigterm(t *testing.T) {
	marker := filepath.Join(t.TempDir(), "terminated")
	p := writeScript(t, `
[ "$1" = "--ephemeral" ] || { echo "missing --ephemeral: $*" >&2; exit 3; }
trap 'echo term > `+marker+`; exit 0' TERM
echo "starting" >&2
echo "READY grpc=127.0.0.1:40001 http=127.0.0.1:40002"
while :; do sleep 0.05; done
`)
	s, err := Start(context.Background(), &Options{Binary: p})
	if err != nil {
		t.Fatal(err)
	}
	if s.GRPCAddr != "127.0.0.1:40001" || s.HTTPAddr != "127.0.0.1:40002" {
		t.Fatalf("addresses %q %q", s.GRPCAddr, s.HTTPAddr)
	}
	if err := s.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if b, err := os.ReadFile(marker); err != nil || strings.TrimSpace(string(b)) != "term" {
		t.Fatalf("the process did not get SIGTERM (marker %q, %v)", b, err)
	}
	if !strings.Contains(s.Output(), "starting") || !strings.Contains(s.Output(), "READY") {
		t.Fatalf("output not captured: %q", s.Output())
	}
	if err := s.Stop(); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
}

func TestStartReportsAnEarlyExitWithTheOutput(t *testing.T) {
	p := writeScript(t, `echo "config: rpc_addr 127.0.0.1:1 is taken" >&2; exit 2`+"\n")
	_, err := Start(context.Background(), &Options{Binary: p})
	if err == nil || !strings.Contains(err.Error(), "exited before READY") || !strings.Contains(err.Error(), "is taken") {
		t.Fatalf("error %v: want an early-exit error with the server's message", err)
	}
}

func TestStartGivesUpWithoutReady(t *testing.T) {
	p := writeScript(t, "while :; do sleep 0.05; done\n")
	_, err := Start(context.Background(), &Options{Binary: p, StartTimeout: 300 * time.Millisecond})
	if err == nil || !strings.Contains(err.Error(), "no READY line") {
		t.Fatalf("error %v: want a READY timeout", err)
	}
}

// The real thing: the project's server starts, listens where its READY line
// says, and stops cleanly on SIGTERM (StartT's cleanup checks the exit).
func TestRealServerServesWhereReadySays(t *testing.T) {
	s := StartT(t, nil)
	conn, err := net.DialTimeout("tcp", s.GRPCAddr, 5*time.Second)
	if err != nil {
		t.Fatalf("dialing the READY line's grpc address %s: %v", s.GRPCAddr, err)
	}
	conn.Close()
	if s.HTTPAddr != "" {
		conn, err := net.DialTimeout("tcp", s.HTTPAddr, 5*time.Second)
		if err != nil {
			t.Fatalf("dialing the READY line's http address %s: %v", s.HTTPAddr, err)
		}
		conn.Close()
	}
}
