"""Whether a process is still there, read from /proc where there is one (Linux), else from a signal 0."""

from __future__ import annotations

import os
from pathlib import Path


def stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name, from the state (field 3) on; None when
    /proc does not know the PID (or there is no /proc)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()  # the command name may hold spaces and parentheses


def proc_stat(pid: int) -> tuple[str, int] | None:
    """(state, process group) from /proc, or None when /proc does not know the PID (or there is no /proc)."""
    fields = stat_fields(pid)
    return None if fields is None else (fields[0], int(fields[2]))


def alive(pid: int) -> bool:
    """True while the process `pid` exists and has not exited (a zombie has)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = proc_stat(pid)
    return stat is None or stat[0] not in ("Z", "X")  # a zombie has exited: only its parent has not reaped it
