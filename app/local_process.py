"""The servers the project starts on this machine (Kafka broker, Tryton): is the one in a pid file ours?"""
from __future__ import annotations

import os
import subprocess
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
