"""A real Tryton server (the default ERP, SPEC §9) on SQLite and loopback, started like the local broker.

The database is built once per set of versions, legal entities and year into `.cache/erp/` (a
template: `trytond-admin --all`, `account` activated with its dependencies, then app/erp/setup_db.py)
and copied into `.run/erp/` on the first start, so later starts take about a second.
"""
from __future__ import annotations

import datetime
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from importlib import metadata
from pathlib import Path

from app.local_process import our_live_pid

REPO_ROOT = Path(__file__).resolve().parent.parent.parent
DEFAULT_HOME = REPO_ROOT / ".run" / "erp"
CACHE = REPO_ROOT / ".cache" / "erp"
SETUP_SCRIPT = Path(__file__).with_name("setup_db.py")
DATABASE = "stocksync"
ADMIN_PASSWORD = "admin"  # the embedded ERP is a local loopback server; ERP_PASSWORD points elsewhere


class ErpError(RuntimeError):
    """The local Tryton cannot be built or started; the message says why and what to do."""


def _bin(name: str) -> str:
    path = Path(sys.executable).with_name(name)
    if not path.exists():
        found = shutil.which(name)
        if found is None:
            raise ErpError(f"`{name}` not found next to {sys.executable} nor on PATH; install the ERP "
                           "dependencies: `make setup` (pip install -e '.[erp]')")
        return found
    return str(path)


def versions() -> str:
    try:
        return "-".join(metadata.version(p) for p in ("trytond", "trytond-account", "proteus"))
    except metadata.PackageNotFoundError as exc:
        raise ErpError(f"{exc.name} is not installed; run `make setup` (pip install -e '.[erp]')") from None


def legal_entities() -> str:
    """ERP_LEGAL_ENTITIES: the legal entities of the location master that get a company (default US01)."""
    return ",".join(sorted({e.strip() for e in os.environ.get("ERP_LEGAL_ENTITIES", "US01").split(",")
                            if e.strip()}))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rpc(url: str, method: str, params: list, timeout: float = 5.0, headers: dict | None = None):
    body = json.dumps({"id": 1, "method": method, "params": params}).encode()
    request = urllib.request.Request(url, body, {"Content-Type": "application/json", **(headers or {})})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        answer = json.loads(response.read())
    if answer.get("error"):
        raise ErpError(f"{method}: {answer['error']}")
    return answer["result"]


def _config_text(db_dir: Path, port: int) -> str:
    return (f"[database]\nuri = sqlite://\npath = {db_dir}\n\n[web]\nlisten = 127.0.0.1:{port}\n\n"
            # A poster may sit idle through a quiet night: keep its session (it logs in again anyway).
            "[session]\ntimeout = 86400\nmax_attempt = 20\n\n[request]\nmax_size_authenticated = 20000000\n")


class LocalErp:
    """One Tryton server this project starts and owns: config, database, log and pid file in `home`."""

    def __init__(self, home: Path = DEFAULT_HOME, port: int | None = None, database: str = DATABASE) -> None:
        self.home = Path(home).absolute()
        self.database = database
        self.db_dir = self.home / "db"
        self.config = self.home / "trytond.conf"
        self.pid_file = self.home / "trytond.pid"
        self.port_file = self.home / "port"
        self.log_file = self.home / "trytond.log"
        self.passfile = self.home / "admin.pass"
        self.port = port or self._last_port() or free_port()
        self._proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def _last_port(self) -> int | None:
        try:
            return int(self.port_file.read_text())
        except (OSError, ValueError):
            return None

    # --- the database ---------------------------------------------------------------------------

    def template_dir(self) -> Path:
        key = hashlib.sha256(f"{versions()}|{legal_entities()}|{datetime.date.today().year}|"
                             f"{SETUP_SCRIPT.read_bytes().hex()}".encode()).hexdigest()[:16]
        return CACHE / f"template-{key}"

    def ensure_database(self) -> None:
        target = self.db_dir / f"{self.database}.sqlite"
        if target.exists():
            return
        template = self.template_dir()
        if not (template / f"{DATABASE}.sqlite").exists():
            self._build_template(template)
        self.db_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(template / f"{DATABASE}.sqlite", target)

    def _build_template(self, template: Path) -> None:
        staging = template.with_name(f".{template.name}.{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        config = staging / "trytond.conf"
        config.write_text(_config_text(staging, 0))
        passfile = staging / "admin.pass"
        passfile.write_text(ADMIN_PASSWORD)
        env = {**os.environ, "TRYTONPASSFILE": str(passfile)}
        (staging / f"{DATABASE}.sqlite").touch()  # trytond-admin opens an existing SQLite file
        print(f"building the Tryton database template in {template} (once per version set) ...",
              file=sys.stderr, flush=True)
        steps = [
            [_bin("trytond-admin"), "-c", str(config), "-d", DATABASE, "--all", "--email", "erp@localhost.localdomain"],
            [_bin("trytond-admin"), "-c", str(config), "-d", DATABASE, "-u", "account", "--activate-dependencies"],
            [sys.executable, str(SETUP_SCRIPT), str(config), DATABASE, legal_entities(),
             str(datetime.date.today().year)],
        ]
        for step in steps:
            result = subprocess.run(step, env=env, capture_output=True, text=True, cwd=staging)
            if result.returncode != 0:
                raise ErpError(f"building the Tryton database failed at `{' '.join(step[:6])}`:\n"
                               f"{(result.stdout + result.stderr)[-3000:]}")
        shutil.rmtree(template, ignore_errors=True)
        staging.rename(template)

    # --- the server -----------------------------------------------------------------------------

    def pid(self) -> int | None:
        return our_live_pid(self.pid_file, self._proc, str(self.config).encode())

    def answers(self) -> bool:
        try:
            rpc(f"{self.url}rpc/", "common.server.version", [], timeout=2.0)
            return True
        except (OSError, ErpError, ValueError):
            return False

    def start(self, timeout: float = 60.0) -> str:
        """Start Tryton (or reuse ours if it runs); returns its URL (ERP_URL) once it answers."""
        if self.pid() is not None:
            return self._wait_ready(timeout)
        self.ensure_database()
        self.port = self.port if _port_free(self.port) else free_port()
        self.home.mkdir(parents=True, exist_ok=True)
        self.config.write_text(_config_text(self.db_dir, self.port))
        self.passfile.write_text(ADMIN_PASSWORD)
        self.port_file.write_text(str(self.port))
        with open(self.log_file, "ab") as out:
            self._proc = subprocess.Popen([_bin("trytond"), "-c", str(self.config), "-d", self.database], stdin=subprocess.DEVNULL,
                                          stdout=out, stderr=subprocess.STDOUT, cwd=self.home,
                                          start_new_session=True)
        self.pid_file.write_text(f"{self._proc.pid}\n")
        return self._wait_ready(timeout)

    def stop(self, timeout: float = 20.0) -> None:
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 10.0)):
            pid = self.pid()
            if pid is None:
                break
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline and self.pid() is not None:
                time.sleep(0.1)
        self.pid_file.unlink(missing_ok=True)

    def wipe(self) -> None:
        """Stop and forget the ledger: the next start copies a fresh database from the template."""
        self.stop()
        shutil.rmtree(self.db_dir, ignore_errors=True)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no Tryton output yet)"

    def _wait_ready(self, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.pid() is None:
                self.pid_file.unlink(missing_ok=True)
                raise ErpError(f"Tryton exited while starting; log {self.log_file}:\n{self.log_tail()}")
            if self.answers():
                return self.url
            time.sleep(0.2)
        self.stop()
        raise ErpError(f"Tryton did not answer on {self.url} within {timeout:.0f}s and was stopped; "
                       f"log {self.log_file}:\n{self.log_tail()}")


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        # As werkzeug binds: a port in TIME_WAIT after our own stop is free, so a restarted ERP keeps
        # its URL (a poster configured with ERP_URL finds it again).
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True
