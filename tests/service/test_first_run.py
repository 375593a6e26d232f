"""A new user's first command on a fresh machine, and what a stopped run leaves behind (nothing).

`openbell demo` runs in its own process with an empty PREFECT_HOME and an empty data folder, as on a
machine that has never run Prefect: its temporary Prefect server creates and migrates a new database
on this first start, which takes longer than Prefect's own 20 s start-up limit on a small machine.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.service.service_support import ROOT, openbell, pid_alive, processes_with_env, quiet_env, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

SERVER_APP = "openbell.prefect_api:create_app"


@pytest.fixture(scope="module")
def fresh_machine(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """An environment whose Prefect home and data folder are empty, with no Prefect API configured."""
    scratch = tmp_path_factory.mktemp("fresh")
    env = quiet_env(scratch / "data", PREFECT_HOME=str(scratch / "prefect-home"))
    for name in [
        n for n in env if n.startswith("PREFECT_") and n not in ("PREFECT_HOME", "PREFECT_SERVER_ANALYTICS_ENABLED")
    ]:
        del env[name]
    return env


def temporary_servers(env: dict[str, str]) -> list[int]:
    """PIDs of the temporary Prefect servers that keep their database in this environment's data folder."""
    prefect_home = str(Path(env["OPENBELL_DATA__DIR"]) / "prefect")
    return [pid for pid in processes_with_env("PREFECT_HOME", prefect_home) if SERVER_APP in _cmdline(pid)]


def test_demo_on_a_fresh_machine_trades_the_day_and_stops_its_server(fresh_machine: dict[str, str]):
    done = openbell("demo", env=fresh_machine, timeout=540)

    assert done.returncode == 0, f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    assert done.stdout.count("openbell report for 2025-03-07") == 1, done.stdout  # printed once, by the CLI
    assert "net P&L $" in done.stdout and "explore it: openbell query" in done.stdout
    assert (Path(fresh_machine["OPENBELL_DATA__DIR"]) / "prefect" / "prefect.db").is_file()
    assert temporary_servers(fresh_machine) == []
    assert "Error logging to API" not in done.stderr  # the logs reached the server before it stopped


@pytest.mark.parametrize("stop", [signal.SIGKILL, signal.SIGTERM], ids=["kill -9", "SIGTERM"])
def test_a_stopped_replay_leaves_no_server_running(fresh_machine: dict[str, str], stop: signal.Signals, tmp_path: Path):
    log = tmp_path / "demo.log"
    with open(log, "wb") as out:
        cli = subprocess.Popen(
            [sys.executable, "-m", "openbell.cli", "demo"], env=fresh_machine, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        (server,) = wait_for(lambda: temporary_servers(fresh_machine), 120, "the temporary Prefect server", 0.1, log)

        cli.send_signal(stop)
        code = cli.wait(timeout=60)

        wait_for(lambda: not pid_alive(server), 30, f"the temporary server (pid {server}) to stop", 0.1, log)
        if stop == signal.SIGTERM:  # cleaned up as after Ctrl-C, and said so
            assert code == 130, log.read_text()
            assert "openbell: interrupted" in log.read_text()
    finally:
        cli.kill()
        cli.wait()
    assert temporary_servers(fresh_machine) == []


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""
