"""Serve every phase of the trading day as a Prefect deployment on its New York cron schedule.

    PREFECT_API_URL=http://127.0.0.1:4200/api python deployments/serve.py

`openbell up` runs this in the background. The process stays up, polls the server for scheduled
runs and executes each in its own subprocess. Scheduled runs trade live (`schedule.mode`); every
deployment can also be run from the UI with its own parameters (a replayed date, fixed symbols,
a dry run).
"""

from __future__ import annotations

from prefect import serve
from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
from prefect.schedules import Cron

from openbell.config import Settings, load_settings
from openbell.core.types import NEW_YORK_TZ
from openbell.flows.backtest import backtest
from openbell.flows.flatten_now import flatten_now
from openbell.flows.liquidate_eod import liquidate_eod
from openbell.flows.monitor_exits import monitor_exits
from openbell.flows.place_moo_orders import place_moo_orders
from openbell.flows.report_eod import report_eod
from openbell.flows.scan_and_rank import scan_and_rank
from openbell.flows.sweep import sweep
from openbell.schedule import ON_DEMAND, phase_schedules

FLOWS = {
    "scan-and-rank": scan_and_rank,
    "place-moo-orders": place_moo_orders,
    "monitor-exits": monitor_exits,
    "liquidate-eod": liquidate_eod,
    "report-eod": report_eod,
}
RESEARCH = {"backtest", "sweep"}
ONE_AT_A_TIME = {"monitor-exits"}  # a second exit monitor would place exits twice: it is cancelled
ON_DEMAND_FLOWS = {
    "backtest": (backtest, "Backtest a date range of the replay data; the Run button asks for the range."),
    "sweep": (sweep, "Every target x stop x liquidation over the same sessions, with an out-of-sample check."),
    "flatten-now": (
        flatten_now,
        "Cancel the system's open orders and sell what it opened, now; no new order for the rest of the day.",
    ),
}


def build_deployments(settings: Settings, crons: dict[str, list[str]] | None = None) -> list:
    """The five scheduled deployments and the research ones (no schedule); `crons` replaces a deployment's
    schedules (tests use short ones)."""
    deployments = []
    for phase in phase_schedules(settings):
        limit = (
            ConcurrencyLimitConfig(limit=1, collision_strategy=ConcurrencyLimitStrategy.CANCEL_NEW)
            if phase.deployment in ONE_AT_A_TIME
            else None
        )
        deployments.append(
            FLOWS[phase.deployment].to_deployment(
                name=phase.deployment,
                schedules=[Cron(c, timezone=NEW_YORK_TZ) for c in (crons or {}).get(phase.deployment, phase.crons)],
                parameters={"mode": settings.schedule.mode},
                description=phase.description,
                concurrency_limit=limit,
                tags=["openbell"],
            )
        )
    for name in ON_DEMAND:
        on_demand, description = ON_DEMAND_FLOWS[name]
        tags = ["openbell", "research" if name in RESEARCH else "trading"]
        parameters = {} if name in RESEARCH else {"mode": settings.schedule.mode}
        deployments.append(on_demand.to_deployment(name=name, description=description, tags=tags, parameters=parameters))
    return deployments


def main() -> None:
    serve(*build_deployments(load_settings()))


if __name__ == "__main__":
    main()
