"""A replayed day through the flows against the fake Alpaca and the fake TWS ends flat, with the paper broker's trades.

The same Prefect flows trade 2018-03-01 three times: on the paper broker, then through the real alpaca-py
client against the fake Alpaca, then through the real ib_async client against the fake TWS. Both fakes
fill by the paper fill model (broker_bridge), so every trade must come out as on the paper broker; the
commissions are each broker's own (Alpaca none, the fake TWS its per-share schedule), so trades are
compared gross. Each fake account already holds 100 IBM, which the day must leave alone.

alpaca-py asks for everything it reads, so the fake Alpaca catches up before each answer. ib_async reads
what TWS pushed; the IBKR adapter makes a round trip to TWS before each read, so the fills the fake
pushed as the replay's clock moved are in before the flows look (without it, a simulated minute outran
the pushes and the liquidation's fills were missed).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest

from openbell.config import RunOptions
from openbell.store import Store
from tests.fakes.broker_bridge import PaperExchange
from tests.flows.broker_day_support import DAY, HELD, SYMBOLS, BridgedBroker, Fake, orders, start_bridged_broker, trades

pytestmark = [pytest.mark.slow, pytest.mark.shared_data]


@dataclass
class BrokerDay:
    """One day traded through a fake broker: its database, and the fake with a way to ask the broker afterwards."""

    store: Store
    bridged: BridgedBroker

    @property
    def kind(self) -> str:
        return self.bridged.kind

    @property
    def fake(self) -> Fake:
        return self.bridged.fake


def _run_day(db: Path, shared_data, **options) -> str:
    """Run the whole trading day into `db`, the broker as the environment says; returns the report."""
    from openbell.flows.trading_day import trading_day

    minute, daily = shared_data
    return trading_day(trade_date=DAY, symbols=SYMBOLS, options=RunOptions(db_path=str(db), minute_bars=str(minute),
                                                                           daily_bars=str(daily), **options))  # fmt: skip


@pytest.fixture(scope="module")
def paper_day(prefect_harness, shared_data, tmp_path_factory) -> Store:
    db = tmp_path_factory.mktemp("paper") / "openbell.ducklake"
    _run_day(db, shared_data)
    return Store(db)


@contextmanager
def _through_fake(kind: str, shared_data) -> Iterator[BridgedBroker]:
    """A fake of `kind` filling by the paper fill model, chosen as the broker by environment variables as a user would."""
    bridged = start_bridged_broker(kind, PaperExchange(DAY, *shared_data))
    try:
        with pytest.MonkeyPatch.context() as patch:
            for name, value in bridged.env.items():
                patch.setenv(name, value)
            yield bridged
    finally:
        bridged.fake.stop()


@pytest.fixture(scope="module", params=["alpaca", "ibkr"])
def broker_day(request, paper_day, prefect_harness, shared_data, tmp_path_factory):
    """The day through the fake of `request.param`."""
    with _through_fake(request.param, shared_data) as bridged:
        db = tmp_path_factory.mktemp(request.param) / "openbell.ducklake"
        _run_day(db, shared_data)
        bridged.fake.stop_following()
        yield BrokerDay(Store(db), bridged)


def test_the_paper_day_has_every_kind_of_exit_and_an_unfilled_entry(paper_day):
    reasons = {reason for (reason,) in paper_day.query("SELECT DISTINCT exit_reason FROM trades")}
    unfilled = paper_day.query("SELECT symbol FROM orders WHERE purpose = 'entry' AND status = 'expired' ORDER BY 1")
    assert reasons == {"target", "stop", "eod"}
    assert unfilled == [("BA",), ("F",)]


def test_the_day_ends_flat_with_the_holding_from_before_untouched(broker_day):
    positions, working = broker_day.bridged.account()
    assert positions == {HELD.symbol: HELD}
    assert working == []


def test_every_trade_is_the_paper_brokers_trade(broker_day, paper_day):
    assert trades(broker_day.store) == trades(paper_day)


def test_every_order_ends_as_on_the_paper_broker(broker_day, paper_day):
    """Entries filled or expired, exits filled or cancelled, liquidations filled: the same orders, the same ends."""
    assert orders(broker_day.store) == orders(paper_day)


def test_commissions_are_the_brokers_own(broker_day):
    charged = dict(broker_day.store.query("SELECT symbol, commission FROM trades WHERE trade_date = ?", [DAY]))
    if broker_day.kind == "alpaca":
        expected = {symbol: Decimal(0) for symbol in charged}
    else:
        expected = {}
        for execution in broker_day.fake.executions:
            expected[execution.order.symbol] = expected.get(execution.order.symbol, Decimal(0)) + execution.commission
    assert charged == expected


def test_every_order_reached_the_broker_once_under_its_own_client_order_id(broker_day):
    ids = [cid for (cid,) in broker_day.store.query("SELECT client_order_id FROM orders WHERE trade_date = ?", [DAY])]
    fake = broker_day.fake
    if broker_day.kind == "alpaca":
        sent = [cid for cid in ids if not cid.endswith("-stop")]  # a stop travels as the leg of its target's order
        assert [len(fake.orders_with_client_id(cid)) for cid in sent] == [1] * len(sent)
        assert fake.requests.count("POST /v2/orders") == len(sent)
    else:
        assert sorted(fake.place_requests) == sorted(ids)
    assert len(ids) == len(set(ids)) > 0


def test_the_fake_and_its_matching_engine_report_no_failure(broker_day):
    fake = broker_day.fake
    assert fake.engine.errors == []
    if broker_day.kind == "ibkr":
        assert fake.errors == []
        assert fake.unhandled == []


@pytest.mark.parametrize("kind", ["alpaca", "ibkr"])
def test_a_kill_switch_day_ends_flat_with_each_order_sent_once(kind, prefect_harness, shared_data, tmp_path):
    """Wide exits (NVAX alone lost $1,544 with them) and a $500 daily loss limit, through the real SDK clients."""
    with _through_fake(kind, shared_data) as bridged, pytest.MonkeyPatch.context() as patch:
        patch.setenv("OPENBELL_RISK__DAILY_LOSS_USD", "500")
        db = tmp_path / "openbell.ducklake"
        report = _run_day(db, shared_data, target_pct=Decimal(20), stop_pct=Decimal(15))
        fake = bridged.fake
        fake.stop_following()
        positions, working = bridged.account()

    store = Store(db)
    assert store.query("SELECT rule, action FROM risk_events WHERE action = 'halted'") == [("daily_loss_usd", "halted")]
    killed = store.query("SELECT symbol, status FROM orders WHERE purpose = 'kill' ORDER BY symbol")
    assert killed and all(status == "filled" for _, status in killed)
    assert "kill_switch" in report
    assert positions == {HELD.symbol: HELD} and working == []
    ids = [cid for (cid,) in store.query("SELECT client_order_id FROM orders")]
    if kind == "alpaca":
        sent = [cid for cid in ids if not cid.endswith("-stop")]
        assert [len(fake.orders_with_client_id(cid)) for cid in sent] == [1] * len(sent)
    else:
        assert sorted(fake.place_requests) == sorted(ids)


def test_reconcile_sets_the_day_traded_through_the_broker_against_its_replay(broker_day, paper_day, tmp_path, capsys):
    from openbell.cli import main
    from openbell.store.migrations import BOOK_TABLES

    # One store holding the day twice: as traded through the broker (its live book) and replayed on paper.
    store = Store(tmp_path / "openbell.ducklake")
    store.migrate()
    for source, book in ((broker_day.store, "live"), (paper_day, "main")):
        with source.snapshot() as con:
            rows = {t: con.execute(f"SELECT * FROM {t}").fetch_arrow_table() for t in BOOK_TABLES}
        with store.transaction() as con:
            for table, frame in rows.items():
                con.register("copied", frame)
                con.execute(f"INSERT INTO {book}.{table} SELECT * FROM copied")
                con.unregister("copied")

    assert main(["reconcile", "--date", str(DAY), "--db", str(store.path)]) == 0
    out = capsys.readouterr().out

    live = store.query("SELECT sum(pnl), sum(commission) FROM live.trades WHERE trade_date = ?", [DAY])[0]
    replayed = store.query("SELECT sum(pnl), sum(commission) FROM trades WHERE trade_date = ?", [DAY])[0]
    assert live[0] - replayed[0] == replayed[1] - live[1]  # the same trades gross: the commissions are the difference
    assert f"net P&L live ${live[0]:,.2f}, replayed ${replayed[0]:,.2f}: difference ${live[0] - replayed[0]:,.2f}" in out
    for symbol in trades(paper_day):
        assert any(line.split()[0] == symbol for line in out.splitlines()[2:])
    assert "only live" not in out and "only replayed" not in out
