"""`openbell doctor` against the fake Alpaca server: what it shows, and one line when it cannot connect."""

from __future__ import annotations

import pytest

from openbell.cli import main
from tests.adapters.alpaca.alpaca_support import API_KEY, SECRET_KEY


@pytest.fixture
def alpaca_env(monkeypatch, fake):
    monkeypatch.setenv("OPENBELL_BROKER__KIND", "alpaca")
    monkeypatch.setenv("OPENBELL_BROKER__ALPACA__API_KEY", API_KEY)
    monkeypatch.setenv("OPENBELL_BROKER__ALPACA__SECRET_KEY", SECRET_KEY)
    monkeypatch.setenv("OPENBELL_BROKER__ALPACA__URL_OVERRIDE", fake.url)
    return fake


def test_doctor_shows_the_paper_account_and_its_positions(alpaca_env, capsys):
    alpaca_env.hold("MSFT", 10, 400.0)

    code = main(["doctor"])

    out = capsys.readouterr().out
    assert code == 0
    assert "alpaca, paper account" in out
    assert "MSFT 10" in out
    assert API_KEY not in out and SECRET_KEY not in out


def test_doctor_says_in_one_line_when_alpaca_cannot_be_reached(alpaca_env, capsys):
    alpaca_env.stop()

    code = main(["doctor"])

    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("openbell:") and "\n" not in err and "Traceback" not in err
    assert "connection refused" in err.lower() or "could not reach" in err.lower()


def test_doctor_refuses_live_without_the_confirmation(alpaca_env, monkeypatch, capsys):
    monkeypatch.setenv("OPENBELL_TRADING_MODE", "live")

    code = main(["doctor"])

    assert code == 2
    assert "OPENBELL_LIVE_CONFIRMATION" in capsys.readouterr().err
    assert alpaca_env.requests == []  # refused before anything reached the broker
