"""The servers the project starts on this machine (Kafka broker, Tryton): is the one in a pid file ours?"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path


def our_live_pid(pid_file: Path, child: subprocess.Popen | None, *markers: bytes) -> int | None:
    """The pid in `pid_file` if that process is alive and ours: the child we started and still hold,
    or a process whose command line holds every marker (pids get recycled; a stale file gives None)."""
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return None
    if child is not None and child.pid == pid:
        return pid if child.poll() is None else None  # poll() also reaps our own dead child
    return pid if runs_with(pid, markers) else None


def runs_with(pid: int, markers: tuple[bytes, ...]) -> bool:
    """Alive, not a zombie, and every marker among its arguments."""
    if not Path("/proc/self").exists():  # no procfs (macOS): trust the pid file
        try:
            os.kill(pid, 0)
        except OSError:
            return False
        return True
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")  # empty for a zombie
    except OSError:
        return False
    return all(marker in args for marker in markers)


class NotRunning(Exception):
    """A status action that finds the server down (its message: where it would run)."""


def run_action(action: Callable[[], str], error: type[Exception]) -> None:
    """One action of a local server's command line (`python -m app.broker|app.erp ACTION`): print
    what it reports; exit 1 with the server's own error, 3 for a status that finds it not running."""
    try:
        print(action())
    except NotRunning as down:
        print(f"not running ({down})")
        sys.exit(3)
    except error as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)


def timed(start: Callable[[], str]) -> tuple[str, float]:
    """What `start` returns and the seconds it took."""
    began = time.monotonic()
    return start(), time.monotonic() - began
