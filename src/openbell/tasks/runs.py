"""Run bookkeeping: what each flow run was asked to do, for which day, and how it ended."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import date, datetime

from prefect import get_run_logger, runtime, task
from prefect.cache_policies import NO_CACHE

from openbell import calendar, wiring
from openbell.config import RunOptions, Settings
from openbell.logs import one_line_per_failure
from openbell.store import Store, records, staging


@dataclass(frozen=True, slots=True)
class RunContext:
    """What every task of a flow run needs: plain values, no open connections."""

    run_id: str
    flow: str
    trade_date: date
    mode: wiring.Mode
    settings: Settings
    closed: str | None = None  # why the exchange is closed that day: the flow then does nothing
    dry_run: bool = False  # decide and log, send no order


@task(cache_policy=NO_CACHE)
def begin_run(
    flow: str, trade_date: date | None, mode: wiring.Mode, options: RunOptions, dry_run: bool = False
) -> RunContext:
    """Resolve settings and the trade date (failing early with a clear error), and record the run.

    On a day the exchange is closed (a live run on a holiday), logs "market closed: <reason>" and
    returns a context whose `closed` tells the flow to stop there.
    """
    one_line_per_failure()  # Prefect's console logging is set up by now
    settings = options.settings()
    wiring.require_ready_to_trade(settings)  # at every flow's first task: nothing is written before a refusal
    day = wiring.resolve_trade_date(trade_date, mode, settings)
    closed = calendar.closed_reason(day)
    if closed:
        get_run_logger().info("market closed: %s (%s); %s does nothing today", closed, day, flow)
    run_id = str(runtime.flow_run.id or uuid.uuid4())
    store, now = wiring.store_for(settings, mode), datetime.now(calendar.NEW_YORK)
    crashed = records.mark_crashed(store, flow, day, mode, run_id, now)
    if crashed:
        get_run_logger().warning("%d earlier %s run(s) of %s never finished: marked crashed (%s)", len(crashed), flow, day,
                                 ", ".join(crashed))  # fmt: skip
    parameters = json.dumps(options.model_dump(mode="json", exclude_none=True))
    records.start_run(store, run_id, flow, day, mode, parameters, closed, now)
    return RunContext(run_id, flow, day, mode, settings, closed, dry_run)


@task(cache_policy=NO_CACHE)
def finish_run(run: RunContext, message: str) -> None:
    """Record the run as completed, with `message` saying what it did."""
    records.finish_run(wiring.store_for(run.settings, run.mode), run.run_id, message, datetime.now(calendar.NEW_YORK))


@task(cache_policy=NO_CACHE)
def stage_replayed_day(
    trade_date: date | None, mode: wiring.Mode, options: RunOptions, replace: bool
) -> tuple[date, RunOptions | None]:
    """Resolve the day; for a replay with `replace` of a date the store already holds, stage the new replay.

    Returns the day and, when staged, the options that point the day's flows at the scratch store
    (`openbell.store.staging`); `commit_replayed_day` then swaps the day in whole. Until then the
    earlier replay stays as it was for every reader, and a replay that fails leaves it so. Live days
    are never staged or replaced: they are the live book, which a replay never touches.
    """
    one_line_per_failure()
    settings = options.settings()
    wiring.require_ready_to_trade(settings)
    day = wiring.resolve_trade_date(trade_date, mode, settings)
    if not replace or mode != "replay":
        return day, None
    store = wiring.store_for(settings, mode)
    if not staging.has_day(store, day):
        return day, None
    if settings.data.catalog is not None:  # a shared catalog has no folder of its own to stage in
        removed = store.delete_day(day)
        get_run_logger().warning("replacing the earlier replay of %s in the shared catalog: removed %s first", day,
                                 ", ".join(f"{n} {t}" for t, n in removed.items()))  # fmt: skip
        return day, None
    scratch = staging.stage_day(store, day)
    get_run_logger().info(
        "replaying %s again: the earlier replay stays until this one is complete (staged in %s)", day, scratch.path
    )
    return day, options.model_copy(update={"db_path": str(scratch.path)})


@task(cache_policy=NO_CACHE)
def commit_replayed_day(day: date, staged: RunOptions, options: RunOptions) -> None:
    """Swap the staged replay of `day` into the store in one transaction, then remove the scratch store."""
    scratch = Store(staged.settings().data.lake())
    written = staging.commit_day(wiring.store_for(options.settings()), scratch, day)
    staging.discard(scratch)
    get_run_logger().info(
        "the replay of %s replaced the earlier one: %s", day, ", ".join(f"{n} {t}" for t, n in written.items())
    )


def discard_staged_day(staged: RunOptions) -> None:
    """Remove the scratch store of a staged replay that did not complete (the earlier replay stays)."""
    staging.discard(Store(staged.settings().data.lake()))
