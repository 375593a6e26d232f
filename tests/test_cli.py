"""The CLI: mistakes a user can make end in one line on stderr and exit code 2, never a traceback.

Every case here is caught before a flow starts, so no Prefect server is needed. A guard stands in
for the trading-day flow (the CLI loads flows by name), so a check that is missing fails the test
at once instead of starting a flow.
"""

from __future__ import annotations

import csv
import io
import json
import sys
import types
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pandas as pd
import pytest

from openbell.cli import main
from openbell.store import Store
from tests.fakes.data_folder import synthetic_data_folder

NY = ZoneInfo("America/New_York")
SYNTHETIC_SESSION = "2025-03-04"  # the default synthetic minute sessions are 2025-03-03 .. 2025-03-07
SESSION_BEFORE_SYNTHETIC_BARS = "2025-02-03"  # a NYSE session the synthetic minute file does not cover


@pytest.fixture(scope="module")
def synthetic_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data folder whose synthetic market is generated once for the module (as the CLI would on first use)."""
    return synthetic_data_folder(tmp_path_factory)


@pytest.fixture
def market_env(synthetic_data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point the CLI's settings (OPENBELL_DATA__DIR) at the synthetic data folder."""
    monkeypatch.setenv("OPENBELL_DATA__DIR", str(synthetic_data_dir))
    return synthetic_data_dir


@pytest.fixture(autouse=True)
def no_flow_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    """Stand in for the trading-day flow: reaching it means the CLI let a user's mistake through."""

    def trading_day(**parameters):
        raise AssertionError(f"the trading-day flow started with {parameters}; the CLI should have stopped first")

    monkeypatch.setitem(sys.modules, "openbell.flows.trading_day", types.SimpleNamespace(trading_day=trading_day))


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def user_error(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """Run the CLI and return the single `openbell: ...` line of a user error (exit code 2, no traceback)."""
    code, _, err = run(capsys, *argv)
    assert code == 2
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("openbell:")
    return lines[0]


@pytest.fixture
def db_with_a_run(tmp_path: Path) -> Path:
    path = tmp_path / "openbell.ducklake"
    store = Store(path)
    store.migrate()
    store.insert(
        "runs",
        [
            {
                "run_id": "run-1",
                "flow": "trading_day",
                "trade_date": date(2025, 3, 4),
                "mode": "replay",
                "started_at": datetime(2025, 3, 4, 8, 0, tzinfo=NY),
                "status": "completed",
            }
        ],
    )
    return path


# -- replay ------------------------------------------------------------------------------------------


def test_replay_of_a_holiday_names_the_holiday(capsys, market_env: Path) -> None:
    line = user_error(capsys, "replay", "--date", "2026-11-26")

    assert "2026-11-26 is not a NYSE session" in line
    assert "Thanksgiving" in line


def test_replay_of_missing_parquet_files_names_the_path(capsys, tmp_path: Path, market_env: Path) -> None:
    bars, daily = tmp_path / "missing.parquet", tmp_path / "missing_daily.parquet"

    line = user_error(capsys, "replay", "--date", "2018-03-01", "--bars", str(bars), "--daily", str(daily))

    assert "not found" in line
    assert str(bars) in line


def test_replay_of_a_parquet_file_with_wrong_columns_lists_the_missing_ones(
    capsys, tmp_path: Path, market_env: Path
) -> None:
    bars, daily = tmp_path / "bars.parquet", tmp_path / "daily.parquet"
    pd.DataFrame({"symbol": ["ABC"], "time": [pd.Timestamp("2018-03-01 09:30", tz=NY)], "price": [10.0]}).to_parquet(bars)
    pd.DataFrame({"symbol": ["ABC"], "date": [date(2018, 2, 28)], "close": [10.0]}).to_parquet(daily)

    line = user_error(capsys, "replay", "--date", "2018-03-01", "--bars", str(bars), "--daily", str(daily))

    assert "lacks column(s) ts, open, high, low, close, volume" in line
    assert str(bars) in line


def test_replay_with_bars_but_no_daily_file_asks_for_both(capsys, tmp_path: Path, market_env: Path) -> None:
    line = user_error(capsys, "replay", "--date", "2018-03-01", "--bars", str(tmp_path / "bars.parquet"))

    assert "--bars and --daily" in line


def test_replay_of_an_unknown_symbol_names_it(capsys, market_env: Path) -> None:
    line = user_error(capsys, "replay", "--date", SYNTHETIC_SESSION, "--symbols", "ZZZZ")

    assert "unknown symbol(s) ZZZZ" in line


def test_replay_of_a_session_the_files_do_not_cover_says_there_are_no_bars(capsys, market_env: Path) -> None:
    line = user_error(capsys, "replay", "--date", SESSION_BEFORE_SYNTHETIC_BARS)

    assert f"no minute bars for {SESSION_BEFORE_SYNTHETIC_BARS}" in line


def test_replay_with_a_negative_target_says_what_is_wrong(capsys, market_env: Path) -> None:
    line = user_error(capsys, "replay", "--date", SYNTHETIC_SESSION, "--target-pct", "-1")

    assert "target" in line


def test_replay_with_a_missing_daily_file_stops_before_the_flow_starts(capsys, tmp_path: Path, market_env: Path) -> None:
    synthetic_bars = market_env / "synthetic" / "minute_bars.parquet"
    daily = tmp_path / "missing_daily.parquet"

    line = user_error(capsys, "replay", "--date", SYNTHETIC_SESSION, "--bars", str(synthetic_bars), "--daily", str(daily))

    assert str(daily) in line


@pytest.mark.parametrize(
    ("argv", "complaint"),
    [
        (["replay", "--date", "2018-13-01"], "'2018-13-01' is not a date"),
        (["replay", "--date", "2018-03-01", "--target-pct", "abc"], "'abc' is not a number"),
    ],
)
def test_arguments_of_the_wrong_type_are_refused_by_the_parser(capsys, argv: list[str], complaint: str) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)

    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert complaint in err
    assert "Traceback" not in err


# -- query -------------------------------------------------------------------------------------------


def test_query_of_a_missing_store_says_there_is_none(capsys, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.ducklake"

    line = user_error(capsys, "query", "SELECT 1", "--db", str(missing))

    assert f"no store at {missing}" in line


def test_query_with_a_syntax_error_reports_duckdbs_first_line(capsys, db_with_a_run: Path) -> None:
    line = user_error(capsys, "query", "SELEC * FROM runs", "--db", str(db_with_a_run))

    assert line.startswith("openbell: query failed: ")
    assert "syntax error" in line.lower()


def test_query_as_csv_prints_a_header_and_one_row_per_record(capsys, db_with_a_run: Path) -> None:
    code, out, _ = run(
        capsys, "query", "SELECT run_id, flow, trade_date, status FROM runs", "--db", str(db_with_a_run), "--format", "csv"
    )

    assert code == 0
    assert list(csv.DictReader(io.StringIO(out))) == [
        {"run_id": "run-1", "flow": "trading_day", "trade_date": "2025-03-04", "status": "completed"}
    ]


def test_query_as_json_prints_a_list_of_records(capsys, db_with_a_run: Path) -> None:
    code, out, _ = run(
        capsys, "query", "SELECT run_id, started_at, status FROM runs", "--db", str(db_with_a_run), "--format", "json"
    )

    assert code == 0
    (record,) = json.loads(out)
    assert (record["run_id"], record["status"]) == ("run-1", "completed")
    assert datetime.fromisoformat(record["started_at"]) == datetime(2025, 3, 4, 8, 0, tzinfo=NY)


def test_doctor_shows_the_paper_account(monkeypatch, tmp_path, capsys) -> None:
    monkeypatch.setenv("OPENBELL_DATA__DIR", str(tmp_path / "doctor"))

    code = main(["doctor"])

    out = capsys.readouterr().out
    assert code == 0
    assert "paper, paper account" in out
    assert "equity     $100,000.00" in out


# -- store ---------------------------------------------------------------------------------------------


def readme_attach_line() -> str:
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    (line,) = [row for row in readme.splitlines() if row.startswith('duckdb -cmd "ATTACH')]
    return line.removeprefix('duckdb -cmd "').removesuffix('"')


def test_the_readmes_attach_line_opens_the_store_in_plain_duckdb(tmp_path: Path, monkeypatch) -> None:
    import duckdb

    from openbell.store.lake import extension_directory

    monkeypatch.chdir(tmp_path)  # the README's line names data/openbell.ducklake, relative to where openbell runs
    store = Store(tmp_path / "data" / "openbell.ducklake")
    store.migrate()
    store.insert("runs", [{"run_id": "r1", "flow": "scan"}])
    con = duckdb.connect(config={"extension_directory": str(extension_directory())})  # as the DuckDB CLI would

    con.execute(readme_attach_line())

    assert con.execute("SELECT run_id FROM runs").fetchall() == [("r1",)]
    with pytest.raises(duckdb.Error, match="(?i)read.only"):
        con.execute("DELETE FROM runs")


def test_store_attach_prints_lines_that_open_the_store(capsys, tmp_path: Path) -> None:
    import duckdb

    store = Store(tmp_path / "mine.ducklake")
    store.migrate()
    store.insert("runs", [{"run_id": "r1", "flow": "scan"}])

    code, out, _ = run(capsys, "store", "attach", "--db", str(store.path))

    (cli,) = [line.strip() for line in out.splitlines() if line.strip().startswith("duckdb -cmd")]
    (offline,) = [line.strip() for line in out.splitlines() if line.strip().startswith("SET extension_directory")]
    (python,) = [line.strip() for line in out.splitlines() if line.strip().startswith("import openbell.store")]
    con = duckdb.connect()
    con.execute(offline)
    con.execute(cli.removeprefix('duckdb -cmd "').removesuffix('"'))
    namespace: dict = {}
    exec(python, namespace)
    assert code == 0
    assert con.execute("SELECT count(*) FROM runs").fetchall() == [(1,)]
    assert namespace["con"].execute("SELECT run_id FROM runs").fetchall() == [("r1",)]


def test_store_migrate_moves_an_old_file_and_prints_the_counts(capsys, tmp_path: Path) -> None:
    import duckdb

    old = tmp_path / "old.duckdb"
    con = duckdb.connect(str(old))
    con.execute("CREATE TABLE runs (run_id VARCHAR PRIMARY KEY, flow VARCHAR NOT NULL, status VARCHAR)")
    con.execute("INSERT INTO runs VALUES ('a', 'scan', 'completed'), ('b', 'rank', 'completed')")
    con.close()
    target = tmp_path / "new.ducklake"

    code, out, _ = run(capsys, "store", "migrate", str(old), "--db", str(target))

    assert code == 0
    assert "runs" in out and "2" in out and "unchanged" in out
    assert Store(target).query("SELECT run_id, flow FROM runs ORDER BY run_id") == [("a", "scan"), ("b", "rank")]
    assert user_error(capsys, "store", "migrate", str(old), "--db", str(target)).endswith(
        "(OPENBELL_DATA__DB_PATH, or --db, names another one)"
    )


def test_a_query_on_a_folder_that_still_has_the_old_file_says_how_to_move_it(capsys, tmp_path: Path, monkeypatch) -> None:
    import duckdb

    monkeypatch.setenv("OPENBELL_DATA__DIR", str(tmp_path))
    duckdb.connect(str(tmp_path / "openbell.duckdb")).close()

    line = user_error(capsys, "query", "SELECT 1")

    assert "openbell store migrate" in line and "openbell.duckdb" in line
