"""The market-on-open task: size the picks, pass the cutoff guard, submit idempotent MOO orders."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from openbell import calendar, ledger
from openbell import runtime as wiring
from openbell.core.orders import moo_entry
from openbell.core.sizing import PositionSize, size_position, within_buying_power
from openbell.core.types import Symbol
from openbell.errors import OrderRejected
from openbell.morning import NO_PRICE, reference_prices
from tasks.artifacts import publish_table
from tasks.runs import RunContext


@task(cache_policy=NO_CACHE)
def submit_moo_orders(run: RunContext) -> int:
    """Submit the selected picks as market-on-open orders; returns how many the broker accepted."""
    phase = wiring.open_phase(run.settings, run.mode, run.trade_date, "moo")
    try:
        with phase.store.batch():  # one connection for the burst of orders
            return _submit(run, phase)
    finally:
        phase.broker.close()


def _submit(run: RunContext, phase: wiring.Phase) -> int:
    log = get_run_logger()
    settings, day = run.settings, run.trade_date
    store, market, clock, broker = phase.store, phase.market, phase.clock, phase.broker
    now, window = clock.now(), broker.moo_window(day)
    cutoff = min(window.cutoff, datetime.combine(day, settings.schedule.moo_cutoff, tzinfo=calendar.NEW_YORK))
    if now > cutoff:
        log.warning("not sending market-on-open orders: it is %s, past the %s cutoff (stale after a late start)",
                    f"{now:%H:%M:%S}", f"{cutoff:%H:%M}")  # fmt: skip
        return 0
    if not window.accepts(now):
        log.warning("not sending market-on-open orders: the %s broker accepts them from %s", broker.name,
                    f"{window.opens:%Y-%m-%d %H:%M}")  # fmt: skip
        return 0
    picks = [
        Symbol(r[0])
        for r in store.query("SELECT symbol FROM rankings WHERE trade_date = ? AND selected ORDER BY rank", [day])
    ]
    prices = reference_prices(market, day, picks)
    account = broker.account()
    sizes = [
        size_position(s, prices[s], account.equity, settings.sizing.policy())
        if s in prices
        else PositionSize(s, Decimal(0), 0, Decimal(0), NO_PRICE)
        for s in picks
    ]
    sizes = within_buying_power(sizes, account.buying_power)  # the rule the backtest applies too
    store.replace(
        "sizing",
        [
            {
                "trade_date": day,
                "symbol": s.symbol,
                "ref_price": s.ref_price,
                "shares": s.shares,
                "notional": s.notional,
                "skipped_reason": s.skipped_reason,
                "run_id": run.run_id,
            }
            for s in sizes
        ],
        where={"trade_date": day},
    )

    accepted, outcome = [], {}
    for size in sizes:
        if not size.shares:
            outcome[size.symbol] = f"skipped: {size.skipped_reason}"
            continue
        intent = moo_entry(day, size.symbol, size.shares)
        if run.dry_run:
            log.info("dry run: would buy %d %s market-on-open (%s)", size.shares, size.symbol, intent.client_order_id)
            outcome[size.symbol] = "dry run: not sent"
            continue
        try:
            order = broker.submit(intent)
        except OrderRejected as rejected:
            log.warning("%s", rejected)
            ledger.record_rejection(store, day, intent, rejected.reason, run.run_id)
            outcome[size.symbol] = f"rejected: {rejected.reason}"
            continue
        accepted.append(order)
        outcome[size.symbol] = f"sent as {order.client_order_id}"
    skipped = [s for s in sizes if not s.shares]
    for s in skipped:
        log.info("skipped %s: %s", s.symbol, s.skipped_reason)
    ledger.record_orders(store, day, accepted, run.run_id)
    log.info("market-on-open orders for %s: %d sent, %d skipped by sizing", day, len(accepted), len(skipped))
    publish_table(
        "moo-orders",
        [{"symbol": s.symbol, "shares": s.shares, "reference price": s.ref_price, "notional": s.notional,
          "order": outcome[s.symbol]} for s in sizes],
        f"Market-on-open orders for {day}: {len(accepted)} sent{' (dry run)' if run.dry_run else ''}",
    )  # fmt: skip
    return len(accepted)
