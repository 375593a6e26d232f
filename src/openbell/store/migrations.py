"""The store's schema: ordered migrations, each applied once and recorded in schema_migrations.

A DuckLake table has no primary key, unique or CHECK constraints (only NOT NULL), so the keys and the
allowed values live here, next to the tables, and the store enforces them on every write: an upsert
replaces the row with the same key, an insert refuses a key that is already stored, and a value
outside its column's allowed set is refused.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Migration:
    """One schema step: applied once, in version order, inside its own transaction."""

    version: int
    name: str
    sql: str


# Money and prices are DECIMAL(18,4) so booked amounts round-trip exactly; ratios stay DOUBLE.
# Version 1 is the whole schema of the DuckDB-file store (its migrations 1 to 3) in the lake.
_SCHEMA = """
CREATE TABLE runs (
    run_id VARCHAR NOT NULL,
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
    trade_date DATE NOT NULL,
    symbol VARCHAR NOT NULL,
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
    ret_5d_pct DOUBLE,
    ret_20d_pct DOUBLE,
    prior_range_pct DOUBLE
);

CREATE TABLE rankings (
    trade_date DATE NOT NULL,
    ranker VARCHAR NOT NULL,
    rank INTEGER,
    symbol VARCHAR NOT NULL,
    score DOUBLE,
    reason VARCHAR,
    selected BOOLEAN,
    run_id VARCHAR,
    confidence DOUBLE,
    risk VARCHAR
);

-- Which ranker the day trades and, when it is not the one asked for, why.
CREATE TABLE ranking_decisions (
    trade_date DATE NOT NULL,
    requested VARCHAR,
    ranker VARCHAR,
    fallback_reason VARCHAR,
    llm_request_key VARCHAR,
    decided_at TIMESTAMPTZ,
    run_id VARCHAR
);

-- Every ranker's and voter's score for every candidate, so a day's choice can be explained.
CREATE TABLE ranker_scores (
    trade_date DATE NOT NULL,
    ranker VARCHAR NOT NULL,
    symbol VARCHAR NOT NULL,
    score DOUBLE,
    rank INTEGER,
    note VARCHAR,
    run_id VARCHAR
);

-- Spearman rank correlation of each ranker's scores with the candidates' realised returns.
CREATE TABLE ranking_quality (
    trade_date DATE NOT NULL,
    ranker VARCHAR NOT NULL,
    horizon VARCHAR NOT NULL,
    n INTEGER,
    spearman DOUBLE,
    run_id VARCHAR
);

-- Every request to an LLM and its reply. Not a day table: replays reuse these replies by request_key.
CREATE TABLE llm_calls (
    call_id VARCHAR NOT NULL,
    request_key VARCHAR NOT NULL,
    prompt_hash VARCHAR NOT NULL,
    trade_date DATE,
    run_id VARCHAR,
    attempt INTEGER,
    requested_at TIMESTAMPTZ,
    base_url VARCHAR,
    model VARCHAR,
    params JSON,
    response_format VARCHAR,
    template_version VARCHAR,
    messages JSON,
    inputs JSON,
    raw_reply VARCHAR,
    status VARCHAR,
    error VARCHAR,
    parsed JSON,
    dropped JSON,
    latency_ms DOUBLE,
    prompt_tokens INTEGER,
    completion_tokens INTEGER,
    est_cost_usd DOUBLE,
    cached_from VARCHAR
);

-- Headlines given to the LLM, kept so a replay sends the same prompt. Not a day table either.
CREATE TABLE news_headlines (
    trade_date DATE,
    symbol VARCHAR,
    published_at TIMESTAMPTZ,
    title VARCHAR,
    source VARCHAR,
    url VARCHAR,
    provider VARCHAR,
    fetched_at TIMESTAMPTZ
);

CREATE TABLE sizing (
    trade_date DATE NOT NULL,
    symbol VARCHAR NOT NULL,
    ref_price DECIMAL(18,4),
    shares INTEGER,
    notional DECIMAL(18,4),
    skipped_reason VARCHAR,
    run_id VARCHAR
);

CREATE TABLE orders (
    client_order_id VARCHAR NOT NULL,
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
    fill_id VARCHAR NOT NULL,
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
    trade_date DATE NOT NULL,
    symbol VARCHAR NOT NULL,
    shares INTEGER,
    entry_ts TIMESTAMPTZ,
    entry_price DECIMAL(18,4),
    exit_ts TIMESTAMPTZ,
    exit_price DECIMAL(18,4),
    exit_reason VARCHAR,
    commission DECIMAL(18,4),
    pnl DECIMAL(18,4),
    return_pct DOUBLE,
    entry_order_id VARCHAR,
    exit_order_id VARCHAR
);

CREATE TABLE daily_pnl (
    trade_date DATE NOT NULL,
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
    client_order_id VARCHAR NOT NULL,
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
    fill_id VARCHAR NOT NULL,
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
    symbol VARCHAR NOT NULL,
    qty INTEGER,
    avg_price DECIMAL(18,4)
);

CREATE TABLE paper_clock (
    trade_date DATE NOT NULL,
    synced_until TIMESTAMPTZ
);

-- Research results, apart from the day tables: a backtest never touches a day's records, and many
-- runs sit side by side, each under its run_id.
CREATE TABLE backtest_runs (
    run_id VARCHAR NOT NULL,
    kind VARCHAR NOT NULL,
    start_date DATE,
    end_date DATE,
    parameters JSON,
    data_files JSON,
    code_version VARCHAR,
    started_at TIMESTAMPTZ,
    wall_s DOUBLE,
    report_path VARCHAR
);

CREATE TABLE backtest_trades (
    run_id VARCHAR,
    trade_date DATE,
    symbol VARCHAR,
    ranker VARCHAR,
    shares INTEGER,
    entry_ts TIMESTAMPTZ,
    entry_price DECIMAL(18,4),
    exit_ts TIMESTAMPTZ,
    exit_price DECIMAL(18,4),
    exit_reason VARCHAR,
    commission DECIMAL(18,4),
    pnl DECIMAL(18,4),
    return_pct DOUBLE,
    mfe_pct DOUBLE,
    mae_pct DOUBLE,
    open_high_pct DOUBLE
);

CREATE TABLE backtest_daily (
    run_id VARCHAR,
    trade_date DATE,
    equity DECIMAL(18,4),
    pnl DECIMAL(18,4),
    exposure DOUBLE,
    drawdown_pct DOUBLE,
    trades INTEGER,
    ranker VARCHAR,
    note VARCHAR
);

CREATE TABLE backtest_metrics (
    run_id VARCHAR,
    metric VARCHAR,
    value DOUBLE,
    variant VARCHAR  -- '' for a backtest; the ranker of a comparison; the combination of a sweep
);
"""

# Every guard's verdict: a limit that refused an order or tripped, a protective order that fell back to
# the monitor, an outage, a reset. `observed` and `limit_value` are the numbers the rule compared.
_RISK_EVENTS = """
CREATE TABLE risk_events (
    event_id VARCHAR NOT NULL,
    trade_date DATE NOT NULL,
    ts TIMESTAMPTZ NOT NULL,
    rule VARCHAR NOT NULL,
    symbol VARCHAR,
    observed DOUBLE,
    limit_value DOUBLE,
    action VARCHAR NOT NULL,
    message VARCHAR,
    run_id VARCHAR
);
"""

# A trailing stop's distance in the paper broker's books (core.types.OrderIntent.trail_percent / trail_amount),
# next to paper_orders: a table of its own, since DuckLake cannot read rows inlined before an added column.
_PAPER_TRAILING_STOPS = """
CREATE TABLE paper_trailing_stops (
    client_order_id VARCHAR NOT NULL,
    trade_date DATE NOT NULL,
    trail_percent DECIMAL(18,4),
    trail_amount DECIMAL(18,4)
);
"""

# The learning loop's verdict on each ranker for a session, with the record it was judged on.
_RANKER_STATES = """
CREATE TABLE ranker_states (
    trade_date DATE NOT NULL,
    ranker VARCHAR NOT NULL,
    state VARCHAR NOT NULL,
    previous_state VARCHAR,
    reason VARCHAR,
    sessions INTEGER,
    trades INTEGER,
    win_rate DOUBLE,
    expectancy_pct DOUBLE,
    spearman DOUBLE,
    run_id VARCHAR
);
"""

# The live book: the day tables again in schema `live`, so what was traded live sits next to the same
# day replayed (in main) and a replay never touches it. The dates whose latest run was live move there
# (before, a replay of such a date deleted them); the paper account is copied (the live one goes on
# from the same holdings). Tables added later are made in `live` by `live_book_sql` after the migrations.
_LIVE_BOOK_TABLES_V6 = (
    "candidates", "rankings", "ranking_decisions", "ranker_scores", "ranking_quality", "sizing", "orders", "fills",
    "trades", "daily_pnl", "paper_orders", "paper_trailing_stops", "paper_fills", "paper_clock", "risk_events",
    "ranker_states", "paper_holdings",
)  # fmt: skip
_LIVE_DATES = (
    "SELECT trade_date FROM runs WHERE trade_date IS NOT NULL AND flow NOT IN ('backtest', 'sweep', 'compare') "
    "GROUP BY trade_date HAVING arg_max(mode, started_at) = 'live'"
)
_LIVE_BOOK = "CREATE SCHEMA IF NOT EXISTS live;\n" + "\n".join(
    f"CREATE TABLE live.{t} AS SELECT * FROM main.{t} WHERE false;"
    + (
        f"INSERT INTO live.{t} SELECT * FROM main.{t};"
        if t == "paper_holdings"
        else f"INSERT INTO live.{t} SELECT * FROM main.{t} WHERE trade_date IN ({_LIVE_DATES});"
        f"DELETE FROM main.{t} WHERE trade_date IN ({_LIVE_DATES});"
    )
    for t in _LIVE_BOOK_TABLES_V6
)

# What the scan's data-quality gate found (core.data_quality): each bar or symbol-day the market data dropped,
# each check a symbol failed, and one "score" row per scanned symbol (its score in [0, 1] in `value` and `score`).
# A table of its own rather than columns on candidates: DuckLake cannot read rows inlined before an added column.
_DATA_QUALITY = """
CREATE TABLE data_quality (
    trade_date DATE NOT NULL,
    symbol VARCHAR NOT NULL,
    source VARCHAR NOT NULL,
    bar_date DATE,
    ts TIMESTAMPTZ,
    "check" VARCHAR NOT NULL,
    reason VARCHAR,
    value DOUBLE,
    score DOUBLE,
    run_id VARCHAR
);
"""

MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "openbell records in a DuckLake", _SCHEMA),
    Migration(2, "risk events", _RISK_EVENTS),
    Migration(3, "trailing stops in the paper books", _PAPER_TRAILING_STOPS),
    Migration(4, "ranker states of the learning loop", _RANKER_STATES),
    Migration(5, "data quality", _DATA_QUALITY),
    Migration(6, "the live book apart from replays", _LIVE_BOOK),
)

# Each table's key: at most one stored row per key (upsert replaces it, insert refuses a second).
KEYS: dict[str, tuple[str, ...]] = {
    "runs": ("run_id",),
    "candidates": ("trade_date", "symbol"),
    "rankings": ("trade_date", "ranker", "symbol"),
    "ranking_decisions": ("trade_date",),
    "ranker_scores": ("trade_date", "ranker", "symbol"),
    "ranking_quality": ("trade_date", "ranker", "horizon"),
    "llm_calls": ("call_id",),
    "sizing": ("trade_date", "symbol"),
    "orders": ("client_order_id",),
    "fills": ("fill_id",),
    "trades": ("trade_date", "symbol"),
    "daily_pnl": ("trade_date",),
    "paper_orders": ("client_order_id",),
    "paper_trailing_stops": ("client_order_id",),
    "paper_fills": ("fill_id",),
    "paper_holdings": ("symbol",),
    "paper_clock": ("trade_date",),
    "backtest_runs": ("run_id",),
    "risk_events": ("event_id",),
    "ranker_states": ("trade_date", "ranker"),
    "data_quality": ("trade_date", "symbol", "source", "check", "bar_date", "ts"),
}

# Columns that accept only these values (NULL aside).
ALLOWED: dict[tuple[str, str], tuple[str, ...]] = {
    ("trades", "exit_reason"): ("target", "stop", "eod", "kill_switch", "day_target", "manual", "time"),
    ("ranking_quality", "horizon"): ("open_close", "open_high"),
    ("llm_calls", "status"): ("ok", "invalid", "error", "cached"),
    ("backtest_runs", "kind"): ("backtest", "sweep", "compare"),
    ("ranker_states", "state"): ("active", "throttled", "quarantined"),
    ("data_quality", "source"): ("minute", "daily", "scan"),
}

# Every table keyed by a trading day, so a day can be wiped and re-run. `runs` is left out on
# purpose: it is the audit log of every execution, including the ones that get re-run.
DAY_TABLES: tuple[str, ...] = (
    "candidates",
    "rankings",
    "ranking_decisions",
    "ranker_scores",
    "ranking_quality",
    "sizing",
    "orders",
    "fills",
    "trades",
    "daily_pnl",
    "paper_orders",
    "paper_trailing_stops",
    "paper_fills",
    "paper_clock",
    "risk_events",
    "ranker_states",
    "data_quality",
)

# The tables of a book (live or replay): the day tables and the paper account's holdings.
BOOK_TABLES: tuple[str, ...] = (*DAY_TABLES, "paper_holdings")


def live_book_sql(existing: set[str]) -> str:
    """CREATE TABLE statements for the book tables not yet in schema `live` (`existing` are those that are)."""
    return "".join(f"CREATE TABLE live.{t} AS SELECT * FROM main.{t} WHERE false;" for t in BOOK_TABLES if t not in existing)


def _check_order(migrations: tuple[Migration, ...]) -> None:
    versions = [m.version for m in migrations]
    if versions != sorted(set(versions)) or (versions and versions[0] < 1):
        raise RuntimeError(f"migrations must have unique, increasing versions from 1; got {versions}")


_check_order(MIGRATIONS)
