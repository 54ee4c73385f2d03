// Package hash is NoriKV's routing function: which shard a key belongs to.
//
//	shard = JumpConsistentHash(XXHash64(key), totalShards)
//
// Both functions must agree bit for bit with the server and with every other
// SDK (../../../shared/CONTRACT.md, "Routing"): a client that computes another
// shard sends the request to a node that does not hold the key. They are
// checked against the project's generated vector file testdata/hash-vectors.json.
//
// Everything here is pure, allocation-free and safe for concurrent use.
package hash

import (
	"encoding/binary"
	"math/bits"
)

// The five 64-bit primes of XXH64.
const (
	prime1 uint64 = 11400714785074694791
	prime2 uint64 = 14029467366897019727
	prime3 uint64 = 1609587929392839161
	prime4 uint64 = 9650029242287828579
	prime5 uint64 = 2870177450012600261
)

func round(acc, input uint64) uint64 {
	acc += input * prime2
	acc = bits.RotateLeft64(acc, 31)
	return acc * prime1
}

func mergeRound(acc, val uint64) uint64 {
	acc ^= round(0, val)
	return acc*prime1 + prime4
}

// XXHash64 returns the XXH64 hash of data with seed 0, the hash NoriKV routes
// by. String keys are hashed as their UTF-8 bytes: XXHash64([]byte(s)).
func XXHash64(data []byte) uint64 {
	n := len(data)
	p := data
	var h uint64
	if n >= 32 {
		// Seed 0: v1 = prime1 + prime2, v2 = prime2, v3 = 0, v4 = -prime1
		// (wrapping). Written at run time because Go constant arithmetic
		// does not wrap.
		v1 := prime1
		v1 += prime2
		v2 := prime2
		var v3 uint64
		var v4 uint64
		v4 -= prime1
		for len(p) >= 32 {
			v1 = round(v1, binary.LittleEndian.Uint64(p[0:8]))
			v2 = round(v2, binary.LittleEndian.Uint64(p[8:16]))
			v3 = round(v3, binary.LittleEndian.Uint64(p[16:24]))
			v4 = round(v4, binary.LittleEndian.Uint64(p[24:32]))
			p = p[32:]
		}
		h = bits.RotateLeft64(v1, 1) + bits.RotateLeft64(v2, 7) +
			bits.RotateLeft64(v3, 12) + bits.RotateLeft64(v4, 18)
		h = mergeRound(h, v1)
		h = mergeRound(h, v2)
		h = mergeRound(h, v3)
		h = mergeRound(h, v4)
	} else {
		h = prime5
	}
	h += uint64(n)

	for len(p) >= 8 {
		h ^= round(0, binary.LittleEndian.Uint64(p[0:8]))
		h = bits.RotateLeft64(h, 27)*prime1 + prime4
		p = p[8:]
	}
	if len(p) >= 4 {
		h ^= uint64(binary.LittleEndian.Uint32(p[0:4])) * prime1
		h = bits.RotateLeft64(h, 23)*prime2 + prime3
		p = p[4:]
	}
	// At most three bytes remain; unrolled, as the loop costs a
	// mispredicted branch per byte on short keys (the common case).
	switch len(p) {
	case 3:
		h ^= uint64(p[0]) * prime5
		h = bits.RotateLeft64(h, 11) * prime1
		h ^= uint64(p[1]) * prime5
		h = bits.RotateLeft64(h, 11) * prime1
		h ^= uint64(p[2]) * prime5
		h = bits.RotateLeft64(h, 11) * prime1
	case 2:
		h ^= uint64(p[0]) * prime5
		h = bits.RotateLeft64(h, 11) * prime1
		h ^= uint64(p[1]) * prime5
		h = bits.RotateLeft64(h, 11) * prime1
	case 1:
		h ^= uint64(p[0]) * prime5
		h = bits.RotateLeft64(h, 11) * prime1
	}

	h ^= h >> 33
	h *= prime2
	h ^= h >> 29
	h *= prime3
	h ^= h >> 32
	return h
}

// JumpConsistentHash maps a 64-bit key to a bucket in [0, numBuckets) with
// Lamping and Veach's Jump Consistent Hash, exactly as CONTRACT.md spells it
// (the same float64 arithmetic, so that results match the C server). When
// numBuckets grows from n to n+1, only 1/(n+1) of the keys move.
//
// numBuckets <= 0 returns -1: there is no bucket to return.
func JumpConsistentHash(key uint64, numBuckets int32) int32 {
	b, j := int64(-1), int64(0)
	for j < int64(numBuckets) {
		b = j
		key = key*2862933555777941757 + 1
		j = int64(float64(b+1) * (float64(int64(1)<<31) / float64((key>>33)+1)))
	}
	return int32(b)
}

// GetShardForKey returns the shard that owns key in a cluster of totalShards
// shards: JumpConsistentHash(XXHash64(key), totalShards). It does not
// allocate. totalShards must be in [1, 2^31-1]; otherwise it returns -1.
func GetShardForKey(key []byte, totalShards int) int {
	if totalShards <= 0 || totalShards > 1<<31-1 {
		return -1
	}
	return int(JumpConsistentHash(XXHash64(key), int32(totalShards)))
}
