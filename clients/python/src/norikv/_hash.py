"""Shard routing hashes: xxhash64 (seed 0) and Jump Consistent Hash.

shard = jump_consistent_hash(xxhash64(key bytes, seed 0), total_shards), bit-exact
with the server and every other SDK (CONTRACT.md, testdata/hash-vectors.json).
xxhash64 uses the C `xxhash` package when it is importable (about 10x faster)
and the pure-Python implementation below otherwise; both are tested against the
project's vector file.
"""

from __future__ import annotations

import struct
from typing import Callable, Union

__all__ = [
    "xxhash64",
    "xxhash64_pure",
    "jump_consistent_hash",
    "get_shard_for_key",
    "key_bytes",
    "XXHASH_IMPLEMENTATION",
]

_M64 = 0xFFFFFFFFFFFFFFFF
_P1 = 11400714785074694791
_P2 = 14029467366897019727
_P3 = 1609587929392839161
_P4 = 9650029242287828579
_P5 = 2870177450012600261

_U64x4 = struct.Struct("<4Q")
_U64 = struct.Struct("<Q")
_U32 = struct.Struct("<I")

KeyLike = Union[str, bytes, bytearray, memoryview]


def _round(acc: int, lane: int) -> int:
    acc = (acc + lane * _P2) & _M64
    acc = ((acc << 31) | (acc >> 33)) & _M64
    return (acc * _P1) & _M64


def _merge(acc: int, val: int) -> int:
    acc ^= _round(0, val)
    return (acc * _P1 + _P4) & _M64


def xxhash64_pure(data: bytes, seed: int = 0) -> int:
    """XXH64 of data, written from the algorithm's specification in Python."""
    n = len(data)
    p = 0
    if n >= 32:
        v1 = (seed + _P1 + _P2) & _M64
        v2 = (seed + _P2) & _M64
        v3 = seed & _M64
        v4 = (seed - _P1) & _M64
        limit = n - 32
        while p <= limit:
            a, b, c, d = _U64x4.unpack_from(data, p)
            v1 = _round(v1, a)
            v2 = _round(v2, b)
            v3 = _round(v3, c)
            v4 = _round(v4, d)
            p += 32
        h = (
            ((v1 << 1) | (v1 >> 63))
            + ((v2 << 7) | (v2 >> 57))
            + ((v3 << 12) | (v3 >> 52))
            + ((v4 << 18) | (v4 >> 46))
        ) & _M64
        h = _merge(h, v1)
        h = _merge(h, v2)
        h = _merge(h, v3)
        h = _merge(h, v4)
    else:
        h = (seed + _P5) & _M64
    h = (h + n) & _M64
    while p + 8 <= n:
        (lane,) = _U64.unpack_from(data, p)
        h ^= _round(0, lane)
        h = ((((h << 27) | (h >> 37)) & _M64) * _P1 + _P4) & _M64
        p += 8
    if p + 4 <= n:
        (lane,) = _U32.unpack_from(data, p)
        h ^= (lane * _P1) & _M64
        h = ((((h << 23) | (h >> 41)) & _M64) * _P2 + _P3) & _M64
        p += 4
    while p < n:
        h ^= (data[p] * _P5) & _M64
        h = ((((h << 11) | (h >> 53)) & _M64) * _P1) & _M64
        p += 1
    h ^= h >> 33
    h = (h * _P2) & _M64
    h ^= h >> 29
    h = (h * _P3) & _M64
    h ^= h >> 32
    return h


_xxh64_c: Callable[[bytes], int]
try:
    import xxhash as _xxhash_mod

    _xxh64_c = _xxhash_mod.xxh64_intdigest
    XXHASH_IMPLEMENTATION = "xxhash (C)"
except ImportError:  # pragma: no cover - exercised only without the wheel
    _xxh64_c = xxhash64_pure
    XXHASH_IMPLEMENTATION = "pure Python"


def xxhash64(data: bytes) -> int:
    """XXH64 of data with seed 0, as an unsigned 64-bit integer."""
    return _xxh64_c(data)


def jump_consistent_hash(key: int, num_buckets: int) -> int:
    """Jump Consistent Hash (Lamping & Veach) of a 64-bit key into [0, num_buckets).

    Mirrors the C reference exactly, including the double-precision step."""
    if num_buckets <= 0:
        raise ValueError("num_buckets must be >= 1, got %d" % num_buckets)
    key &= _M64
    b = -1
    j = 0
    while j < num_buckets:
        b = j
        key = (key * 2862933555777941757 + 1) & _M64
        j = int(float(b + 1) * (2147483648.0 / float((key >> 33) + 1)))
    return b


def key_bytes(key: KeyLike) -> bytes:
    """The bytes a key is hashed and sent as: str keys are UTF-8."""
    if isinstance(key, str):
        return key.encode("utf-8")
    if isinstance(key, bytes):
        return key
    if isinstance(key, (bytearray, memoryview)):
        return bytes(key)
    raise TypeError("key must be str or bytes, not %s" % type(key).__name__)


def get_shard_for_key(key: KeyLike, total_shards: int) -> int:
    """The shard that owns key in a cluster of total_shards shards."""
    return jump_consistent_hash(_xxh64_c(key_bytes(key)), total_shards)
