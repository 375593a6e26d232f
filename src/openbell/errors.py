"""Exceptions, grouped by what the caller should do about them.

    OpenbellError            root: anything openbell raises on purpose
    ├── ConfigError          stop and tell the user what to fix (settings, files, dates)
    ├── DataQualityError     skip the symbol or the day and say why (missing or bad bars)
    ├── TransientError       worth retrying (broker disconnect, locked database)
    │   └── StoreLockedError the store stayed busy with another process's write
    └── OrderRejected        the broker said no: never retry blindly

Messages say what was wrong and how to fix it.
"""

from __future__ import annotations


class OpenbellError(Exception):
    """Root of every error openbell raises on purpose."""


class ConfigError(OpenbellError):
    """Invalid settings, missing or malformed input files, or a date that is not a session."""


class DataQualityError(OpenbellError):
    """Market data that cannot be trusted for a symbol or a day."""


class TransientError(OpenbellError):
    """A failure that may pass: retry with backoff."""


class StoreLockedError(TransientError):
    """The store stayed busy with another process's write (or its file locked) past the wait allowed."""


class OrderRejected(OpenbellError):
    """The broker refused an order; carries the broker's code and reason."""

    def __init__(self, client_order_id: str, reason: str, code: str | int | None = None) -> None:
        self.client_order_id = client_order_id
        self.reason = reason
        self.code = code
        detail = f" (code {code})" if code is not None else ""
        super().__init__(f"order {client_order_id} rejected{detail}: {reason}")
