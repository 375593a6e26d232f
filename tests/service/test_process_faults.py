"""What a killed replay leaves behind (nothing), and what `status` and `up` do when half of the service died.

A replay runs in its own process with an empty Prefect home and data folder, its stdout a pipe as in
`openbell replay | tee`; it is stopped with kill -9 or SIGTERM while its temporary Prefect server
still starts (the test holds the server's new SQLite database locked, so the server is provably in
its start-up, where uvicorn ignores a SIGTERM until it has finished), or once the server answers.
Then `openbell up`'s serving process, and its server, are killed with -9 one at a time: `status` warns
in one line, and `up` starts only the missing one.
"""

from __future__ import annotations

import os
import select
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple

import pytest

from tests.service.service_support import (
    ROOT,
    deployments_by_name,
    free_port,
    group_alive,
    kill_group,
    openbell,
    pid_alive,
    processes_with_env,
    quiet_env,
    wait_for,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

SERVER_APP = "openbell.prefect_api:create_app"
SESSION = "2025-03-07"  # the synthetic market's last session
GONE_WITHIN_S = 3.0  # the kernel kills the server with its parent; a SIGTERM'd CLI stops it at once


@pytest.fixture
def fresh_machine(tmp_path: Path) -> dict[str, str]:
    """An environment whose Prefect home and data folder are empty, with no Prefect API configured."""
    env = quiet_env(tmp_path / "data", PREFECT_HOME=str(tmp_path / "prefect-home"))
    for name in [
        n for n in env if n.startswith("PREFECT_") and n not in ("PREFECT_HOME", "PREFECT_SERVER_ANALYTICS_ENABLED")
    ]:
        del env[name]
    env["PREFECT_API_DATABASE_TIMEOUT"] = "120"  # a server waiting for our lock keeps waiting, not fails
    return env


@pytest.fixture
def locked_server_database(fresh_machine: dict[str, str]) -> Iterator[Path]:
    """The temporary server's database, created and held locked: the server's migrations wait for it."""
    path = Path(fresh_machine["OPENBELL_DATA__DIR"]) / "prefect" / "prefect.db"
    path.parent.mkdir(parents=True)
    lock = sqlite3.connect(path, isolation_level=None)
    lock.execute("BEGIN EXCLUSIVE")
    try:
        yield path
    finally:
        lock.close()


@pytest.mark.parametrize("stop", [signal.SIGKILL, signal.SIGTERM], ids=["kill -9", "SIGTERM"])
def test_a_replay_stopped_while_its_server_starts_leaves_no_server(
    fresh_machine: dict[str, str], locked_server_database: Path, stop: signal.Signals
):
    with _replay(fresh_machine) as cli:
        server = _temporary_server(fresh_machine, cli)
        wait_for(lambda: _has_open(server, locked_server_database), 60, "the server to open its database", 0.05)

        stopped = _stop(cli, stop, server)
        output = _read_to_end(cli, GONE_WITHIN_S + 2)

        assert time.monotonic() - stopped < GONE_WITHIN_S + 2  # a `| tee` behind it has ended too
        if stop == signal.SIGTERM:  # cleaned up as after Ctrl-C, and said so
            assert cli.wait(timeout=10) == 130, output
            assert "openbell: interrupted" in output
    assert _server_of(fresh_machine) is None


@pytest.mark.parametrize("stop", [signal.SIGKILL, signal.SIGTERM], ids=["kill -9", "SIGTERM"])
def test_a_replay_stopped_once_its_server_answers_frees_the_port(fresh_machine: dict[str, str], stop: signal.Signals):
    with _replay(fresh_machine) as cli:
        server = _temporary_server(fresh_machine, cli)
        port = _port_of(server)
        wait_for(lambda: _listening(port), 240, f"the temporary server to listen on {port}", 0.1)

        _stop(cli, stop, server)
        output = _read_to_end(cli, GONE_WITHIN_S)

        assert not _listening(port), output
    assert _server_of(fresh_machine) is None


class _replay:
    """`openbell replay` in its own process group, its stdout and stderr one pipe; killed with its server afterwards."""

    def __init__(self, env: dict[str, str]):
        self.env = env

    def __enter__(self) -> subprocess.Popen[bytes]:
        self.cli = subprocess.Popen(
            [sys.executable, "-m", "openbell.cli", "replay", "--date", SESSION], env=self.env, cwd=ROOT, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        return self.cli

    def __exit__(self, *exc: object) -> None:
        if self.cli.poll() is None:
            self.cli.kill()
        self.cli.wait()
        self.cli.stdout.close()
        if (server := _server_of(self.env)) is not None:  # a failed test still leaves nothing running
            os.kill(server, signal.SIGKILL)


def _temporary_server(env: dict[str, str], cli: subprocess.Popen[bytes]) -> int:
    """The PID of the replay's temporary Prefect server, once it has started one."""
    return wait_for(lambda: _server_of(env, cli), 120, "the temporary Prefect server", 0.05)


def _stop(cli: subprocess.Popen[bytes], stop: signal.Signals, server: int) -> float:
    """Send `stop` to the replay and wait until its temporary server is gone; returns when it was sent (monotonic)."""
    cli.send_signal(stop)
    stopped = time.monotonic()
    wait_for(lambda: not pid_alive(server), GONE_WITHIN_S, f"the temporary server (pid {server}) to stop", 0.05)
    return stopped


def _server_of(env: dict[str, str], cli: subprocess.Popen[bytes] | None = None) -> int | None:
    """The PID of the temporary Prefect server keeping its database in this environment's data folder."""
    if cli is not None and cli.poll() is not None:
        raise AssertionError(f"the replay exited with {cli.returncode}: {_read_to_end(cli, 5)[-3000:]}")
    prefect_home = str(Path(env["OPENBELL_DATA__DIR"]) / "prefect")
    found = [pid for pid in processes_with_env("PREFECT_HOME", prefect_home) if SERVER_APP in _cmdline(pid)]
    assert len(found) <= 1, f"more than one temporary server: {found}"
    return found[0] if found else None


def _listening(port: int) -> bool:
    """Whether any process listens on TCP `port` (/proc/net/tcp, state 0A). A bind test would also fail while another
    process's outgoing connection happens to use the number as its local port, which says nothing about the server."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                return True
    return False


def _has_open(pid: int, path: Path) -> bool:
    try:
        return any(os.readlink(f"/proc/{pid}/fd/{fd}") == str(path) for fd in os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return False


def _port_of(pid: int) -> int:
    argv = _cmdline(pid).split()
    return int(argv[argv.index("--port") + 1])


def _read_to_end(cli: subprocess.Popen[bytes], timeout: float) -> str:
    """What the CLI wrote, up to the end of its stdout; fails when some process still holds it open after `timeout`."""
    assert cli.stdout is not None
    chunks = []
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        if select.select([cli.stdout], [], [], left)[0]:
            chunk = os.read(cli.stdout.fileno(), 65536)
            if not chunk:
                return b"".join(chunks).decode(errors="replace")
            chunks.append(chunk)
    raise AssertionError(f"the replay's stdout was still open {timeout:.0f} s after it was stopped")


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


# ------------------------------------------------------------------- half of `openbell up` killed


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict[str, str], int]]:
    """`openbell up` on a free port with a private data folder (env, port); whatever runs is stopped afterwards."""
    data_dir = tmp_path_factory.mktemp("service") / "data"
    port = free_port()
    env = quiet_env(data_dir)
    started: set[int] = set()
    try:
        up = openbell("up", "--port", str(port), env=env)
        started |= set(_recorded_pids(env).values())
        assert up.returncode == 0, f"openbell up failed:\n{up.stdout}\n{up.stderr}"
        yield env, port
    finally:
        started |= set(_recorded_pids(env).values())
        openbell("down", env=env, timeout=60)
        for pid in started:  # nothing of ours outlives the module
            kill_group(pid, grace=5)


def test_a_killed_serving_process_is_warned_about_and_up_restarts_only_it(service: tuple[dict[str, str], int]):
    env, port = service
    before, _, shown, restarted, after, again = _kill_then_status_and_up(env, "serve", port)

    assert "serve    not running" in shown.stdout
    assert _warnings(shown.stdout) == [
        "warning: the serving process is not running: none of the runs below will start; `openbell up` starts it again"
    ]
    assert restarted.returncode == 0, f"{restarted.stdout}\n{restarted.stderr}"
    assert f"the Prefect server runs (pid {before['server']}, 127.0.0.1:{port}): starting only" in restarted.stdout
    assert after["server"] == before["server"] and after["serve"] != before["serve"] and pid_alive(after["serve"])
    assert f"serve    running  pid {after['serve']}" in again.stdout and _warnings(again.stdout) == []


def test_a_killed_server_is_warned_about_and_up_restarts_it_on_the_same_port(service: tuple[dict[str, str], int]):
    env, port = service
    # `up` is given another port: the serving process reports to the old one
    before, killed_at, shown, restarted, after, again = _kill_then_status_and_up(env, "server", free_port())

    assert "server   not running" in shown.stdout
    assert _warnings(shown.stdout) == [
        "warning: the Prefect server is not running: no run can start; `openbell up` starts it again"
    ]
    assert restarted.returncode == 0, f"{restarted.stdout}\n{restarted.stderr}"
    assert f"starting only the Prefect server, on port {port} it reports to" in restarted.stdout
    assert after["server"] != before["server"] and pid_alive(after["server"])
    # Prefect's runner polls the new server again, or, when it gave up while the server was away, is replaced
    assert (after["serve"] == before["serve"]) != ("stopped polling while the server was away" in restarted.stdout)
    assert f"server   running  pid {after['server']}" in again.stdout and _warnings(again.stdout) == []
    polled = [d["last_polled"] for d in deployments_by_name(f"http://127.0.0.1:{port}/api").values()]
    assert all(datetime.fromisoformat(p) > killed_at for p in polled), polled


class _HalfKilled(NamedTuple):
    before: dict[str, int]  # the recorded pids before the kill
    killed_at: datetime
    shown: subprocess.CompletedProcess[str]  # `status` after the kill
    restarted: subprocess.CompletedProcess[str]  # `up` after that
    after: dict[str, int]  # the recorded pids after `up`
    again: subprocess.CompletedProcess[str]  # `status` after `up`


def _kill_then_status_and_up(env: dict[str, str], which: str, port: int) -> _HalfKilled:
    """kill -9 the process group of `which` ("serve" or "server"), then `status`, `up --port port` and `status` again."""
    before = _recorded_pids(env)
    _kill_group_now(before[which])
    killed_at = datetime.now(UTC)

    shown = openbell("status", env=env, timeout=60)
    restarted = openbell("up", "--port", str(port), env=env)
    after = _recorded_pids(env)
    again = openbell("status", env=env, timeout=60)
    return _HalfKilled(before, killed_at, shown, restarted, after, again)


def _recorded_pids(env: dict[str, str]) -> dict[str, int]:
    run = Path(env["OPENBELL_DATA__DIR"]) / "run"
    return {p.stem: int(p.read_text().split()[0]) for p in run.glob("*.pid")}


def _kill_group_now(pgid: int) -> None:
    os.killpg(pgid, signal.SIGKILL)
    wait_for(lambda: not group_alive(pgid), 10, f"process group {pgid} to die", 0.05)


def _warnings(status: str) -> list[str]:
    return [line for line in status.splitlines() if line.startswith("warning:")]
