"""PID files name their process exactly: a PID reused by another program is never reported, refused or signalled."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from openbell import service
from openbell.cli import main
from tests.service.service_support import pid_alive, wait_for

# An unrelated program whose command line mentions prefect, the server's app and serve.py.
IMPOSTOR = [sys.executable, "-c", "import time; time.sleep(60)", "prefect", "openbell.prefect_api:create_app", "serve.py"]


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "data"
    monkeypatch.setenv("OPENBELL_DATA__DIR", str(folder))
    return folder


@pytest.fixture
def impostor() -> Iterator[subprocess.Popen]:
    other = subprocess.Popen(IMPOSTOR, start_new_session=True)
    try:
        yield other
    finally:
        other.kill()
        other.wait()


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _write_pid_files(data_dir: Path, pid: int, identity: service.ProcessIdentity | None = None) -> None:
    """Both PID files naming `pid`: as an earlier openbell wrote them (the PID alone), or with an identity."""
    run = data_dir / "run"
    run.mkdir(parents=True, exist_ok=True)
    for name in ("server", "serve"):
        (run / f"{name}.pid").write_text(f"{pid}\n" + (f"{identity.to_json()}\n" if identity else ""))


def test_a_pid_file_of_an_earlier_openbell_naming_a_program_that_mentions_prefect_is_not_trusted(
    data_dir: Path, impostor: subprocess.Popen, capsys
):
    _write_pid_files(data_dir, impostor.pid)
    code, out, _ = _run(capsys, "status")
    assert code == 0
    assert "server   not running" in out and "serve    not running" in out

    _write_pid_files(data_dir, impostor.pid)
    assert _run(capsys, "down")[:2] == (0, "openbell: nothing to stop: openbell is not running\n")

    _write_pid_files(data_dir, impostor.pid)
    with socket.socket() as taken:  # up gets past "already running" and stops at the port, before starting anything
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        code, _, err = _run(capsys, "up", "--port", str(taken.getsockname()[1]))
    assert code == 2 and "already running" not in err and "is in use by another program" in err

    assert impostor.poll() is None  # never signalled


def test_a_reused_pid_running_the_same_command_is_not_trusted(data_dir: Path, capsys):
    earlier = subprocess.Popen(IMPOSTOR, start_new_session=True)
    recorded = service.ProcessIdentity.of(earlier.pid)  # what `up` wrote when it started that process
    earlier.kill()
    earlier.wait()
    time.sleep(0.05)  # a PID is reused long after its process started: at least a clock tick (10 ms) later
    later = subprocess.Popen(IMPOSTOR, start_new_session=True)  # the same program and arguments, started later
    try:
        assert recorded is not None
        _write_pid_files(data_dir, later.pid, recorded)  # as if `later` had been given the recorded PID

        code, out, _ = _run(capsys, "status")
        _write_pid_files(data_dir, later.pid, recorded)
        stopped = _run(capsys, "down")

        assert code == 0 and "server   not running" in out and "serve    not running" in out
        assert stopped[:2] == (0, "openbell: nothing to stop: openbell is not running\n")
        assert later.poll() is None
    finally:
        later.kill()
        later.wait()


def test_the_process_a_pid_file_names_exactly_is_reported_and_stopped(data_dir: Path, impostor: subprocess.Popen, capsys):
    identity = service.ProcessIdentity.of(impostor.pid)
    assert identity is not None and identity.argv == tuple(IMPOSTOR)
    _write_pid_files(data_dir, impostor.pid, identity)

    code, out, _ = _run(capsys, "status")
    stopped = _run(capsys, "down")

    assert code == 0 and f"server   running  pid {impostor.pid}" in out
    assert stopped[0] == 0 and f"stopped the serving process (pid {impostor.pid})" in stopped[1]
    wait_for(lambda: impostor.poll() is not None and not pid_alive(impostor.pid), 5, "the recorded process to stop", 0.05)
    assert not list((data_dir / "run").glob("*.pid"))


def test_the_identity_recorded_at_start_is_the_started_program_even_on_a_loaded_machine():
    """Popen returns before the kernel has set up the new program's arguments: on a busy machine an
    identity read at once held empty arguments (17 to 34 of 400 starts here) and `up` disowned its process."""
    spinners = [subprocess.Popen(["sh", "-c", "while :; do :; done"], start_new_session=True) for _ in range(4)]
    cmd = [sys.executable, "-c", "import time; time.sleep(30)", "openbell-identity-test"]
    started: list[subprocess.Popen] = []
    try:
        for _ in range(300):
            child = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, start_new_session=True)
            started.append(child)
            identity = service._identity_once_exec_completes(child.pid, cmd)
            assert identity is not None and identity.argv == tuple(cmd)
            child.kill()
    finally:
        for process in spinners + started:
            process.kill()
            process.wait()
