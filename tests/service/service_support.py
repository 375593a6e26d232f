"""Helpers for the service tests: free ports, the CLI in a subprocess, process groups, the Prefect API."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import httpx

ROOT = Path(__file__).resolve().parents[2]
SCHEDULED = ["scan-and-rank", "place-moo-orders", "monitor-exits", "liquidate-eod", "report-eod"]
DEPLOYMENTS = [*SCHEDULED, "backtest", "sweep", "flatten-now"]  # run on demand: research, and flattening now
T = TypeVar("T")


def free_port() -> int:
    """A loopback port nothing listens on right now (the kernel's pick)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_is_free(port: int) -> bool:
    """Nothing accepts connections on the port, and a server could bind it again."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return False
    except OSError:
        pass
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def quiet_env(data_dir: Path, **extra: str) -> dict[str, str]:
    """This environment with a private data folder, no telemetry, and quick runner polls."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_API_", "OPENBELL_"))}
    env.update(
        OPENBELL_DATA__DIR=str(data_dir),
        DO_NOT_TRACK="1",
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_RUNNER_POLL_FREQUENCY="2",  # the serving process looks for runs every 2 s instead of 10
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


def openbell(*args: str, env: dict[str, str], timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """The openbell CLI in its own process, as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "openbell.cli", *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )


def start_group(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    """Start `cmd` in a session of its own, output to `log`, so the whole group can be stopped."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as out:
        return subprocess.Popen(
            cmd, env=env, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def stop_group(popen: subprocess.Popen, grace: float = 15) -> None:
    """SIGTERM the process group, SIGKILL it after `grace` seconds, and reap the leader."""
    kill_group(popen.pid, grace)
    try:
        popen.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass


def kill_group(pgid: int, grace: float = 15) -> None:
    """Stop every process of group `pgid` (a no-op when none is left)."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and group_alive(pgid):
            time.sleep(0.1)
        if not group_alive(pgid):
            return


def pid_alive(pid: int) -> bool:
    """The process exists and has not exited (a zombie waiting for its parent counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return _state(pid) not in ("Z", "X", None)


def processes_with_env(name: str, value: str) -> list[int]:
    """PIDs of live processes whose environment sets `name` to `value`."""
    wanted = f"{name}={value}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if wanted in environ and pid_alive(int(entry.name)):
            found.append(int(entry.name))
    return found


def group_alive(pgid: int) -> bool:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = _stat_fields(int(entry.name))
            if stat and int(stat[2]) == pgid and stat[0] not in ("Z", "X"):
                return True
    return False


def _state(pid: int) -> str | None:
    fields = _stat_fields(pid)
    return fields[0] if fields else None


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()


def wait_for(probe: Callable[[], T | None], timeout: float, what: str, interval: float = 0.5, log: Path | None = None) -> T:
    """Call `probe` until it returns something truthy; fail with `what` (and `log`'s end) after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = probe()
        except httpx.HTTPError:
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout:.0f} s waiting for {what}" + (f"\n{log_tail(log)}" if log else "")
            )
        time.sleep(interval)


def api_post(api: str, path: str, body: dict) -> list[dict]:
    response = httpx.post(f"{api}{path}", json=body, timeout=10)
    response.raise_for_status()
    return response.json()


def deployments_by_name(api: str) -> dict[str, dict]:
    return {d["name"]: d for d in api_post(api, "/deployments/filter", {})}


def log_tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no log at {path})"
