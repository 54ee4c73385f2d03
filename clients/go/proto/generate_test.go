package norikvpb_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// The committed code must be what the project's .proto generates. Runs the
// README's protoc command into a temporary directory when protoc and both
// plugins are installed (skipped otherwise).
func TestGeneratedCodeMatchesTheProto(t *testing.T) {
	for _, tool := range []string{"protoc", "protoc-gen-go", "protoc-gen-go-grpc"} {
		if _, err := exec.LookPath(tool); err != nil {
			if home, herr := os.UserHomeDir(); herr == nil {
				if _, serr := os.Stat(filepath.Join(home, "go", "bin", tool)); serr == nil {
					t.Setenv("PATH", os.Getenv("PATH")+string(os.PathListSeparator)+filepath.Join(home, "go", "bin"))
					continue
				}
			}
			t.Skipf("%s not installed; cannot regenerate", tool)
		}
	}
	out := t.TempDir()
	cmd := exec.Command("protoc", "--go_out="+out, "--go_opt=paths=source_relative",
		"--go-grpc_out="+out, "--go-grpc_opt=paths=source_relative", "norikv.proto")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("protoc: %v\n%s", err, b)
	}
	for _, f := range []string{"norikv.pb.go", "norikv_grpc.pb.go"} {
		want, err := os.ReadFile(filepath.Join(out, f))
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s is not what proto/norikv/v1/norikv.proto generates (plugin versions may differ, see doc.go); run go generate ./proto/...", f)
		}
	}
}
