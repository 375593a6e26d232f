"""Intraday tasks: protect filled entries and watch positions until liquidation, then flatten."""

from __future__ import annotations

from datetime import datetime, time, timedelta

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from openbell import calendar, wiring
from openbell.clock import Clock
from openbell.core.orders import liquidation
from openbell.core.risk import Action, RiskEvent, Rule
from openbell.core.types import ClientOrderId, Fill, Purpose, Side, is_ours
from openbell.errors import OrderRejected
from openbell.monitor import ExitMonitor
from openbell.notify import Notifier
from openbell.store import Store, ledger
from openbell.tasks.retries import TRANSIENT_RETRIES
from openbell.tasks.runs import RunContext
from openbell.venues.broker import Broker

MINUTE = timedelta(minutes=1)
CANCEL_WAIT = timedelta(seconds=30)
OFF_SCHEDULE = timedelta(minutes=10)  # a live run this long before its phase belongs to the other cron


@task(cache_policy=NO_CACHE, **TRANSIENT_RETRIES)
def watch_positions(run: RunContext) -> int:
    """From the open to the liquidation time: protect entries as they fill, hold the exits the broker refuses,
    cancel what is left of an entry that outlived the order TTL (OPENBELL_BROKER__ORDER_TTL_S); at the
    liquidation time, sell what is still held (the liquidation flow then finds it sold).

    Waits for the open if started early. One pass a minute (`ExitMonitor.tick`: a fixed number of
    broker requests whatever the number of positions), no Prefect API calls inside the loop. A broker
    error never ends the loop: it stays with its symbol, or is an outage the monitor waits out.
    Returns the number of exits that filled.
    """
    log, day = get_run_logger(), run.trade_date
    phase = wiring.open_phase(run.settings, run.mode, day, "open")
    when, store, clock, broker = phase.when, phase.store, phase.clock, phase.broker
    try:
        clock.sleep_until(when.open)
        policy = run.settings.exits.policy()
        monitor = ExitMonitor(store, broker, phase.market, day, policy, run_id=run.run_id, log=log,
                              dry_run=run.dry_run, limits=run.settings.risk.limits(), halt=ledger.risk_halt(store, day),
                              notifier=Notifier.from_settings(run.settings),
                              exit_inputs=ledger.exit_inputs(store, day) if policy.uses_pick_inputs else {},
                              order_ttl=run.settings.broker.order_ttl())  # fmt: skip
        while clock.now() < when.liquidation:
            with store.batch():  # opens a connection only if this tick writes
                monitor.tick(clock.now())  # protects, holds, closes; trips the kill switch past the daily loss limit
            if monitor.flat:
                log.info("every position of the day is closed at %s: the monitor ends", f"{clock.now():%H:%M}")
                break
            clock.sleep_until(_next_minute(clock.now()))
        if not monitor.flat and not run.dry_run and clock.now() >= when.liquidation:
            # The liquidation itself, as liquidate-eod does it and under its order ids (a second one sends
            # nothing): positions never outlive the day because the liquidation flow could not start (the
            # Prefect server away at 15:45, say).
            with store.batch():
                sold = _sell_what_we_opened(store, broker, clock, run)
            log.info("liquidation time %s: the monitor sells the %d positions still held", f"{clock.now():%H:%M}", sold)
            fills = _wait_for_the_sells(store, broker, clock, run, when.close + 2 * MINUTE)
        else:
            fills = monitor.fills()
        exits = [f for f in fills if f.side is Side.SELL]
        log.info("monitor stopped at %s: %d exits filled", f"{clock.now():%H:%M}", len(exits))
        return len(exits)
    finally:
        broker.close()


@task(cache_policy=NO_CACHE, **TRANSIENT_RETRIES)
def flatten_positions(run: RunContext) -> int:
    """At the liquidation time: cancel the system's open orders and sell what it opened.

    Holdings the system did not open stay untouched. Returns the number of positions flattened.
    """
    log, day = get_run_logger(), run.trade_date
    phase = wiring.open_phase(run.settings, run.mode, day, "liquidation")
    when, store, clock, broker = phase.when, phase.store, phase.clock, phase.broker
    try:
        if clock.now() < when.liquidation - OFF_SCHEDULE:
            log.info("liquidation is at %s today; nothing to do at %s", f"{when.liquidation:%H:%M}", f"{clock.now():%H:%M}")
            return 0
        clock.sleep_until(when.liquidation)
        with store.batch():
            flattened = _sell_what_we_opened(store, broker, clock, run)
        if run.dry_run:
            return 0
        _wait_for_the_sells(store, broker, clock, run, when.close + 2 * MINUTE)
        log.info("liquidation at %s: %d positions flattened", f"{when.liquidation:%H:%M}", flattened)
        return flattened
    finally:
        broker.close()


def _sell_what_we_opened(store: Store, broker: Broker, clock: Clock, run: RunContext, purpose: Purpose = Purpose.EOD) -> int:
    """Cancel the system's open orders, then sell at market what its own fills left it holding.

    The sells wait until the broker confirms the cancels (Alpaca cancels asynchronously and refuses a
    sell while the exits still hold the shares), for at most CANCEL_WAIT.
    """
    day = run.trade_date
    ours = [  # a sell this flatten sent before (a retried task) keeps working: its id sends no second one
        o.client_order_id
        for o in broker.open_orders()
        if is_ours(o.client_order_id, day) and o.intent.purpose is not purpose
    ]
    if not run.dry_run:
        for order_id in ours:
            broker.cancel(order_id)
        deadline = clock.now() + CANCEL_WAIT
        while _still_open(broker, ours) and clock.now() < deadline:
            clock.sleep_until(clock.now() + timedelta(seconds=1))
    held = ledger.opened_quantities(ledger.sync_from_broker(store, broker, day))
    positions = broker.positions()
    if run.dry_run:
        for symbol, qty in sorted(held.items()):
            get_run_logger().info("dry run: would cancel %s's exits and sell %d at market", symbol, qty)
        return len(held)
    orders = []
    for symbol, qty in sorted(held.items()):
        shares = min(qty, positions[symbol].qty if symbol in positions else 0)
        if shares <= 0:
            continue
        try:
            orders.append(broker.submit(liquidation(day, symbol, shares, purpose)))
        except OrderRejected as rejected:
            get_run_logger().error("could not flatten %s: %s", symbol, rejected)
    ledger.record_orders(store, day, orders, run.run_id)
    return len(orders)


def _wait_for_the_sells(
    store: Store,
    broker: Broker,
    clock: Clock,
    run: RunContext,
    deadline: datetime,
    *,
    poll: timedelta | None = None,
    after: str = "liquidation",
) -> list[Fill]:
    """Until the system's orders are done (or `deadline`), a minute at a time (or every `poll`); then record the
    fills, say what is still held `after` the liquidation or the flatten, and return the system's fills."""
    day = run.trade_date
    while any(is_ours(o.client_order_id, day) for o in broker.open_orders()) and clock.now() < deadline:
        clock.sleep_until(_next_minute(clock.now()) if poll is None else clock.now() + poll)
    fills = ledger.sync_from_broker(store, broker, day)
    left = ledger.opened_quantities(fills)
    if left:
        get_run_logger().error("still holding after %s: %s", after, ", ".join(f"{s} {q}" for s, q in left.items()))
    return fills


def _still_open(broker: Broker, order_ids: list[ClientOrderId]) -> bool:
    return any((order := broker.order(i)) is not None and order.is_open() for i in order_ids)


def _next_minute(moment):
    return moment.replace(second=0, microsecond=0) + MINUTE


@task(cache_policy=NO_CACHE)
def flatten_now(run: RunContext, at: time | None = None) -> int:
    """Now: cancel the system's open orders, sell what it opened, and send no new order for the rest of the day.

    Holdings the system did not open stay untouched. `at` is the replay's time of day (a replay only).
    Returns the number of positions sold.
    """
    log, day = get_run_logger(), run.trade_date
    phase = wiring.open_phase(run.settings, run.mode, day, "open")
    store, clock, broker = phase.store, phase.clock, phase.broker
    try:
        if at is not None and run.mode == "replay":
            clock.sleep_until(datetime.combine(day, at, tzinfo=calendar.NEW_YORK))
        with store.batch():
            sold = _sell_what_we_opened(store, broker, clock, run, Purpose.FLATTEN)
        if run.dry_run:
            return sold
        message = f"flattened by hand at {clock.now():%H:%M:%S}: {sold} position(s) sold at market, open orders cancelled"
        ledger.record_risk_events(
            store, [RiskEvent(day, clock.now(), Rule.FLATTEN, Action.HALTED, message)], run.run_id
        )  # no new entry today: a flatten ends the day's trading
        poll = timedelta(seconds=5 if run.mode == "live" else 60)
        _wait_for_the_sells(store, broker, clock, run, clock.now() + 2 * MINUTE, poll=poll, after="the flatten")
        log.info("%s", message)
        return sold
    finally:
        broker.close()
