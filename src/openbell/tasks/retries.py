"""Prefect retries for tasks that are safe to repeat: only a TransientError (a broker or store that may come back) retries.

A task qualifies when running it again cannot send an order twice: its orders carry deterministic
client order ids that the broker recognises (the exit monitor, the liquidation, the market-on-open
orders), or it writes by key (upserts). An OrderRejected or a ConfigError never retries.
"""

from __future__ import annotations

from typing import Any

from openbell.errors import TransientError


def only_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect's `retry_condition_fn`: retry when the task failed with a TransientError, never otherwise."""
    try:
        state.result()
    except TransientError:
        return True
    except BaseException:  # noqa: BLE001 - any other failure is final
        return False
    return False


# The broker's own retries (alpaca-py's, the IBKR reconnects) come first; these are for what outlasts them.
TRANSIENT_RETRIES: dict[str, Any] = {
    "retries": 4,
    "retry_delay_seconds": [15, 30, 60, 120],
    "retry_condition_fn": only_transient,
}
