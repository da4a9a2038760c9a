"""Worker entry point: registers every stage's agents on the app and runs a Faust worker."""
from __future__ import annotations

import sys


def load_stages():
    """Import the agent modules: importing registers their agents, tables and timers on the app."""
    import agents.channels  # noqa: F401
    import agents.expiry  # noqa: F401
    import agents.finance  # noqa: F401
    import agents.ingest  # noqa: F401
    import agents.master  # noqa: F401
    import agents.positions  # noqa: F401
    import app.web.health  # noqa: F401
    from app.faust_app import app as faust_app
    return faust_app


def main(argv: list[str] | None = None) -> None:
    app = load_stages()
    loglevel = "info"
    sys.argv = ["stock-sync", "worker", "-l", loglevel, *(argv or [])]
    app.main()


if __name__ == "__main__":
    main(sys.argv[1:])
