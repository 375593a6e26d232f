"""Intraday tasks: protect filled entries and watch positions until liquidation, then flatten."""

from __future__ import annotations

from datetime import timedelta

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from openbell import ledger
from openbell import runtime as wiring
from openbell.brokers import Broker
from openbell.clock import Clock
from openbell.core.orders import liquidation, protective_exit
from openbell.core.types import ClientOrderId, Purpose, Side, client_order_id
from openbell.errors import OrderRejected
from openbell.store import Store
from tasks.runs import RunContext

MINUTE = timedelta(minutes=1)
CANCEL_WAIT = timedelta(seconds=30)
OFF_SCHEDULE = timedelta(minutes=10)  # a live run this long before its phase belongs to the other cron


@task(cache_policy=NO_CACHE)
def watch_positions(run: RunContext) -> int:
    """From the open to the liquidation time: place protective exits as entries fill, record fills.

    Waits for the open if started early. One pass a minute, no Prefect API calls inside the loop.
    Returns the number of exits that filled.
    """
    log, day = get_run_logger(), run.trade_date
    phase = wiring.open_phase(run.settings, run.mode, day, "open")
    when, store, clock, broker = phase.when, phase.store, phase.clock, phase.broker
    try:
        clock.sleep_until(when.open)
        unprotected = set(_entry_ids(store, day))  # entries are all sent before the open
        mirror = ledger.BrokerMirror(store, broker, day)
        seen = -1
        while clock.now() < when.liquidation:
            with store.batch():  # opens a connection only if this tick writes
                unprotected -= _protect_filled_entries(store, broker, run, unprotected)
                fills = broker.fills_since(None)
                if len(fills) != seen:
                    seen = len(fills)
                    mirror.sync(fills)
            clock.sleep_until(_next_minute(clock.now()))
        exits = [f for f in mirror.sync() if f.side is Side.SELL]
        log.info("monitor stopped at %s: %d exits filled", f"{clock.now():%H:%M}", len(exits))
        return len(exits)
    finally:
        broker.close()


@task(cache_policy=NO_CACHE)
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
        deadline = when.close + 2 * MINUTE
        while any(ledger.is_ours(o.client_order_id, day) for o in broker.open_orders()) and clock.now() < deadline:
            clock.sleep_until(_next_minute(clock.now()))
        left = ledger.opened_quantities(ledger.sync_from_broker(store, broker, day))
        if left:
            log.error("still holding after liquidation: %s", ", ".join(f"{s} {q}" for s, q in left.items()))
        log.info("liquidation at %s: %d positions flattened", f"{when.liquidation:%H:%M}", flattened)
        return flattened
    finally:
        broker.close()


def _sell_what_we_opened(store: Store, broker: Broker, clock: Clock, run: RunContext) -> int:
    """Cancel the system's open orders, then sell at market what its own fills left it holding.

    The sells wait until the broker confirms the cancels (Alpaca cancels asynchronously and refuses a
    sell while the exits still hold the shares), for at most CANCEL_WAIT.
    """
    day = run.trade_date
    ours = [o.client_order_id for o in broker.open_orders() if ledger.is_ours(o.client_order_id, day)]
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
            orders.append(broker.submit(liquidation(day, symbol, shares)))
        except OrderRejected as rejected:
            get_run_logger().error("could not flatten %s: %s", symbol, rejected)
    ledger.record_orders(store, day, orders, run.run_id)
    return len(orders)


def _still_open(broker: Broker, order_ids: list[ClientOrderId]) -> bool:
    return any((order := broker.order(i)) is not None and order.is_open() for i in order_ids)


def _protect_filled_entries(
    store: Store, broker: Broker, run: RunContext, entry_ids: set[ClientOrderId]
) -> set[ClientOrderId]:
    """Place a target/stop pair for each entry that is done and holds shares; returns the entries settled.

    An entry that filled only in part before it expired or was cancelled is protected for the shares
    it got.
    """
    day, settled, sent = run.trade_date, set(), []
    for entry_id in sorted(entry_ids):
        entry = broker.order(entry_id)
        if entry is None or entry.is_open():
            continue
        settled.add(entry_id)
        if entry.filled_qty <= 0 or entry.avg_fill_price is None:
            continue  # unfilled (no opening print), cancelled or rejected: nothing to protect
        symbol = entry.intent.symbol
        if broker.order(client_order_id(day, symbol, Purpose.TARGET)) is not None:
            continue  # protected by an earlier run of the monitor
        exits = protective_exit(day, symbol, entry.filled_qty, entry.avg_fill_price, run.settings.exits.policy())
        if run.dry_run:
            target, stop = exits
            get_run_logger().info("dry run: would protect %s with target %s and stop %s", symbol,
                                  target.limit_price, stop.stop_price)  # fmt: skip
            continue
        sent += broker.submit_oco(*exits)
    ledger.record_orders(store, day, sent, run.run_id)
    return settled


def _entry_ids(store: Store, day) -> list[ClientOrderId]:
    return [
        ClientOrderId(r[0])
        for r in store.query(
            "SELECT client_order_id FROM orders WHERE trade_date = ? AND purpose = 'entry' AND status <> 'rejected'",
            [day],
        )
    ]


def _next_minute(moment):
    return moment.replace(second=0, microsecond=0) + MINUTE
