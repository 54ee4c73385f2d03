"""Error types. Every error the client raises is a NoriKVError with a `.code`:
the gRPC status name for errors from the server (NOT_FOUND, UNAVAILABLE, ...),
or a client-side code (CONFIG_MISMATCH, CLIENT_CLOSED). Mapping per CONTRACT.md:

  NOT_FOUND                          -> KeyNotFoundError
  FAILED_PRECONDITION "version mismatch" -> VersionMismatchError (.current_version from the trailer)
  ALREADY_EXISTS                     -> AlreadyExistsError
  UNAVAILABLE "NOT_LEADER"           -> NotLeaderError (a ConnectionError; .leader_hint)
  UNAVAILABLE, refused connection    -> ConnectionError
  DEADLINE_EXCEEDED                  -> DeadlineExceededError
  INVALID_ARGUMENT                   -> InvalidArgumentError
  RESOURCE_EXHAUSTED                 -> ResourceExhaustedError
  anything else                      -> NoriKVError
"""

from __future__ import annotations

from typing import Any, Iterable, Optional

from .types import Version

__all__ = [
    "NoriKVError",
    "KeyNotFoundError",
    "VersionMismatchError",
    "AlreadyExistsError",
    "ConnectionError",
    "NotLeaderError",
    "DeadlineExceededError",
    "InvalidArgumentError",
    "ResourceExhaustedError",
    "ConfigurationError",
    "ClientClosedError",
    "error_from_status",
    "LEADER_HINT_KEY",
    "CURRENT_VERSION_KEY",
]

LEADER_HINT_KEY = "leader-hint"
CURRENT_VERSION_KEY = "current-version"

# gRPC metadata: (key, value) pairs, value str or bytes.
Trailers = Iterable[Any]


class NoriKVError(Exception):
    """Base of every error the client raises."""

    code: str

    def __init__(self, message: str, code: str = "UNKNOWN") -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return self.message


class KeyNotFoundError(NoriKVError):
    def __init__(self, message: str = "key not found") -> None:
        super().__init__(message, "NOT_FOUND")


class VersionMismatchError(NoriKVError):
    """A CAS (if_match_version) did not match; current_version is the key's
    version when it exists (None when the key is missing)."""

    def __init__(self, message: str = "version mismatch", current_version: Optional[Version] = None) -> None:
        super().__init__(message, "FAILED_PRECONDITION")
        self.current_version = current_version


class AlreadyExistsError(NoriKVError):
    def __init__(self, message: str = "already exists") -> None:
        super().__init__(message, "ALREADY_EXISTS")


class BatchNotAppliedError(NoriKVError):
    """A batch's condition failed, so none of its operations was applied.
    result holds every op's outcome (which failed: FAILED_PRECONDITION or
    ALREADY_EXISTS; the rest ABORTED). code is the first failure's."""

    def __init__(self, message: str, code: str, result: "object") -> None:
        super().__init__(message, code)
        self.result = result


class ConnectionError(NoriKVError):  # noqa: A001 - the guide's name
    """No node could serve the request (unreachable, no leader, shutting down)."""

    def __init__(self, message: str, code: str = "UNAVAILABLE") -> None:
        super().__init__(message, code)


class NotLeaderError(ConnectionError):
    """The node called does not lead the key's shard; raised only once retries
    are exhausted (the client follows leader hints itself)."""

    def __init__(self, message: str, leader_hint: Optional[str] = None) -> None:
        super().__init__(message, "UNAVAILABLE")
        self.leader_hint = leader_hint


class DeadlineExceededError(NoriKVError):
    """The request did not complete within the timeout; a write may or may not
    have been applied."""

    def __init__(self, message: str) -> None:
        super().__init__(message, "DEADLINE_EXCEEDED")


class InvalidArgumentError(NoriKVError):
    def __init__(self, message: str) -> None:
        super().__init__(message, "INVALID_ARGUMENT")


class ResourceExhaustedError(NoriKVError):
    def __init__(self, message: str) -> None:
        super().__init__(message, "RESOURCE_EXHAUSTED")


class ConfigurationError(NoriKVError):
    """The client's configuration does not fit the cluster (e.g. total_shards)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, "CONFIG_MISMATCH")


class ClientClosedError(NoriKVError):
    def __init__(self, message: str = "client is not connected (call connect() or use 'async with')") -> None:
        super().__init__(message, "CLIENT_CLOSED")


def trailer_value(trailers: Optional[Trailers], key: str) -> Optional[str]:
    if not trailers:
        return None
    for item in trailers:
        k, v = item[0], item[1]
        if isinstance(k, str) and k.lower() == key:
            return v.decode("utf-8", "replace") if isinstance(v, bytes) else v
    return None


def error_from_status(code_name: str, details: str, trailers: Optional[Trailers] = None) -> NoriKVError:
    """Map a gRPC status (by its name, e.g. "NOT_FOUND") to the SDK's error type."""
    details = details or ""
    msg = details if details else code_name.lower().replace("_", " ")
    if code_name == "NOT_FOUND":
        return KeyNotFoundError(details or "key not found")
    if code_name == "FAILED_PRECONDITION":
        if details.lower().startswith("version mismatch"):
            cur: Optional[Version] = None
            raw = trailer_value(trailers, CURRENT_VERSION_KEY)
            if raw:
                try:
                    cur = Version.parse(raw)
                except ValueError:
                    cur = None
            return VersionMismatchError(details, cur)
        return NoriKVError(msg, code_name)
    if code_name == "ALREADY_EXISTS":
        return AlreadyExistsError(details or "already exists")
    if code_name == "UNAVAILABLE":
        if "NOT_LEADER" in details:
            return NotLeaderError(details, trailer_value(trailers, LEADER_HINT_KEY) or None)
        return ConnectionError(msg)
    if code_name == "DEADLINE_EXCEEDED":
        return DeadlineExceededError(msg)
    if code_name == "INVALID_ARGUMENT":
        return InvalidArgumentError(msg)
    if code_name == "RESOURCE_EXHAUSTED":
        return ResourceExhaustedError(msg)
    return NoriKVError(msg, code_name)
