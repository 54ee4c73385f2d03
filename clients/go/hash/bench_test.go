package hash

import (
	"strconv"
	"testing"
)

// The README's figures (2.5 ns, 14 ns, 23 ns) do not say which keys they
// used; "user:12345" is a typical short key. Other lengths and varying keys
// are reported beside it so that no single lucky case stands for the whole.
var benchKey = []byte("user:12345")

var sink uint64
var sinkInt int

func BenchmarkXXHash64(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		sink += XXHash64(benchKey)
	}
}

func BenchmarkXXHash64Len(b *testing.B) {
	for _, n := range []int{0, 8, 16, 32, 64, 1024} {
		key := make([]byte, n)
		for i := range key {
			key[i] = byte('a' + i%26)
		}
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			b.SetBytes(int64(n))
			b.ReportAllocs()
			for b.Loop() {
				sink += XXHash64(key)
			}
		})
	}
}

// One key, 1024 buckets: the loop's branches are predicted, as when a
// client routes the same hot key again and again.
func BenchmarkJumpConsistentHash(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		sinkInt += int(JumpConsistentHash(0x9e3779b97f4a7c15, 1024))
	}
}

// A different key each call: the loop's trip count varies and mispredicts.
func BenchmarkJumpConsistentHashVaryingKeys(b *testing.B) {
	b.ReportAllocs()
	k := uint64(0x9e3779b97f4a7c15)
	for b.Loop() {
		sinkInt += int(JumpConsistentHash(k, 1024))
		k = k*6364136223846793005 + 1442695040888963407
	}
}

func BenchmarkGetShardForKey(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		sinkInt += GetShardForKey(benchKey, 1024)
	}
}

func BenchmarkGetShardForKeyVaryingKeys(b *testing.B) {
	keys := make([][]byte, 4096)
	for i := range keys {
		keys[i] = []byte("user:" + strconv.Itoa(i*7919))
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		sinkInt += GetShardForKey(keys[i&4095], 1024)
		i++
	}
}
