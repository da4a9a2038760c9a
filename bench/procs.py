"""Systems under test as subprocesses, with their CPU time and memory sampled by psutil."""
from __future__ import annotations

import bisect
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import psutil

from app.settings import REPO_ROOT


class Sampler(threading.Thread):
    """Samples the process tree's RSS and CPU seconds twice a second."""

    def __init__(self, pid: int, interval: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.interval = interval
        self.samples: list[tuple[float, float, int, float]] = []   # (wall, cpu s, rss bytes, system cpu s)
        self.stopping = threading.Event()
        self._procs: dict[int, psutil.Process] = {}

    def _tree(self) -> list[psutil.Process]:
        try:
            root = self._procs.setdefault(self.pid, psutil.Process(self.pid))
            kids = root.children(recursive=True)
        except psutil.Error:
            return []
        return [root] + [self._procs.setdefault(k.pid, k) for k in kids]

    def measure(self) -> tuple[float, float, int, float]:
        cpu, rss, system = 0.0, 0, 0.0
        for p in self._tree():
            try:
                t = p.cpu_times()
                cpu += t.user + t.system
                system += t.system
                rss += p.memory_info().rss
            except psutil.Error:
                pass
        return time.time(), cpu, rss, system

    def run(self) -> None:
        while not self.stopping.is_set():
            self.samples.append(self.measure())
            self.stopping.wait(self.interval)

    def cpu_between(self, start: float, end: float) -> float:
        """CPU seconds the tree used between two wall times (nearest samples)."""
        inside = [s for s in self.samples if start - self.interval <= s[0] <= end + self.interval]
        return (inside[-1][1] - inside[0][1]) if len(inside) >= 2 else 0.0

    def cpu_at(self, when: float) -> float | None:
        """CPU seconds the tree had used at wall time `when`, interpolated between the two samples
        around it (None outside the samples)."""
        samples = self.samples
        index = bisect.bisect_left(samples, when, key=lambda s: s[0])
        if index == 0 or index >= len(samples):
            return None
        (t0, c0, *_), (t1, c1, *_) = samples[index - 1], samples[index]
        return c0 + (c1 - c0) * (when - t0) / max(t1 - t0, 1e-9)

    def system_share(self, start: float, end: float) -> float | None:
        """Share of the CPU time spent in the kernel (socket writes, mostly) between two wall times."""
        inside = [s for s in self.samples if start - self.interval <= s[0] <= end + self.interval]
        if len(inside) < 2 or inside[-1][1] == inside[0][1]:
            return None
        return (inside[-1][3] - inside[0][3]) / (inside[-1][1] - inside[0][1])

    def peak_rss(self) -> int:
        return max((s[2] for s in self.samples), default=0)

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=5)


class CoreSampler(threading.Thread):
    """Each CPU's busy and stolen time, twice a second: on this box the broker and the harness share
    one core, and a hypervisor that steals from it stalls the broker while the worker's core idles."""

    def __init__(self, interval: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.interval = interval
        self.samples: list[tuple[float, list]] = []   # (wall, psutil per-CPU times)
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            self.samples.append((time.time(), psutil.cpu_times(percpu=True)))
            self.stopping.wait(self.interval)

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=5)

    def shares_between(self, start: float, end: float) -> list[dict[str, float]] | None:
        """Per CPU, the share of the span it was busy (user, system, interrupts) and stolen."""
        inside = [s for s in self.samples if start - self.interval <= s[0] <= end + self.interval]
        if len(inside) < 2:
            return None
        (t0, first), (t1, last) = inside[0], inside[-1]
        span = max(t1 - t0, 1e-3)

        def busy(times) -> float:
            return times.user + times.nice + times.system + times.irq + times.softirq

        return [{"busy": round((busy(b) - busy(a)) / span, 2), "steal": round((b.steal - a.steal) / span, 2)}
                for a, b in zip(first, last)]


class SystemProcess:
    """One process of a system under test: command, environment, log file, optional CPU pinning."""

    def __init__(self, name: str, command: list[str], env: dict[str, str], log: Path,
                 cpus: set[int] | None = None, web_port: int | None = None) -> None:
        self.name = name
        self.command = command
        self.env = {**os.environ, **env}
        self.log = log
        self.cpus = cpus
        self.web_port = web_port
        self.proc: subprocess.Popen | None = None
        self.sampler: Sampler | None = None
        self.started_at = 0.0

    def start(self) -> SystemProcess:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        out = open(self.log, "ab")
        # Unpinned means every CPU: a child inherits the harness's own affinity, and the harness
        # pins itself to CPU 0 (bench/run.py), so two-worker runs used to share CPU 0 with the
        # broker and the harness while CPU 1 sat idle.
        cpus = self.cpus or set(range(os.cpu_count() or 1))

        def pin() -> None:
            os.sched_setaffinity(0, cpus)

        self.started_at = time.time()
        self.proc = subprocess.Popen(self.command, cwd=REPO_ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True, preexec_fn=pin)
        self.sampler = Sampler(self.proc.pid)
        self.sampler.start()
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def http_text(self, path: str) -> str | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.web_port}{path}", timeout=5) as response:
                return response.read().decode()
        except OSError:
            return None

    def http_status(self, path: str, token: str | None = None) -> int | None:
        request = urllib.request.Request(f"http://127.0.0.1:{self.web_port}{path}")
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=2) as response:
                return response.status
        except urllib.error.HTTPError as exc:
            return exc.code
        except OSError:
            return None

    def wait_ready(self, timeout: float = 180.0) -> float:
        """For pipeline workers: wait until /readyz answers 200; returns the wall time it did."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            if not self.alive():
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}; see {self.log}")
            if self.http_status("/readyz") == 200:
                return time.time()
            time.sleep(0.1)
        raise TimeoutError(f"{self.name} not ready after {timeout}s; see {self.log}")

    def stop(self, timeout: float = 30.0) -> None:
        if self.sampler is not None:
            self.sampler.stop()
        if not self.alive():
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        except ProcessLookupError:
            pass


def python(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]
