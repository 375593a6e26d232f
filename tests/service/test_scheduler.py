"""The Prefect scheduler creates runs from a deployment's cron and the serving process completes them.

This is what the locked pins (fastapi<0.151, sqlalchemy<2.1) keep working. A real server with a
2-second scheduler loop, and one deployment, report-eod, on an every-minute cron, served the way
deployments/serve.py serves all five: the test waits for a run the scheduler made to complete.
"""

from __future__ import annotations

import sys

import httpx
import pytest

from tests.service.service_support import (
    api_post,
    deployments_by_name,
    free_port,
    log_tail,
    quiet_env,
    start_group,
    stop_group,
    wait_for,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

# Run with `python -c` in the project root (start_group's working directory): deployments/serve.py is
# found from there, as `deployments.serve`.
SERVE_ONE = """
from prefect import serve

from deployments.serve import build_deployments
from openbell.config import load_settings

deployments = build_deployments(load_settings(), crons={"report-eod": ["* * * * *"]})
report = next(d for d in deployments if d.name == "report-eod")
report.parameters = {"mode": "replay"}  # the synthetic market's last session; completes with no trades
serve(report)
"""


@pytest.fixture(scope="module")
def prefect_server(tmp_path_factory: pytest.TempPathFactory):
    """A Prefect server whose scheduler looks for work every 2 s and plans one minute ahead."""
    data_dir = tmp_path_factory.mktemp("scheduler") / "data"
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = quiet_env(
        data_dir,
        PREFECT_HOME=str(data_dir / "prefect"),
        PREFECT_API_URL=api,
        PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS="2",
        PREFECT_SERVER_SERVICES_SCHEDULER_MIN_SCHEDULED_TIME="0:01:00",
    )
    log = data_dir / "logs" / "server.log"
    server = start_group(
        [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)], env, log
    )
    try:
        wait_for(lambda: httpx.get(f"{api}/health", timeout=5).status_code == 200, 90, "the server to answer", log=log)
        yield api, env, data_dir
    finally:
        stop_group(server)


def test_a_scheduled_run_fires_and_completes(prefect_server):
    api, env, data_dir = prefect_server
    log = data_dir / "logs" / "serve.log"
    serving = start_group([sys.executable, "-c", SERVE_ONE], env, log)
    try:
        deployment = wait_for(lambda: deployments_by_name(api).get("report-eod"), 60, "the deployment", log=log)

        def a_completed_scheduled_run():
            assert serving.poll() is None, f"the serving process exited\n{log_tail(log)}"
            runs = api_post(api, "/flow_runs/filter", {"deployments": {"id": {"any_": [deployment["id"]]}}})
            failed = [r for r in runs if r["state_type"] in {"FAILED", "CRASHED"}]
            assert not failed, f"{failed[0]['state']}\n{log_tail(log)}"
            return next((r for r in runs if r["auto_scheduled"] and r["state_type"] == "COMPLETED"), None)

        run = wait_for(a_completed_scheduled_run, 150, "a scheduled run to complete", interval=2, log=log)
    finally:
        stop_group(serving)

    assert [s["cron"] for s in (x["schedule"] for x in deployment["schedules"])] == ["* * * * *"]
    history = httpx.get(f"{api}/flow_run_states/", params={"flow_run_id": run["id"]}, timeout=10).json()
    states = [s["type"] for s in sorted(history, key=lambda s: s["timestamp"])]
    assert states[0] == "SCHEDULED" and states[-1] == "COMPLETED", states
    assert run["parameters"] == {"mode": "replay"}
