"""`openbell up`, `status` and `down` for real: a Prefect server and the five served deployments.

One service for the module (starting it takes about 25 s), on a free loopback port with a private
data folder. Runs go through the API exactly as the UI's Run button sends them. The last test
stops the service; the fixture's teardown stops whatever is left, by PID, even after a failure.
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from uuid import UUID

import pytest

from tests.service.service_support import (
    DEPLOYMENTS,
    SCHEDULED,
    api_post,
    deployments_by_name,
    free_port,
    kill_group,
    log_tail,
    openbell,
    pid_alive,
    port_is_free,
    quiet_env,
    wait_for,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

CHROMIUM = Path("/usr/bin/chromium")
CRONS = {
    "scan-and-rank": {"0 8 * * 1-5"},
    "place-moo-orders": {"20 9 * * 1-5"},
    "monitor-exits": {"30 9 * * 1-5"},
    "liquidate-eod": {"45 15 * * 1-5", "45 12 * * 1-5"},
    "report-eod": {"15 16 * * 1-5", "15 13 * * 1-5"},
    "backtest": set(),  # on demand
    "sweep": set(),
    "flatten-now": set(),  # the UI's Run button
}
NEW_YORK_TIME = re.compile(r"\w{3} \d{4}-\d{2}-\d{2} \d{2}:\d{2} E[SD]T")


@dataclass(frozen=True)
class Service:
    port: int
    data_dir: Path
    env: dict[str, str]
    up_output: str
    server_pid: int
    serve_pid: int

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def log(self, name: str) -> str:
        return log_tail(self.data_dir / "logs" / f"{name}.log")


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory):
    """`openbell up` on a free port with a private data folder; everything it started is stopped afterwards."""
    data_dir = tmp_path_factory.mktemp("service") / "data"
    port = free_port()
    env = quiet_env(data_dir)
    pids: list[int] = []
    try:
        started = openbell("up", "--port", str(port), env=env)
        pids = [int(p.read_text().split()[0]) for p in sorted((data_dir / "run").glob("*.pid"))]
        assert started.returncode == 0, f"openbell up failed:\n{started.stdout}\n{started.stderr}"
        server_pid = int((data_dir / "run" / "server.pid").read_text().split()[0])
        serve_pid = int((data_dir / "run" / "serve.pid").read_text().split()[0])
        yield Service(port, data_dir, env, started.stdout, server_pid, serve_pid)
    finally:
        openbell("down", env=env, timeout=60)
        for pid in pids:  # belt and braces: nothing of ours outlives the module
            kill_group(pid, grace=5)


@pytest.fixture
def prefect_api(service: Service):
    """This process's Prefect client settings, pointed at the service's server."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: service.api}):
        yield service.api


def _final_run(flow_run_id: UUID, timeout: float):
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return wait_for(
            lambda: (run := client.read_flow_run(flow_run_id)).state.is_final() and run,
            timeout,
            f"flow run {flow_run_id} to finish",
        )


def test_a_run_triggered_through_the_api_completes_with_artifacts(service: Service, prefect_api: str):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        FlowRunFilter,
        FlowRunFilterParentFlowRunId,
    )
    from prefect.deployments import run_deployment

    run = run_deployment(name="scan-and-rank/scan-and-rank", parameters={"mode": "replay"}, timeout=180)

    assert run.state.is_completed(), f"{run.state}\n{service.log('serve')}"
    with get_client(sync_client=True) as client:
        # scan and ranking are subflows: their artifacts hang on the child runs
        children = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[run.id]))
        )
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run.id, *(c.id for c in children)]))
        )
    assert {a.key for a in artifacts} >= {"candidates", "ranking"}
    ranking = next(a for a in artifacts if a.key == "ranking")
    assert ranking.type == "table" and "2025-03-07" in ranking.description  # the synthetic market's last session


def test_the_backtest_deployment_runs_from_the_run_button(service: Service, prefect_api: str):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
    from prefect.deployments import run_deployment

    from openbell.store import Store

    run = run_deployment(
        name="backtest/backtest", parameters={"start": "2025-03-03", "end": "2025-03-07"}, timeout=180
    )  # the synthetic market's five sessions

    assert run.state.is_completed(), f"{run.state}\n{service.log('serve')}"
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run.id])))
    assert {a.type for a in artifacts} >= {"markdown", "progress"}
    ((progress,),) = [[a.data for a in artifacts if a.type == "progress"]]
    assert progress == 100.0
    runs = Store(service.data_dir / "openbell.ducklake").query(
        "SELECT kind, start_date, end_date, report_path FROM backtest_runs"
    )
    assert [(kind, str(start), str(end)) for kind, start, end, _ in runs] == [("backtest", "2025-03-03", "2025-03-07")]
    assert Path(runs[0][3]).is_file()


def test_a_second_monitor_is_cancelled(service: Service, prefect_api: str):
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment

    from openbell.store import Store

    # The first monitor holds the concurrency slot for as long as this test holds the store's write turn:
    # its first write waits for it. (A replayed monitor alone ends within a second, before the serving
    # process's next poll picks up the second run.)
    holding = Store(service.data_dir / "openbell.ducklake").transaction()
    holding.__enter__()
    try:
        first = run_deployment(name="monitor-exits/monitor-exits", parameters={"mode": "replay"}, timeout=0)
        # The serving process submits the runs of one poll concurrently, so two runs created back to back
        # may reach the concurrency slot in either order; the second is created once the first holds it.
        with get_client(sync_client=True) as client:
            wait_for(
                lambda: client.read_flow_run(first.id).state.type.value == "RUNNING",
                60,
                "the first monitor to be running",
                interval=0.1,
            )
        second = run_deployment(name="monitor-exits/monitor-exits", parameters={"mode": "replay"}, timeout=0)
        second_final = _final_run(second.id, 60)
        assert not _final_run_now(first.id)  # still waiting for its turn to write
    finally:
        holding.__exit__(None, None, None)

    first_final = _final_run(first.id, 120)
    assert second_final.state.is_cancelled(), f"{second_final.state}\n{service.log('serve')}"
    assert "concurrency limit" in second_final.state.message
    assert first_final.state.is_completed(), f"{first_final.state}\n{service.log('serve')}"
    assert second_final.state.timestamp < first_final.state.timestamp  # cancelled while the first still ran


def _final_run_now(flow_run_id: UUID) -> bool:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_flow_run(flow_run_id).state.is_final()


@pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is absent (CI installs Debian's chromium; see .ci/run)")
def test_the_ui_lists_the_deployments(service: Service, tmp_path: Path):
    url = f"http://127.0.0.1:{service.port}/deployments"
    shots = Path(os.environ.get("OPENBELL_TEST_ARTIFACTS", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    screenshot = shots / "ui-deployments.png"

    def chromium(profile: str, *flags: str) -> subprocess.CompletedProcess[str]:
        command = [
            str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / profile}",
            "--virtual-time-budget=15000", *flags, url,
        ]  # fmt: skip
        return subprocess.run(command, capture_output=True, text=True, timeout=120)

    dom = chromium("dom", "--dump-dom")
    shot = chromium("shot", "--window-size=1440,900", "--hide-scrollbars", f"--screenshot={screenshot}")

    assert dom.returncode == 0, dom.stderr[-2000:]
    missing = [name for name in DEPLOYMENTS if name not in dom.stdout]
    assert missing == [], f"the rendered deployments page lacks {missing}"
    assert shot.returncode == 0, shot.stderr[-2000:]
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    print(f"screenshot: {screenshot}")


def test_up_refuses_while_the_service_runs(service: Service):
    again = openbell("up", "--port", str(free_port()), env=service.env, timeout=60)

    assert again.returncode == 2
    assert again.stderr.startswith(
        f"openbell: already running: the Prefect server (pid {service.server_pid}) "
        f"and the serving process (pid {service.serve_pid})"
    )


def test_a_replay_reports_to_the_services_server(service: Service):
    done = openbell("demo", env=service.env, timeout=180)

    assert done.returncode == 0, done.stderr[-3000:]
    assert f"the runs go to the server `openbell up` started: http://127.0.0.1:{service.port}/runs" in done.stdout
    runs = api_post(service.api, "/flow_runs/filter", {"flows": {"name": {"any_": ["trading-day"]}}})
    assert [r["state_type"] for r in runs] == ["COMPLETED"]
    assert not (service.data_dir / "logs" / "temporary-server.log").exists()  # no server of its own


def test_up_status_down(service: Service):  # last: it stops the module's service
    # up: said where the UI is and listed every deployment with two New York times
    assert f"http://127.0.0.1:{service.port}/deployments" in service.up_output
    _assert_deployment_rows(service.up_output)

    shown = openbell("status", env=service.env, timeout=60)
    assert shown.returncode == 0, shown.stderr
    assert f"server   running  pid {service.server_pid}" in shown.stdout
    assert f"serve    running  pid {service.serve_pid}" in shown.stdout
    _assert_deployment_rows(shown.stdout)

    deployments = deployments_by_name(service.api)
    assert sorted(deployments) == sorted(DEPLOYMENTS)
    for name, deployment in deployments.items():
        schedules = [s["schedule"] for s in deployment["schedules"]]
        assert {s["cron"] for s in schedules} == CRONS[name], name
        assert {s["timezone"] for s in schedules} == ({"America/New_York"} if CRONS[name] else set()), name
        assert all(s["active"] for s in deployment["schedules"]) and not deployment["paused"], name
    monitor = deployments["monitor-exits"]
    assert monitor["global_concurrency_limit"]["limit"] == 1
    assert monitor["concurrency_options"]["collision_strategy"] == "CANCEL_NEW"
    planned = api_post(service.api, "/flow_runs/filter", {"flow_runs": {"state": {"type": {"any_": ["SCHEDULED"]}}}})
    assert {r["deployment_id"] for r in planned} == {deployments[name]["id"] for name in SCHEDULED}

    stopped = openbell("down", env=service.env, timeout=60)

    assert stopped.returncode == 0, stopped.stderr
    assert f"stopped the serving process (pid {service.serve_pid})" in stopped.stdout
    assert f"stopped the Prefect server (pid {service.server_pid})" in stopped.stdout
    assert not pid_alive(service.serve_pid) and not pid_alive(service.server_pid)
    assert port_is_free(service.port)
    assert list((service.data_dir / "run").iterdir()) == []


def _assert_deployment_rows(output: str) -> None:
    rows = {line.split()[0]: line for line in output.splitlines() if line.split() and line.split()[0] in SCHEDULED}
    assert sorted(rows) == sorted(SCHEDULED), output
    for row in rows.values():  # the next scheduled run (Prefect) and the next acting time (calendar)
        assert len(NEW_YORK_TIME.findall(row)) == 2, row
