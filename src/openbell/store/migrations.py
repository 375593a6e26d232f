"""Ordered schema migrations for the DuckDB store, applied once each and recorded in schema_migrations."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Migration:
    """One schema step: applied once, in version order, inside its own transaction."""

    version: int
    name: str
    sql: str


# Money and prices are DECIMAL(18,4) so booked amounts round-trip exactly; ratios stay DOUBLE.
_INITIAL_SCHEMA = """
CREATE TABLE runs (
    run_id VARCHAR PRIMARY KEY,
    flow VARCHAR NOT NULL,
    trade_date DATE,
    mode VARCHAR,
    parameters JSON,
    started_at TIMESTAMPTZ,
    finished_at TIMESTAMPTZ,
    status VARCHAR,
    message VARCHAR
);

CREATE TABLE candidates (
    trade_date DATE,
    symbol VARCHAR,
    prior_close DECIMAL(18,4),
    open_price DECIMAL(18,4),
    gap_pct DOUBLE,
    atr14 DOUBLE,
    atr_pct DOUBLE,
    avg_volume_20 DOUBLE,
    rel_volume DOUBLE,
    avg_dollar_volume_20 DOUBLE,
    passed BOOLEAN,
    reject_reason VARCHAR,
    run_id VARCHAR,
    PRIMARY KEY (trade_date, symbol)
);

CREATE TABLE rankings (
    trade_date DATE,
    ranker VARCHAR,
    rank INTEGER,
    symbol VARCHAR,
    score DOUBLE,
    reason VARCHAR,
    selected BOOLEAN,
    run_id VARCHAR,
    PRIMARY KEY (trade_date, ranker, symbol)
);

CREATE TABLE sizing (
    trade_date DATE,
    symbol VARCHAR,
    ref_price DECIMAL(18,4),
    shares INTEGER,
    notional DECIMAL(18,4),
    skipped_reason VARCHAR,
    run_id VARCHAR,
    PRIMARY KEY (trade_date, symbol)
);

CREATE TABLE orders (
    client_order_id VARCHAR PRIMARY KEY,
    trade_date DATE NOT NULL,
    symbol VARCHAR NOT NULL,
    side VARCHAR,
    order_type VARCHAR,
    tif VARCHAR,
    purpose VARCHAR,
    qty INTEGER,
    limit_price DECIMAL(18,4),
    stop_price DECIMAL(18,4),
    oco_group VARCHAR,
    status VARCHAR,
    broker_order_id VARCHAR,
    submitted_at TIMESTAMPTZ,
    updated_at TIMESTAMPTZ,
    filled_qty INTEGER,
    avg_fill_price DECIMAL(18,4),
    reason VARCHAR,
    run_id VARCHAR
);

CREATE TABLE fills (
    fill_id VARCHAR PRIMARY KEY,
    client_order_id VARCHAR NOT NULL,
    trade_date DATE NOT NULL,
    symbol VARCHAR,
    side VARCHAR,
    qty INTEGER,
    price DECIMAL(18,4),
    commission DECIMAL(18,4),
    ts TIMESTAMPTZ
);

CREATE TABLE trades (
    trade_date DATE,
    symbol VARCHAR,
    shares INTEGER,
    entry_ts TIMESTAMPTZ,
    entry_price DECIMAL(18,4),
    exit_ts TIMESTAMPTZ,
    exit_price DECIMAL(18,4),
    exit_reason VARCHAR CHECK (exit_reason IN ('target', 'stop', 'eod')),
    commission DECIMAL(18,4),
    pnl DECIMAL(18,4),
    return_pct DOUBLE,
    entry_order_id VARCHAR,
    exit_order_id VARCHAR,
    PRIMARY KEY (trade_date, symbol)
);

CREATE TABLE daily_pnl (
    trade_date DATE PRIMARY KEY,
    trades INTEGER,
    wins INTEGER,
    losses INTEGER,
    win_rate DOUBLE,
    gross_pnl DECIMAL(18,4),
    commission DECIMAL(18,4),
    net_pnl DECIMAL(18,4),
    unfilled INTEGER,
    skipped INTEGER,
    run_id VARCHAR
);

-- The paper broker's own books: a simulated broker's state, kept apart from the system's records
-- above so reconciliation compares two independent ledgers, as it would against a real broker.
CREATE TABLE paper_orders (
    client_order_id VARCHAR PRIMARY KEY,
    broker_order_id VARCHAR NOT NULL,
    trade_date DATE NOT NULL,
    symbol VARCHAR,
    side VARCHAR,
    order_type VARCHAR,
    tif VARCHAR,
    purpose VARCHAR,
    qty INTEGER,
    limit_price DECIMAL(18,4),
    stop_price DECIMAL(18,4),
    oco_group VARCHAR,
    status VARCHAR,
    submitted_at TIMESTAMPTZ,
    updated_at TIMESTAMPTZ,
    filled_qty INTEGER,
    avg_fill_price DECIMAL(18,4),
    reason VARCHAR
);

CREATE TABLE paper_fills (
    fill_id VARCHAR PRIMARY KEY,
    client_order_id VARCHAR,
    broker_order_id VARCHAR,
    trade_date DATE,
    symbol VARCHAR,
    side VARCHAR,
    qty INTEGER,
    price DECIMAL(18,4),
    commission DECIMAL(18,4),
    ts TIMESTAMPTZ
);

-- Positions the account held before the system traded; the system never touches them.
CREATE TABLE paper_holdings (
    symbol VARCHAR PRIMARY KEY,
    qty INTEGER,
    avg_price DECIMAL(18,4)
);

CREATE TABLE paper_clock (
    trade_date DATE PRIMARY KEY,
    synced_until TIMESTAMPTZ
);
"""

MIGRATIONS: tuple[Migration, ...] = (Migration(1, "initial schema", _INITIAL_SCHEMA),)

# Every table keyed by a trading day, so a day can be wiped and re-run. `runs` is left out on
# purpose: it is the audit log of every execution, including the ones that get re-run.
DAY_TABLES: tuple[str, ...] = (
    "candidates",
    "rankings",
    "sizing",
    "orders",
    "fills",
    "trades",
    "daily_pnl",
    "paper_orders",
    "paper_fills",
    "paper_clock",
)


def _check_order(migrations: tuple[Migration, ...]) -> None:
    versions = [m.version for m in migrations]
    if versions != sorted(set(versions)) or (versions and versions[0] < 1):
        raise RuntimeError(f"migrations must have unique, increasing versions from 1; got {versions}")


_check_order(MIGRATIONS)
