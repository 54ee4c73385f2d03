package hash

import (
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// The project's vector file, generated from the C implementation by
// tools/hashvec (`make hash-vectors`). The SDK lives at clients/go/hash, so
// the repository root is three levels up.
var vectorFile = filepath.Join("..", "..", "..", "testdata", "hash-vectors.json")

type vectorKey struct {
	Hex      string         `json:"hex"`
	Text     string         `json:"text"`
	Len      int            `json:"len"`
	XXHash64 string         `json:"xxhash64"`
	Shards   map[string]int `json:"shards"`
}

type vectorJump struct {
	Key     string `json:"key"`
	Buckets int64  `json:"buckets"`
	Bucket  int64  `json:"bucket"`
}

type vectors struct {
	Keys []vectorKey  `json:"keys"`
	Jump []vectorJump `json:"jump"`
}

func loadVectors(t *testing.T) vectors {
	t.Helper()
	raw, err := os.ReadFile(vectorFile)
	if err != nil {
		t.Fatalf("reading the project's hash vectors %s: %v", vectorFile, err)
	}
	var v vectors
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatalf("parsing %s: %v", vectorFile, err)
	}
	if len(v.Keys) == 0 || len(v.Jump) == 0 {
		t.Fatalf("%s holds %d key vectors and %d jump vectors; want both non-empty", vectorFile, len(v.Keys), len(v.Jump))
	}
	return v
}

func TestXXHash64MatchesProjectVectors(t *testing.T) {
	v := loadVectors(t)
	for i, k := range v.Keys {
		key, err := hex.DecodeString(k.Hex)
		if err != nil {
			t.Fatalf("vector %d: bad hex %q: %v", i, k.Hex, err)
		}
		if len(key) != k.Len {
			t.Fatalf("vector %d: hex decodes to %d bytes, file says %d", i, len(key), k.Len)
		}
		want, err := strconv.ParseUint(k.XXHash64, 10, 64)
		if err != nil {
			t.Fatalf("vector %d: bad xxhash64 %q", i, k.XXHash64)
		}
		if got := XXHash64(key); got != want {
			t.Errorf("XXHash64(%d-byte key %.40q) = %d, want %d", len(key), k.Text, got, want)
		}
		// String keys route by their UTF-8 bytes.
		if k.Text != "" || len(key) == 0 {
			if got := XXHash64([]byte(k.Text)); got != want && string(key) == k.Text {
				t.Errorf("XXHash64 of text %.40q = %d, want %d", k.Text, got, want)
			}
		}
	}
}

func TestGetShardForKeyMatchesProjectVectors(t *testing.T) {
	v := loadVectors(t)
	checked := 0
	for i, k := range v.Keys {
		key, _ := hex.DecodeString(k.Hex)
		for total, want := range k.Shards {
			n, err := strconv.Atoi(total)
			if err != nil {
				t.Fatalf("vector %d: bad shard count %q", i, total)
			}
			if got := GetShardForKey(key, n); got != want {
				t.Errorf("GetShardForKey(%.40q, %d) = %d, want %d", k.Text, n, got, want)
			}
			checked++
		}
	}
	if checked < len(v.Keys) {
		t.Fatalf("only %d shard vectors checked for %d keys", checked, len(v.Keys))
	}
}

func TestJumpConsistentHashMatchesProjectVectors(t *testing.T) {
	v := loadVectors(t)
	for _, j := range v.Jump {
		key, err := strconv.ParseUint(j.Key, 10, 64)
		if err != nil {
			t.Fatalf("bad jump key %q", j.Key)
		}
		if got := JumpConsistentHash(key, int32(j.Buckets)); int64(got) != j.Bucket {
			t.Errorf("JumpConsistentHash(%d, %d) = %d, want %d", key, j.Buckets, got, j.Bucket)
		}
	}
}

// The values CONTRACT.md quotes, so that a broken vector file cannot hide a
// broken hash.
func TestContractKnownValues(t *testing.T) {
	cases := []struct {
		key         string
		xx          uint64
		s1024, s256 int
	}{
		{"hello", 2794345569481354659, 309, 118},
		{"", 17241709254077376921, 332, 40},
	}
	for _, c := range cases {
		if got := XXHash64([]byte(c.key)); got != c.xx {
			t.Errorf("XXHash64(%q) = %d, want %d", c.key, got, c.xx)
		}
		if got := GetShardForKey([]byte(c.key), 1024); got != c.s1024 {
			t.Errorf("GetShardForKey(%q, 1024) = %d, want %d", c.key, got, c.s1024)
		}
		if got := GetShardForKey([]byte(c.key), 256); got != c.s256 {
			t.Errorf("GetShardForKey(%q, 256) = %d, want %d", c.key, got, c.s256)
		}
	}
}

func TestJumpConsistentHashStaysInRangeAndMovesFewKeys(t *testing.T) {
	const keys = 20000
	moved := 0
	for i := uint64(0); i < keys; i++ {
		k := XXHash64([]byte(strconv.FormatUint(i, 10)))
		a := JumpConsistentHash(k, 100)
		b := JumpConsistentHash(k, 101)
		if a < 0 || a >= 100 || b < 0 || b >= 101 {
			t.Fatalf("key %d: buckets %d of 100, %d of 101 out of range", i, a, b)
		}
		if a != b {
			if b != 100 {
				t.Fatalf("key %d moved from %d to %d; growing may only move keys to the new bucket", i, a, b)
			}
			moved++
		}
	}
	// Expect about keys/101 = 198 moves; allow a wide margin.
	if moved < 100 || moved > 320 {
		t.Fatalf("%d of %d keys moved from 100 to 101 buckets, want about %d", moved, keys, keys/101)
	}
}

func TestInvalidBucketCountsReturnMinusOne(t *testing.T) {
	if got := JumpConsistentHash(42, 0); got != -1 {
		t.Errorf("JumpConsistentHash(42, 0) = %d, want -1", got)
	}
	if got := JumpConsistentHash(42, -5); got != -1 {
		t.Errorf("JumpConsistentHash(42, -5) = %d, want -1", got)
	}
	if got := GetShardForKey([]byte("k"), 0); got != -1 {
		t.Errorf("GetShardForKey(k, 0) = %d, want -1", got)
	}
	if got := GetShardForKey([]byte("k"), 1<<31); got != -1 {
		t.Errorf("GetShardForKey(k, 2^31) = %d, want -1", got)
	}
}

func TestRoutingDoesNotAllocate(t *testing.T) {
	key := []byte("user:alice")
	allocs := testing.AllocsPerRun(1000, func() {
		_ = GetShardForKey(key, 1024)
	})
	if allocs != 0 {
		t.Fatalf("GetShardForKey allocates %.1f times per call, want 0", allocs)
	}
}
