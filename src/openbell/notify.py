"""Notifications through apprise: the kill switch, rejected orders, monitor trouble and the daily summary.

The message helpers (`kill_switch_message`, `order_rejected_message`, `monitor_message`, `daily_summary_message`) are
pure: plain values in, a `Notification` out. `Notifier` sends one to every URL in OPENBELL_NOTIFY__URLS:

    notifier = Notifier.from_settings(settings)
    notifier.notify(kill_switch_message("daily_loss_usd", observed=-612.4, limit=500, flattened_symbols=["AAPL"]))

A notification must never hurt the trading it reports on, so `Notifier.send`:
- never raises, and gives up after `timeout_s` (every receiver at once, each in its own thread; apprise's socket
  timeouts, 4 s by default or a URL's ?cto=&rto=, are capped at it too); a failure is one warning line;
- removes every secret the settings hold (API keys, the notify URLs, and the parts of them apprise marks private:
  passwords, webhook tokens) from the title and body;
- never logs a URL: receivers are named by position and service (`receiver 2 (mailto)`), and apprise's own log
  lines, which name hosts and carry payloads, are dropped while openbell sends;
- with no URL configured does nothing, and never imports apprise.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from enum import StrEnum
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from pydantic import BaseModel, SecretStr

if TYPE_CHECKING:
    from openbell.config import Settings

log = logging.getLogger(__name__)

REDACTED = "***"
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]{0,31})://")
_SHORTEST_URL_PART = 4  # a URL's private part shorter than this is not looked for in the text (a password "x")


class Level(StrEnum):
    """How bad the news is; the values are apprise's notify types."""

    INFO = "info"
    SUCCESS = "success"
    WARNING = "warning"
    FAILURE = "failure"


@dataclass(frozen=True, slots=True)
class Notification:
    title: str
    body: str
    level: Level = Level.INFO


# --- the messages ----------------------------------------------------------------------------------------------------


def kill_switch_message(
    rule: str, observed: Decimal | float, limit: Decimal | float, flattened_symbols: Sequence[str] = ()
) -> Notification:
    """The day's trading stopped: `rule` (e.g. daily_loss_usd, or daily_profit_usd: the day's profit target
    reached) saw `observed` past `limit`."""
    flattened = ", ".join(flattened_symbols) if flattened_symbols else "nothing was open"
    profit = rule.startswith("daily_profit")
    return Notification(
        f"openbell: the day's profit target reached ({rule})" if profit else f"openbell: kill switch tripped ({rule})",
        f"{rule}: {_number(observed)} against a limit of {_number(limit)}. No new entries today. Flattened: {flattened}.",
        Level.SUCCESS if profit else Level.FAILURE,
    )


def order_rejected_message(
    client_order_id: str, reason: str, code: str | int | None = None, *, symbol: str | None = None
) -> Notification:
    """The broker refused an order (the values of `OrderRejected`); it is not retried."""
    about = f" {symbol}" if symbol else ""
    detail = f" (code {code})" if code is not None else ""
    return Notification(
        f"openbell: order rejected{about}",
        f"The broker rejected order {client_order_id}{detail}: {reason}. It is not retried.",
        Level.WARNING,
    )


def monitor_message(problem: str, *, fallback: str | None = None, symbol: str | None = None) -> Notification:
    """The intraday monitor hit `problem`; `fallback` says what it does instead (a warning), none: an error."""
    about = f" ({symbol})" if symbol else ""
    if fallback is None:
        return Notification(f"openbell: monitor error{about}", f"{problem}.", Level.FAILURE)
    return Notification(f"openbell: monitor fallback{about}", f"{problem}. Instead: {fallback}.", Level.WARNING)


def daily_summary_message(
    trade_date: date,
    trades: int,
    net_pnl: Decimal | float,
    *,
    wins: int | None = None,
    losses: int | None = None,
    win_rate: float | None = None,
    gross_pnl: Decimal | float | None = None,
    commission: Decimal | float | None = None,
    unfilled: int = 0,
    skipped: int = 0,
) -> Notification:
    """The day's result; takes the fields of `DailyPnl`, so `daily_summary_message(**asdict(summary))` works."""
    lines = [f"{trades} trade{'s' if trades != 1 else ''}, net P&L {_usd(net_pnl)}"]
    if wins is not None and losses is not None:
        rate = f" ({win_rate:.0%} won)" if win_rate is not None and trades else ""
        lines.append(f"{wins} won, {losses} lost{rate}")
    if gross_pnl is not None and commission is not None:
        lines.append(f"gross {_usd(gross_pnl)}, commission {_usd(commission, signed=False)}")
    if unfilled or skipped:
        lines.append(f"{unfilled} entries unfilled, {skipped} picks skipped by sizing")
    return Notification(f"openbell: {trade_date:%Y-%m-%d} {_usd(net_pnl)}", "\n".join(lines), Level.INFO)


def _usd(amount: Decimal | float, *, signed: bool = True) -> str:
    sign = "-" if amount < 0 else "+" if signed and amount > 0 else ""
    return f"{sign}${abs(amount):,.2f}"


def _number(value: Decimal | float) -> str:
    return f"{value:,}" if isinstance(value, int) else f"{value:,.2f}"


# --- secrets ---------------------------------------------------------------------------------------------------------


def secret_values(settings: BaseModel) -> list[str]:
    """Every SecretStr value the settings hold (API keys, the notify URLs), walked from the models' fields."""
    found: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, SecretStr):
            found.append(value.get_secret_value())
        elif isinstance(value, BaseModel):
            for name in type(value).model_fields:
                walk(getattr(value, name))
        elif isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, (list, tuple, set, frozenset)):
            for item in value:
                walk(item)

    walk(settings)
    return found


def redact(text: str, secrets: Iterable[str]) -> str:
    """`text` with each secret replaced by ***, the longest first (a secret may contain another)."""
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    return text


def url_problem(url: str) -> str | None:
    """Why apprise cannot send to `url`, in words that never repeat the URL; None when it can."""
    scheme = _SCHEME.match(url)
    if scheme is None:
        return "not an apprise URL: it starts with the service, e.g. json://host/path or mailto://user:pass@host"
    if _receiver(url) is None:
        return (
            f"apprise cannot send to this {scheme[1]}:// URL: an unknown service, or a part it needs is missing "
            "(the services and their URLs: https://github.com/caronc/apprise/wiki)"
        )
    return None


# --- sending ---------------------------------------------------------------------------------------------------------


class Notifier:
    """Sends notifications to apprise URLs; never raises, never logs a URL, never sends a secret."""

    def __init__(self, urls: Sequence[str], *, timeout_s: float, secrets: Iterable[str] = ()) -> None:
        self._urls = tuple(urls)
        self.timeout_s = timeout_s
        self._secrets = [*secrets, *self._urls]
        self._with_url_parts: list[str] | None = None  # and the URLs' private parts, found at the first send

    @classmethod
    def from_settings(cls, settings: Settings) -> Notifier:
        """The notifier the settings ask for; it redacts every secret they hold."""
        urls = [url.get_secret_value() for url in settings.notify.urls]
        return cls(urls, timeout_s=settings.notify.timeout_s, secrets=secret_values(settings))

    @property
    def configured(self) -> bool:
        return bool(self._urls)

    def notify(self, message: Notification) -> int:
        """`send` a message made by one of the helpers above."""
        return self.send(message.title, message.body, level=message.level)

    def send(self, title: str, body: str, *, level: Level = Level.INFO) -> int:
        """Send to every receiver at once, waiting at most `timeout_s`; returns how many took it.

        Never raises: a receiver that fails or does not answer in time is named (by position) in one warning line.
        """
        if not self._urls:
            return 0
        try:
            if self._with_url_parts is None:
                parts = [part for url in self._urls for part in private_url_parts(url) if len(part) >= _SHORTEST_URL_PART]
                self._with_url_parts = [*self._secrets, *parts]
            title, body = redact(title, self._with_url_parts), redact(body, self._with_url_parts)
            return self._send(title, body, Level(level))
        except Exception as exc:  # a notification never stops the flow that sends it; the title may be unredacted
            log.warning("a notification was not sent: %s", type(exc).__name__)
            return 0

    def _send(self, title: str, body: str, level: Level) -> int:
        took: dict[int, bool] = {}

        def deliver(position: int, url: str) -> None:
            try:
                with _apprise_quiet():
                    took[position] = _deliver(url, title, body, level, self.timeout_s)
            except Exception:  # a plugin's bug is this receiver's failure; its text may hold the URL
                took[position] = False

        workers = [
            threading.Thread(target=deliver, args=(n, url), name=f"openbell-notify-{n}", daemon=True)
            for n, url in enumerate(self._urls, start=1)
        ]
        deadline = time.monotonic() + self.timeout_s
        for worker in workers:
            worker.start()
        for worker in workers:  # a receiver still sending at the deadline finishes in the background
            worker.join(max(0.0, deadline - time.monotonic()))
        done = dict(took)  # a late receiver may still write into `took`
        failed = [
            f"receiver {n} ({_scheme(url)}) {'failed' if n in done else f'gave no answer within {self.timeout_s:g}s'}"
            for n, url in enumerate(self._urls, start=1)
            if not done.get(n)
        ]
        if failed:
            log.warning("notification %r not delivered: %s (OPENBELL_NOTIFY__URLS)", title, "; ".join(failed))
        return sum(done.values())


def _scheme(url: str) -> str:
    match = _SCHEME.match(url)
    return match[1] if match else "not an apprise URL"


def _deliver(url: str, title: str, body: str, level: Level, timeout_s: float) -> bool:
    """Whether the receiver at `url` took the message."""
    import apprise

    receiver = _receiver(url, timeout_s)
    return receiver is not None and bool(receiver.notify(title=title, body=body, notify_type=apprise.NotifyType(level)))


def private_url_parts(url: str) -> list[str]:
    """The parts of `url` its apprise service marks private (passwords, webhook tokens, API keys)."""
    receiver = _receiver(url)
    if receiver is None:
        return [part for part in (urlsplit(url).password,) if part]
    found = []
    for key, spec in (*receiver.template_tokens.items(), *receiver.template_args.items()):
        if spec.get("private"):
            value = getattr(receiver, spec.get("map_to", key), None)
            found += [v for v in (value if isinstance(value, (list, tuple, set)) else [value]) if isinstance(v, str)]
    return found


def _receiver(url: str, timeout_s: float | None = None) -> Any:
    """apprise's plugin for `url` (None if it has none), its socket timeouts capped at `timeout_s`.

    A fresh plugin per message: a reused one sleeps between messages (apprise's rate limit, up to 5.5 s), which would
    spend the budget of the next one; openbell sends a few messages a day.
    """
    import apprise  # here: no URL configured, no apprise import

    with _apprise_quiet():
        receiver = apprise.Apprise.instantiate(url, suppress_exceptions=True)
    if receiver is not None and timeout_s is not None:
        receiver.socket_connect_timeout = min(receiver.socket_connect_timeout, timeout_s)
        receiver.socket_read_timeout = min(receiver.socket_read_timeout, timeout_s)
    return receiver


class _WhileSending(logging.Filter):
    """Drops log records while openbell talks to apprise: they name hosts and URLs and carry the payload."""

    def __init__(self) -> None:
        super().__init__()
        self.active = 0
        self.lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        return self.active == 0


_QUIET = _WhileSending()
_NOISY = ("apprise", "urllib3.connectionpool")  # apprise's one logger; urllib3 logs each request line at debug


@contextmanager
def _apprise_quiet() -> Iterator[None]:
    with _QUIET.lock:
        for name in _NOISY:
            if _QUIET not in logging.getLogger(name).filters:
                logging.getLogger(name).addFilter(_QUIET)
        _QUIET.active += 1
    try:
        yield
    finally:
        with _QUIET.lock:
            _QUIET.active -= 1
