"""When a failed attempt may be retried (CONTRACT.md, Errors), and how long to wait.

Three kinds of failure:
  * NOT_EXECUTED: the request certainly did not execute: NOT_LEADER, or the
    connection could not be made. Always safe to retry.
  * UNKNOWN_OUTCOME: a write may have reached a leader: deadline exceeded,
    connection lost mid-call, other UNAVAILABLE answers (no quorum, shutting
    down), ABORTED, RESOURCE_EXHAUSTED, CANCELLED by the server. Reads are
    retried; a write is retried
    only when it carries an idempotency key or is an unconditional Put or
    Delete (no if_match_version, no if_not_exists), whose repetition is harmless.
  * PERMANENT: every other status (INVALID_ARGUMENT, NOT_FOUND,
    FAILED_PRECONDITION, ALREADY_EXISTS, ...): never retried.
"""

from __future__ import annotations

import enum
import random
from typing import Optional

from .config import RetryConfig

__all__ = ["FailureKind", "classify", "should_retry", "backoff_delay_s", "is_connect_failure"]


class FailureKind(enum.Enum):
    NOT_EXECUTED = "not_executed"
    UNKNOWN_OUTCOME = "unknown_outcome"
    PERMANENT = "permanent"


# Texts with which gRPC reports that no connection could be made, i.e. the
# request was never sent. Checked case-insensitively against the status details.
_CONNECT_FAILURE_MARKERS = (
    "failed to connect to all addresses",
    "connection refused",
    "dns resolution failed",
    "name resolution failure",
    "failed to pick subchannel",
    "no address added out of total",
    "empty address list",
)


def is_connect_failure(code_name: str, details: str) -> bool:
    if code_name != "UNAVAILABLE":
        return False
    d = (details or "").lower()
    return any(m in d for m in _CONNECT_FAILURE_MARKERS)


def classify(code_name: str, details: str) -> FailureKind:
    """Classify a failed attempt by its gRPC status name and details."""
    if code_name == "UNAVAILABLE":
        if "NOT_LEADER" in (details or "") or is_connect_failure(code_name, details):
            return FailureKind.NOT_EXECUTED
        return FailureKind.UNKNOWN_OUTCOME
    # CANCELLED reaches us only from the other side (our own cancellation
    # raises asyncio.CancelledError instead): e.g. a gRPC server over its
    # pending-call limit, or a proxy. Whether the call ran is unknown.
    if code_name in ("DEADLINE_EXCEEDED", "ABORTED", "RESOURCE_EXHAUSTED", "CANCELLED"):
        return FailureKind.UNKNOWN_OUTCOME
    return FailureKind.PERMANENT


def should_retry(kind: FailureKind, repeat_safe: bool) -> bool:
    """repeat_safe: the operation is a read, carries an idempotency key, or is an
    unconditional Put/Delete."""
    if kind is FailureKind.NOT_EXECUTED:
        return True
    if kind is FailureKind.UNKNOWN_OUTCOME:
        return repeat_safe
    return False


def backoff_delay_s(retry_number: int, cfg: RetryConfig, rng: Optional[random.Random] = None) -> float:
    """Seconds to wait before retry number retry_number (1 = the first retry)."""
    if retry_number < 1:
        retry_number = 1
    exp = min(retry_number - 1, 30)  # 2**30 * any delay is past max_delay_ms
    base = min(cfg.max_delay_ms, cfg.initial_delay_ms * (1 << exp))
    jitter = (rng or random).uniform(0, cfg.jitter_ms) if cfg.jitter_ms > 0 else 0.0
    return (base + jitter) / 1000.0
