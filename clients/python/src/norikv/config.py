"""Client configuration: ClientConfig and RetryConfig (the seed guide's options)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Sequence

__all__ = ["ClientConfig", "RetryConfig"]


@dataclass
class RetryConfig:
    """Exponential backoff with jitter.

    The delay before retry n (n >= 1) is min(max_delay_ms, initial_delay_ms *
    2**(n-1)) plus a uniform random 0..jitter_ms. A NOT_LEADER answer that names
    the leader is followed at once, without delay; it still counts as an attempt.
    """

    max_attempts: int = 10
    initial_delay_ms: int = 100
    max_delay_ms: int = 5000
    jitter_ms: int = 100

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("RetryConfig.max_attempts must be >= 1, got %r" % self.max_attempts)
        if self.initial_delay_ms < 0 or self.max_delay_ms < 0 or self.jitter_ms < 0:
            raise ValueError("RetryConfig delays must be >= 0")
        if self.max_delay_ms < self.initial_delay_ms:
            raise ValueError(
                "RetryConfig.max_delay_ms (%d) is below initial_delay_ms (%d)"
                % (self.max_delay_ms, self.initial_delay_ms)
            )


def _check_addr(addr: str) -> None:
    host, sep, port = addr.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError("node address must be host:port, got %r" % addr)


@dataclass
class ClientConfig:
    """nodes: seed addresses (host:port of nodes' client gRPC listeners).
    total_shards: must equal the cluster's (checked at connect).
    timeout: per-attempt request deadline in milliseconds.
    max_in_flight: see below."""

    nodes: Sequence[str]
    total_shards: int = 1024
    timeout: int = 5000
    retry: RetryConfig = field(default_factory=RetryConfig)
    max_in_flight: int = 512
    """Bound on this client's requests on the wire at once; further requests
    wait in the client. A gRPC server rejects calls beyond its pending-call
    limit (gRPC core's default is 1000) with CANCELLED, so unbounded fan-out
    (e.g. asyncio.gather of thousands of puts) would fail instead of queueing."""

    def __post_init__(self) -> None:
        if isinstance(self.nodes, str):
            raise ValueError("ClientConfig.nodes must be a list of host:port strings, not one string")
        nodes: List[str] = list(self.nodes)
        if not nodes:
            raise ValueError("ClientConfig.nodes must name at least one node")
        for n in nodes:
            _check_addr(n)
        self.nodes = nodes
        if self.total_shards < 1:
            raise ValueError("ClientConfig.total_shards must be >= 1, got %r" % self.total_shards)
        if self.max_in_flight < 1:
            raise ValueError("ClientConfig.max_in_flight must be >= 1, got %r" % self.max_in_flight)
        if self.timeout <= 0:
            raise ValueError("ClientConfig.timeout must be > 0 milliseconds, got %r" % self.timeout)
