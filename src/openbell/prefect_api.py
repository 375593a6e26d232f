"""The Prefect API that flows run in this process report to: the user's, `openbell up`'s, or a temporary one.

`openbell demo`, `replay` (and later `backtest`) run their flows in the CLI's own process, and every
Prefect flow run needs an API. In order of preference:

1. the API the user configured (`PREFECT_API_URL`, in the environment or the Prefect profile);
2. the server `openbell up` started for this data folder, when it answers: the runs then show in its UI;
3. a temporary server of our own, started the way Prefect starts its ephemeral one (uvicorn serving
   `prefect.server.api.server:create_app`), with three differences that matter to a user:
   - it starts as soon as the command's input files are checked, so the day's bars are read and the
     flows imported while it boots;
   - its start-up may take minutes (`STARTUP_TIMEOUT_S`): its very first start creates and migrates
     a SQLite database, which on a small machine takes longer than Prefect's 20 s default;
   - it dies with this process (Linux's parent-death signal, SIGKILL), even when this one is killed
     with -9 while the server still creates its database: uvicorn finishes its start-up before it
     obeys a SIGTERM, and a migration can take tens of seconds. Its output goes to a log file, never to
     this process's stdout, so `openbell replay | tee` ends when the CLI does;
   - it keeps its database in the data folder next to `openbell up`'s, so an `up` started later shows
     these runs too. Killing it is safe for that database: each migration, like each write, is one
     SQLite transaction, rolled back when it is cut short.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from openbell.errors import OpenbellError

STARTUP_TIMEOUT_S = 300.0
STARTUP_NOTE_AFTER_S = 10.0  # say why we wait, once the wait is longer than usual
STOP_TIMEOUT_S = 10.0
_POLL_S = 0.05
_STARTS = 3  # a port taken by another program between our check and the server's bind: try another
HOST = "127.0.0.1"  # every local Prefect server listens on loopback only

# The child sets its parent-death signal, checks that its parent has not already gone in between,
# then becomes the server (the signal survives exec). SIGKILL, not SIGTERM: a server still migrating
# its database would finish that first, holding its CPU and then its port, for nobody. The signal
# follows the thread that started the server, so start it from a thread that lives as long as its user.
_DIE_WITH_PARENT = (
    "import ctypes, os, signal, sys\n"
    "ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG\n"
    "if os.getppid() != int(sys.argv[1]): sys.exit(0)\n"
    "os.execv(sys.executable, [sys.executable, *sys.argv[2:]])\n"
)


class PrefectApiError(OpenbellError):
    """The temporary Prefect server did not start; the message says why and where its log is."""


@dataclass
class PrefectApi:
    """An API URL, and the temporary server behind it when this process started one."""

    url: str
    source: str  # "configured", "openbell up" or "temporary"
    _server: _TemporaryServer | None = None

    def wait_until_ready(self, say: Callable[[str], None] = print, timeout: float | None = None) -> str:
        """Block until the API answers; returns its URL.

        Raises:
            PrefectApiError: the temporary server exited, or did not answer within the timeout.
        """
        if self._server is None:
            return self.url
        if configured := configured_api_url():  # set in the Prefect profile: known once prefect is imported
            self.stop()
            self.url, self.source, self._server = configured, "configured", None
            return self.url
        self.url = self._server.wait_until_ready(say, timeout or startup_timeout())
        return self.url

    def stop(self) -> None:
        """Stop the temporary server, if this process started one."""
        if self._server is not None:
            self._server.stop()


@dataclass
class _TemporaryServer:
    """A Prefect server process of our own on a free loopback port, started the way Prefect starts its own."""

    prefect_home: Path
    log: Path
    port: int = 0
    process: subprocess.Popen | None = None
    ready: bool = False
    starts: int = 0

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}/api"

    def start(self) -> None:
        self.port = _free_port()
        self.starts += 1
        server = server_command(self.port, log_level="error")[1:]
        if sys.platform == "linux":
            argv = [sys.executable, "-c", _DIE_WITH_PARENT, str(os.getpid()), *server]
        else:  # no parent-death signal: the server is stopped on the way out, not when this process is killed
            argv = [sys.executable, *server]
        env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_KEY"}  # never a Cloud key to a local server
        env.update(
            PREFECT_HOME=str(self.prefect_home),
            PREFECT_UI_ENABLED="0",
            PREFECT__SERVER_EPHEMERAL="1",
            PREFECT__SERVER_FINAL="1",
            PREFECT_SERVER_ANALYTICS_ENABLED="false",
            DO_NOT_TRACK="1",
        )
        with open(self.log, "ab") as out:  # the child keeps its own copy of the descriptor
            self.process = subprocess.Popen(
                argv, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )

    def wait_until_ready(self, say: Callable[[str], None], timeout: float) -> str:
        if self.ready:
            return self.url
        started = time.monotonic()
        noted = False
        with httpx.Client(timeout=5.0) as client:
            while True:
                assert self.process is not None, "the temporary server was stopped"
                code = self.process.poll()
                if code is not None:
                    if not port_is_free(self.port) and self.starts < _STARTS:  # another program took the port
                        self.start()
                        continue
                    raise PrefectApiError(
                        f"the temporary Prefect server exited with code {code} while starting; see {self.log}"
                        f"{last_line(self.log)}"
                    )
                if _answers(client, self.url):
                    self.ready = True
                    return self.url
                waited = time.monotonic() - started
                if waited > timeout:
                    self.stop()
                    raise PrefectApiError(
                        f"the temporary Prefect server did not answer within {timeout:.0f} s; see {self.log}. "
                        "Raise the limit with PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS, or start a "
                        "server once with `openbell up`, which every later run uses"
                    )
                if not noted and waited > STARTUP_NOTE_AFTER_S:
                    noted = True
                    say(
                        "waiting for the temporary Prefect server: its first start creates its database, which can "
                        f"take a minute on a small machine (`openbell up` keeps a server running); log {self.log}"
                    )
                time.sleep(_POLL_S)

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        if not self.ready:  # still starting: it would finish its migrations before obeying SIGTERM
            process.kill()
            process.wait()
            return
        process.terminate()
        try:
            process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def server_command(port: int, log_level: str = "warning") -> list[str]:
    """The command that serves Prefect's API and UI (`create_app` below) on HOST:port, as `prefect server start` does."""
    return [
        sys.executable, "-m", "uvicorn", "--app-dir", _prefect_parent(), "--factory", "openbell.prefect_api:create_app",
        "--host", HOST, "--port", str(port), "--log-level", log_level, "--lifespan", "on",
    ]  # fmt: skip


def startup_timeout() -> float:
    """STARTUP_TIMEOUT_S, or Prefect's own ephemeral start-up setting when the user set it higher."""
    configured = os.environ.get("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "")
    try:
        return max(STARTUP_TIMEOUT_S, float(configured))
    except ValueError:
        return STARTUP_TIMEOUT_S


def configured_api_url() -> str | None:
    """The API URL the user set: `PREFECT_API_URL` in the environment or in the active Prefect profile."""
    from prefect.settings import get_current_settings

    url = get_current_settings().api.url
    return str(url) if url else None


def open_api(running_service_api: str | None, prefect_home: Path, log: Path) -> PrefectApi:
    """The API to use, starting a temporary server (without waiting for it) when there is none.

    Args:
        running_service_api: the API of the server `openbell up` runs for this data folder, if it answers.
        prefect_home: where a temporary server keeps its database (`<data dir>/prefect`, as `openbell up`).
        log: the temporary server's log file.
    """
    if url := os.environ.get("PREFECT_API_URL"):  # the profile's is checked in wait_until_ready: no prefect import yet
        return PrefectApi(url, "configured")
    if running_service_api:
        return PrefectApi(running_service_api, "openbell up")
    prefect_home.mkdir(parents=True, exist_ok=True)
    log.parent.mkdir(parents=True, exist_ok=True)
    server = _TemporaryServer(prefect_home, log)
    server.start()
    return PrefectApi(server.url, "temporary", server)


def drain_workers(timeout: float = STOP_TIMEOUT_S) -> None:
    """Send the logs and events Prefect still holds for this process's runs, before their server goes away.

    Otherwise they are sent at interpreter exit to a server that has stopped, and retried for a minute.
    """
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for worker in (APILogWorker, EventsWorker):
        worker.drain_all(timeout=timeout)


@contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """Inside the block SIGTERM unwinds like Ctrl-C, so `finally` blocks (stopping the temporary server) run."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _raise(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, _raise)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _answers(client: httpx.Client, url: str) -> bool:
    try:
        return client.get(f"{url}/health").status_code == 200
    except httpx.HTTPError:
        return False


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def port_is_free(port: int) -> bool:
    """True when nothing listens on HOST:port (SO_REUSEADDR, as the server binds: TIME_WAIT is no obstacle)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def _prefect_parent() -> str:
    """The folder holding the prefect package (uvicorn's --app-dir), found without importing prefect."""
    import importlib.util

    spec = importlib.util.find_spec("prefect")
    assert spec is not None and spec.origin is not None
    return str(Path(spec.origin).parent.parent)


def last_line(log: Path) -> str:
    """` (last line: ...)` of a log, for an error message that points at it; empty when there is none."""
    try:
        lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    return f" (last line: {lines[-1][:200]})" if lines else ""


def create_app():
    """Prefect's server app (`openbell up` and the temporary server), with SQLite writes that queue instead of fail.

    Prefect opens its SQLite transactions DEFERRED: one that reads, then writes while another connection
    writes (the server's task-run recorder does so all the time) fails at once with "database is locked"
    (Prefect issue #18934), the API answers 503, and the client waits 2, 4, 8... s before it retries, which
    cost a replayed day seconds and a run of quick tasks minutes. Taken IMMEDIATE, as Prefect already does
    for its SELECT ... FOR UPDATE transactions, a writer waits for the lock (busy_timeout) and goes on.
    """
    from prefect.server.api.server import create_app as prefect_app
    from prefect.server.database.configurations import AioSqliteConfiguration

    deferred = AioSqliteConfiguration.begin_transaction

    @asynccontextmanager
    async def immediate(self, session, with_for_update: bool = False):
        async with deferred(self, session, with_for_update=True) as transaction:
            yield transaction

    AioSqliteConfiguration.begin_transaction = immediate  # type: ignore[method-assign]  # the patch this function is for
    return prefect_app()
