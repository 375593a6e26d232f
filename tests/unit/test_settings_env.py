"""OPENBELL_ environment variables: a mistake ends in one ConfigError line naming the variable, none is ignored.

Every test sets real environment variables (monkeypatch.setenv) on an environment cleared of OPENBELL_ ones, and
reads them through load_settings, the way every flow and the CLI do.
"""

from __future__ import annotations

import os
from datetime import time
from decimal import Decimal
from functools import reduce

import pytest
from pydantic import SecretStr

from openbell.cli import main
from openbell.config import NOT_SETTINGS, RunOptions, load_settings, setting_variables
from openbell.errors import ConfigError

SECRET = "sk-do-not-print-4f2a9c"


@pytest.fixture(autouse=True)
def no_openbell_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    """Start each test from an environment with no OPENBELL_ variable (any case), as pydantic-settings reads them."""
    for name in list(os.environ):
        if name.upper().startswith("OPENBELL_"):
            monkeypatch.delenv(name)


def refusal(monkeypatch: pytest.MonkeyPatch, variables: dict[str, str]) -> str:
    """The ConfigError message load_settings raises with `variables` set; it must be one line."""
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as refused:
        load_settings()
    message = str(refused.value)
    assert "\n" not in message and message.strip() == message
    return message


# --- variables that name no setting --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "meant"),
    [
        ("OPENBELL_EXIT__TARGET_PCT", "OPENBELL_EXITS__TARGET_PCT"),
        ("OPENBELL_DB_PATH", "OPENBELL_DATA__DB_PATH"),
        ("OPENBELL_EXITS__TARGT_PCT", "OPENBELL_EXITS__TARGET_PCT"),
        ("OPENBELL_BROKER__IBKR_PORT", "OPENBELL_BROKER__IBKR__PORT"),
        ("OPENBELL_RANKING__WEIGHTS__MOMENTUM", "OPENBELL_RANKING__WEIGHTS"),  # would replace all the weights
    ],
)
def test_a_misspelled_variable_is_refused_with_the_one_probably_meant(monkeypatch, given, meant):
    message = refusal(monkeypatch, {given: "5"})

    assert message.startswith(f"{given} names no setting and would be ignored; did you mean {meant}?")


def test_a_misspelled_target_is_refused_rather_than_trading_the_default_target(monkeypatch):
    message = refusal(monkeypatch, {"OPENBELL_EXIT__TARGET_PCT": "5"})

    assert "Profit target above the entry fill" in message  # what the suggested variable sets


def test_a_variable_like_no_setting_lists_what_the_settings_are(monkeypatch):
    message = refusal(monkeypatch, {"OPENBELL_FOO": "1"})

    assert message.startswith("OPENBELL_FOO names no setting and would be ignored; the settings are ")
    assert "OPENBELL_TRADING_MODE" in message and "OPENBELL_<AREA>__<FIELD>" in message
    assert "EXITS" in message and "BROKER" in message
    assert "did you mean" not in message


def test_names_are_compared_in_any_case_as_pydantic_settings_reads_them(monkeypatch):
    message = refusal(monkeypatch, {"openbell_exit__target_pct": "5"})

    assert message.startswith("openbell_exit__target_pct names no setting")
    assert "did you mean OPENBELL_EXITS__TARGET_PCT?" in message


def test_a_lower_case_setting_still_loads(monkeypatch):
    monkeypatch.setenv("openbell_exits__target_pct", "3.5")

    assert load_settings().exits.target_pct == Decimal("3.5")


def test_every_wrong_variable_is_named_in_the_one_line(monkeypatch):
    message = refusal(monkeypatch, {"OPENBELL_FOO": "1", "OPENBELL_DB_PATH": "x"})

    assert "OPENBELL_FOO names no setting" in message
    assert "OPENBELL_DB_PATH names no setting" in message and "OPENBELL_DATA__DB_PATH" in message


# --- a group of settings given a value -----------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["ibkr", "IBKR"])
def test_a_group_set_like_a_field_suggests_the_field_that_takes_the_value(monkeypatch, value):
    message = refusal(monkeypatch, {"OPENBELL_BROKER": value})

    assert message == "OPENBELL_BROKER is a group of settings, set one of its fields, e.g. OPENBELL_BROKER__KIND=ibkr"


def test_a_group_given_a_value_no_field_takes_suggests_one_of_its_fields(monkeypatch):
    message = refusal(monkeypatch, {"OPENBELL_EXITS": "5"})

    assert message.startswith("OPENBELL_EXITS is a group of settings, set one of its fields, e.g. OPENBELL_EXITS__")


def test_a_group_given_as_a_json_object_still_loads(monkeypatch):
    monkeypatch.setenv("OPENBELL_BROKER", '{"kind": "ibkr", "ibkr": {"port": 4002}}')

    broker = load_settings().broker

    assert (broker.kind, broker.ibkr.port) == ("ibkr", 4002)


# --- JSON fields -----------------------------------------------------------------------------------------------------


def test_weights_that_are_not_json_say_a_json_object_is_expected(monkeypatch):
    message = refusal(monkeypatch, {"OPENBELL_RANKING__WEIGHTS": "abc"})

    assert message.startswith('OPENBELL_RANKING__WEIGHTS must be a JSON object like {"momentum": 1, "llm": 2}')
    assert """OPENBELL_RANKING__WEIGHTS='{"momentum": 1, "llm": 2}'""" in message  # quoted for a shell


def test_a_universe_that_is_not_a_json_list_says_a_json_list_is_expected(monkeypatch):
    message = refusal(monkeypatch, {"OPENBELL_DATA__UNIVERSE": "AAPL"})

    assert message.startswith('OPENBELL_DATA__UNIVERSE must be a JSON list like ["AAPL", "TSLA"]')


def test_a_json_object_where_a_list_belongs_is_refused(monkeypatch):
    message = refusal(monkeypatch, {"OPENBELL_DATA__UNIVERSE": '{"AAPL": 1}'})

    assert message.startswith("OPENBELL_DATA__UNIVERSE must be a JSON list")


def test_json_fields_given_json_load(monkeypatch):
    monkeypatch.setenv("OPENBELL_DATA__UNIVERSE", '["AAPL", "TSLA"]')
    monkeypatch.setenv("OPENBELL_RANKING__WEIGHTS", '{"momentum": 1, "llm": 2}')

    settings = load_settings()

    assert settings.data.universe == ["AAPL", "TSLA"]
    assert settings.ranking.weights == {"momentum": 1.0, "llm": 2.0}


# --- invalid values --------------------------------------------------------------------------------------------------


def test_an_invalid_value_names_its_variable(monkeypatch):
    message = refusal(monkeypatch, {"OPENBELL_EXITS__TARGET_PCT": "-1"})

    assert message == "invalid settings: OPENBELL_EXITS__TARGET_PCT: Input should be greater than 0"


def test_an_invalid_value_is_named_as_the_user_spelled_its_variable(monkeypatch):
    message = refusal(monkeypatch, {"openbell_broker__kind": "schwab"})

    assert message.startswith("invalid settings: openbell_broker__kind: Input should be 'paper', 'alpaca' or 'ibkr'")


def test_an_invalid_entry_of_a_json_field_names_the_variable_and_the_key(monkeypatch):
    message = refusal(monkeypatch, {"OPENBELL_RANKING__WEIGHTS": '{"momentum": "lots"}'})

    assert message.startswith('invalid settings: OPENBELL_RANKING__WEIGHTS["momentum"]: Input should be a valid number')


def test_an_invalid_run_option_is_still_named_by_its_field(monkeypatch):
    with pytest.raises(ConfigError) as refused:
        load_settings(exits={"target_pct": Decimal(-1)})

    assert str(refused.value).startswith("invalid settings: exits.target_pct: Input should be greater than 0")


def test_flows_reading_settings_through_run_options_refuse_a_misspelled_variable(monkeypatch):
    monkeypatch.setenv("OPENBELL_EXIT__TARGET_PCT", "5")

    with pytest.raises(ConfigError, match=r"^OPENBELL_EXIT__TARGET_PCT names no setting.*OPENBELL_EXITS__TARGET_PCT"):
        RunOptions(top_n=3).settings()


# --- settings that must agree with each other ------------------------------------------------------------------------


def test_a_min_price_above_the_max_price_names_both_variables_and_their_values(monkeypatch):
    message = refusal(monkeypatch, {"OPENBELL_SCAN__MIN_PRICE": "50", "OPENBELL_SCAN__MAX_PRICE": "10"})

    assert message == (
        "OPENBELL_SCAN__MIN_PRICE=50.0 must be below OPENBELL_SCAN__MAX_PRICE=10.0, or no price passes the scan"
    )


def test_a_min_gap_equal_to_the_max_gap_is_refused(monkeypatch):
    message = refusal(monkeypatch, {"OPENBELL_SCAN__MIN_GAP_PCT": "50"})

    assert message == (
        "OPENBELL_SCAN__MIN_GAP_PCT=50.0 must be below OPENBELL_SCAN__MAX_GAP_PCT=50.0, or no gap passes the scan"
    )


def test_a_scan_after_the_moo_time_is_refused(monkeypatch):
    message = refusal(monkeypatch, {"OPENBELL_SCHEDULE__SCAN_TIME": "09:25"})

    assert message == (
        "OPENBELL_SCHEDULE__SCAN_TIME=09:25 must be before OPENBELL_SCHEDULE__MOO_TIME=09:20, "
        "so the ranking is done when the orders go out"
    )


def test_a_moo_time_at_the_moo_cutoff_is_refused(monkeypatch):
    message = refusal(monkeypatch, {"OPENBELL_SCHEDULE__MOO_TIME": "09:28"})

    assert message == (
        "OPENBELL_SCHEDULE__MOO_TIME=09:28 must be before OPENBELL_SCHEDULE__MOO_CUTOFF=09:28, "
        "to leave time to send the market-on-open orders"
    )


def test_a_run_option_that_disagrees_with_the_environment_is_refused_naming_the_variables(monkeypatch):
    monkeypatch.setenv("OPENBELL_SCAN__MAX_PRICE", "20")

    with pytest.raises(ConfigError) as refused:
        load_settings(scan={"min_price": 25.0})

    assert str(refused.value) == (
        "OPENBELL_SCAN__MIN_PRICE=25.0 must be below OPENBELL_SCAN__MAX_PRICE=20.0, or no price passes the scan"
    )


def test_a_schedule_in_order_loads(monkeypatch):
    monkeypatch.setenv("OPENBELL_SCHEDULE__SCAN_TIME", "09:00")
    monkeypatch.setenv("OPENBELL_SCHEDULE__MOO_TIME", "09:26")
    monkeypatch.setenv("OPENBELL_SCHEDULE__MOO_CUTOFF", "09:27")

    schedule = load_settings().schedule

    assert (schedule.scan_time, schedule.moo_time, schedule.moo_cutoff) == (time(9, 0), time(9, 26), time(9, 27))


# --- secrets ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "variables",
    [
        {"OPENBELL_LLM_API_KEY": SECRET},  # a misspelled secret
        {"OPENBELL_BROKER__ALPACA": SECRET},  # a secret given to its group
        {"OPENBELL_NEWS": SECRET},
        {"OPENBELL_BROKER__ALPACA__API_KEY": SECRET, "OPENBELL_EXITS__TARGET_PCT": "-1"},  # beside another mistake
        {"OPENBELL_BROKER": f'{{"alpaca": {{"api_key": "{SECRET}", "region": 1}}}}'},  # inside a refused JSON group
        {"OPENBELL_BROKER__ALPACA__API_KEY": SECRET, "OPENBELL_FOO": "1"},
        {"OPENBELL_BROKER": f'{{"alpaca": "{SECRET}"}}'},  # the secret is the invalid input itself
        {"OPENBELL_LLM": f'{{"api_key": ["{SECRET}"]}}'},
    ],
)
def test_a_secret_never_appears_in_the_message(monkeypatch, variables):
    message = refusal(monkeypatch, variables)

    assert SECRET not in message and SECRET[:8] not in message


# --- what still loads ------------------------------------------------------------------------------------------------

FULL_SET = {
    "OPENBELL_TRADING_MODE": "live",
    "OPENBELL_LIVE_CONFIRMATION": "I understand this trades real money",
    "OPENBELL_DATA__DIR": "/tmp/openbell-data",
    "OPENBELL_DATA__DB_PATH": "/tmp/openbell-data/ob.ducklake",
    "OPENBELL_DATA__MINUTE_BARS": "minute.parquet",
    "OPENBELL_DATA__DAILY_BARS": "daily.parquet",
    "OPENBELL_DATA__LOCK_TIMEOUT_S": "5",
    "OPENBELL_DATA__CATALOG": "postgres:dbname=openbell host=127.0.0.1",
    "OPENBELL_DATA__DATA_PATH": "/srv/shared/openbell/",
    "OPENBELL_DATA__KEEP_SNAPSHOTS_DAYS": "3",
    "OPENBELL_DATA__MERGE_ABOVE_FILES": "200",
    "OPENBELL_RISK__DAILY_LOSS_USD": "500",
    "OPENBELL_RISK__DAILY_LOSS_PCT": "2",
    "OPENBELL_RISK__DAILY_PROFIT_USD": "800",
    "OPENBELL_RISK__DAILY_PROFIT_PCT": "1.5",
    "OPENBELL_RISK__MAX_POSITIONS": "4",
    "OPENBELL_RISK__MAX_EXPOSURE_USD": "50000",
    "OPENBELL_RISK__MAX_EXPOSURE_PCT": "60",
    "OPENBELL_RISK__MAX_SYMBOL_NOTIONAL_USD": "15000",
    "OPENBELL_RISK__MAX_TRADES_PER_DAY": "6",
    "OPENBELL_RISK__MAX_DRAWDOWN_PCT": "8",
    "OPENBELL_RISK__DRAWDOWN_SESSIONS": "10",
    "OPENBELL_LEARNING__ENABLED": "true",
    "OPENBELL_LEARNING__LOOKBACK_SESSIONS": "30",
    "OPENBELL_LEARNING__MIN_TRADES": "8",
    "OPENBELL_LEARNING__MIN_SESSIONS": "4",
    "OPENBELL_LEARNING__THROTTLE_WIN_RATE": "0.35",
    "OPENBELL_LEARNING__THROTTLE_EXPECTANCY_PCT": "0.1",
    "OPENBELL_LEARNING__QUARANTINE_EXPECTANCY_PCT": "-0.4",
    "OPENBELL_LEARNING__QUARANTINE_SPEARMAN": "-0.2",
    "OPENBELL_LEARNING__RECOVER_SPEARMAN": "0.1",
    "OPENBELL_LEARNING__THROTTLE_SIZE": "0.25",
    "OPENBELL_DATA__UNIVERSE": '["AAPL", "TSLA"]',
    "OPENBELL_SCAN__MIN_PRICE": "3",
    "OPENBELL_SCAN__MAX_PRICE": "500",
    "OPENBELL_SCAN__MIN_GAP_PCT": "3",
    "OPENBELL_SCAN__MAX_GAP_PCT": "40",
    "OPENBELL_SCAN__MIN_AVG_DOLLAR_VOLUME": "1000000",
    "OPENBELL_SCAN__MIN_REL_VOLUME": "1.5",
    "OPENBELL_SCAN__TOP_N": "3",
    "OPENBELL_QUALITY__MIN_SCORE": "0.25",
    "OPENBELL_QUALITY__STALE_AFTER_MIN": "5",
    "OPENBELL_QUALITY__OUTLIER_ATR": "4",
    "OPENBELL_QUALITY__OUTLIER_PCT": "15",
    "OPENBELL_QUALITY__MAX_GAP_MIN": "45",
    "OPENBELL_QUALITY__SPLIT_TOLERANCE_PCT": "5",
    "OPENBELL_RANKING__METHOD": "ensemble",
    "OPENBELL_RANKING__WEIGHTS": '{"momentum": 1, "llm": 2}',
    "OPENBELL_RANKING__MIN_AGREE": "2",
    "OPENBELL_LLM__MODEL": "gpt-4o-mini",
    "OPENBELL_LLM__BASE_URL": "http://127.0.0.1:11434/v1",
    "OPENBELL_LLM__API_KEY": SECRET,
    "OPENBELL_LLM__TIMEOUT_S": "20",
    "OPENBELL_LLM__BUDGET_S": "60",
    "OPENBELL_LLM__MAX_TOKENS": "1000",
    "OPENBELL_LLM__TEMPERATURE": "0.5",
    "OPENBELL_LLM__MAX_CANDIDATES": "10",
    "OPENBELL_LLM__STRUCTURED_OUTPUT": "json_object",
    "OPENBELL_LLM__RETRY_BACKOFF_S": "2",
    "OPENBELL_LLM__INPUT_COST_PER_MTOK": "0.15",
    "OPENBELL_LLM__OUTPUT_COST_PER_MTOK": "0.6",
    "OPENBELL_LLM__FRESH": "true",
    "OPENBELL_NEWS__PROVIDER": "fmp",
    "OPENBELL_NEWS__API_KEY": "news-key",
    "OPENBELL_NEWS__URL_OVERRIDE": "http://127.0.0.1:8001",
    "OPENBELL_NEWS__PER_SYMBOL": "5",
    "OPENBELL_NEWS__LOOKBACK_HOURS": "48",
    "OPENBELL_NEWS__TIMEOUT_S": "5",
    "OPENBELL_EXITS__TARGET_PCT": "3",
    "OPENBELL_EXITS__STOP_PCT": "1",
    "OPENBELL_EXITS__LIQUIDATION_TIME": "15:30",
    "OPENBELL_EXITS__EARLY_CLOSE_OFFSET_MIN": "20",
    "OPENBELL_EXITS__TARGET_ATR": "2",
    "OPENBELL_EXITS__STOP_ATR": "1",
    "OPENBELL_EXITS__TRAIL_PCT": "1.5",
    "OPENBELL_EXITS__TRAIL_ATR": "1.2",
    "OPENBELL_EXITS__BREAKEVEN_AFTER_PCT": "1",
    "OPENBELL_EXITS__TIME_EXIT_MIN": "90",
    "OPENBELL_EXITS__CONFIDENCE_TARGETS": "[[0.8, 2.6], [0.7, 1.8]]",
    "OPENBELL_SIZING__ALLOCATION": "5000",
    "OPENBELL_SIZING__PCT_OF_EQUITY": "5",
    "OPENBELL_SIZING__MAX_SHARES": "100",
    "OPENBELL_SIZING__MAX_NOTIONAL": "8000",
    "OPENBELL_BROKER__KIND": "alpaca",
    "OPENBELL_BROKER__STARTING_CASH": "50000",
    "OPENBELL_BROKER__COMMISSION_PER_SHARE": "0.01",
    "OPENBELL_BROKER__COMMISSION_MIN": "2",
    "OPENBELL_BROKER__SLIPPAGE_BPS": "5",
    "OPENBELL_BROKER__MAX_PARTICIPATION_PCT": "10",
    "OPENBELL_BROKER__ORDER_TTL_S": "90",
    "OPENBELL_BROKER__ALPACA__API_KEY": "alpaca-key",
    "OPENBELL_BROKER__ALPACA__SECRET_KEY": "alpaca-secret",
    "OPENBELL_BROKER__ALPACA__URL_OVERRIDE": "http://127.0.0.1:8002",
    "OPENBELL_BROKER__ALPACA__DATA_URL_OVERRIDE": "http://127.0.0.1:8003",
    "OPENBELL_BROKER__IBKR__HOST": "10.0.0.2",
    "OPENBELL_BROKER__IBKR__PORT": "4002",
    "OPENBELL_BROKER__IBKR__CLIENT_ID": "3",
    "OPENBELL_BROKER__IBKR__ACCOUNT": "DU123",
    "OPENBELL_BROKER__IBKR__CONNECT_TIMEOUT_S": "5",
    "OPENBELL_SCHEDULE__SCAN_TIME": "07:45",
    "OPENBELL_SCHEDULE__MOO_TIME": "09:15",
    "OPENBELL_SCHEDULE__MOO_CUTOFF": "09:25",
    "OPENBELL_SCHEDULE__REPORT_DELAY_MIN": "30",
    "OPENBELL_SCHEDULE__MODE": "replay",
    "OPENBELL_RESEARCH__DASK_ADDRESS": "tcp://127.0.0.1:8786",
    "OPENBELL_NOTIFY__URLS": '["json://127.0.0.1:8004/openbell"]',
    "OPENBELL_NOTIFY__TIMEOUT_S": "2",
}


def test_the_full_set_names_every_setting_including_the_nested_broker_ones():
    fields = {name for name, variable in setting_variables().items() if variable.group is None}

    assert set(FULL_SET) == fields
    assert {"OPENBELL_BROKER__ALPACA__API_KEY", "OPENBELL_BROKER__IBKR__PORT"} <= fields


def test_a_full_set_of_valid_variables_loads_and_every_one_takes_effect(monkeypatch):
    for name, value in FULL_SET.items():
        monkeypatch.setenv(name, value)

    settings = load_settings()

    for name in FULL_SET:
        variable = setting_variables()[name]
        loaded = reduce(getattr, variable.path, settings)
        assert loaded != variable.field.get_default(call_default_factory=True), f"{name} was ignored"
    assert settings.exits.liquidation_time == time(15, 30)
    assert settings.broker.alpaca.api_key == SecretStr("alpaca-key")
    assert settings.llm.api_key.get_secret_value() == SECRET


def test_the_variables_that_are_not_settings_are_left_alone(monkeypatch, tmp_path):
    assert NOT_SETTINGS == {"OPENBELL_TEST_ARTIFACTS"}  # tests/service/test_service.py's screenshot folder
    monkeypatch.setenv("OPENBELL_TEST_ARTIFACTS", str(tmp_path))

    assert load_settings().exits.target_pct == Decimal("2.6")


# --- the command line ------------------------------------------------------------------------------------------------


def test_the_cli_prints_a_misspelled_variable_in_one_line_and_exits_2(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("OPENBELL_DATA__DIR", str(tmp_path))
    monkeypatch.setenv("OPENBELL_BROKER", "ibkr")

    code = main(["doctor"])

    err = capsys.readouterr().err
    assert code == 2
    assert (
        err == "openbell: OPENBELL_BROKER is a group of settings, set one of its fields, e.g. OPENBELL_BROKER__KIND=ibkr\n"
    )


# -- the settings reference -------------------------------------------------------------------------


def test_docs_settings_md_is_the_generated_reference_of_every_setting():
    from pathlib import Path

    from openbell.cli import settings_markdown

    docs = Path(__file__).resolve().parents[2] / "docs" / "settings.md"
    assert docs.read_text().rstrip("\n") == settings_markdown(), "run: openbell settings --markdown > docs/settings.md"
    fields = {name for name, v in setting_variables().items() if v.group is None}
    listed = {line.split("`")[1] for line in docs.read_text().splitlines() if line.startswith("| `")}
    assert listed == fields
    assert "| `OPENBELL_EXITS__TARGET_PCT` | 2.6 |" in docs.read_text()


def test_openbell_settings_marks_what_the_environment_sets_and_hides_secrets(monkeypatch, capsys):
    monkeypatch.setenv("OPENBELL_RISK__DAILY_PROFIT_USD", "750")
    monkeypatch.setenv("OPENBELL_LLM__API_KEY", "sk-do-not-print-me")
    monkeypatch.setenv("OPENBELL_NOTIFY__URLS", '["json://user:hunter22@127.0.0.1:9/hook"]')
    assert main(["settings"]) == 0
    out = capsys.readouterr().out
    assert "* OPENBELL_RISK__DAILY_PROFIT_USD" in out and "750  (default unset)" in out
    assert "sk-do-not-print-me" not in out and "hunter22" not in out
    assert out.count("\n* OPENBELL_") == 3  # only what the environment set is marked
