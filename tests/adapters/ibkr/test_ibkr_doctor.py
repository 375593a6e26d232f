"""`openbell doctor` against the fake TWS: the paper account and a holding the system did not open."""

from __future__ import annotations

from openbell.cli import main


def test_doctor_shows_the_ibkr_paper_account_and_its_holdings(tws, monkeypatch, capsys):
    monkeypatch.setenv("OPENBELL_BROKER__KIND", "ibkr")
    monkeypatch.setenv("OPENBELL_BROKER__IBKR__PORT", str(tws.port))
    monkeypatch.setenv("OPENBELL_BROKER__IBKR__CONNECT_TIMEOUT_S", "2")

    code = main(["doctor"])

    out = capsys.readouterr().out
    assert code == 0
    assert "ibkr, paper account" in out
    assert "IBM 100" in out
