-- The schema of the DuckDB-file store (openbell before the DuckLake store): its migrations 1 to 3, as they were.
-- Tests build an earlier openbell's database from it, to import.

-- migration 1: initial schema
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

-- migration 2: LLM and ensemble ranking, audited
ALTER TABLE candidates ADD COLUMN ret_5d_pct DOUBLE;
ALTER TABLE candidates ADD COLUMN ret_20d_pct DOUBLE;
ALTER TABLE candidates ADD COLUMN prior_range_pct DOUBLE;
ALTER TABLE rankings ADD COLUMN confidence DOUBLE;
ALTER TABLE rankings ADD COLUMN risk VARCHAR;

-- Which ranker the day trades and, when it is not the one asked for, why.
CREATE TABLE ranking_decisions (
    trade_date DATE PRIMARY KEY,
    requested VARCHAR,
    ranker VARCHAR,
    fallback_reason VARCHAR,
    llm_request_key VARCHAR,
    decided_at TIMESTAMPTZ,
    run_id VARCHAR
);

-- Every ranker's and voter's score for every candidate, so a day's choice can be explained.
CREATE TABLE ranker_scores (
    trade_date DATE,
    ranker VARCHAR,
    symbol VARCHAR,
    score DOUBLE,
    rank INTEGER,
    note VARCHAR,
    run_id VARCHAR,
    PRIMARY KEY (trade_date, ranker, symbol)
);

-- Spearman rank correlation of each ranker's scores with the candidates' realised returns.
CREATE TABLE ranking_quality (
    trade_date DATE,
    ranker VARCHAR,
    horizon VARCHAR CHECK (horizon IN ('open_close', 'open_high')),
    n INTEGER,
    spearman DOUBLE,
    run_id VARCHAR,
    PRIMARY KEY (trade_date, ranker, horizon)
);

-- Every request to an LLM and its reply. Not a day table: replays reuse these replies by request_key.
CREATE TABLE llm_calls (
    call_id VARCHAR PRIMARY KEY,
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
    status VARCHAR CHECK (status IN ('ok', 'invalid', 'error', 'cached')),
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

-- migration 3: research: backtests, sweeps and comparisons
CREATE TABLE backtest_runs (
    run_id VARCHAR PRIMARY KEY,
    kind VARCHAR NOT NULL CHECK (kind IN ('backtest', 'sweep', 'compare')),
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
