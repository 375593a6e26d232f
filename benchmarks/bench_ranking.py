"""Benchmark of the morning's ranking on a recorded day: the quant ranker, the voters, the LLM ranker and its cache.

The workload is 2018-03-01 of ../shared/data (every symbol scanned, the scan's filters relaxed so
that every symbol with clean data is a candidate), or the synthetic market's last session when the
recorded data is absent. Timed, each the median of several runs after a warm-up:
- quant: `GapVolumeRanker.rank` over every candidate;
- voters: `vote` (five voters on 120 calendar days of daily bars) over every candidate;
- llm, network: `LlmRanker.rank` through the real openai client against the fake OpenAI server of
  tests/fakes on loopback, which answers at once: prompt building, the HTTP round trip and
  reply validation, i.e. openbell's own overhead on top of a real model's latency;
- llm, cached: the same ranking found in DuckDB by its request key (what a replay pays).
Also printed: the prompt's size for max_candidates (25) candidates.

Run:  uv run python -m benchmarks.bench_ranking
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path

from benchmarks.paths import DAILY, MINUTE
from openbell import calendar
from openbell.config import LlmSettings
from openbell.core import scan
from openbell.core.ranking import GapVolumeRanker
from openbell.core.voters import vote
from openbell.llm import audit
from openbell.llm.prompt import build_messages, prompt_candidates
from openbell.llm.ranker import LlmRanker
from openbell.store import Store
from openbell.venues.replay import ParquetReplaySource
from openbell.venues.synthetic import generate_synthetic_market
from tests.fakes.fake_openai import FakeOpenAI


def _median_ms(work: Callable[[], object], runs: int) -> float:
    work()  # warm-up
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        work()
        times.append((time.perf_counter() - began) * 1000)
    return statistics.median(times)


def _workload() -> tuple[str, date, object, object]:
    if MINUTE.exists() and DAILY.exists():
        return "2018-03-01 (../shared/data)", date(2018, 3, 1), ParquetReplaySource(MINUTE, DAILY), None
    folder = Path(tempfile.mkdtemp()) / "synthetic"
    generate_synthetic_market(folder)
    source = ParquetReplaySource(folder / "minute_bars.parquet", folder / "daily_bars.parquet")
    return "the synthetic market's last session", max(source.sessions()), source, None


def main() -> int:
    label, day, source, _ = _workload()
    prior = calendar.previous_session(day)
    daily = source.daily_bars(prior - timedelta(days=120), prior)
    features = scan.scan_features(daily, source.opening_prints(day), prior)
    filters = scan.ScanFilters(min_gap_pct=-100.0, max_gap_pct=1_000.0, min_avg_dollar_volume=0.0, min_price=0.01)
    candidates = scan.apply_filters(features, filters)
    passed = candidates[candidates["passed"]]
    print(f"workload: {label}, {len(passed)} candidates of {len(candidates)} symbols")

    rows = []
    rows.append(("quant ranker, all candidates", _median_ms(lambda: GapVolumeRanker().rank(candidates, 5), 20)))
    rows.append(("five voters, all candidates", _median_ms(lambda: vote(passed, daily), 5)))

    fake = FakeOpenAI().start()
    settings = LlmSettings(model="bench", base_url=fake.url, timeout_s=10, budget_s=30)
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "bench.ducklake")
        store.migrate()

        def fresh() -> None:
            ranker = LlmRanker(settings, trade_date=day, run_id=None, fallback=GapVolumeRanker())
            ranker.rank(candidates, 5)
            assert ranker.outcome is not None and ranker.outcome.fallback_reason is None, ranker.outcome
            audit.record_calls(store, ranker.outcome.calls)

        def cached() -> None:
            ranker = LlmRanker(
                settings,
                trade_date=day,
                run_id=None,
                fallback=GapVolumeRanker(),
                cached=lambda key: audit.cached_reply(store, key),
            )
            ranker.rank(candidates, 5)
            assert ranker.outcome is not None and ranker.outcome.calls[0].status == "cached"

        rows.append(("LLM ranker, loopback server answering at once", _median_ms(fresh, 10)))
        sent = fake.request_count
        rows.append(("LLM ranker, recorded reply from DuckDB", _median_ms(cached, 10)))
        assert fake.request_count == sent, "the cached path made a request"
    fake.stop()

    messages = build_messages(day, prompt_candidates(candidates, settings.max_candidates), {}, 5)
    chars = sum(len(m["content"]) for m in messages)
    width = max(len(name) for name, _ in rows)
    for name, ms in rows:
        print(f"{name:<{width}}  {ms:8.1f} ms")
    print(f"prompt for {settings.max_candidates} candidates: {chars:,} characters (~{chars // 4:,} tokens)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
