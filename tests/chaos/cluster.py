"""The chaos cluster: worker processes of one app, the faults done to them, and what each fault cost."""
from __future__ import annotations

import itertools
import os
import shutil
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

from app.broker import LocalBroker
from tests.e2e.harness import WorkerProcess

_ports = itertools.count(17100)


def free_port() -> int:
    """The next worker web port nobody listens on (a worker of an aborted run may still hold one)."""
    for port in _ports:
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port")


def rss_kb(pid: int) -> tuple[int, int]:
    """(current RSS, peak RSS) of a process in KiB, from /proc."""
    values = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(("VmRSS:", "VmHWM:")):
                name, amount = line.split(":", 1)
                values[name] = int(amount.split()[0])
    except OSError:
        return 0, 0
    return values.get("VmRSS", 0), values.get("VmHWM", 0)


@dataclass
class Fault:
    at: float          # seconds since the run started
    kind: str
    target: str
    detail: str = ""
    seconds: float = 0.0   # how long the fault's own step took (restart-to-ready, stop duration …)
    extra: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"at_s": round(self.at, 1), "kind": self.kind, "target": self.target, "detail": self.detail,
                "seconds": round(self.seconds, 1), **self.extra}


@dataclass
class Cluster:
    broker: LocalBroker
    run_dir: Path
    app_id: str
    started: float = field(default_factory=time.monotonic)
    workers: dict[str, WorkerProcess] = field(default_factory=dict)
    faults: list[Fault] = field(default_factory=list)
    rss: dict[str, dict[str, int]] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    intended_down: set[str] = field(default_factory=set)  # workers we stopped or killed on purpose
    static_membership: bool = False   # KAFKA_GROUP_INSTANCE_ID per worker name, kept across restarts

    @property
    def bootstrap(self) -> str:
        return self.broker.bootstrap

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def _record(self, kind: str, target: str, detail: str = "", seconds: float = 0.0) -> Fault:
        fault = Fault(self.elapsed(), kind, target, detail, seconds)
        self.faults.append(fault)
        return fault

    def _note_rss(self, name: str, phase: str) -> None:
        worker = self.workers.get(name)
        if worker is not None and worker.proc is not None and worker.proc.poll() is None:
            current, peak = rss_kb(worker.proc.pid)
            entry = self.rss.setdefault(name, {})
            entry[f"{phase}_kb"] = current
            entry["peak_kb"] = max(entry.get("peak_kb", 0), peak)

    # --- workers -------------------------------------------------------------------------------
    def start(self, name: str, *, fresh: bool = False, wait: float = 180.0, kind: str = "start") -> float:
        """Start (or restart) a worker; `fresh` empties its data dir first. Returns seconds to ready."""
        data = self.run_dir / name
        if fresh:
            shutil.rmtree(data, ignore_errors=True)
        env, port, previous = dict(self.env), None, self.workers.get(name)
        if self.static_membership:
            # A static member comes back under its name and at its address, as a StatefulSet pod does
            # (its group identity includes its URL: app/faust_app.py, group_instance_id).
            env["KAFKA_GROUP_INSTANCE_ID"] = f"{self.app_id}-{name}"
            port = previous.web_port if previous is not None else None
        worker = WorkerProcess(self.bootstrap, data, port or free_port(), self.app_id, **env)
        self.workers[name] = worker
        self.intended_down.discard(name)
        began = time.monotonic()
        worker.start(wait_ready=wait)
        took = time.monotonic() - began
        self._record(kind, name, f"port {worker.web_port}" + (", empty data dir" if fresh else ""), took)
        self._note_rss(name, "after_start")
        return took

    def kill(self, name: str) -> None:
        """SIGKILL, as a crash or an OOM kill would."""
        self._note_rss(name, "before_kill")
        self.intended_down.add(name)
        self.workers[name].kill()
        self._record("sigkill", name)

    def stop(self, name: str, *, record: bool = True) -> float:
        """SIGTERM and wait: a graceful stop (drain, commit, leave the group). Returns its duration."""
        worker = self.workers[name]
        self.intended_down.add(name)
        self._note_rss(name, "before_stop")
        began = time.monotonic()
        worker.stop(timeout=90)
        took = time.monotonic() - began
        if record:
            self._record("sigterm", name, f"exit code {worker.proc.returncode if worker.proc else None}", took)
        return took

    def crashed(self) -> list[str]:
        """Workers that exited although nobody stopped them."""
        return [n for n, w in self.workers.items()
                if n not in self.intended_down and w.proc is not None and w.proc.poll() is not None]

    def alive(self) -> list[str]:
        return [n for n, w in self.workers.items() if w.proc is not None and w.proc.poll() is None]

    def sample_rss(self, phase: str) -> None:
        for name in self.alive():
            self._note_rss(name, phase)

    def stop_all(self) -> None:
        for name in self.alive():
            self.stop(name, record=False)
        self.intended_down.update(self.workers)

    def kill_all(self) -> None:
        for name in self.alive():
            self.intended_down.add(name)
            self.workers[name].kill()

    # --- broker --------------------------------------------------------------------------------
    def restart_broker(self, *, hard: bool = False, down_for: float = 0.0) -> float:
        """Stop the broker (SIGTERM, or SIGKILL when `hard`), keep it down, start it. Returns downtime."""
        began = time.monotonic()
        if hard:
            self.broker.kill()
        else:
            self.broker.stop()
        if down_for:
            time.sleep(down_for)
        self.broker.start(timeout=180)
        took = time.monotonic() - began
        self._record("broker_kill" if hard else "broker_restart", "broker",
                     f"down for {took:.1f}s", took)
        return took

    def logs(self, lines: int = 40) -> str:
        return "\n".join(f"--- {name} ({w.log_path}) ---\n{w.log_tail(lines)}" for name, w in self.workers.items())

    def worker_pids(self) -> dict[str, int]:
        return {n: w.proc.pid for n, w in self.workers.items() if w.proc is not None}


def env_flag(name: str, default: str) -> str:
    return os.environ.get(name, default)
