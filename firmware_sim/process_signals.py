"""SIGTERM as an exception, so ``finally`` blocks stop the processes a command started.

Why: Python's default SIGTERM handler ends the interpreter without running
``finally``; a ``tinyfleet server`` or ``tinyfleet device run`` stopped by a
supervisor (systemd, a test fixture) would then orphan its SuperLink,
SuperNode or mosquitto, which live in their own sessions.

It lives in ``firmware_sim`` because a device needs it and the device side
imports only ``edge`` among our packages (``server`` pulls in Flower,
TensorFlow and rdflib, which a device install lacks); the server imports it
from here, and :mod:`server.process_signals` re-exports it.
"""

from __future__ import annotations

import signal
import threading


class Stopped(Exception):
    """SIGTERM arrived; unwinding stops the children."""


def stop_on_sigterm() -> None:
    """Raise :class:`Stopped` in the main thread on SIGTERM (no-op outside the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        return

    def handler(_signum: int, _frame: object) -> None:
        raise Stopped()

    signal.signal(signal.SIGTERM, handler)
