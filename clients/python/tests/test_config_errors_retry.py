"""Configuration validation, error mapping (CONTRACT.md's error table) and the
retry rules (which failures are retried for which operations, backoff bounds)."""

from __future__ import annotations

import random

import pytest

from norikv import (
    AlreadyExistsError,
    ClientConfig,
    ConnectionError,
    DeadlineExceededError,
    InvalidArgumentError,
    KeyNotFoundError,
    NoriKVError,
    NotLeaderError,
    ResourceExhaustedError,
    RetryConfig,
    Version,
    VersionMismatchError,
)
from norikv.errors import error_from_status
from norikv.retry import FailureKind, backoff_delay_s, classify, is_connect_failure, should_retry


# ---------------------------------------------------------------- config
def test_config_defaults_match_the_guide() -> None:
    c = ClientConfig(nodes=["localhost:9001"])
    assert c.total_shards == 1024 and c.timeout == 5000
    assert c.retry == RetryConfig(max_attempts=10, initial_delay_ms=100, max_delay_ms=5000, jitter_ms=100)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"nodes": []},
        {"nodes": "localhost:9001"},
        {"nodes": ["localhost"]},
        {"nodes": ["localhost:0"]},
        {"nodes": ["localhost:99999"]},
        {"nodes": [":9001"]},
        {"nodes": ["localhost:9001"], "total_shards": 0},
        {"nodes": ["localhost:9001"], "timeout": 0},
        {"nodes": ["localhost:9001"], "max_in_flight": 0},
    ],
)
def test_invalid_client_config_is_rejected(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        ClientConfig(**kwargs)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_attempts": 0},
        {"initial_delay_ms": -1},
        {"initial_delay_ms": 200, "max_delay_ms": 100},
        {"jitter_ms": -5},
    ],
)
def test_invalid_retry_config_is_rejected(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        RetryConfig(**kwargs)


def test_ipv6_and_named_hosts_are_accepted() -> None:
    ClientConfig(nodes=["[::1]:9001", "node-1.example:9001", "127.0.0.1:1"])


# ---------------------------------------------------------------- errors
def test_every_error_type_is_a_norikv_error_with_a_code() -> None:
    for e in (
        KeyNotFoundError(),
        VersionMismatchError(),
        AlreadyExistsError(),
        ConnectionError("x"),
        NotLeaderError("x"),
        DeadlineExceededError("x"),
        InvalidArgumentError("x"),
        ResourceExhaustedError("x"),
    ):
        assert isinstance(e, NoriKVError) and isinstance(e, Exception)
        assert e.code and e.code.isupper()


def test_error_mapping_follows_the_contract_table() -> None:
    assert isinstance(error_from_status("NOT_FOUND", "key not found"), KeyNotFoundError)
    vm = error_from_status("FAILED_PRECONDITION", "version mismatch: expected 1.2", [("current-version", "3.9")])
    assert isinstance(vm, VersionMismatchError) and vm.current_version == Version(3, 9)
    vm2 = error_from_status("FAILED_PRECONDITION", "version mismatch", [])
    assert isinstance(vm2, VersionMismatchError) and vm2.current_version is None
    other_fp = error_from_status("FAILED_PRECONDITION", "one-node cluster")
    assert type(other_fp) is NoriKVError and other_fp.code == "FAILED_PRECONDITION"
    assert isinstance(error_from_status("ALREADY_EXISTS", ""), AlreadyExistsError)
    nl = error_from_status("UNAVAILABLE", "NOT_LEADER", [("leader-hint", b"10.0.0.2:9001")])
    assert isinstance(nl, NotLeaderError) and isinstance(nl, ConnectionError) and nl.leader_hint == "10.0.0.2:9001"
    assert isinstance(error_from_status("UNAVAILABLE", "QUORUM_UNAVAILABLE"), ConnectionError)
    assert isinstance(error_from_status("DEADLINE_EXCEEDED", "COMMIT_TIMEOUT"), DeadlineExceededError)
    ia = error_from_status("INVALID_ARGUMENT", "key longer than 1024 bytes")
    assert isinstance(ia, InvalidArgumentError) and "1024" in str(ia)
    assert isinstance(error_from_status("RESOURCE_EXHAUSTED", ""), ResourceExhaustedError)
    un = error_from_status("UNIMPLEMENTED", "")
    assert type(un) is NoriKVError and un.code == "UNIMPLEMENTED" and str(un)


def test_malformed_current_version_trailer_still_gives_version_mismatch() -> None:
    vm = error_from_status("FAILED_PRECONDITION", "version mismatch", [("current-version", "garbage")])
    assert isinstance(vm, VersionMismatchError) and vm.current_version is None


def test_version_parse_and_str_round_trip() -> None:
    v = Version(7, 123)
    assert Version.parse(str(v)) == v
    assert Version(1, 2) == Version(1, 2) and Version(1, 2) != Version(2, 1)
    assert len({Version(1, 2), Version(1, 2)}) == 1
    with pytest.raises(ValueError):
        Version.parse("12")


# ---------------------------------------------------------------- retry
def test_not_leader_and_refused_connections_are_not_executed() -> None:
    assert classify("UNAVAILABLE", "NOT_LEADER: shard 12") is FailureKind.NOT_EXECUTED
    refused = (
        "failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:1: "
        "Failed to connect to remote host: Connection refused"
    )
    assert is_connect_failure("UNAVAILABLE", refused)
    assert classify("UNAVAILABLE", refused) is FailureKind.NOT_EXECUTED


def test_failures_after_a_write_may_have_reached_a_leader_are_unknown_outcome() -> None:
    for code, details in [
        ("DEADLINE_EXCEEDED", "Deadline Exceeded"),
        ("DEADLINE_EXCEEDED", "COMMIT_TIMEOUT"),
        ("UNAVAILABLE", "Socket closed"),
        ("UNAVAILABLE", "QUORUM_UNAVAILABLE"),
        ("UNAVAILABLE", ""),
        ("ABORTED", ""),
        ("RESOURCE_EXHAUSTED", "proposal queue full"),
        ("CANCELLED", "CANCELLED"),
    ]:
        assert classify(code, details) is FailureKind.UNKNOWN_OUTCOME, (code, details)


def test_permanent_failures() -> None:
    for code in ("INVALID_ARGUMENT", "NOT_FOUND", "FAILED_PRECONDITION", "ALREADY_EXISTS",
                 "UNIMPLEMENTED", "PERMISSION_DENIED", "INTERNAL", "UNKNOWN"):
        assert classify(code, "") is FailureKind.PERMANENT, code


def test_only_repeat_safe_operations_are_retried_after_an_unknown_outcome() -> None:
    assert should_retry(FailureKind.NOT_EXECUTED, repeat_safe=False)
    assert should_retry(FailureKind.NOT_EXECUTED, repeat_safe=True)
    assert should_retry(FailureKind.UNKNOWN_OUTCOME, repeat_safe=True)
    assert not should_retry(FailureKind.UNKNOWN_OUTCOME, repeat_safe=False)
    assert not should_retry(FailureKind.PERMANENT, repeat_safe=True)


def test_backoff_is_exponential_capped_and_jittered_within_bounds() -> None:
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    cfg = RetryConfig(max_attempts=20, initial_delay_ms=100, max_delay_ms=2000, jitter_ms=50)
    for n in range(1, 20):
        base = min(2000, 100 * 2 ** (n - 1)) / 1000.0
        for _ in range(50):
            d = backoff_delay_s(n, cfg, rng)
            assert base <= d <= base + 0.050, "seed=%d n=%d d=%f" % (seed, n, d)
    no_jitter = RetryConfig(initial_delay_ms=10, max_delay_ms=10_000, jitter_ms=0)
    assert [backoff_delay_s(n, no_jitter) for n in (1, 2, 3, 4)] == [0.01, 0.02, 0.04, 0.08]
    assert backoff_delay_s(1000, no_jitter) == 10.0
