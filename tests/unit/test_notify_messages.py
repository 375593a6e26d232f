"""The notification texts made from plain values, and the redaction of secrets, without sending anything."""

from __future__ import annotations

from dataclasses import asdict
from datetime import date
from decimal import Decimal

from pydantic import SecretStr

from openbell.config import Settings
from openbell.core.pnl import DailyPnl
from openbell.notify import (
    Level,
    Notification,
    daily_summary_message,
    kill_switch_message,
    monitor_message,
    order_rejected_message,
    private_url_parts,
    redact,
    secret_values,
)


def test_the_kill_switch_names_the_rule_the_numbers_and_what_was_flattened():
    message = kill_switch_message("daily_loss_usd", Decimal("-612.40"), Decimal(500), ["AAPL", "TSLA"])

    assert message == Notification(
        "openbell: kill switch tripped (daily_loss_usd)",
        "daily_loss_usd: -612.40 against a limit of 500.00. No new entries today. Flattened: AAPL, TSLA.",
        Level.FAILURE,
    )


def test_the_days_profit_target_is_good_news_not_a_kill_switch():
    message = kill_switch_message("daily_profit_usd", Decimal("101.74"), Decimal(100), ["AMD"])
    assert message.title == "openbell: the day's profit target reached (daily_profit_usd)"
    assert message.level is Level.SUCCESS and message.body.endswith("Flattened: AMD.")


def test_the_kill_switch_says_when_nothing_was_open():
    assert kill_switch_message("max_positions", 5, 4).body.endswith("Flattened: nothing was open.")


def test_a_rejected_order_carries_the_brokers_code_and_reason():
    message = order_rejected_message("20240301-AAPL-entry", "insufficient buying power", 40310000, symbol="AAPL")

    assert message.title == "openbell: order rejected AAPL"
    assert message.body == (
        "The broker rejected order 20240301-AAPL-entry (code 40310000): insufficient buying power. It is not retried."
    )
    assert message.level is Level.WARNING


def test_a_monitor_fallback_is_a_warning_and_an_error_without_one_a_failure():
    fallback = monitor_message("the broker refused the stop", fallback="the monitor holds the stop", symbol="TSLA")
    error = monitor_message("broker unreachable for 3 minutes")

    assert (fallback.title, fallback.level) == ("openbell: monitor fallback (TSLA)", Level.WARNING)
    assert fallback.body == "the broker refused the stop. Instead: the monitor holds the stop."
    assert (error.title, error.body, error.level) == (
        "openbell: monitor error",
        "broker unreachable for 3 minutes.",
        Level.FAILURE,
    )


def test_the_daily_summary_takes_a_daily_pnl_as_it_is():
    summary = DailyPnl(
        trade_date=date(2024, 3, 1), trades=4, wins=3, losses=1, win_rate=0.75, gross_pnl=Decimal("130.50"),
        commission=Decimal("8.00"), net_pnl=Decimal("122.50"), unfilled=1, skipped=0,
    )  # fmt: skip

    message = daily_summary_message(**asdict(summary))

    assert message.title == "openbell: 2024-03-01 +$122.50"
    assert message.body.splitlines() == [
        "4 trades, net P&L +$122.50",
        "3 won, 1 lost (75% won)",
        "gross +$130.50, commission $8.00",
        "1 entries unfilled, 0 picks skipped by sizing",
    ]


def test_a_losing_day_with_plain_values():
    message = daily_summary_message(date(2024, 3, 1), 1, -40.25)

    assert (message.title, message.body) == ("openbell: 2024-03-01 -$40.25", "1 trade, net P&L -$40.25")


def test_every_secret_of_the_settings_is_found():
    settings = Settings(
        llm={"api_key": "llm-key"},
        news={"api_key": "news-key"},
        broker={"alpaca": {"api_key": "alpaca-id", "secret_key": "alpaca-secret"}},
        notify={"urls": ["json://127.0.0.1/a", "json://127.0.0.1/b"]},
    )

    found = secret_values(settings)

    assert sorted(found) == sorted(
        ["llm-key", "news-key", "alpaca-id", "alpaca-secret", "json://127.0.0.1/a", "json://127.0.0.1/b"]
    )
    assert secret_values(Settings()) == []
    assert isinstance(settings.notify.urls[0], SecretStr)


def test_redaction_replaces_the_longest_secret_first():
    assert redact("key abc123 in https://x/abc123456", ["abc123", "https://x/abc123456"]) == "key *** in ***"


def test_the_private_parts_of_a_url_are_the_ones_apprise_marks_private():
    assert "JHMHI8qBe7bk2ZwO5U711o3dV_js" in private_url_parts("discord://4174216298/JHMHI8qBe7bk2ZwO5U711o3dV_js")
    assert private_url_parts("mailto://user:app-pass@gmail.com") == ["app-pass"]
