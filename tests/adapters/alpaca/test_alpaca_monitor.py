"""The exit monitor's protection step against the fake Alpaca: what a real broker can do that paper never does."""

from __future__ import annotations

from decimal import Decimal

from alpaca_support import DAY, alpaca_settings, at

from openbell.core.orders import moo_entry
from openbell.core.types import ClientOrderId, OrderStatus, Symbol
from openbell.ledger import record_orders
from openbell.store import Store
from tasks.intraday import _protect_filled_entries
from tasks.runs import RunContext

ENTRY, TARGET, STOP = (ClientOrderId(f"ob-20250307-ABC-{p}") for p in ("entry", "target", "stop"))


def test_an_entry_that_filled_in_part_and_expired_is_protected_for_the_shares_it_got(broker, fake, clock, tmp_path):
    store = Store(tmp_path / "ob.duckdb")
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
