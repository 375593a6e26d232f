"""Intraday steps against the fake Alpaca: what a real broker does that the paper broker never does."""

from __future__ import annotations

from decimal import Decimal

from alpaca_support import DAY, alpaca_settings, at

from openbell.core.exits import ExitPolicy
from openbell.core.orders import moo_entry, protective_exit
from openbell.core.types import ClientOrderId, OrderStatus, Symbol
from openbell.ledger import record_orders
from openbell.store import Store
from tasks.intraday import _protect_filled_entries, _sell_what_we_opened
from tasks.runs import RunContext

ENTRY, TARGET, STOP, EOD = (ClientOrderId(f"ob-20250307-ABC-{p}") for p in ("entry", "target", "stop", "eod"))


def test_an_entry_that_filled_in_part_and_expired_is_protected_for_the_shares_it_got(broker, fake, clock, tmp_path):
    store = Store(tmp_path / "ob.ducklake")
    store.migrate()
    record_orders(store, DAY, [broker.submit(moo_entry(DAY, Symbol("ABC"), 100))])
    clock.sleep_until(at("09:30"))
    fake.fill(ENTRY, "50.00", qty=40)
    fake.expire(ENTRY)
    run = RunContext("run-1", "monitor_exits", DAY, "replay", alpaca_settings(fake.url))

    settled = _protect_filled_entries(store, broker, run, {ENTRY})

    target, stop = broker.order(TARGET), broker.order(STOP)
    assert settled == {ENTRY}
    assert broker.order(ENTRY).status is OrderStatus.EXPIRED
    assert (target.intent.qty, stop.intent.qty) == (40, 40)
    assert (target.intent.limit_price, stop.intent.stop_price) == (Decimal("51.30"), Decimal("49.55"))


def test_liquidation_waits_for_alpaca_to_confirm_the_cancels_before_selling(connect, fake, clock, tmp_path):
    broker = connect(cancel_wait_s=0.0)  # the adapter returns the pending cancel at once: the task must wait
    store = Store(tmp_path / "ob.ducklake")
    store.migrate()
    record_orders(store, DAY, [broker.submit(moo_entry(DAY, Symbol("ABC"), 100))])
    clock.sleep_until(at("09:30"))
    fake.fill(ENTRY, "50.00")
    entry = broker.order(ENTRY)
    record_orders(
        store, DAY, list(broker.submit_oco(*protective_exit(DAY, Symbol("ABC"), 100, entry.avg_fill_price, ExitPolicy())))
    )
    fake.slow_cancels(requests=40)  # outlasts the reads before the sell, not the wait for the cancel
    clock.sleep_until(at("15:45"))
    run = RunContext("run-1", "liquidate_eod", DAY, "replay", alpaca_settings(fake.url))

    flattened = _sell_what_we_opened(store, broker, clock, run)

    eod = broker.order(EOD)
    assert flattened == 1
    assert (eod.status, eod.intent.qty) == (OrderStatus.NEW, 100)
    assert broker.order(TARGET).status is OrderStatus.CANCELLED
