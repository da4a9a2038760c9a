"""`python -m app.erp start|stop|status|wipe`: the local Tryton server (app/erp/launcher.py)."""
from __future__ import annotations

import argparse

from app.erp.launcher import DEFAULT_HOME, ErpError, LocalErp
from app.local_process import NotRunning, run_action, timed


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m app.erp", description=__doc__)
    parser.add_argument("action", choices=["start", "stop", "status", "wipe", "build"])
    parser.add_argument("--home", default=str(DEFAULT_HOME))
    parser.add_argument("--port", type=int)
    args = parser.parse_args(argv)
    erp = LocalErp(home=args.home, port=args.port)

    def start() -> str:
        url, took = timed(erp.start)
        return (f"Tryton ready on {url} (pid {erp.pid()}, {took:.1f}s); log: {erp.log_file}\n"
                f"export ERP_URL={url} ERP_DATABASE={erp.database}")

    def build() -> str:
        erp.ensure_database()
        return f"Tryton database ready in {erp.db_dir}"

    def stop() -> str:
        erp.stop()
        return "Tryton stopped"

    def wipe() -> str:
        erp.wipe()
        return f"Tryton stopped and {erp.db_dir} deleted"

    def status() -> str:
        if erp.pid() is None or not erp.answers():
            raise NotRunning(f"home {erp.home}")
        return f"running on {erp.url}, database {erp.database} (pid {erp.pid()})"

    actions = {"start": start, "build": build, "stop": stop, "wipe": wipe, "status": status}
    run_action(actions[args.action], ErpError)

if __name__ == "__main__":
    main()
