"""SIGTERM as an exception: :mod:`firmware_sim.process_signals`, re-exported for the server's commands.

The device side owns it (a device must not import ``server``); the server
imports it, as the layering allows, so both stop the same way.
"""

from __future__ import annotations

from firmware_sim.process_signals import Stopped, stop_on_sigterm

__all__ = ["Stopped", "stop_on_sigterm"]
