"""A private mosquitto broker on loopback, configured from scratch for one fleet.

Lives with the server because the server side owns the fleet's accounts: it
generates every device's username/password and the ACL that confines each
device to its own topic subtree (:func:`edge.wire.topics.mosquitto_acl_patterns`);
devices never start brokers. Tests, ``.ci/run``, the benchmark and
``tinyfleet server --local-broker`` all start it through :class:`LocalBroker`,
so what is tested is the configuration that runs.

Uses Debian's ``mosquitto`` 2.0 (no systemd): one config file, a password file
made with ``mosquitto_passwd -U`` (hashes a whole ``user:password`` file in one
call, fast for thousands of devices), an ACL file and optionally a TLS
listener (:mod:`server.transports.broker_tls` makes throw-away certificates).
"""

from __future__ import annotations

import getpass
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from edge.wire.codec import check_device_id
from firmware_sim.addresses import free_port  # its home is the device side; re-exported for the server's tests
from edge.wire.topics import PREFIX, mosquitto_acl_patterns

log = logging.getLogger(__name__)

SERVER_USER = "tinyfleet-server"


class BrokerError(RuntimeError):
    """The broker could not be configured or started; the message says why."""


def find_executable(name: str) -> str:
    for candidate in (shutil.which(name), f"/usr/sbin/{name}", f"/usr/bin/{name}"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise BrokerError(f"{name} not found; install Debian's broker with: apt-get install -y mosquitto")


@dataclass(frozen=True)
class TlsFiles:
    ca_cert: Path
    server_cert: Path
    server_key: Path


@dataclass
class BrokerAccounts:
    """Usernames and passwords: one per device (the username is the device id) plus the server's."""

    server_password: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    devices: dict[str, str] = field(default_factory=dict)

    def add_devices(self, device_ids: Iterable[str]) -> None:
        for device_id in device_ids:
            check_device_id(device_id)  # the id becomes an ACL %u and a topic level
            self.devices.setdefault(device_id, secrets.token_urlsafe(12))


def acl_text() -> str:
    """The server reads and writes the whole prefix; devices only their own subtree."""
    lines = [f"user {SERVER_USER}", f"topic readwrite {PREFIX}/#", ""]
    lines += mosquitto_acl_patterns("%u")
    return "\n".join(lines) + "\n"


class LocalBroker:
    """Start, stop and restart one mosquitto process on 127.0.0.1.

    ``port`` (plain MQTT) and ``tls_port`` stay the same across :meth:`restart`,
    so clients can reconnect to a restarted broker. Every wait has a deadline.
    """

    def __init__(
        self, directory: Path, accounts: BrokerAccounts, *, tls: TlsFiles | None = None, persistence: bool = True
    ) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.accounts = accounts
        self.tls = tls
        self.persistence = persistence
        self.port = free_port()
        self.tls_port = free_port() if tls else None
        self.host = "127.0.0.1"
        self._process: subprocess.Popen[bytes] | None = None
        self.config_path = self.directory / "mosquitto.conf"
        self._configured = False  # a config left by an earlier run names other ports: never reuse it
        self.log_path = self.directory / "mosquitto.log"

    # ------------------------------------------------------------ configuration

    def write_config(self) -> Path:
        passwords = self.directory / "passwords"
        lines = [f"{SERVER_USER}:{self.accounts.server_password}"]
        lines += [f"{user}:{password}" for user, password in self.accounts.devices.items()]
        passwords.write_text("\n".join(lines) + "\n")
        passwords.chmod(0o600)
        done = subprocess.run(
            [find_executable("mosquitto_passwd"), "-U", str(passwords)], capture_output=True, text=True, timeout=60
        )
        if done.returncode != 0:
            raise BrokerError(f"mosquitto_passwd -U failed: {done.stderr.strip() or done.stdout.strip()}")
        (self.directory / "acl").write_text(acl_text())
        config = [
            f"user {getpass.getuser()}",  # as root, mosquitto would switch to user 'mosquitto' and lose our 0600 files
            "per_listener_settings false",
            "allow_anonymous false",
            f"password_file {passwords}",
            f"acl_file {self.directory / 'acl'}",
            f"persistence {'true' if self.persistence else 'false'}",
            f"persistence_location {self.directory}/",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "max_keepalive 60",
            # mosquitto queues 1,000 messages per client by default; the server's subscription alone
            # receives two retained messages (TD + status) per device at once, so size it to the fleet
            f"max_queued_messages {max(10 * (len(self.accounts.devices) + 1), 1000)}",
            f"listener {self.port} {self.host}",
        ]
        if self.tls is not None:
            config += [
                f"listener {self.tls_port} {self.host}",
                f"cafile {self.tls.ca_cert}",
                f"certfile {self.tls.server_cert}",
                f"keyfile {self.tls.server_key}",
                "tls_version tlsv1.2",
            ]
        self.config_path.write_text("\n".join(config) + "\n")
        return self.config_path

    # ------------------------------------------------------------ lifecycle

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, timeout_s: float = 10.0) -> None:
        if self.running:
            return
        if not self._configured:  # this instance's ports and passwords; a restart keeps them
            self.write_config()
            self._configured = True
        log_file = open(self.log_path, "ab")
        self._process = subprocess.Popen(
            [find_executable("mosquitto"), "-c", str(self.config_path)], stdout=log_file, stderr=log_file
        )
        log_file.close()
        ports = [p for p in (self.port, self.tls_port) if p]
        deadline = time.monotonic() + timeout_s
        while not all(self._accepts(p) for p in ports):
            if self._process.poll() is not None:
                raise BrokerError(f"mosquitto exited with {self._process.returncode}: {self._log_tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise BrokerError(f"mosquitto did not listen on {ports} within {timeout_s} s: {self._log_tail()}")
            time.sleep(0.02)
        log.info("mosquitto pid %d listening on %s:%s", self._process.pid, self.host, ports)

    def _accepts(self, port: int) -> bool:
        try:
            with socket.create_connection((self.host, port), timeout=0.2):
                return True
        except OSError:
            return False

    def _log_tail(self, lines: int = 10) -> str:
        try:
            return " | ".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout_s``; retained messages are saved if persistence is on."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=timeout_s)

    def restart(self, down_s: float = 0.0) -> None:
        self.stop()
        time.sleep(down_s)
        self.start()

    def __enter__(self) -> LocalBroker:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
