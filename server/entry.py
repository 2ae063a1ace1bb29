"""The ``tinyfleet`` console script: a clear message instead of a traceback on an install without the server side.

``tinyfleet`` (typer, rich, Flower, the registry) needs ``pip install 'tinyfleet[full]'``; a device
install (``tinyfleet[device]``) has ``tinyfleet-device`` instead. Importing the CLI is what fails there,
so the check has to sit in front of that import.
"""

from __future__ import annotations

import sys


def main() -> None:
    try:
        from server.cli import app
    except ImportError as exc:
        print(
            f"tinyfleet: this install lacks {exc.name!r}, which the server side needs; install "
            "'tinyfleet[full]', or on a device run tinyfleet-device (pip install 'tinyfleet[device]')",
            file=sys.stderr,
        )
        raise SystemExit(2) from None
    app()
