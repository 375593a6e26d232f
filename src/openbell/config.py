"""Settings, read once at the edge from the environment (prefix OPENBELL_) and passed down.

Each area has its own model: data, scan, quality, ranking, llm, news, exits, sizing, broker, schedule. Nested fields are
set with a double underscore, e.g. OPENBELL_EXITS__TARGET_PCT=3.0 or OPENBELL_DATA__DB_PATH=/tmp/ob.ducklake.

`load_settings` checks every OPENBELL_ variable before it reads the settings: one that names no setting (pydantic-settings
would ignore it) or holds JSON that does not parse is a ConfigError naming the variable and the one probably meant. The
valid names come from the models' fields; the few OPENBELL_ variables that are not settings are listed in NOT_SETTINGS.
"""

from __future__ import annotations

import difflib
import json
import os
import types
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import time, timedelta
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

from openbell.core.backtest import FillCosts
from openbell.core.data_quality import QualityPolicy
from openbell.core.exits import EARLY_CLOSE_OFFSET_MIN, ExitPolicy
from openbell.core.learning import LearningPolicy
from openbell.core.risk import RiskLimits
from openbell.core.scan import ScanFilters
from openbell.core.sizing import SizingPolicy
from openbell.core.types import MOO_CUTOFF, PAPER_STARTING_CASH
from openbell.core.voters import VOTERS
from openbell.errors import ConfigError

if TYPE_CHECKING:
    from openbell.store.lake import Lake

_STRICT = ConfigDict(extra="forbid", frozen=True)


class DataSettings(BaseModel):
    model_config = _STRICT
    dir: Path = Field(Path("data"), description="Folder for runtime files: the database, generated data, logs.")
    db_path: Path | None = Field(None, description="The store's catalog file (a DuckLake); default <dir>/openbell.ducklake.")
    catalog: str | None = Field(
        None,
        description="A shared DuckLake catalog instead of the file, for several machines: postgres:<libpq string>.",
        examples=["postgres:dbname=openbell host=db.internal user=openbell"],
    )
    data_path: str | None = Field(
        None,
        description="Where the store's data files go; default <db_path>.files/. A shared folder or s3://bucket/prefix/.",
    )
    minute_bars: Path | None = Field(None, description="Minute-bar Parquet for replays; default: the synthetic market.")
    daily_bars: Path | None = Field(None, description="Daily-bar Parquet for replays; default: the synthetic market.")
    lock_timeout_s: float = Field(30.0, gt=0, description="How long a write waits for another process's write to end.")
    keep_snapshots_days: float = Field(
        7.0, ge=0, description="How long the store keeps old snapshots (time travel, readers' open transactions)."
    )
    merge_above_files: int = Field(
        500, ge=0, description="Housekeeping merges small data files once the store holds more than this many (20 a day)."
    )
    universe: list[str] | None = Field(
        None,
        description="Symbols a live scan considers; empty: the broker's pre-market movers list.",
        examples=[["AAPL", "TSLA"]],
    )

    @field_validator("catalog")
    @classmethod
    def _a_shared_catalog(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("postgres:"):
            raise ValueError("a shared catalog is postgres:<libpq connection string>, e.g. postgres:dbname=openbell host=db")
        return value

    @model_validator(mode="after")
    def _files_for_a_shared_catalog(self) -> DataSettings:
        if self.catalog and not self.data_path:
            raise ValueError(
                "a shared catalog needs data_path (OPENBELL_DATA__DATA_PATH): a folder every machine sees, or s3://bucket/prefix/"
            )
        return self

    @property
    def database(self) -> Path:
        return self.db_path or self.dir / "openbell.ducklake"

    @property
    def legacy_database(self) -> Path:
        """Where openbell kept its records before the store was a DuckLake (a DuckDB file)."""
        return self.dir / "openbell.duckdb"

    def housekeeping(self) -> dict:
        """The arguments of `Store.housekeep` these settings ask for."""
        return {"keep_snapshots_days": self.keep_snapshots_days, "merge_above_files": self.merge_above_files}

    def lake(self) -> Lake:
        from openbell.store.lake import Lake  # here: importing the settings does not load DuckDB

        return Lake.at(self.database, catalog=self.catalog, data_path=self.data_path)


# The settings' defaults are the core policies' defaults: each is written once, in the core.
_SCAN = ScanFilters()
_QUALITY = QualityPolicy()
_LEARNING = LearningPolicy()
_EXITS = ExitPolicy()
_SIZING = SizingPolicy()
_RISK = RiskLimits()
_COSTS = FillCosts()


class ScanSettings(BaseModel):
    model_config = _STRICT
    min_price: float = Field(_SCAN.min_price, gt=0, description="Lowest opening price of a candidate, dollars.")
    max_price: float = Field(_SCAN.max_price, gt=0, description="Highest opening price of a candidate, dollars.")
    min_gap_pct: float = Field(_SCAN.min_gap_pct, description="Smallest up-gap from the prior close, percent.")
    max_gap_pct: float = Field(_SCAN.max_gap_pct, description="Largest up-gap, percent (bigger ones are usually bad data).")
    min_avg_dollar_volume: float = Field(
        _SCAN.min_avg_dollar_volume, ge=0, description="Least 20-day average dollar volume."
    )
    min_rel_volume: float = Field(_SCAN.min_rel_volume, ge=0, description="Least opening volume in average minutes.")
    top_n: int = Field(5, ge=1, le=100, description="How many ranked candidates are traded.")

    @model_validator(mode="after")
    def _ranges_that_something_passes(self) -> ScanSettings:
        _below(self, "scan", "min_price", "max_price", "or no price passes the scan")
        _below(self, "scan", "min_gap_pct", "max_gap_pct", "or no gap passes the scan")
        return self

    def filters(self) -> ScanFilters:
        return ScanFilters(**self.model_dump(exclude={"top_n"}))


class QualitySettings(BaseModel):
    """The scan's data-quality gate: per-symbol checks of the bars it reads, a score in [0, 1], a threshold."""

    model_config = _STRICT
    min_score: float = Field(
        _QUALITY.min_score, ge=0, le=1, description="Symbols scoring below this are excluded (0: exclude none)."
    )
    stale_after_min: float = Field(
        _QUALITY.stale_after_min, gt=0, description="Live day: a symbol whose last minute bar is older is stale."
    )
    outlier_atr: float = Field(
        _QUALITY.outlier_atr, gt=0, description="A minute bar's range or move beyond this many daily ATRs is an outlier."
    )
    outlier_pct: float = Field(
        _QUALITY.outlier_pct, gt=0, description="A minute bar this many percent beyond both neighbours is an outlier."
    )
    max_gap_min: float = Field(_QUALITY.max_gap_min, gt=0, description="Longest gap between two minute bars, minutes.")
    split_tolerance_pct: float = Field(
        _QUALITY.split_tolerance_pct, gt=0, description="Largest gap between daily and last minute close, percent."
    )

    def policy(self) -> QualityPolicy:
        return QualityPolicy(**self.model_dump())


RankerName = Literal["llm", "ensemble", "quant"]
ENSEMBLE_VOTERS = (*VOTERS, "llm")  # the technical voters, and the LLM as one more


class LearningSettings(BaseModel):
    """The learning loop: each ranker's recent record throttles or quarantines it (off by default)."""

    model_config = _STRICT
    enabled: bool = Field(False, description="Judge the rankers before each ranking and act on the verdict.")
    lookback_sessions: int = Field(
        _LEARNING.lookback_sessions, ge=1, description="The sessions each ranker's record covers."
    )
    min_trades: int = Field(_LEARNING.min_trades, ge=1, description="Fewer trades: judged on rank correlation alone.")
    min_sessions: int = Field(
        _LEARNING.min_sessions, ge=1, description="Fewer scored sessions: too little history to judge."
    )
    throttle_win_rate: float = Field(_LEARNING.throttle_win_rate, ge=0, le=1, description="Throttle below this win rate.")
    throttle_expectancy_pct: float = Field(
        _LEARNING.throttle_expectancy_pct, description="Throttle below this mean return per trade, percent."
    )
    quarantine_expectancy_pct: float = Field(
        _LEARNING.quarantine_expectancy_pct, description="Quarantine below this mean return per trade, percent."
    )
    quarantine_spearman: float = Field(
        _LEARNING.quarantine_spearman, ge=-1, le=1, description="Quarantine below this mean rank correlation."
    )
    recover_spearman: float = Field(
        _LEARNING.recover_spearman, ge=-1, le=1, description="A quarantined ranker recovers above this."
    )
    throttle_size: Decimal = Field(
        _LEARNING.throttle_size, gt=0, le=1, description="A throttled ranker's trades, times the size."
    )

    def policy(self) -> LearningPolicy:
        return LearningPolicy(**self.model_dump(exclude={"enabled"}))


class RankingSettings(BaseModel):
    model_config = _STRICT
    method: RankerName = Field(
        "llm",
        description="llm: the LLM orders the candidates (the quant ranker when it is not configured or fails); "
        "ensemble: the voters and the LLM combined by weights or consensus; quant: gap x relative volume only.",
    )
    weights: dict[str, float] = Field(
        default_factory=lambda: dict.fromkeys(ENSEMBLE_VOTERS, 1.0),
        description="Ensemble weight per voter (momentum, rsi, macd, sma_trend, mean_reversion, llm); 0 leaves one out.",
        examples=[{"momentum": 1, "llm": 2}],
    )
    min_agree: int | None = Field(
        None,
        ge=1,
        le=len(ENSEMBLE_VOTERS),
        description="Ensemble consensus: trade only where this many voters score >= 0.5.",
    )

    @field_validator("weights")
    @classmethod
    def _known_voters(cls, weights: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(weights) - set(ENSEMBLE_VOTERS))
        if unknown:
            raise ValueError(f"unknown voters {unknown}; choose from {list(ENSEMBLE_VOTERS)}")
        if any(w < 0 for w in weights.values()) or not any(w > 0 for w in weights.values()):
            raise ValueError("weights must be >= 0 with at least one > 0")
        return weights


class LlmSettings(BaseModel):
    model_config = _STRICT
    model: str | None = Field(None, description="Chat model name, e.g. gpt-4o-mini or llama3.1; unset: no LLM ranking.")
    base_url: str | None = Field(
        None, description="OpenAI-compatible API root, e.g. http://127.0.0.1:11434/v1 for Ollama; unset: OpenAI's."
    )
    api_key: SecretStr | None = Field(
        None, description="API key (a secret: never logged or stored); local servers need none."
    )
    timeout_s: float = Field(30.0, gt=0, le=600, description="Seconds one request may take.")
    budget_s: float = Field(
        120.0, gt=0, le=1800, description="Seconds the whole ranking may take, retries included (never past the MOO time)."
    )
    max_tokens: int = Field(2_000, ge=64, le=32_000, description="Most tokens the reply may use.")
    temperature: float = Field(0.0, ge=0, le=2, description="Sampling temperature; 0 for the most repeatable ranking.")
    max_candidates: int = Field(25, ge=1, le=200, description="How many candidates (best by the quant ranker) the LLM sees.")
    structured_output: Literal["auto", "json_schema", "json_object"] = Field(
        "auto", description="auto: ask for a JSON schema and fall back to JSON mode for servers that lack it."
    )
    retry_backoff_s: float = Field(
        1.0, ge=0, le=60, description="First wait before retrying a timeout, 429 or 5xx; doubles."
    )
    input_cost_per_mtok: float = Field(0.0, ge=0, description="Dollars per million prompt tokens, for the cost estimate.")
    output_cost_per_mtok: float = Field(0.0, ge=0, description="Dollars per million reply tokens, for the cost estimate.")
    fresh: bool = Field(False, description="Call the model even when a recorded reply to the same prompt exists.")

    @property
    def configured(self) -> bool:
        return bool(self.model)


class NewsSettings(BaseModel):
    model_config = _STRICT
    provider: Literal["fmp", "polygon"] | None = Field(None, description="Headline source; unset: no news.")
    api_key: SecretStr | None = Field(None, description="The provider's API key (sent as a header, never logged).")
    url_override: str | None = Field(None, description="Talk to this news API instead of the provider's (tests: a fake).")
    per_symbol: int = Field(3, ge=1, le=20, description="Most headlines per symbol.")
    lookback_hours: int = Field(24, ge=1, le=24 * 14, description="Headlines published this many hours before the scan.")
    timeout_s: float = Field(10.0, gt=0, le=120, description="Seconds the news request may take.")

    @property
    def configured(self) -> bool:
        return self.provider is not None and self.api_key is not None


class ExitSettings(BaseModel):
    model_config = _STRICT
    target_pct: Decimal = Field(_EXITS.target_pct, gt=0, description="Profit target above the entry fill, percent.")
    stop_pct: Decimal = Field(_EXITS.stop_pct, gt=0, lt=100, description="Stop below the entry fill, percent.")
    liquidation_time: time = Field(_EXITS.liquidation, description="Flatten at this New York time on a full day.")
    early_close_offset_min: int = Field(
        EARLY_CLOSE_OFFSET_MIN, ge=1, le=120, description="On half days, flatten this many minutes before the close."
    )
    target_atr: Decimal | None = Field(
        None, gt=0, description="Target at this many ATR(14) above the entry fill instead of target_pct (unset: off)."
    )
    stop_atr: Decimal | None = Field(
        None, gt=0, description="Stop at this many ATR(14) below the entry fill instead of stop_pct (unset: off)."
    )
    trail_pct: Decimal | None = Field(
        None, gt=0, lt=100, description="Trailing stop: this percent below the highest high since the entry (unset: off)."
    )
    trail_atr: Decimal | None = Field(
        None, gt=0, description="Trailing stop: this many ATR(14) below the highest high; wins over trail_pct (unset: off)."
    )
    breakeven_after_pct: Decimal | None = Field(
        None, gt=0, description="Move the stop up to the entry once a bar's high reached this percent (unset: off)."
    )
    time_exit_min: int | None = Field(
        None, ge=1, le=390, description="Sell at market this many minutes after the entry (unset: off)."
    )
    confidence_targets: list[tuple[Decimal, Decimal]] = Field(
        default_factory=list,
        description="Target percent by the ranker's confidence: [min_confidence, target_pct] pairs, highest match wins.",
        examples=[[[0.8, 2.6], [0.7, 1.8]]],
    )

    @model_validator(mode="after")
    def _valid_policy(self) -> ExitSettings:
        self.policy()  # the policy's own checks (ValueError says what is wrong)
        return self

    def policy(self) -> ExitPolicy:
        return ExitPolicy(
            self.target_pct,
            self.stop_pct,
            self.liquidation_time,
            target_atr=self.target_atr,
            stop_atr=self.stop_atr,
            trail_pct=self.trail_pct,
            trail_atr=self.trail_atr,
            breakeven_after_pct=self.breakeven_after_pct,
            time_exit_min=self.time_exit_min,
            confidence_targets=tuple(self.confidence_targets),
        )


class SizingSettings(BaseModel):
    model_config = _STRICT
    allocation: Decimal = Field(_SIZING.allocation, gt=0, description="Dollars per position.")
    pct_of_equity: Decimal | None = Field(
        None, gt=0, le=100, description="Percent of equity per position instead of a fixed allocation."
    )
    max_shares: int | None = Field(None, ge=1, description="Cap on shares per position.")
    max_notional: Decimal | None = Field(None, gt=0, description="Cap on dollars per position.")

    def policy(self) -> SizingPolicy:
        return SizingPolicy(self.allocation, self.pct_of_equity, self.max_shares, self.max_notional)


class RiskSettings(BaseModel):
    """Guardrails on the day's entries and losses; every limit is off (None) by default."""

    model_config = _STRICT
    daily_loss_usd: Decimal | None = Field(
        None, gt=0, description="Stop the day at this loss in dollars, realised plus marked to market."
    )
    daily_loss_pct: Decimal | None = Field(
        None, gt=0, le=100, description="Stop the day at this loss in percent of the day's starting equity."
    )
    daily_profit_usd: Decimal | None = Field(
        None, gt=0, description="End the day at this profit in dollars: flatten what the system opened and stop."
    )
    daily_profit_pct: Decimal | None = Field(
        None, gt=0, le=100, description="End the day at this profit in percent of the day's starting equity."
    )
    max_positions: int | None = Field(None, ge=1, description="Most positions open at once.")
    max_exposure_usd: Decimal | None = Field(None, gt=0, description="Most gross exposure in dollars.")
    max_exposure_pct: Decimal | None = Field(None, gt=0, le=100, description="Most gross exposure in percent of equity.")
    max_symbol_notional_usd: Decimal | None = Field(None, gt=0, description="Most dollars in one symbol.")
    max_trades_per_day: int | None = Field(None, ge=1, description="Most new entries in a day.")
    max_drawdown_pct: Decimal | None = Field(
        None, gt=0, le=100, description="Halt new entries when equity falls this far below its recent peak."
    )
    drawdown_sessions: int = Field(
        _RISK.drawdown_sessions, ge=1, description="The sessions whose equity peak the drawdown is measured from."
    )

    def limits(self) -> RiskLimits:
        return RiskLimits(**self.model_dump())


class AlpacaSettings(BaseModel):
    model_config = _STRICT
    api_key: SecretStr | None = Field(None, description="Alpaca API key id (a secret: never logged or stored).")
    secret_key: SecretStr | None = Field(None, description="Alpaca API secret key.")
    url_override: str | None = Field(None, description="Talk to this trading API instead of Alpaca's (tests: a fake).")
    data_url_override: str | None = Field(None, description="Talk to this market-data API instead of Alpaca's.")


class IbkrSettings(BaseModel):
    model_config = _STRICT
    host: str = Field("127.0.0.1", description="TWS or IB Gateway host.")
    port: int | None = Field(None, ge=1, le=65535, description="Default: 7497 (TWS paper), or 7496 when live.")
    client_id: int = Field(17, ge=0, description="API client id; the same id after a restart recovers its orders.")
    account: str | None = Field(None, description="Account to trade when the login has several.")
    connect_timeout_s: float = Field(10.0, gt=0, description="Seconds to wait for the API handshake.")


class BrokerSettings(BaseModel):
    model_config = _STRICT
    kind: Literal["paper", "alpaca", "ibkr"] = Field(
        "paper", description="Which broker trades: paper (simulated), alpaca or ibkr."
    )
    starting_cash: Decimal = Field(PAPER_STARTING_CASH, gt=0, description="The paper account's starting cash.")
    commission_per_share: Decimal = Field(_COSTS.per_share, ge=0, description="Commission per share.")
    commission_min: Decimal = Field(_COSTS.minimum, ge=0, description="Least commission per order.")
    slippage_bps: Decimal = Field(
        _COSTS.slippage_bps, ge=0, le=500, description="Paper fills of market orders are worse by this many basis points."
    )
    max_participation_pct: Decimal | None = Field(
        _COSTS.max_participation_pct,
        gt=0,
        le=100,
        description="Paper: an order fills at most this percent of a minute bar's volume per bar, the rest in the "
        "following bars at their prices; unset: orders fill whole (backtests never cap).",
    )
    order_ttl_s: float | None = Field(
        None,
        gt=0,
        le=23_400,
        description="Seconds an entry may work unfilled or filled in part before the exit monitor cancels the rest "
        "(its filled shares are kept and protected); a market-on-open entry counts from the open; unset: no limit.",
    )

    alpaca: AlpacaSettings = AlpacaSettings()
    ibkr: IbkrSettings = IbkrSettings()

    def costs(self) -> FillCosts:
        return FillCosts(self.commission_per_share, self.commission_min, self.slippage_bps, self.max_participation_pct)

    def order_ttl(self) -> timedelta | None:
        """How long an entry may work before the monitor cancels what is left of it; None: no limit."""
        return None if self.order_ttl_s is None else timedelta(seconds=self.order_ttl_s)


class ScheduleSettings(BaseModel):
    model_config = _STRICT
    scan_time: time = Field(time(8, 0), description="Pre-market scan and ranking, New York time.")
    moo_time: time = Field(time(9, 20), description="Market-on-open orders go out, New York time.")
    moo_cutoff: time = Field(MOO_CUTOFF, description="No market-on-open order is sent after this New York time.")
    report_delay_min: int = Field(15, ge=0, le=240, description="The report runs this many minutes after the close.")
    mode: Literal["live", "replay"] = Field("live", description="The mode scheduled runs use (runs from the UI choose).")

    @model_validator(mode="after")
    def _phases_in_order(self) -> ScheduleSettings:
        _below(self, "schedule", "scan_time", "moo_time", "so the ranking is done when the orders go out", "before")
        _below(self, "schedule", "moo_time", "moo_cutoff", "to leave time to send the market-on-open orders", "before")
        return self


def _below(model: BaseModel, area: str, low: str, high: str, why: str, word: str = "below") -> None:
    """Refuse settings whose field `low` is not below `high`: a ConfigError naming both variables and their values.

    A ConfigError, not a ValueError: pydantic would file it under the area, away from the variables it names.
    """
    first, second = getattr(model, low), getattr(model, high)
    if not first < second:
        name = lambda field: f"{_PREFIX}{area.upper()}{_DELIMITER}{field.upper()}"  # noqa: E731
        raise ConfigError(f"{name(low)}={_shown(first)} must be {word} {name(high)}={_shown(second)}, {why}")


class ResearchSettings(BaseModel):
    model_config = _STRICT
    dask_address: str | None = Field(
        None,
        description="A Dask scheduler (tcp://host:8786) that backtests and sweeps fan their sessions out to; "
        "unset: everything runs in-process.",
    )


def _an_apprise_url(url: SecretStr) -> SecretStr:
    from openbell.notify import url_problem  # here: no URL, no apprise import

    problem = url_problem(url.get_secret_value())
    if problem:
        raise ValueError(problem)
    return url


class NotifySettings(BaseModel):
    """Where the kill switch, rejected orders, monitor trouble and the daily summary are sent (through apprise)."""

    model_config = _STRICT
    urls: list[Annotated[SecretStr, AfterValidator(_an_apprise_url)]] = Field(
        default_factory=list,
        description="Apprise URLs to notify, a JSON list (secrets: never logged or sent); none: no notifications.",
        examples=[["json://127.0.0.1:8080/openbell", "mailto://user:app-password@gmail.com"]],
    )
    timeout_s: float = Field(
        5.0, gt=0, le=60, description="Seconds a notification may take, all receivers at once; a late one is given up."
    )


LIVE_CONFIRMATION = "I understand this trades real money"
_PREFIX, _DELIMITER = "OPENBELL_", "__"  # every variable's prefix, and the separator of nested fields


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=_PREFIX, env_nested_delimiter=_DELIMITER, extra="forbid", frozen=True)
    trading_mode: Literal["paper", "live"] = Field(
        "paper", description="paper accounts (the default) or live ones: live also needs live_confirmation."
    )
    live_confirmation: str | None = Field(None, description=f'Must read "{LIVE_CONFIRMATION}" to trade live.')
    data: DataSettings = DataSettings()
    scan: ScanSettings = ScanSettings()
    quality: QualitySettings = QualitySettings()
    ranking: RankingSettings = RankingSettings()
    llm: LlmSettings = LlmSettings()
    news: NewsSettings = NewsSettings()
    exits: ExitSettings = ExitSettings()
    sizing: SizingSettings = SizingSettings()
    risk: RiskSettings = RiskSettings()
    learning: LearningSettings = LearningSettings()
    broker: BrokerSettings = BrokerSettings()
    schedule: ScheduleSettings = ScheduleSettings()
    research: ResearchSettings = ResearchSettings()
    notify: NotifySettings = NotifySettings()

    def require_live_confirmed(self) -> None:
        """Refuse live trading unless it was switched on deliberately, twice."""
        if self.trading_mode == "live" and self.live_confirmation != LIVE_CONFIRMATION:
            raise ConfigError(
                "OPENBELL_TRADING_MODE=live trades real money; to confirm, also set "
                f'OPENBELL_LIVE_CONFIRMATION="{LIVE_CONFIRMATION}" (or use a paper account)'
            )

    def updated(self, changes: dict[str, dict[str, Any]]) -> Settings:
        """A copy with `{"area": {"field": value}}` changes applied and validated."""
        merged = self.model_dump()
        for area, fields in changes.items():
            merged.setdefault(area, {}).update({k: v for k, v in fields.items() if v is not None})
        return _validated(lambda: Settings.model_validate(merged))


def load_settings(**changes: dict[str, Any]) -> Settings:
    """Settings from the environment, with `area={field: value}` changes on top (None = keep).

    Raises:
        ConfigError: an OPENBELL_ variable names no setting, does not parse, or holds an invalid value.
    """
    check_environment(os.environ)
    settings = _validated(Settings, os.environ)
    return settings.updated(changes) if changes else settings


def _validated(make, environ: Mapping[str, str] | None = None):
    """`make()`, its errors in one ConfigError line; a value read from `environ` is named by its variable."""
    try:
        return make()
    except SettingsError as exc:  # pydantic-settings could not decode a value check_environment let through
        raise ConfigError(f"invalid settings: {exc}") from None
    except ValidationError as exc:
        given = {name.upper(): name for name in environ or ()}
        problems, unnamed = [], False
        for error in exc.errors(include_url=False):
            where = _variable_at(error["loc"], given)
            unnamed |= where is None
            problems.append(f"{where or '.'.join(str(p) for p in error['loc'])}: {error['msg']}")
        hint = " (environment variables use the OPENBELL_ prefix, e.g. OPENBELL_EXITS__TARGET_PCT)" if unnamed else ""
        raise ConfigError(f"invalid settings: {'; '.join(problems)}{hint}") from None


# --- the environment, checked before the settings are read ------------------------------------------------------------

NOT_SETTINGS = frozenset({"OPENBELL_TEST_ARTIFACTS"})
"""OPENBELL_ variables that are not settings, left alone by check_environment.

OPENBELL_TEST_ARTIFACTS: where tests/service/test_service.py saves the UI screenshot; the service it starts passes its
environment on to the flows, which load the settings.
"""

_NOT_JSON = object()


@dataclass(frozen=True, slots=True)
class SettingVariable:
    """An environment variable the settings read: one field, or a group of fields (`group`, a nested model)."""

    path: tuple[str, ...]
    field: FieldInfo
    group: type[BaseModel] | None


@lru_cache(maxsize=1)
def setting_variables() -> dict[str, SettingVariable]:
    """Every environment variable the settings read, in upper case, walked from the Settings model's fields."""
    return dict(_walk(Settings, _PREFIX, ()))


def _walk(model: type[BaseModel], prefix: str, path: tuple[str, ...]) -> Iterator[tuple[str, SettingVariable]]:
    for name, field in model.model_fields.items():
        variable, group = f"{prefix}{name.upper()}", _model_of(field.annotation)
        yield variable, SettingVariable((*path, name), field, group)
        if group is not None:
            yield from _walk(group, variable + _DELIMITER, (*path, name))


def settings_reference(settings: Settings | None = None) -> list[tuple[str, str, str, str | None]]:
    """Every setting a user can set: (variable, default, description, the value in `settings` when it differs).

    Generated from the fields, so it is never out of date; secrets show as `***`.
    """
    rows = []
    for name, variable in setting_variables().items():
        if variable.group is not None:
            continue
        field = variable.field
        default = field.get_default(call_default_factory=True)
        current = None
        if settings is not None:
            value: Any = settings
            for part in variable.path:
                value = getattr(value, part)
            if value != default:
                current = _shown(value)
        rows.append((name, _shown(default), field.description or "", current))
    return rows


def described(variable: str, also: str = "", *, flag: bool = False) -> str:
    """The setting's description with `also` added and its default, for a run option or a CLI flag that sets it.

    Generated from the field, so the default is written once. `flag`: in argparse's style, lower case, no final period.
    """
    field = setting_variables()[variable].field
    text = (field.description or "").rstrip(".") + also
    default = field.get_default(call_default_factory=True)
    if default is not None:
        text += f" (default {_shown(default)})"
    return text[0].lower() + text[1:] if flag else text + "."


def default_of(variable: str) -> str:
    """The default of the setting `variable` (e.g. OPENBELL_EXITS__TARGET_PCT), shown as `openbell settings` shows it."""
    return _shown(setting_variables()[variable].field.get_default(call_default_factory=True))


def _shown(value: Any) -> str:
    if value is None:
        return "unset"
    if isinstance(value, SecretStr) or (isinstance(value, list | tuple) and any(isinstance(v, SecretStr) for v in value)):
        return "***"
    if isinstance(value, list | tuple | dict):
        return json.dumps(value, default=str)
    if isinstance(value, time):
        return f"{value:%H:%M}"
    return str(value)


def check_environment(environ: Mapping[str, str]) -> None:
    """Refuse OPENBELL_ variables that name no setting or hold JSON that does not parse.

    Names are compared in upper case: pydantic-settings reads them case-insensitively. A value is echoed only when it is
    one of a field's fixed choices (OPENBELL_BROKER=ibkr), so a misplaced secret never ends up in a log.

    Raises:
        ConfigError: one line naming each such variable, what it expects and the variable probably meant.
    """
    problems = [
        problem
        for name, value in sorted(environ.items())
        if name.upper().startswith(_PREFIX) and (problem := _problem(name, value)) is not None
    ]
    if problems:
        raise ConfigError("; ".join(problems))


def _problem(name: str, value: str) -> str | None:
    key = name.upper()
    if key in NOT_SETTINGS:
        return None
    variable = setting_variables().get(key)
    if variable is None:
        return _unknown(name)
    if variable.group is not None:  # pydantic-settings takes a whole group as a JSON object
        return None if isinstance(_json(value), dict) else _group_given_a_value(key, variable.group, value)
    shape = _json_shape(variable.field.annotation)
    if shape is None or isinstance(_json(value), (shape, types.NoneType)):
        return None
    kind = "a JSON list" if shape is list else "a JSON object"
    if not variable.field.examples:
        return f"{name} must be {kind}"
    example = json.dumps(variable.field.examples[0])
    return f"{name} must be {kind} like {example} (in a shell: {key}='{example}')"


def _unknown(name: str) -> str:
    fields = {key.removeprefix(_PREFIX): key for key, v in setting_variables().items() if v.group is None}
    close = difflib.get_close_matches(name.upper().removeprefix(_PREFIX), fields, n=1)
    if close:
        meant = fields[close[0]]
        about = " ".join((setting_variables()[meant].field.description or "").split())
        return f"{name} names no setting and would be ignored; did you mean {meant}? ({about})"
    top = [key for key, v in setting_variables().items() if len(v.path) == 1]
    singles = ", ".join(key for key in top if setting_variables()[key].group is None)
    areas = ", ".join(key.removeprefix(_PREFIX) for key in top if setting_variables()[key].group is not None)
    return (
        f"{name} names no setting and would be ignored; the settings are {singles} and "
        f"{_PREFIX}<AREA>{_DELIMITER}<FIELD> for the areas {areas} (README.md, Configuration): rename or unset it"
    )


def _group_given_a_value(key: str, group: type[BaseModel], value: str) -> str:
    """A group set like a field, e.g. OPENBELL_BROKER=ibkr: suggest the field whose choices hold the value."""
    chosen = (
        f"{key}{_DELIMITER}{name.upper()}={choice}"
        for name, field in group.model_fields.items()
        for choice in _choices(field.annotation)
        if choice.lower() == value.strip().lower()
    )
    first = f"{key}{_DELIMITER}{next(iter(group.model_fields)).upper()}"
    return f"{key} is a group of settings, set one of its fields, e.g. {next(chosen, first)}"


def _variable_at(loc: tuple[int | str, ...], given: Mapping[str, str]) -> str | None:
    """The variable, as the user spelled it, that set the value at `loc`, with the rest of `loc` as JSON keys."""
    for cut in range(len(loc), 0, -1):
        key = _PREFIX + _DELIMITER.join(str(part).upper() for part in loc[:cut])
        if key in given and key in setting_variables():
            return given[key] + "".join(f"[{json.dumps(part)}]" for part in loc[cut:])
    return None


def _json(value: str) -> Any:
    try:
        return json.loads(value)
    except ValueError:
        return _NOT_JSON


def _optional_of(annotation: Any) -> Any:
    """`X` for `X | None`, else the annotation."""
    if get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not types.NoneType]
        return args[0] if len(args) == 1 else annotation
    return annotation


def _model_of(annotation: Any) -> type[BaseModel] | None:
    inner = _optional_of(annotation)
    return inner if isinstance(inner, type) and issubclass(inner, BaseModel) else None


def _json_shape(annotation: Any) -> type | None:
    """list or dict when pydantic-settings decodes the field's variable as JSON, else None."""
    origin = get_origin(_optional_of(annotation)) or _optional_of(annotation)
    if origin in (list, tuple, set, frozenset):
        return list
    return dict if origin is dict else None


def _choices(annotation: Any) -> tuple[str, ...]:
    inner = _optional_of(annotation)
    return tuple(a for a in get_args(inner) if isinstance(a, str)) if get_origin(inner) is Literal else ()


class RunOptions(BaseModel):
    """Per-run changes to the settings, given as typed flow parameters. Never holds a secret."""

    model_config = ConfigDict(extra="forbid")
    db_path: str | None = Field(None, description=described("OPENBELL_DATA__DB_PATH"))
    minute_bars: str | None = Field(None, description=described("OPENBELL_DATA__MINUTE_BARS"))
    daily_bars: str | None = Field(None, description=described("OPENBELL_DATA__DAILY_BARS"))
    target_pct: Decimal | None = Field(None, gt=0, description=described("OPENBELL_EXITS__TARGET_PCT"))
    stop_pct: Decimal | None = Field(None, gt=0, lt=100, description=described("OPENBELL_EXITS__STOP_PCT"))
    allocation: Decimal | None = Field(None, gt=0, description=described("OPENBELL_SIZING__ALLOCATION"))
    top_n: int | None = Field(None, ge=1, le=100, description=described("OPENBELL_SCAN__TOP_N"))
    slippage_bps: Decimal | None = Field(None, ge=0, le=500, description=described("OPENBELL_BROKER__SLIPPAGE_BPS"))
    ranker: RankerName | None = Field(None, description=described("OPENBELL_RANKING__METHOD"))
    starting_equity: Decimal | None = Field(
        None, gt=0, description=described("OPENBELL_BROKER__STARTING_CASH", ", and a backtest's starting equity")
    )
    fresh_llm: bool | None = Field(None, description=described("OPENBELL_LLM__FRESH"))

    def settings(self) -> Settings:
        """The environment's settings with these options applied."""
        return load_settings(
            data={"db_path": self.db_path, "minute_bars": self.minute_bars, "daily_bars": self.daily_bars},
            exits={"target_pct": self.target_pct, "stop_pct": self.stop_pct},
            sizing={"allocation": self.allocation},
            scan={"top_n": self.top_n},
            broker={"slippage_bps": self.slippage_bps, "starting_cash": self.starting_equity},
            ranking={"method": self.ranker},
            llm={"fresh": self.fresh_llm},
        )
