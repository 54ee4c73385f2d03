"""Shared fixtures. `server` is one real norikv-server --ephemeral per test
module (found as norikv.testing describes); tests that use it skip, naming
what was looked for, only when no binary exists."""

from __future__ import annotations

import os
import uuid
from typing import Iterator

# Keep gRPC's C core quiet about expected disconnects (before grpc is imported).
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

import pytest  # noqa: E402

from norikv.testing import EphemeralServer, find_server_binary  # noqa: E402

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
HASH_VECTORS = os.path.join(REPO_ROOT, "testdata", "hash-vectors.json")


def server_binary_or_skip() -> str:
    binary = find_server_binary()
    if binary is None:
        pytest.skip(
            "norikv-server binary not found (NORIKV_SERVER_BIN=%r, PATH, <repo>/build/src/server/norikv-server); "
            "these tests run against the real server once it is built" % os.environ.get("NORIKV_SERVER_BIN", "")
        )
    return binary


@pytest.fixture(scope="module")
def server() -> Iterator[EphemeralServer]:
    binary = server_binary_or_skip()
    with EphemeralServer(binary) as srv:
        yield srv


@pytest.fixture
def key_prefix() -> str:
    """A prefix that makes a test's keys unique on a shared server."""
    return "t-%s:" % uuid.uuid4().hex[:12]
