"""Staged replays and crashed runs in a real store: what a replay killed half way leaves, and who cleans it up."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from datetime import date, datetime
from decimal import Decimal

from openbell import calendar
from openbell.store import Store, staging
from openbell.store.migrations import MIGRATIONS
from openbell.store.records import mark_crashed

DAY = date(2024, 3, 5)


def test_a_replay_killed_while_staged_leaves_the_store_as_it_was_and_the_next_one_sweeps_it(tmp_path):
    store = Store(tmp_path / "openbell.ducklake")
    store.migrate()
    store.insert("daily_pnl", [{"trade_date": DAY, "net_pnl": Decimal(7)}])
    killed = textwrap.dedent(f"""
        import os
        from datetime import date
        from openbell.store import Store, staging
        scratch = staging.stage_day(Store({str(store.path)!r}), date(2024, 3, 5))
        scratch.insert("runs", [{{"run_id": "r-killed", "flow": "place_moo_orders", "status": "running"}}])
        scratch.insert("daily_pnl", [{{"trade_date": date(2024, 3, 5), "net_pnl": 99}}])
        os.kill(os.getpid(), 9)
    """)
    done = subprocess.run([sys.executable, "-c", killed], capture_output=True, timeout=120)
    assert done.returncode == -9, done.stderr.decode()
    (left,) = (tmp_path / ".staging").iterdir()

    assert store.query("SELECT net_pnl FROM daily_pnl") == [(Decimal(7),)]  # the earlier replay, untouched
    scratch = staging.stage_day(store, DAY)  # the next replay of any date sweeps what the dead one left

    assert not left.exists() and scratch.path != left / staging.CATALOG
    assert store.query("SELECT status, message FROM runs WHERE run_id = 'r-killed'") == [
        ("crashed", f"crashed: its staged replay ({left.name}) was abandoned")
    ]
    staging.discard(scratch)
    assert list((tmp_path / ".staging").iterdir()) == []


def test_a_run_still_running_when_the_next_run_of_its_phase_starts_is_marked_crashed(tmp_path):
    store = Store(tmp_path / "openbell.ducklake")
    store.migrate()
    store.insert("runs", [
        {"run_id": "old", "flow": "monitor_exits", "trade_date": DAY, "mode": "replay", "status": "running"},
        {"run_id": "other-day", "flow": "monitor_exits", "trade_date": date(2024, 3, 4), "mode": "replay", "status": "running"},
        {"run_id": "other-phase", "flow": "liquidate_eod", "trade_date": DAY, "mode": "replay", "status": "running"},
        {"run_id": "done", "flow": "monitor_exits", "trade_date": DAY, "mode": "replay", "status": "completed"},
    ])  # fmt: skip
    now = datetime(2024, 3, 5, 11, 2, 3, tzinfo=calendar.NEW_YORK)

    assert mark_crashed(store, "monitor_exits", DAY, "replay", "new", now) == ["old"]

    rows = dict(store.query("SELECT run_id, status FROM runs"))
    assert rows == {"old": "crashed", "other-day": "running", "other-phase": "running", "done": "completed"}
    ((finished, message),) = store.query("SELECT finished_at, message FROM runs WHERE run_id = 'old'")
    assert finished == now and message.startswith("crashed: still running when run new")


def test_the_live_book_takes_the_days_an_earlier_openbell_traded_live(tmp_path):
    store = Store(tmp_path / "openbell.ducklake")
    with store.transaction() as con:  # a store of the openbell before the live book (schema version 4)
        con.execute("CREATE TABLE schema_migrations (version INTEGER NOT NULL, name VARCHAR, applied_at TIMESTAMPTZ)")
        for migration in [m for m in MIGRATIONS if m.version <= 4]:
            con.execute(migration.sql)
            con.execute(
                "INSERT INTO schema_migrations VALUES (?, ?, current_timestamp)", [migration.version, migration.name]
            )
    live_day, replayed_day = date(2024, 3, 4), DAY
    store.insert("runs", [
        {"run_id": "a", "flow": "scan_and_rank", "trade_date": live_day, "mode": "replay", "started_at": datetime(2024, 3, 4, 7)},
        {"run_id": "b", "flow": "scan_and_rank", "trade_date": live_day, "mode": "live", "started_at": datetime(2024, 3, 4, 8)},
        {"run_id": "c", "flow": "scan_and_rank", "trade_date": replayed_day, "mode": "replay", "started_at": datetime(2024, 3, 6)},
        {"run_id": "d", "flow": "backtest", "trade_date": replayed_day, "mode": "live", "started_at": datetime(2024, 3, 7)},
    ])  # fmt: skip
    store.insert("trades", [{"trade_date": d, "symbol": "ABC", "shares": 10} for d in (live_day, replayed_day)])
    store.insert("paper_holdings", [{"symbol": "XYZ", "qty": 5, "avg_price": Decimal(10)}])

    assert store.migrate()[-1] == "the live book apart from replays"

    assert store.query("SELECT trade_date FROM trades") == [(replayed_day,)]
    assert store.query("SELECT trade_date FROM live.trades") == [(live_day,)]
    assert store.query("SELECT symbol FROM live.paper_holdings") == store.query("SELECT symbol FROM paper_holdings")
