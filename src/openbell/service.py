"""Run openbell as a local service: a Prefect server and the process that serves the deployments.

    openbell up      start both in the background and wait until the deployments are served; when
                     one of them still runs, start only what is missing
    openbell status  what runs, each deployment's next run, and whether today is a session; one
                     warning line when half of the service is missing or the serving process stopped
                     polling (no scheduled run would start)
    openbell down    stop them: the serving process first (it pauses its deployments through the
                     API on the way out), then the server

Everything lives in the data folder: the server's SQLite database in `<data dir>/prefect`, the
logs in `<data dir>/logs`, the PIDs (and the server's port) in `<data dir>/run`. Both processes
start in a session of their own, so they outlive the CLI and each is stopped as a process group:
the flow runs the serving process starts are its children and go with it.

A PID file names its process exactly: the PID, then the process's start time (clock ticks since this
boot), the executable and the arguments read from /proc when it started. A PID reused by another
program, even one whose command line mentions prefect, is never reported, refused or signalled.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import httpx

import openbell
from openbell import calendar
from openbell.config import Settings
from openbell.errors import OpenbellError
from openbell.prefect_api import HOST, last_line, port_is_free, server_command
from openbell.processes import alive, proc_stat, stat_fields
from openbell.schedule import ON_DEMAND, next_runs, phase_schedules

DEFAULT_PORT = 4200
SERVER_START_TIMEOUT_S = 60.0
DEPLOYMENTS_TIMEOUT_S = 90.0  # the serving process imports the flows, then registers five deployments
SCHEDULED_RUNS_WAIT_S = 10.0  # the server plans a new deployment's runs within a few seconds
STOP_TIMEOUT_S = 15.0
API_TIMEOUT_S = 5.0
POLL_S = 10.0  # how often Prefect's runner polls for scheduled runs, unless PREFECT_RUNNER_POLL_FREQUENCY says otherwise


class ServiceError(OpenbellError):
    """The service could not start, is already running, or its API did not answer; the message says why."""


@dataclass(frozen=True, slots=True)
class ServiceFiles:
    """Where the service keeps its state, all under the data folder (an absolute path)."""

    data_dir: Path

    @classmethod
    def of(cls, settings: Settings) -> ServiceFiles:
        return cls(settings.data.dir.resolve())

    @property
    def prefect_home(self) -> Path:
        return self.data_dir / "prefect"

    @property
    def logs(self) -> Path:
        return self.data_dir / "logs"

    @property
    def run(self) -> Path:
        return self.data_dir / "run"

    @property
    def port_file(self) -> Path:
        return self.run / "server.port"


@dataclass(frozen=True, slots=True)
class ServiceProcess:
    """One of the two background processes: its name, PID file and log."""

    name: str  # "server" or "serve", also the stem of its PID file and log
    label: str

    def pid_file(self, files: ServiceFiles) -> Path:
        return files.run / f"{self.name}.pid"

    def log(self, files: ServiceFiles) -> Path:
        return files.logs / f"{self.name}.log"


SERVER = ServiceProcess("server", "the Prefect server")
SERVE = ServiceProcess("serve", "the serving process")


@dataclass(frozen=True, slots=True)
class ProcessIdentity:
    """What tells a process from a later one given the same PID: when it started, its program and arguments."""

    boot: str  # /proc/sys/kernel/random/boot_id: start times count from this boot
    start: int  # field 22 of /proc/<pid>/stat, clock ticks after boot
    exe: str
    argv: tuple[str, ...]

    @classmethod
    def of(cls, pid: int) -> ProcessIdentity | None:
        """The identity of a running process, or None without /proc (macOS) or once it is gone."""
        try:
            boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
            stat = stat_fields(pid)
            exe = os.readlink(f"/proc/{pid}/exe")
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[:-1]
        except OSError:
            return None
        if stat is None:
            return None
        return cls(boot, int(stat[19]), exe, tuple(a.decode(errors="surrogateescape") for a in argv))

    def to_json(self) -> str:
        return json.dumps({"boot": self.boot, "start": self.start, "exe": self.exe, "argv": list(self.argv)})

    @classmethod
    def from_json(cls, text: str) -> ProcessIdentity:
        fields = json.loads(text)
        return cls(str(fields["boot"]), int(fields["start"]), str(fields["exe"]), tuple(map(str, fields["argv"])))


@dataclass(frozen=True, slots=True)
class DeploymentStatus:
    name: str
    scheduled: datetime | None  # the earliest scheduled flow run in Prefect (New York), None when unknown
    scheduled_state: str | None  # that run's state name: "Scheduled", or "Late" when nobody picked it up
    acts: datetime | None  # when the phase next really acts, from the exchange calendar
    paused: bool | None  # None when the server does not run or does not know the deployment


@dataclass(frozen=True, slots=True)
class ServiceStatus:
    data_dir: Path
    server_pid: int | None
    serve_pid: int | None
    port: int | None
    deployments: list[DeploymentStatus]
    today: date
    today_text: str
    api_problem: str | None  # why the Prefect column is empty although the server runs
    serve_stopped_polling: bool = False  # the server marks every deployment not ready: nobody polls for runs

    @property
    def ui_url(self) -> str | None:
        return f"http://{HOST}:{self.port}" if self.server_pid and self.port else None

    @property
    def warning(self) -> str | None:
        """One line when the service cannot start scheduled runs although part of it runs; None when it can."""
        if self.server_pid and not self.serve_pid:
            return "the serving process is not running: none of the runs below will start; `openbell up` starts it again"
        if self.serve_pid and not self.server_pid:
            return "the Prefect server is not running: no run can start; `openbell up` starts it again"
        if self.serve_pid and self.serve_stopped_polling:
            return (
                f"the serving process (pid {self.serve_pid}) no longer polls the server: none of the runs below "
                "will start; `openbell up` replaces it"
            )
        return None


def project_root() -> Path:
    """The folder holding deployments/ and flows/ (src layout: two levels above the package)."""
    return Path(openbell.__file__).resolve().parents[2]


def deployment_names(settings: Settings) -> list[str]:
    """Every deployment served: the phases of the day on their schedules, then the research ones run on demand."""
    return [*scheduled_names(settings), *ON_DEMAND]


def scheduled_names(settings: Settings) -> list[str]:
    return [phase.deployment for phase in phase_schedules(settings)]


# ---------------------------------------------------------------------------------------------- up


def up(settings: Settings, port: int = DEFAULT_PORT, say: Callable[[str], None] = print) -> list[str]:
    """Start what is missing of the server and the serving process, in the background; returns the deployments served.

    A server still running is kept and the serving process started against it. A serving process still
    running is kept when it polls the restarted server (on the port it reports to), and replaced when it
    does not within a poll and a half: Prefect's runner stops polling for good after three failed polls.
    Both running, the serving process still polling: nothing to start, and a ServiceError says so.

    Raises:
        ServiceError: already running, the port is taken, deployments/serve.py is missing, or a
            process did not come up in time (the message names its log). Whatever this call
            started is stopped again before it raises.
    """
    files = ServiceFiles.of(settings)
    names = deployment_names(settings)
    server_pid, serve_pid = _running_pid(SERVER, files), _running_pid(SERVE, files)
    recorded = _recorded_port(files)
    if server_pid and serve_pid:
        if recorded is None or not _stopped_polling_quietly(api_url(recorded), names):
            raise ServiceError(
                f"already running: {SERVER.label} (pid {server_pid}) and {SERVE.label} (pid {serve_pid}); "
                "`openbell status` shows it, `openbell down` stops it"
            )
        say(f"{SERVE.label} (pid {serve_pid}) no longer polls the server: replacing it")
        _stop_and_forget(SERVE, serve_pid, files)
        serve_pid = None
    serve_script = Path(_serve_command()[1])
    if not serve_script.is_file():
        raise ServiceError(
            f"{serve_script} is missing: `openbell up` serves the deployments defined there (run it from a checkout)"
        )
    if (server_pid or serve_pid) and recorded is None:
        running = f"{SERVER.label} (pid {server_pid})" if server_pid else f"{SERVE.label} (pid {serve_pid})"
        raise ServiceError(
            f"{running} runs, but {files.port_file} is missing, so its port is unknown; "
            "`openbell down` stops it, then `openbell up` starts both"
        )
    port = recorded if (server_pid or serve_pid) and recorded else port
    if not server_pid and not port_is_free(port):
        raise ServiceError(f"port {port} on {HOST} is in use by another program; choose another with --port")

    for folder in (files.prefect_home, files.logs, files.run):
        folder.mkdir(parents=True, exist_ok=True)
    api = api_url(port)
    env = _child_env(settings, files, api)
    started: list[tuple[ServiceProcess, subprocess.Popen]] = []
    try:
        if server_pid:
            say(f"{SERVER.label} runs (pid {server_pid}, {HOST}:{port}): starting only {SERVE.label}")
            if not _wait_until_quietly(lambda: _healthy(api), SERVER_START_TIMEOUT_S):
                raise ServiceError(
                    f"{SERVER.label} (pid {server_pid}) runs but its API at {api} does not answer; see {SERVER.log(files)}"
                )
        else:
            if serve_pid:
                say(f"{SERVE.label} runs (pid {serve_pid}): starting only {SERVER.label}, on port {port} it reports to")
            say(f"starting the Prefect server on {HOST}:{port} (log {SERVER.log(files)})")
            since = datetime.now(UTC)
            server = _start(SERVER, server_command(port), {**env, "PREFECT__SERVER_FINAL": "1"}, files)
            started.append((SERVER, server))
            files.port_file.write_text(f"{port}\n")
            _wait_until(lambda: _healthy(api), SERVER_START_TIMEOUT_S, SERVER, server, files)
            if serve_pid and not _wait_until_quietly(lambda: _polled_since(api, names, since), 1.5 * _poll_s() + 2):
                say(f"{SERVE.label} (pid {serve_pid}) stopped polling while the server was away: replacing it")
                _stop_and_forget(SERVE, serve_pid, files)
                serve_pid = None

        if not serve_pid:
            say(f"serving the deployments of {serve_script.relative_to(project_root())} (log {SERVE.log(files)})")
            since = datetime.now(UTC)
            serve = _start(SERVE, _serve_command(), env, files)
            started.append((SERVE, serve))
            _wait_until(
                lambda: _polled_since(api, names, since), DEPLOYMENTS_TIMEOUT_S, SERVE, serve, files,
                what="registered its deployments and polled for their runs",
            )  # fmt: skip
        _wait_until_quietly(lambda: _all_planned(api, scheduled_names(settings)), SCHEDULED_RUNS_WAIT_S)
    except BaseException:
        for process, popen in reversed(started):
            with contextlib.suppress(ServiceError):  # the reason up failed matters more than a stubborn process
                _stop_group(popen.pid, reap=popen)
                process.pid_file(files).unlink(missing_ok=True)
        if any(process is SERVER for process, _ in started):
            files.port_file.unlink(missing_ok=True)
        raise
    return names


def _start(process: ServiceProcess, cmd: list[str], env: dict[str, str], files: ServiceFiles) -> subprocess.Popen:
    """Start `cmd` in a session of its own and record it, exactly, in its PID file."""
    with open(process.log(files), "wb") as log:  # the child keeps its own copy of the descriptor
        popen = subprocess.Popen(
            cmd, cwd=project_root(), env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    identity = _identity_once_exec_completes(popen.pid, cmd)
    process.pid_file(files).write_text(f"{popen.pid}\n" + (f"{identity.to_json()}\n" if identity else ""))
    return popen


def _identity_once_exec_completes(pid: int, cmd: list[str], timeout_s: float = 5.0) -> ProcessIdentity | None:
    """The child's identity once /proc shows `cmd` as its arguments.

    Popen returns when the exec closes the child's close-on-exec pipe, which the kernel does before it
    has set up the new program's arguments: read at once, on a loaded machine, /proc/<pid>/cmdline can
    still be empty. An identity recorded then would never match again, and the service would disown
    its own process.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        identity = ProcessIdentity.of(pid)
        if identity is None or list(identity.argv) == cmd:
            return identity
        if time.monotonic() > deadline:
            return None
        time.sleep(0.01)


def _serve_command() -> list[str]:
    return [sys.executable, str(project_root() / "deployments" / "serve.py")]


def _stop_and_forget(process: ServiceProcess, pid: int, files: ServiceFiles) -> None:
    _stop_group(pid)
    process.pid_file(files).unlink(missing_ok=True)


def _poll_s() -> float:
    try:
        return float(os.environ.get("PREFECT_RUNNER_POLL_FREQUENCY", POLL_S))
    except ValueError:
        return POLL_S


def _child_env(settings: Settings, files: ServiceFiles, api: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_KEY"}  # never send a Cloud key to a local server
    env.update(
        PREFECT_HOME=str(files.prefect_home),
        PREFECT_API_URL=api,
        PREFECT_UI_API_URL=api,
        PREFECT_SERVER_UI_API_URL=api,
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        DO_NOT_TRACK="1",
        PYTHONUNBUFFERED="1",  # logs show what happened up to a crash
        OPENBELL_DATA__DIR=str(files.data_dir),
    )
    # The children run in the project folder: relative data paths must keep meaning what they meant here.
    for field in ("db_path", "minute_bars", "daily_bars"):
        value = getattr(settings.data, field)
        if value is not None:
            env[f"OPENBELL_DATA__{field.upper()}"] = str(Path(value).resolve())
    return env


def _wait_until(
    ready: Callable[[], bool],
    timeout: float,
    process: ServiceProcess,
    popen: subprocess.Popen,
    files: ServiceFiles,
    what: str = "answered",
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        code = popen.poll()
        if code is not None:
            raise ServiceError(
                f"{process.label} exited with code {code} before it {what}; see {process.log(files)}"
                f"{last_line(process.log(files))}"
            )
        if ready():
            return
        if time.monotonic() > deadline:
            raise ServiceError(f"{process.label} had not {what} after {timeout:.0f} s; see {process.log(files)}")
        time.sleep(0.5)


def _wait_until_quietly(ready: Callable[[], bool], timeout: float) -> bool:
    """Wait until `ready()` or the timeout; returns whether it became ready."""
    deadline = time.monotonic() + timeout
    while not (done := ready()) and time.monotonic() < deadline:
        time.sleep(0.5)
    return done


# -------------------------------------------------------------------------------------------- down


def down(settings: Settings) -> list[str]:
    """Stop the serving process, then the server; returns one line per process stopped (none: nothing ran)."""
    files = ServiceFiles.of(settings)
    stopped = []
    for process in (SERVE, SERVER):  # serving first: it pauses its deployments through the server's API
        pid = _running_pid(process, files)
        if pid is None:
            continue
        forced = _stop_group(pid)
        process.pid_file(files).unlink(missing_ok=True)
        how = f"killed after {STOP_TIMEOUT_S:.0f} s without exiting" if forced else "stopped"
        stopped.append(f"{how} {process.label} (pid {pid})")
    files.port_file.unlink(missing_ok=True)
    return stopped


def _stop_group(pid: int, reap: subprocess.Popen | None = None) -> bool:
    """SIGTERM the process group led by `pid`, SIGKILL it after STOP_TIMEOUT_S; True when it had to be killed.

    Raises:
        ServiceError: a process of the group was still there 5 s after SIGKILL.
    """
    for sig, wait in ((signal.SIGTERM, STOP_TIMEOUT_S), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return sig == signal.SIGKILL
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if reap is not None:
                reap.poll()  # our own child: collect it, or it lingers as a zombie
            if not _group_alive(pid):
                return sig == signal.SIGKILL
            time.sleep(0.1)
    raise ServiceError(f"process group {pid} survived SIGKILL; look for it with `ps -g {pid}`")


# ------------------------------------------------------------------------------------------ status


def status(settings: Settings, now: datetime) -> ServiceStatus:
    """What runs and what comes next, as of `now`; reads the Prefect API when the server runs."""
    files = ServiceFiles.of(settings)
    server_pid = _running_pid(SERVER, files)
    serve_pid = _running_pid(SERVE, files)
    port = _recorded_port(files) if server_pid else None
    names = scheduled_names(settings)
    scheduled: dict[str, tuple[datetime, str] | None] = {}
    paused: dict[str, bool] = {}
    problem = None
    stopped_polling = False
    if server_pid and port:
        api = api_url(port)
        try:
            served = read_deployments(api, deployment_names(settings))
            scheduled, paused = _scheduled_runs(api, [d for d in served if d["name"] in names])
            stopped_polling = bool(serve_pid) and _stopped_polling(served)
        except httpx.HTTPError as exc:
            problem = f"the Prefect API at {api} did not answer ({type(exc).__name__})"
    today = now.astimezone(calendar.NEW_YORK).date()
    deployments = []
    for phase in phase_schedules(settings):
        first = scheduled.get(phase.deployment)
        acts = next_runs(phase, now, 1, settings)
        deployments.append(
            DeploymentStatus(
                name=phase.deployment,
                scheduled=first[0] if first else None,
                scheduled_state=first[1] if first else None,
                acts=acts[0] if acts else None,
                paused=paused.get(phase.deployment),
            )
        )
    return ServiceStatus(
        files.data_dir, server_pid, serve_pid, port, deployments, today, describe_day(today), problem, stopped_polling
    )


def describe_day(day: date) -> str:
    """A session, a half day with its close, a holiday with its name, or a weekend."""
    if calendar.is_half_day(day):
        return f"a half day: the market closes early at {calendar.session_close(day):%H:%M}"
    if calendar.is_session(day):
        return f"a session: the market is open {calendar.session_open(day):%H:%M}-{calendar.session_close(day):%H:%M}"
    if (name := calendar.holiday_name(day)) is not None:
        return f"a holiday ({name}): the exchange is closed"
    return "a weekend: the exchange is closed"


def render_status(s: ServiceStatus) -> str:
    """The status as text for a terminal."""
    server = f"running  pid {s.server_pid}" if s.server_pid else "not running"
    serve = f"running  pid {s.serve_pid}" if s.serve_pid else "not running"
    lines = [
        f"server   {server}",
        f"serve    {serve}",
        f"UI       {s.ui_url}/deployments" if s.ui_url else "UI       none (start it with `openbell up`)",
        f"data     {s.data_dir}",
        *([f"warning: {s.warning}"] if s.warning else []),
        "",
        f"today {s.today:%a %Y-%m-%d} (New York) is {s.today_text}",
        "",
    ]
    if s.api_problem:
        lines += [f"note: {s.api_problem}", ""]
    rows = [("deployment", "next scheduled run (Prefect)", "next time it acts (calendar)")]
    for d in s.deployments:
        if not s.server_pid:
            prefect = "- (server not running)"
        elif d.scheduled is None:
            prefect = "- (paused)" if d.paused else "- (none planned)"
        else:
            prefect = _ny(d.scheduled) + ("" if d.scheduled_state == "Scheduled" else f" ({d.scheduled_state})")
            prefect += " (paused)" if d.paused else ""
        rows.append((d.name, prefect, _ny(d.acts) if d.acts else "-"))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines += ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines += [
        "",
        "Prefect plans every cron firing, Monday to Friday; a run on a holiday, or at the half-day time on a full day",
        "(and the other way round), exits at once. The calendar column is when a phase really acts.",
    ]
    return "\n".join(lines)


def _ny(at: datetime) -> str:
    return f"{at.astimezone(calendar.NEW_YORK):%a %Y-%m-%d %H:%M %Z}"


# ------------------------------------------------------------------------------------- the Prefect API


def api_url(port: int) -> str:
    return f"http://{HOST}:{port}/api"


def running_api(settings: Settings) -> str | None:
    """The API of the server `openbell up` runs for this data folder, when it answers; else None."""
    files = ServiceFiles.of(settings)
    port = _recorded_port(files) if _running_pid(SERVER, files) else None
    return api_url(port) if port and _healthy(api_url(port)) else None


def _healthy(api: str) -> bool:
    try:
        return httpx.get(f"{api}/health", timeout=API_TIMEOUT_S).status_code == 200
    except httpx.HTTPError:
        return False


def read_deployments(api: str, names: Iterable[str]) -> list[dict]:
    """The deployments of these names, as the API returns them."""
    body = {"deployments": {"name": {"any_": list(names)}}}
    response = httpx.post(f"{api}/deployments/filter", json=body, timeout=API_TIMEOUT_S)
    response.raise_for_status()
    return response.json()


def _polled_since(api: str, names: list[str], since: datetime) -> bool:
    """Every deployment is registered and a serving process has polled for its runs since `since`."""
    try:
        deployments = read_deployments(api, names)
    except httpx.HTTPError:
        return False
    polled = {d["name"] for d in deployments if d.get("last_polled") and datetime.fromisoformat(d["last_polled"]) >= since}
    return polled >= set(names)


def _stopped_polling(deployments: list[dict]) -> bool:
    """The server marks every one of these deployments (as the API returned them) not ready: no serving
    process has polled for a minute."""
    return bool(deployments) and all(d.get("status") == "NOT_READY" for d in deployments)


def _stopped_polling_quietly(api: str, names: list[str]) -> bool:
    try:
        return _stopped_polling(read_deployments(api, names))
    except httpx.HTTPError:
        return False  # an API that does not answer says nothing about the serving process


def _all_planned(api: str, names: list[str]) -> bool:
    try:
        scheduled, _ = _scheduled_runs(api, read_deployments(api, names))
    except httpx.HTTPError:
        return False
    return all(scheduled.get(name) for name in names)


def _scheduled_runs(api: str, deployments: list[dict]) -> tuple[dict[str, tuple[datetime, str] | None], dict[str, bool]]:
    """Per deployment (as the API returned it), by name: its earliest scheduled flow run (time, state
    name), and whether it is paused.

    Raises:
        httpx.HTTPError: the API did not answer.
    """
    scheduled: dict[str, tuple[datetime, str] | None] = {}
    paused: dict[str, bool] = {}
    with httpx.Client(base_url=api, timeout=API_TIMEOUT_S) as client:
        for deployment in deployments:
            paused[deployment["name"]] = bool(deployment.get("paused"))
            body = {
                "deployments": {"id": {"any_": [deployment["id"]]}},
                "flow_runs": {"state": {"type": {"any_": ["SCHEDULED"]}}},
                "sort": "EXPECTED_START_TIME_ASC",
                "limit": 1,
            }
            response = client.post("/flow_runs/filter", json=body)
            response.raise_for_status()
            runs = response.json()
            scheduled[deployment["name"]] = (
                (datetime.fromisoformat(runs[0]["expected_start_time"]), runs[0]["state_name"] or "Scheduled")
                if runs
                else None
            )
    return scheduled, paused


# -------------------------------------------------------------------------------- processes and ports


def _recorded_port(files: ServiceFiles) -> int | None:
    try:
        return int(files.port_file.read_text().strip())
    except (OSError, ValueError):
        return None


def _running_pid(process: ServiceProcess, files: ServiceFiles) -> int | None:
    """The PID in the process's PID file when that very process still runs; a stale file is removed.

    The process is ours only when its start time, executable and arguments are those recorded at its
    start. A PID file of an earlier openbell (the PID alone) is trusted when the arguments are exactly
    the command this openbell starts; without /proc (macOS) a live PID is trusted, as before.
    """
    path = process.pid_file(files)
    try:
        first, _, rest = path.read_text().partition("\n")
        pid = int(first.strip())
        recorded = ProcessIdentity.from_json(rest) if rest.strip() else None
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):
        pid, recorded = None, None
    if pid is not None and alive(pid) and _is_ours(pid, recorded, process, files):
        return pid
    path.unlink(missing_ok=True)
    return None


def _is_ours(pid: int, recorded: ProcessIdentity | None, process: ServiceProcess, files: ServiceFiles) -> bool:
    now = ProcessIdentity.of(pid)
    if now is None:
        return recorded is None and not Path("/proc/self/stat").exists()
    if recorded is not None:
        return now == recorded
    if process is SERVE:
        return list(now.argv) == _serve_command()
    port = _recorded_port(files)
    return port is not None and list(now.argv) == server_command(port)


def _group_alive(pgid: int) -> bool:
    if not Path("/proc/self/stat").exists():
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        return True
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = proc_stat(int(entry.name))
            if stat is not None and stat[1] == pgid and stat[0] not in ("Z", "X"):
                return True
    return False
