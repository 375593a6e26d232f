"""The market-on-open task: size the picks, pass the cutoff guard, submit idempotent MOO orders."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from openbell import calendar, wiring
from openbell.core.learning import State
from openbell.core.orders import moo_entry
from openbell.core.risk import Action, Book, Halt, RiskEvent, Rule, admit_entries, closing_equities, drawdown_breach
from openbell.core.sizing import PositionSize, SizingPolicy, scaled, size_position, within_buying_power
from openbell.core.types import Symbol
from openbell.errors import OrderRejected
from openbell.morning import NO_PRICE, reference_prices
from openbell.notify import Notifier, order_rejected_message
from openbell.store import Store, ledger, records
from openbell.tasks.artifacts import publish_table
from openbell.tasks.retries import TRANSIENT_RETRIES
from openbell.tasks.runs import RunContext


@task(cache_policy=NO_CACHE, **TRANSIENT_RETRIES)  # safe to repeat: an order id the broker has is not sent again
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
    picks = records.selected_symbols(store, day)
    prices = reference_prices(market, day, picks)
    account = broker.account()
    sizing = _sizing_policy(run, store)
    sizes = [
        size_position(s, prices[s], account.equity, sizing)
        if s in prices
        else PositionSize(s, Decimal(0), 0, Decimal(0), NO_PRICE)
        for s in picks
    ]
    sizes = within_buying_power(sizes, account.buying_power)  # the rule the backtest applies too
    sizes = _within_risk_limits(run, store, sizes, account.equity, now)
    records.write_sizing(store, day, sizes, run.run_id)

    accepted, outcome, notifier = [], {}, Notifier.from_settings(settings)
    earlier = set() if run.dry_run else {o.client_order_id for o in broker.day_orders()}  # a rerun adopts these
    for size in sizes:
        if not size.shares:
            outcome[size.symbol] = f"skipped: {size.skipped_reason}"
            continue
        intent = moo_entry(day, Symbol(size.symbol), size.shares)
        if run.dry_run:
            log.info("dry run: would buy %d %s market-on-open (%s)", size.shares, size.symbol, intent.client_order_id)
            outcome[size.symbol] = "dry run: not sent"
            continue
        try:
            order = broker.submit(intent)
        except OrderRejected as rejected:
            log.warning("%s", rejected)
            ledger.record_rejection(store, day, intent, rejected.reason, run.run_id)
            notifier.notify(
                order_rejected_message(intent.client_order_id, rejected.reason, rejected.code, symbol=size.symbol)
            )
            outcome[size.symbol] = f"rejected: {rejected.reason}"
            continue
        accepted.append(order)
        known = order.client_order_id in earlier
        outcome[size.symbol] = f"{'already at the broker' if known else 'sent'} as {order.client_order_id}"
    skipped = [s for s in sizes if not s.shares]
    for s in skipped:
        log.info("skipped %s: %s", s.symbol, s.skipped_reason)
    ledger.record_orders(store, day, accepted, run.run_id)
    adopted = sum(o.client_order_id in earlier for o in accepted)
    log.info("market-on-open orders for %s: %d sent, %d already at the broker (sent by an earlier run), %d skipped by "
             "sizing", day, len(accepted) - adopted, adopted, len(skipped))  # fmt: skip
    publish_table(
        "moo-orders",
        [{"symbol": s.symbol, "shares": s.shares, "reference price": s.ref_price, "notional": s.notional,
          "order": outcome[s.symbol]} for s in sizes],
        f"Market-on-open orders for {day}: {len(accepted) - adopted} sent, {adopted} already at the broker"
        f"{' (dry run)' if run.dry_run else ''}",
    )  # fmt: skip
    return len(accepted)


def _within_risk_limits(
    run: RunContext, store: Store, sizes: list[PositionSize], equity: Decimal, now: datetime
) -> list[PositionSize]:
    """The sizes the risk limits admit (the rule the backtest applies too); each refusal logged and recorded.

    A drawdown past its limit halts entries from this session on, until `openbell risk reset`.
    """
    limits, day = run.settings.risk.limits(), run.trade_date
    events: list[RiskEvent] = []
    halt = ledger.risk_halt(store, day)
    if halt is None and limits.max_drawdown_pct is not None:
        equities = closing_equities(equity, ledger.session_pnls(store, day, limits.drawdown_sessions))
        breach = drawdown_breach(equities, limits)
        if breach is not None:
            observed, message = breach
            halt = Halt(Rule.MAX_DRAWDOWN_PCT, message)
            events.append(RiskEvent(day, now, Rule.MAX_DRAWDOWN_PCT, Action.ENTRIES_HALTED, message, None, observed,
                                    float(limits.max_drawdown_pct)))  # fmt: skip
            get_run_logger().error("risk: new entries halted: %s; `openbell risk reset` resumes them", message)
    sizes, refused = admit_entries(sizes, limits, Book(equity), trade_date=day, now=now, halted=halt)
    for event in refused:
        get_run_logger().warning("risk refused %s", event.message)
    if not run.dry_run:
        ledger.record_risk_events(store, events + refused, run.run_id)
    return sizes


def _sizing_policy(run: RunContext, store: Store) -> SizingPolicy:
    """The settings' sizing, smaller when the learning loop throttled the ranker whose picks trade today."""
    policy, learning, day = run.settings.sizing.policy(), run.settings.learning, run.trade_date
    if not learning.enabled:
        return policy
    decided = records.ranking_decision(store, day)
    if decided and ledger.ranker_state_on(store, day, decided.ranker) is State.THROTTLED:
        get_run_logger().warning(
            "learning loop: %s is throttled: each position gets %s of its size", decided.ranker, learning.throttle_size
        )
        return scaled(policy, learning.throttle_size)
    return policy
