"""``HOST:PORT`` addresses and free loopback ports, for a device and the server alike.

A device parses ``--mqtt`` and ``--superlink`` and picks a free port for its
SuperNode's Runtime API; the server does the same for its SuperLink and
mosquitto. This is their one home, on the device side of the layering
(``firmware_sim`` imports only ``edge``), so a device install needs nothing
from ``server``; :mod:`server.transports.flower_deploy` and :mod:`server.transports.broker`
re-export both names.
"""

from __future__ import annotations

import socket


def parse_address(address: str) -> tuple[str, int]:
    """``"host:port"`` -> (host, port); ValueError with the expected form otherwise."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"address must look like HOST:PORT (e.g. 127.0.0.1:9091), got {address!r}")
    return host.strip("[]"), int(port)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
