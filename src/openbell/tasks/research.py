"""Research tasks: each session of a backtest planned as a task on the flow's task runner (here, or on Dask)."""

from __future__ import annotations

from datetime import date
from uuid import UUID

from prefect import task, unmapped
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.cache_policies import NO_CACHE

from openbell.research.backtest import BacktestSpec, Progress, SessionPlan, plan_session


@task(cache_policy=NO_CACHE, task_run_name="plan {day}")
def plan_session_task(spec: BacktestSpec, day: date) -> SessionPlan:
    """The session's scan and ranking, as the trading day decides them."""
    return plan_session(spec, day)


def plan_on_task_runner(spec: BacktestSpec, days: list[date], progress: Progress) -> list[SessionPlan]:
    """Plan every session as a task of the running flow: its task runner decides where they run."""
    futures = plan_session_task.map(unmapped(spec), days)
    plans = []
    for done, (day, future) in enumerate(zip(days, futures, strict=True), start=1):
        plans.append(future.result())
        progress(day, done, len(days))
    return plans


def progress_artifact(description: str) -> Progress:
    """Progress over the sessions on the flow run's page in the Prefect UI."""
    artifact = create_progress_artifact(progress=0.0, description=description)
    assert isinstance(artifact, UUID)  # called from a sync flow: the id itself, not a coroutine

    def advance(day: date, done: int, total: int) -> None:
        update_progress_artifact(artifact_id=artifact, progress=100.0 * done / total, description=f"{description}: {day}")

    return advance
