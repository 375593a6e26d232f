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
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from broker_bridge import BridgedAlpaca, BridgedTws, Holding, PaperExchange
from pydantic import SecretStr

from openbell import calendar
from openbell.brokers import Broker
from openbell.clock import SimClock
from openbell.config import AlpacaSettings, BrokerSettings, IbkrSettings, RunOptions, Settings
from openbell.core.types import Position, Symbol
from openbell.store import Store

pytestmark = [pytest.mark.slow, pytest.mark.shared_data]

DAY = date(2018, 3, 1)
# Stops early (NVAX at 09:31) and late (AAL, AAPL), targets (CLF, SIRI), held to the liquidation (KO, XOM),
# and two entries without an opening print (BA and F open after 09:30): they expire unfilled.
SYMBOLS = ["AAL", "AAPL", "BA", "CLF", "F", "KO", "NVAX", "SIRI", "XOM"]
HELD = Position(Symbol("IBM"), 100, Decimal("140.00"))  # bought before openbell ran
API_KEY, SECRET_KEY = "PKBRIDGE0KEY0ID", "bridge-secret"
CLIENT_ID = 17


@dataclass
class BrokerDay:
    """One day traded through a fake broker: its database, the fake, and a way to ask the broker afterwards."""

    kind: str
    store: Store
    fake: BridgedAlpaca | BridgedTws
    settings: Settings

    def broker(self) -> Broker:
        clock = SimClock(datetime(DAY.year, DAY.month, DAY.day, 17, tzinfo=calendar.NEW_YORK))
        if self.kind == "alpaca":
            from openbell.brokers.alpaca import AlpacaBroker

            return AlpacaBroker(self.settings, clock, DAY)
        from openbell.brokers.ibkr import IbkrBroker

        return IbkrBroker(self.settings, clock, DAY)


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
def _through_fake(kind: str, shared_data) -> Iterator[tuple[BridgedAlpaca | BridgedTws, Settings]]:
    """A fake of `kind` filling by the paper fill model, chosen as the broker by environment variables as a user would."""
    engine = PaperExchange(DAY, *shared_data)
    if kind == "alpaca":
        fake = BridgedAlpaca(engine, api_key=API_KEY, secret_key=SECRET_KEY).start()
        fake.hold(HELD.symbol, HELD.qty, HELD.avg_price)
        env = {"KIND": "alpaca", "ALPACA__API_KEY": API_KEY, "ALPACA__SECRET_KEY": SECRET_KEY,
               "ALPACA__URL_OVERRIDE": fake.url}  # fmt: skip
        alpaca = AlpacaSettings(api_key=SecretStr(API_KEY), secret_key=SecretStr(SECRET_KEY), url_override=fake.url)
        settings = Settings(broker=BrokerSettings(kind="alpaca", alpaca=alpaca))
    else:
        symbols = {s: 1000 + i for i, s in enumerate([*SYMBOLS, HELD.symbol])}
        fake = BridgedTws(engine, symbols=symbols, holdings=(Holding(HELD.symbol, Decimal(HELD.qty), HELD.avg_price),))
        fake.start()
        env = {"KIND": "ibkr", "IBKR__PORT": str(fake.port), "IBKR__CLIENT_ID": str(CLIENT_ID),
               "IBKR__CONNECT_TIMEOUT_S": "5"}  # fmt: skip
        settings = Settings(broker=BrokerSettings(kind="ibkr", ibkr=IbkrSettings(port=fake.port, client_id=CLIENT_ID + 1)))
    try:
        with pytest.MonkeyPatch.context() as patch:
            for name, value in env.items():
                patch.setenv(f"OPENBELL_BROKER__{name}", value)
            yield fake, settings
    finally:
        fake.stop()


@pytest.fixture(scope="module", params=["alpaca", "ibkr"])
def broker_day(request, paper_day, prefect_harness, shared_data, tmp_path_factory):
    """The day through the fake of `request.param`."""
    with _through_fake(request.param, shared_data) as (fake, settings):
        db = tmp_path_factory.mktemp(request.param) / "openbell.ducklake"
        _run_day(db, shared_data)
        fake.stop_following()
        yield BrokerDay(request.param, Store(db), fake, settings)


def _trades(store: Store) -> dict[str, tuple]:
    """Each trade as (shares, entry time and price, exit time and price, exit reason, gross P&L)."""
    rows = store.query(
        "SELECT symbol, shares, entry_ts, entry_price, exit_ts, exit_price, exit_reason, pnl + commission "
        "FROM trades WHERE trade_date = ? ORDER BY symbol",
        [DAY],
    )
    return {symbol: tuple(rest) for symbol, *rest in rows}


def _orders(store: Store) -> dict[str, tuple]:
    rows = store.query(
        "SELECT client_order_id, status, qty, filled_qty, avg_fill_price, limit_price, stop_price FROM orders "
        "WHERE trade_date = ? ORDER BY client_order_id",
        [DAY],
    )
    return {cid: tuple(rest) for cid, *rest in rows}


def test_the_paper_day_has_every_kind_of_exit_and_an_unfilled_entry(paper_day):
    reasons = {reason for (reason,) in paper_day.query("SELECT DISTINCT exit_reason FROM trades")}
    unfilled = paper_day.query("SELECT symbol FROM orders WHERE purpose = 'entry' AND status = 'expired' ORDER BY 1")
    assert reasons == {"target", "stop", "eod"}
    assert unfilled == [("BA",), ("F",)]


def test_the_day_ends_flat_with_the_holding_from_before_untouched(broker_day):
    broker = broker_day.broker()
    try:
        positions, working = broker.positions(), broker.open_orders()
    finally:
        broker.close()
    assert positions == {HELD.symbol: HELD}
    assert working == []


def test_every_trade_is_the_paper_brokers_trade(broker_day, paper_day):
    assert _trades(broker_day.store) == _trades(paper_day)


def test_every_order_ends_as_on_the_paper_broker(broker_day, paper_day):
    """Entries filled or expired, exits filled or cancelled, liquidations filled: the same orders, the same ends."""
    assert _orders(broker_day.store) == _orders(paper_day)


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
    with _through_fake(kind, shared_data) as (fake, settings), pytest.MonkeyPatch.context() as patch:
        patch.setenv("OPENBELL_RISK__DAILY_LOSS_USD", "500")
        db = tmp_path / "openbell.ducklake"
        report = _run_day(db, shared_data, target_pct=Decimal(20), stop_pct=Decimal(15))
        fake.stop_following()
        day = BrokerDay(kind, Store(db), fake, settings)
        broker = day.broker()
        try:
            positions, working = broker.positions(), broker.open_orders()
        finally:
            broker.close()

    store = day.store
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
    for symbol in _trades(paper_day):
        assert any(line.split()[0] == symbol for line in out.splitlines()[2:])
    assert "only live" not in out and "only replayed" not in out
