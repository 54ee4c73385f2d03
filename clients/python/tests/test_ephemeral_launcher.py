"""EphemeralServer's process handling, checked with small shell scripts that
stand in for the binary's start-up protocol only (print READY, exit early,
never get ready). These prove the launcher: binary lookup order, READY line
parsing, SIGTERM stop, clear errors. The server itself is exercised by the
integration tests."""

from __future__ import annotations

import os
import signal
import stat
import time
from pathlib import Path

import pytest

from norikv.testing import EphemeralServer, ServerStartError, find_server_binary


def script(path: Path, body: str) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return str(path)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


READY_SCRIPT = """
echo "$@" > "$(dirname "$0")/args"
trap 'echo stopping; exit 0' TERM
echo "starting"
echo "READY grpc=127.0.0.1:45678 http=127.0.0.1:45679"
while :; do sleep 0.05; done
"""


def test_lookup_prefers_env_then_path_then_repository_build_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env_bin = script(tmp_path / "env" / "my-server", "exit 0\n")
    path_bin = script(tmp_path / "bin" / "norikv-server", "exit 0\n")
    repo_bin = script(tmp_path / "repo" / "build" / "src" / "server" / "norikv-server", "exit 0\n")
    (tmp_path / "repo" / "sub" / "dir").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "repo" / "sub" / "dir")
    base = {"PATH": str(tmp_path / "bin")}
    assert find_server_binary({**base, "NORIKV_SERVER_BIN": env_bin}) == env_bin
    # A NORIKV_SERVER_BIN that does not exist (yet) falls through to PATH.
    assert find_server_binary({**base, "NORIKV_SERVER_BIN": str(tmp_path / "missing")}) == path_bin
    assert find_server_binary({"PATH": str(tmp_path / "empty")}) == repo_bin


def test_ready_line_gives_addresses_and_sigterm_stops_the_process(tmp_path: Path) -> None:
    binary = script(tmp_path / "srv", READY_SCRIPT)
    srv = EphemeralServer(binary, startup_timeout=10)
    with srv:
        assert srv.address == "127.0.0.1:45678" and srv.http_address == "127.0.0.1:45679"
        assert srv.nodes == ["127.0.0.1:45678"]
        assert srv.client_config().nodes == ["127.0.0.1:45678"]
        pid = srv.pid
        assert pid is not None and srv.running
        args = (tmp_path / "args").read_text().split()
        assert args[0] == "--ephemeral" and "--rpc-addr" in args and "127.0.0.1:0" in args
    assert not alive(pid)
    assert not srv.running


async def test_async_context_manager_starts_and_stops(tmp_path: Path) -> None:
    binary = script(tmp_path / "srv", READY_SCRIPT)
    async with EphemeralServer(binary) as srv:
        pid = srv.pid
        assert pid is not None and alive(pid)
    assert pid is not None and not alive(pid)


def test_exit_before_ready_reports_status_and_stderr(tmp_path: Path) -> None:
    binary = script(tmp_path / "srv", 'echo "rpc_addr 127.0.0.1:9001: address in use" >&2\nexit 3\n')
    with pytest.raises(ServerStartError) as ei:
        EphemeralServer(binary, startup_timeout=10).start()
    msg = str(ei.value)
    assert "status 3" in msg and "address in use" in msg


def test_no_ready_line_times_out_and_the_process_is_stopped(tmp_path: Path) -> None:
    binary = script(tmp_path / "srv", "echo $$ > \"$(dirname \"$0\")/pid\"\nwhile :; do sleep 0.05; done\n")
    t0 = time.monotonic()
    with pytest.raises(ServerStartError) as ei:
        EphemeralServer(binary, startup_timeout=0.5, stop_timeout=1).start()
    assert "no READY line" in str(ei.value)
    pid = int((tmp_path / "pid").read_text())
    assert not alive(pid)
    assert time.monotonic() - t0 < 30


def test_stop_escalates_to_sigkill_when_sigterm_is_ignored(tmp_path: Path) -> None:
    binary = script(tmp_path / "srv", "trap '' TERM\necho 'READY grpc=127.0.0.1:1 http=127.0.0.1:2'\nwhile :; do sleep 0.05; done\n")
    srv = EphemeralServer(binary, stop_timeout=0.5).start()
    pid = srv.pid
    assert srv.stop() == -signal.SIGKILL
    assert pid is not None and not alive(pid)
