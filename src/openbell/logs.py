"""What the console shows of a failure: an openbell error is one line, said once.

Prefect logs a failing task's exception with its traceback, then the task's failed state, then the
flow's exception (the traceback again) and its failed state, and the parent flow's the same: a busy
store used to print four to six tracebacks before the line that says what to do. An error openbell
raises on purpose (`OpenbellError`: a setting to fix, a busy store, a refused order) already says
what was wrong and how to fix it, so on the console it is the first of those lines without its
traceback, and the others, which repeat it, are left out. The run's log in the Prefect UI keeps
every line and the traceback; any other exception keeps its traceback everywhere.
"""

from __future__ import annotations

import logging
from collections import deque

from openbell.errors import OpenbellError


class OneLinePerFailure(logging.Filter):
    """A console handler's filter: each openbell error once, in one line."""

    def __init__(self) -> None:
        super().__init__()
        self._said: deque[str] = deque(maxlen=32)  # the latest errors shown (a long-lived serve process)

    def filter(self, record: logging.LogRecord) -> bool:
        failure = record.exc_info[1] if record.exc_info else None
        if isinstance(failure, OpenbellError):
            text = str(failure)
            if text in self._said:
                return False
            self._said.append(text)
            record.exc_info, record.exc_text, record.stack_info = None, None, None
            return True
        if record.levelno >= logging.INFO and self._said:
            message = record.getMessage()
            return not any(text in message for text in self._said)  # the failed states repeating it
        return True


def one_line_per_failure() -> None:
    """Install the filter on the console handlers Prefect configured (once; again after Prefect sets up logging anew)."""
    from prefect.logging.handlers import PrefectConsoleHandler

    for handler in logging.getLogger().handlers:
        if isinstance(handler, PrefectConsoleHandler) and not any(isinstance(f, OneLinePerFailure) for f in handler.filters):
            handler.addFilter(OneLinePerFailure())
