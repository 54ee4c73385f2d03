"""Test helpers: EphemeralServer runs the real norikv-server in memory.

    async with EphemeralServer() as server:
        async with Client([server.address]) as client:
            ...

The binary is found through $NORIKV_SERVER_BIN, then `norikv-server` on PATH,
then <repository>/build/src/server/norikv-server for the repository that holds
the current directory or this package. The server is started with
`--ephemeral` and port 0 for every listener, its `READY grpc=<host:port>
http=<host:port>` line is awaited, and it is stopped with SIGTERM (SIGKILL
after a grace period). Usable as an async or a plain context manager.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections import deque
from types import TracebackType
from typing import Deque, Dict, List, Optional, Sequence, Type

import asyncio

from .config import ClientConfig

__all__ = ["EphemeralServer", "find_server_binary", "ServerNotFoundError", "ServerStartError"]

ENV_VAR = "NORIKV_SERVER_BIN"
BINARY_NAME = "norikv-server"
REPO_RELATIVE = os.path.join("build", "src", "server", BINARY_NAME)

DEFAULT_ARGS = (
    "--ephemeral",
    "--rpc-addr",
    "127.0.0.1:0",
    "--http-addr",
    "127.0.0.1:0",
    "--peer-addr",
    "127.0.0.1:0",
)


class ServerNotFoundError(FileNotFoundError):
    pass


class ServerStartError(RuntimeError):
    pass


def _executable(path: str) -> bool:
    return os.path.isfile(path) and os.access(path, os.X_OK)


def _ancestors(start: str) -> List[str]:
    out: List[str] = []
    d = os.path.abspath(start)
    while True:
        out.append(d)
        parent = os.path.dirname(d)
        if parent == d:
            return out
        d = parent


def find_server_binary(env: Optional[Dict[str, str]] = None) -> Optional[str]:
    """Locate norikv-server, or None. Order: $NORIKV_SERVER_BIN (when it names
    an executable file), PATH, then the repository build directory."""
    environ = os.environ if env is None else env
    explicit = environ.get(ENV_VAR)
    if explicit and _executable(explicit):
        return os.path.abspath(explicit)
    on_path = shutil.which(BINARY_NAME, path=environ.get("PATH"))
    if on_path:
        return on_path
    seen = set()
    for start in (os.getcwd(), os.path.dirname(os.path.abspath(__file__))):
        for d in _ancestors(start):
            if d in seen:
                continue
            seen.add(d)
            cand = os.path.join(d, REPO_RELATIVE)
            if _executable(cand):
                return cand
    return None


def _accepts(addr: str) -> bool:
    host, _, port = addr.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=0.2):
            return True
    except OSError:
        return False


def _describe_search(env: Optional[Dict[str, str]] = None) -> str:
    environ = os.environ if env is None else env
    return "$%s=%r, PATH, and <repo>/%s above %s" % (
        ENV_VAR,
        environ.get(ENV_VAR, ""),
        REPO_RELATIVE,
        os.getcwd(),
    )


class EphemeralServer:
    """A real norikv-server --ephemeral process on free loopback ports."""

    def __init__(
        self,
        binary: Optional[str] = None,
        *,
        args: Sequence[str] = DEFAULT_ARGS,
        extra_args: Sequence[str] = (),
        startup_timeout: float = 30.0,
        stop_timeout: float = 10.0,
        ready_addr: Optional[str] = None,
    ) -> None:
        """args replaces the default flags (--ephemeral and port 0 for every
        listener); extra_args are appended. ready_addr: for a server started
        without --ephemeral, which need not print READY: it counts as ready
        once this gRPC address accepts TCP connections (or READY appears)."""
        self.binary = binary
        self.ready_addr = ready_addr
        self.args = list(args) + list(extra_args)
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self.address: str = ""
        """gRPC client address, host:port (set once started)."""
        self.http_address: str = ""
        self._proc: Optional["subprocess.Popen[bytes]"] = None
        self._stderr_file: Optional["tempfile._TemporaryFileWrapper[bytes]"] = None
        self._lines: Deque[str] = deque(maxlen=200)
        self._ready = threading.Event()
        self._reader: Optional[threading.Thread] = None

    # ---------------------------------------------------------------- info
    @property
    def pid(self) -> Optional[int]:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def nodes(self) -> List[str]:
        return [self.address]

    def client_config(self, **kwargs: object) -> ClientConfig:
        return ClientConfig(nodes=[self.address], **kwargs)  # type: ignore[arg-type]

    def output(self) -> str:
        """Recent stdout lines and the stderr log of the server."""
        err = ""
        if self._stderr_file is not None:
            try:
                with open(self._stderr_file.name, "rb") as f:
                    err = f.read()[-8000:].decode("utf-8", "replace")
            except OSError:
                pass
        return "stdout:\n%s\nstderr:\n%s" % ("\n".join(self._lines), err)

    # ---------------------------------------------------------- lifecycle
    def start(self) -> "EphemeralServer":
        if self._proc is not None:
            raise ServerStartError("server already started")
        binary = self.binary or find_server_binary()
        if binary is None:
            raise ServerNotFoundError("norikv-server not found (looked at %s)" % _describe_search())
        self.binary = binary
        self._stderr_file = tempfile.NamedTemporaryFile(prefix="norikv-server-", suffix=".log", delete=False)
        self._proc = subprocess.Popen(
            [binary, *self.args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._stderr_file,
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._read_stdout, name="norikv-server-stdout", daemon=True)
        self._reader.start()
        deadline = time.monotonic() + self.startup_timeout
        while not self._ready.wait(0.05):
            if self.ready_addr and _accepts(self.ready_addr):
                self.address = self.ready_addr
                self._ready.set()
                break
            if self._proc.poll() is not None:
                self._reader.join(1.0)
                if self._ready.is_set():
                    break
                rc = self._proc.returncode
                out = self.output()
                self._cleanup_files()
                self._proc = None
                raise ServerStartError("%s exited with status %s before READY\n%s" % (binary, rc, out))
            if time.monotonic() > deadline:
                out = self.output()
                self.stop()
                raise ServerStartError(
                    "%s printed no READY line within %.0f s\n%s" % (binary, self.startup_timeout, out)
                )
        return self

    def _read_stdout(self) -> None:
        proc = self._proc
        assert proc is not None and proc.stdout is not None
        for raw in proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            self._lines.append(line)
            if not self._ready.is_set() and line.startswith("READY "):
                fields = dict(part.split("=", 1) for part in line.split()[1:] if "=" in part)
                self.address = fields.get("grpc", "")
                self.http_address = fields.get("http", "")
                if self.address:
                    self._ready.set()

    def signal(self, sig: int) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(sig)

    def kill(self) -> None:
        """SIGKILL the server (crash) and reap it."""
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.kill()
            self._proc.wait()

    def stop(self) -> Optional[int]:
        """SIGTERM, wait up to stop_timeout, then SIGKILL. Returns the exit status."""
        proc = self._proc
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(self.stop_timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._reader is not None:
            self._reader.join(2.0)
        if proc.stdout is not None:
            proc.stdout.close()
        self._cleanup_files()
        return proc.returncode

    def _cleanup_files(self) -> None:
        if self._stderr_file is not None:
            name = self._stderr_file.name
            self._stderr_file.close()
            try:
                os.unlink(name)
            except OSError:
                pass
            self._stderr_file = None

    # ------------------------------------------------------ context managers
    def __enter__(self) -> "EphemeralServer":
        return self.start()

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.stop()

    async def __aenter__(self) -> "EphemeralServer":
        await asyncio.get_running_loop().run_in_executor(None, self.start)
        return self

    async def __aexit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self.stop)
