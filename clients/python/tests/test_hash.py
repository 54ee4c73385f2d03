"""Routing hashes are bit-exact with the project's vector file (the C code and
every SDK test against the same file) and with CONTRACT.md's known values."""

from __future__ import annotations

import json
import random

import pytest

from conftest import HASH_VECTORS
from norikv import get_shard_for_key, jump_consistent_hash, xxhash64
from norikv._hash import key_bytes, xxhash64_pure


@pytest.fixture(scope="module")
def vectors() -> dict:
    with open(HASH_VECTORS, encoding="utf-8") as f:
        return json.load(f)


def test_vector_file_covers_empty_ascii_utf8_and_long_keys(vectors: dict) -> None:
    lens = {k["len"] for k in vectors["keys"]}
    assert 0 in lens and max(lens) >= 1024
    assert any(any(ord(ch) > 127 for ch in k["text"]) for k in vectors["keys"] if "text" in k)
    assert len(vectors["jump"]) >= 10


def test_xxhash64_c_matches_every_vector(vectors: dict) -> None:
    for k in vectors["keys"]:
        assert xxhash64(bytes.fromhex(k["hex"])) == int(k["xxhash64"]), k["hex"][:40]


def test_xxhash64_pure_python_matches_every_vector(vectors: dict) -> None:
    for k in vectors["keys"]:
        assert xxhash64_pure(bytes.fromhex(k["hex"])) == int(k["xxhash64"]), k["hex"][:40]


def test_xxhash64_pure_equals_c_on_random_inputs_of_every_tail_length() -> None:
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    for n in list(range(0, 80)) + [rng.randrange(80, 5000) for _ in range(50)]:
        data = bytes(rng.randrange(256) for _ in range(n))
        assert xxhash64_pure(data) == xxhash64(data), "seed=%d len=%d" % (seed, n)


def test_text_keys_hash_as_their_utf8_bytes(vectors: dict) -> None:
    for k in vectors["keys"]:
        if "text" not in k:
            continue
        assert k["text"].encode("utf-8") == bytes.fromhex(k["hex"])
        for n, shard in k["shards"].items():
            assert get_shard_for_key(k["text"], int(n)) == shard
            assert get_shard_for_key(bytes.fromhex(k["hex"]), int(n)) == shard


def test_shard_for_key_matches_every_vector(vectors: dict) -> None:
    for k in vectors["keys"]:
        b = bytes.fromhex(k["hex"])
        for n, shard in k["shards"].items():
            assert get_shard_for_key(b, int(n)) == shard, (k["hex"][:40], n)


def test_jump_hash_matches_every_vector_including_0_and_2_64_minus_1(vectors: dict) -> None:
    keys = {int(j["key"]) for j in vectors["jump"]}
    assert 0 in keys and (1 << 64) - 1 in keys
    for j in vectors["jump"]:
        assert jump_consistent_hash(int(j["key"]), j["buckets"]) == j["bucket"], j


def test_contract_known_values() -> None:
    assert xxhash64(b"hello") == 2794345569481354659
    assert get_shard_for_key("hello", 1024) == 309
    assert get_shard_for_key("hello", 256) == 118
    assert xxhash64(b"") == 17241709254077376921
    assert get_shard_for_key("", 1024) == 332
    assert get_shard_for_key(b"", 256) == 40


def test_jump_hash_rejects_zero_buckets() -> None:
    with pytest.raises(ValueError):
        jump_consistent_hash(1, 0)


def test_jump_hash_moves_only_keys_that_go_to_the_new_bucket() -> None:
    rng = random.Random(7)
    for _ in range(2000):
        k = rng.getrandbits(64)
        a, b = jump_consistent_hash(k, 100), jump_consistent_hash(k, 101)
        assert b == a or b == 100


def test_key_bytes_accepts_str_bytes_bytearray_memoryview_only() -> None:
    assert key_bytes("é") == b"\xc3\xa9"
    assert key_bytes(bytearray(b"ab")) == b"ab"
    assert key_bytes(memoryview(b"ab")) == b"ab"
    with pytest.raises(TypeError):
        key_bytes(12)  # type: ignore[arg-type]
