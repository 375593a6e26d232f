"""The temporary Prefect server that `demo` and `replay` start: it answers, queues its writes, and says why it failed."""

from __future__ import annotations

from pathlib import Path

import pytest

from openbell import prefect_api

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


@pytest.fixture(autouse=True)
def no_configured_api(monkeypatch: pytest.MonkeyPatch):
    """No Prefect API configured, as on a fresh machine (another test module may have started the test harness)."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    with temporary_settings(restore_defaults={PREFECT_API_URL}):
        yield


def test_quick_subflows_never_meet_a_locked_database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from prefect import flow, task
    from prefect.cache_policies import NO_CACHE
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    @task(cache_policy=NO_CACHE)
    def step(x: int) -> int:
        return x

    @flow
    def phase() -> None:
        for _ in range(3):
            step(1)

    @flow
    def day() -> None:  # the shape of trading_day: a task, then six subflows of three quick tasks
        step(0)
        for _ in range(6):
            phase()

    monkeypatch.setenv("PREFECT_API_LOG_RETRYABLE_ERRORS", "true")  # the server logs every 503 it answers
    log = tmp_path / "server.log"
    api = prefect_api.open_api(None, tmp_path / "prefect", log)
    try:
        url = api.wait_until_ready()
        with temporary_settings(updates={PREFECT_API_URL: url, PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
            for _ in range(3):
                day()
            with get_client(sync_client=True) as client:
                runs = client.read_flow_runs()
            prefect_api.drain_workers()
    finally:
        api.stop()

    assert len(runs) == 3 * 7 and all(run.state.is_completed() for run in runs)
    assert "Encountered retryable exception" not in log.read_text()  # no "database is locked", no 503


def test_a_server_that_cannot_start_is_reported_with_its_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("PREFECT_API_DATABASE_CONNECTION_URL", f"sqlite+aiosqlite:///{tmp_path}/missing/folder/prefect.db")
    log = tmp_path / "server.log"
    api = prefect_api.open_api(None, tmp_path / "prefect", log)

    with pytest.raises(prefect_api.PrefectApiError) as failed:
        api.wait_until_ready(timeout=120)

    message = str(failed.value)
    assert message.startswith("the temporary Prefect server exited with code")
    assert str(log) in message and "last line:" in message
    assert "\n" not in message


def test_a_server_slower_than_the_limit_is_stopped_and_reported(tmp_path: Path):
    api = prefect_api.open_api(None, tmp_path / "prefect", tmp_path / "server.log")
    server = api._server
    assert server is not None

    with pytest.raises(prefect_api.PrefectApiError, match=r"did not answer within 0 s; see .*server\.log\. Raise the limit"):
        api.wait_until_ready(timeout=0.01)

    assert server.process is None  # stopped, not left behind


def test_a_configured_api_is_used_as_it_is(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:9/api")

    api = prefect_api.open_api("http://127.0.0.1:4200/api", tmp_path / "prefect", tmp_path / "server.log")

    assert (api.source, api.url) == ("configured", "http://127.0.0.1:9/api")
    assert api.wait_until_ready() == "http://127.0.0.1:9/api"
    assert not (tmp_path / "server.log").exists()
