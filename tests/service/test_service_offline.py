"""`openbell up`, `status` and `down` where no server is needed: refusals, stale PID files, the calendar."""

from __future__ import annotations

import socket
import subprocess
import sys
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from openbell import service
from openbell.cli import main
from openbell.config import load_settings

NY = ZoneInfo("America/New_York")


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "data"
    monkeypatch.setenv("OPENBELL_DATA__DIR", str(folder))
    return folder


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _write_pid(data_dir: Path, name: str, pid: int) -> Path:
    path = data_dir / "run" / f"{name}.pid"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{pid}\n")
    return path


def test_up_refuses_a_port_another_program_listens_on(data_dir: Path, capsys):
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]

        code, _, err = _run(capsys, "up", "--port", str(port))

    assert code == 2
    assert err.strip() == f"openbell: port {port} on 127.0.0.1 is in use by another program; choose another with --port"
    assert not list(data_dir.glob("run/*.pid"))


def test_stale_pid_files_are_removed_and_nothing_is_stopped(data_dir: Path, capsys):
    files = [_write_pid(data_dir, "server", _dead_pid()), _write_pid(data_dir, "serve", _dead_pid())]

    code, out, _ = _run(capsys, "status")

    assert code == 0
    assert "server   not running" in out and "serve    not running" in out
    assert not any(f.exists() for f in files)
    assert _run(capsys, "down")[:2] == (0, "openbell: nothing to stop: openbell is not running\n")


def test_a_pid_file_naming_another_program_is_never_signalled(data_dir: Path, capsys):
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])  # not a Prefect server
    try:
        _write_pid(data_dir, "server", other.pid)

        code, out, _ = _run(capsys, "down")

        assert (code, out) == (0, "openbell: nothing to stop: openbell is not running\n")
        assert other.poll() is None
    finally:
        other.kill()
        other.wait()


@pytest.mark.parametrize(
    ("day", "text"),
    [
        (date(2025, 3, 7), "a session: the market is open 09:30-16:00"),
        (date(2025, 11, 28), "a half day: the market closes early at 13:00"),
        (date(2025, 12, 25), "a holiday (Christmas): the exchange is closed"),
        (date(2025, 3, 8), "a weekend: the exchange is closed"),
    ],
)
def test_status_says_what_kind_of_day_it_is(day: date, text: str):
    assert service.describe_day(day) == text


def test_status_without_a_server_shows_when_each_phase_next_acts(data_dir: Path):
    before_thanksgiving = datetime(2025, 11, 26, 12, 0, tzinfo=NY)  # Thursday is a holiday, Friday a half day

    text = service.render_status(service.status(load_settings(), before_thanksgiving))

    rows = {
        line.split()[0]: line
        for line in text.splitlines()
        if line.startswith(tuple(service.deployment_names(load_settings())))
    }
    assert "server   not running" in text and "UI       none (start it with `openbell up`)" in text
    assert "today Wed 2025-11-26 (New York) is a session" in text
    assert rows["scan-and-rank"].endswith("- (server not running)        Fri 2025-11-28 08:00 EST")
    assert rows["liquidate-eod"].endswith("Wed 2025-11-26 15:45 EST")
    assert rows["report-eod"].endswith("Wed 2025-11-26 16:15 EST")


def test_after_the_close_on_a_half_day_liquidation_next_acts_at_the_full_day_time(data_dir: Path):
    half_day_afternoon = datetime(2025, 11, 28, 14, 0, tzinfo=NY)

    status = service.status(load_settings(), half_day_afternoon)

    acts = {d.name: d.acts for d in status.deployments}
    assert status.today_text == "a half day: the market closes early at 13:00"
    assert acts["liquidate-eod"] == datetime(2025, 12, 1, 15, 45, tzinfo=NY)
    assert acts["scan-and-rank"] == datetime(2025, 12, 1, 8, 0, tzinfo=NY)


def _dead_pid() -> int:
    """The PID of a process that has exited and been reaped."""
    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait()
    return finished.pid
