"""`python -m app.erp start|stop|status|wipe`: the local Tryton server (app/erp/launcher.py)."""
from __future__ import annotations

import argparse
import sys
import time

from app.erp.launcher import DEFAULT_HOME, ErpError, LocalErp


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m app.erp", description=__doc__)
    parser.add_argument("action", choices=["start", "stop", "status", "wipe", "build"])
    parser.add_argument("--home", default=str(DEFAULT_HOME))
    parser.add_argument("--port", type=int)
    args = parser.parse_args(argv)
    erp = LocalErp(home=args.home, port=args.port)
    try:
        if args.action == "start":
            began = time.monotonic()
            url = erp.start()
            print(f"Tryton ready on {url} (pid {erp.pid()}, {time.monotonic() - began:.1f}s); log: {erp.log_file}")
            print(f"export ERP_URL={url} ERP_DATABASE={erp.database}")
        elif args.action == "build":
            erp.ensure_database()
            print(f"Tryton database ready in {erp.db_dir}")
        elif args.action == "stop":
            erp.stop()
            print("Tryton stopped")
        elif args.action == "wipe":
            erp.wipe()
            print(f"Tryton stopped and {erp.db_dir} deleted")
        elif erp.pid() is not None and erp.answers():
            print(f"running on {erp.url}, database {erp.database} (pid {erp.pid()})")
        else:
            print(f"not running (home {erp.home})")
            sys.exit(3)
    except ErpError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
