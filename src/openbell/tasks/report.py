"""The end-of-day report task: round trips and the day's P&L from the recorded fills."""

from __future__ import annotations

from dataclasses import asdict
from datetime import date

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from openbell import wiring
from openbell.core.pnl import DailyPnl, round_trips, summarize_day
from openbell.core.quality import ranking_quality, realised_returns
from openbell.core.types import Trade
from openbell.notify import Notifier, daily_summary_message
from openbell.report import RankerQuality, RankingReview, render_markdown, render_report
from openbell.store import Store, records
from openbell.tasks.artifacts import publish_markdown
from openbell.tasks.intraday import OFF_SCHEDULE
from openbell.tasks.runs import RunContext


@task(cache_policy=NO_CACHE)
def build_report(run: RunContext) -> str:
    """Write `trades` and `daily_pnl` for the day and return the report as text."""
    day, log = run.trade_date, get_run_logger()
    when = wiring.day_times(day, run.settings)
    now = wiring.clock_for(run.mode, when.report).now()
    if now < when.report - OFF_SCHEDULE:
        log.info("the report is due at %s today; nothing to do at %s", f"{when.report:%H:%M}", f"{now:%H:%M}")
        return ""
    store = wiring.store_for(run.settings, run.mode)
    with store.batch():  # one connection for the day's reads and writes
        summary, trades, review = _write_day(run, store, when)
        risk = _risk_lines(store, day) + _learning_lines(store, day)
    text = render_report(summary, trades, review, risk)
    log.info(
        "end-of-day report for %s: %d trades, net P&L $%s (the whole report: the eod-report artifact)",
        day, summary.trades, f"{summary.net_pnl:,.2f}",
    )  # fmt: skip
    publish_markdown("eod-report", render_markdown(summary, trades, review, risk), f"End-of-day report for {day}")
    Notifier.from_settings(run.settings).notify(daily_summary_message(**asdict(summary)))
    return text


@task(cache_policy=NO_CACHE)
def housekeep_store(run: RunContext) -> str:
    """After the close: the day's small writes become one Parquet file per table; old snapshots expire.

    Housekeeping never fails the day: an error is logged, and the next close tries again.
    """
    log = get_run_logger()
    try:
        done = wiring.store_for(run.settings, run.mode).housekeep(**run.settings.data.housekeeping())
    except Exception as exc:  # the records are safe either way; say why, and leave it to the next close
        log.warning("store housekeeping skipped: %s", str(exc).splitlines()[0])
        return ""
    log.info("store housekeeping: %s", done)
    return str(done)


def _write_day(run: RunContext, store: Store, when: wiring.DayTimes) -> tuple[DailyPnl, list[Trade], RankingReview | None]:
    """Round trips and P&L from the day's fills into `trades` and `daily_pnl`, and the ranking review."""
    day = run.trade_date
    trades = round_trips(day, records.fills(store, day), records.order_purposes(store, day))
    summary = summarize_day(day, trades, records.unfilled_entries(store, day), records.skipped_picks(store, day))
    records.write_trades(store, day, trades)
    records.write_daily_pnl(store, summary, run.run_id)
    review = _review_ranking(run, store, when)
    return summary, trades, review


def _learning_lines(store: Store, day: date) -> list[str]:
    """The learning loop's verdict on each ranker for `day`, changes first."""
    return [
        f"learning loop: {v.ranker} {v.state}{'' if v.state == v.previous_state else f' (was {v.previous_state})'}: "
        f"{v.reason}"
        for v in records.ranker_verdicts(store, day)
    ]


def _risk_lines(store: Store, day: date) -> list[str]:
    """What the risk guards did on `day`, one line each in time order."""
    return [f"{e.ts:%H:%M:%S} {e.rule} {e.action}: {e.message}" for e in records.risk_events(store, day)]


def _review_ranking(run: RunContext, store: Store, when: wiring.DayTimes) -> RankingReview | None:
    """Score every ranker of the day against the candidates' realised returns into `ranking_quality`.

    The review is analysis: when it cannot be made (no minute bars, say), the report says so and
    the P&L above stands.
    """
    day = run.trade_date
    decision = records.ranking_decision(store, day)
    if decision is None:
        return None
    scores = records.ranker_scores(store, day)
    quality: tuple[RankerQuality, ...] = ()
    if not scores.empty:
        try:
            symbols = sorted(scores["symbol"].unique())
            bars = wiring.market_for(run.settings, run.mode).minute_bars(day, symbols)
            table = ranking_quality(scores, realised_returns(bars, when.open, when.close))
        except Exception as exc:  # analysis must not cost the day its report
            get_run_logger().warning("no ranking quality for %s: %s: %s", day, type(exc).__name__, exc)
        else:
            records.write_ranking_quality(store, day, table, run.run_id)
            wide = table.pivot(index="ranker", columns="horizon", values="spearman")
            n = table.groupby("ranker")["n"].max()
            quality = tuple(
                RankerQuality(r, int(n[r]), float(wide.at[r, "open_close"]), float(wide.at[r, "open_high"]))
                for r in wide.index
            )
    return RankingReview(decision.ranker, decision.requested, decision.fallback_reason, quality)
