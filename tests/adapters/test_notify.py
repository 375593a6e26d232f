"""Notifications through apprise to a real receiver on 127.0.0.1: what arrives, what never does, and how a dead one fails.

The receiver is a small HTTP server that takes apprise's json:// posts; the notifier is built from Settings the way a task
builds it, so the secrets it redacts are the ones the settings hold.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time

import pytest

from openbell.config import Settings, load_settings
from openbell.errors import ConfigError
from openbell.notify import Level, Notifier, kill_switch_message
from tests.fakes.loopback import JsonReceiver

ALPACA_SECRET = "alpaca-secret-7Hq2x9"
LLM_KEY = "sk-llm-key-3b8e1f"
NEWS_KEY = "news-key-c4d5e6"
URL_TOKEN = "hook-token-a1b2c3"  # a webhook token, the kind apprise URLs carry in their path
URL_PASSWORD = "pa55-word-d7e8"


class Receiver(JsonReceiver):
    def url_for(self, path: str = f"/openbell/{URL_TOKEN}", password: str = URL_PASSWORD) -> str:
        return super().url_for(path, password)


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.shutdown()


@pytest.fixture(autouse=True)
def no_openbell_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("OPENBELL_"):
            monkeypatch.delenv(name)


def closed_port_url() -> str:
    with socket.socket() as probe:  # bound, then closed: nothing listens there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"json://127.0.0.1:{port}/openbell/{URL_TOKEN}"


def notifier_for(*urls: str, timeout_s: float = 2.0) -> Notifier:
    settings = Settings(
        llm={"api_key": LLM_KEY},
        news={"api_key": NEWS_KEY},
        broker={"alpaca": {"api_key": "alpaca-key-id-0", "secret_key": ALPACA_SECRET}},
        notify={"urls": list(urls), "timeout_s": timeout_s},
    )
    return Notifier.from_settings(settings)


# --- what arrives ----------------------------------------------------------------------------------------------------


def test_a_message_arrives_with_its_title_body_and_level(receiver):
    sent = notifier_for(receiver.url_for()).send("openbell: order rejected AAPL", "no shares to sell", level=Level.WARNING)

    assert sent == 1
    [payload] = receiver.payloads
    assert (payload["title"], payload["message"], payload["type"]) == (
        "openbell: order rejected AAPL",
        "no shares to sell",
        "warning",
    )


def test_a_helper_message_arrives_in_one_call(receiver):
    notifier_for(receiver.url_for()).notify(kill_switch_message("daily_loss_usd", -612.4, 500, ["AAPL", "TSLA"]))

    [payload] = receiver.payloads
    assert payload["title"] == "openbell: kill switch tripped (daily_loss_usd)"
    assert "AAPL, TSLA" in payload["message"] and payload["type"] == "failure"


@pytest.mark.parametrize("secret", [ALPACA_SECRET, LLM_KEY, NEWS_KEY, URL_PASSWORD])
def test_a_secret_in_the_message_arrives_redacted(receiver, secret):
    notifier_for(receiver.url_for()).send(f"broker said {secret}", f"request failed: key={secret}; retry later")

    [payload] = receiver.payloads
    assert secret not in json.dumps(payload)
    assert payload["title"] == "broker said ***"
    assert payload["message"] == "request failed: key=***; retry later"


def test_the_whole_notify_url_is_redacted_too(receiver):
    url = receiver.url_for()

    notifier_for(url).send("monitor error", f"could not post to {url}")

    [payload] = receiver.payloads
    assert payload["message"] == "could not post to ***"


def test_no_url_sends_nothing(receiver):
    sent = Notifier.from_settings(Settings()).send("openbell: kill switch tripped", "daily loss")

    assert sent == 0 and receiver.payloads == []


def test_no_url_never_imports_apprise():
    script = (
        "import sys\n"
        "from openbell.config import Settings\n"
        "from openbell.notify import Notifier, daily_summary_message\n"
        "import datetime\n"
        "Notifier.from_settings(Settings()).notify(daily_summary_message(datetime.date(2024, 3, 1), 2, 10))\n"
        "print('apprise' in sys.modules)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("OPENBELL_")}

    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True)

    assert done.stdout.strip() == "False"


# --- a receiver in trouble -------------------------------------------------------------------------------------------


def test_a_closed_port_gives_one_warning_at_once_and_no_exception(caplog):
    caplog.set_level(logging.WARNING)
    started = time.monotonic()

    sent = notifier_for(closed_port_url()).send("openbell: monitor error", "broker unreachable")

    assert sent == 0
    assert time.monotonic() - started < 1.0  # refused at once, well inside the 2 s budget
    [warning] = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert warning.name == "openbell.notify"
    assert warning.getMessage() == (
        "notification 'openbell: monitor error' not delivered: receiver 1 (json) failed (OPENBELL_NOTIFY__URLS)"
    )


def test_a_receiver_answering_500_gives_one_warning_and_no_exception(receiver, caplog):
    caplog.set_level(logging.WARNING)
    receiver.status = 500

    sent = notifier_for(receiver.url_for()).send("openbell: 2024-03-01 +$12.00", "2 trades")

    assert sent == 0 and len(receiver.payloads) == 1
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == [
        "notification 'openbell: 2024-03-01 +$12.00' not delivered: receiver 1 (json) failed (OPENBELL_NOTIFY__URLS)"
    ]


def test_a_receiver_that_never_answers_is_given_up_after_the_timeout(receiver, caplog):
    caplog.set_level(logging.WARNING)
    receiver.delay_s = 5.0

    started = time.monotonic()
    sent = notifier_for(receiver.url_for(), timeout_s=0.5).send("openbell: monitor fallback", "the monitor holds the stop")
    took = time.monotonic() - started

    assert sent == 0
    assert 0.4 < took < 1.0
    [warning] = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert warning.endswith("receiver 1 (json) gave no answer within 0.5s (OPENBELL_NOTIFY__URLS)")


def test_a_dead_receiver_does_not_keep_the_message_from_the_others(receiver, caplog):
    caplog.set_level(logging.WARNING)

    sent = notifier_for(closed_port_url(), receiver.url_for()).send("openbell: order rejected", "no buying power")

    assert sent == 1 and len(receiver.payloads) == 1
    [warning] = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert "receiver 1 (json) failed" in warning and "receiver 2" not in warning


def test_no_url_is_ever_logged_even_at_debug(receiver, caplog):
    caplog.set_level(logging.DEBUG)
    receiver.status = 500
    urls = [receiver.url_for(), closed_port_url().replace("json://", "json://user:pa55word@")]

    notifier_for(*urls).send("openbell: monitor error", "broker unreachable")

    assert len(receiver.payloads) == 1
    assert URL_TOKEN not in caplog.text and "pa55word" not in caplog.text and f":{receiver.port}" not in caplog.text


def test_the_message_waits_for_no_other_thread_left_behind(receiver):
    threads = threading.active_count()
    receiver.delay_s = 1.0
    notifier = notifier_for(receiver.url_for(), timeout_s=0.2)
    notifier.send("late", "held by the receiver")
    receiver.delay_s = 0.0

    sent = notifier.send("next", "a fresh message")  # not queued behind the late one, nor throttled by apprise

    assert sent == 1
    assert [p["title"] for p in receiver.payloads][-1] == "next"
    assert threading.active_count() - threads <= 3  # the late message's sender, and the receiver's two handlers


# --- the settings ----------------------------------------------------------------------------------------------------


def test_urls_that_are_not_a_json_list_are_refused_with_an_example(monkeypatch):
    monkeypatch.setenv("OPENBELL_NOTIFY__URLS", f"json://127.0.0.1/{URL_TOKEN}")

    with pytest.raises(ConfigError) as refused:
        load_settings()

    message = str(refused.value)
    assert message.startswith('OPENBELL_NOTIFY__URLS must be a JSON list like ["json://127.0.0.1:8080/openbell"')
    assert URL_TOKEN not in message


@pytest.mark.parametrize(
    ("urls", "expected"),
    [
        (
            f'["127.0.0.1/{URL_TOKEN}"]',
            "OPENBELL_NOTIFY__URLS[0]: Value error, not an apprise URL: it starts with the service",
        ),
        (
            f'["json://127.0.0.1/ok", "jsno://{URL_TOKEN}"]',
            "OPENBELL_NOTIFY__URLS[1]: Value error, apprise cannot send to this jsno:// URL",
        ),
    ],
)
def test_a_url_apprise_cannot_send_to_is_refused_without_repeating_it(monkeypatch, urls, expected):
    monkeypatch.setenv("OPENBELL_NOTIFY__URLS", urls)

    with pytest.raises(ConfigError) as refused:
        load_settings()

    assert str(refused.value).startswith(f"invalid settings: {expected}")
    assert URL_TOKEN not in str(refused.value)


def test_urls_given_as_a_json_list_load_as_secrets(monkeypatch):
    monkeypatch.setenv("OPENBELL_NOTIFY__URLS", f'["json://127.0.0.1/{URL_TOKEN}"]')

    urls = load_settings().notify.urls

    assert [u.get_secret_value() for u in urls] == [f"json://127.0.0.1/{URL_TOKEN}"]
    assert URL_TOKEN not in repr(urls)
