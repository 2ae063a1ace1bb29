"""Run an mps2-an386 ELF under QEMU and collect its exit status and output.

Why: the firmware's C unit tests, the model compiler's kernels and the
instruction counts all run the same way — one QEMU process per image, ended by
semihosting ``SYS_EXIT_EXTENDED`` so ``main``'s return value is the exit
status. With ``icount=True`` (``-icount shift=0``) one instruction is 1 ns of
virtual time, so ``board_ticks()`` deltas × 40 are instruction counts, the
same on every machine.

UART0 goes to stdout (mixed with semihosting ``board_debug`` text), or, with
``serial_port``, to a TCP socket that QEMU *connects to* (``server=off``): the
listener (a gateway, a test) must already be listening, and no byte is lost.
With ``serial_server=True`` QEMU listens instead and waits (``wait=on``) for
one client before the guest starts — what ``serial_for_url("socket://…")``
needs. :class:`SerialRun` is the listening side for tests and tools.

Host->device bytes need the mps2-an386 board.c "rx_kick" (QEMU 7.2's UART
model never asks the chardev for the next byte by itself; see that file).
"""

from __future__ import annotations

import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

QEMU = "qemu-system-arm"
MACHINE = "mps2-an386"


@dataclass(frozen=True)
class QemuResult:
    """One finished run: ``exit_code`` is main's return (127 = HardFault, 126 = stray interrupt)."""

    exit_code: int
    output: bytes  # UART0 (unless redirected to a socket) + semihosting text
    stderr: str
    elapsed_s: float

    @property
    def stdout(self) -> str:
        return self.output.decode("utf-8", errors="replace")


class QemuTimeout(RuntimeError):
    """The image did not exit in time; QEMU was killed. ``output`` holds what it wrote."""

    def __init__(self, elf: Path, timeout: float, output: bytes) -> None:
        super().__init__(f"{elf.name} did not exit within {timeout} s under QEMU")
        self.output = output


def qemu_command(
    elf: Path | str,
    *,
    icount: bool = False,
    serial_port: int | None = None,
    serial_server: bool = False,
    machine: str = MACHINE,
) -> list[str]:
    """The qemu-system-arm argv that runs ``elf`` (exposed for callers that manage the process).

    ``serial_port`` with ``serial_server=False``: QEMU connects to a listener
    there; with ``serial_server=True``: QEMU listens there and the guest starts
    only once a client has connected.
    """
    cmd = [QEMU, "-M", machine, "-display", "none", "-monitor", "none", "-nodefaults"]
    cmd += ["-semihosting-config", "enable=on,target=native", "-kernel", str(elf)]
    if icount:
        cmd += ["-icount", "shift=0"]
    if serial_port is None:
        cmd += ["-serial", "stdio"]
    else:
        # nodelay: QEMU writes the UART byte by byte; with Nagle each short frame waited ~40 ms for a delayed ACK
        mode = "server=on,wait=on" if serial_server else "server=off"
        cmd += ["-chardev", f"socket,id=s0,host=127.0.0.1,port={int(serial_port)},{mode},nodelay=on", "-serial", "chardev:s0"]
    return cmd


def start_elf(elf: Path | str, *, serial_port: int, icount: bool = False, serial_server: bool = False) -> subprocess.Popen:
    """Start ``elf`` with UART0 wired to 127.0.0.1:``serial_port``; the caller waits or kills it."""
    cmd = qemu_command(elf, icount=icount, serial_port=serial_port, serial_server=serial_server)
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def run_elf(elf: Path | str, timeout: float = 10.0, icount: bool = False, serial_port: int | None = None, stdin: bytes = b"") -> QemuResult:
    """Run ``elf`` to its exit; ``stdin`` bytes are fed to UART0 when it is on stdio.

    Raises QemuTimeout (QEMU killed) if the image does not exit in ``timeout`` s.
    """
    elf = Path(elf)
    if not elf.is_file():
        raise FileNotFoundError(elf)
    start = time.monotonic()
    proc = subprocess.Popen(
        qemu_command(elf, icount=icount, serial_port=serial_port),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    try:
        out, err = proc.communicate(stdin, timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        raise QemuTimeout(elf, timeout, out) from None
    return QemuResult(proc.returncode, out, err.decode(errors="replace"), time.monotonic() - start)


class SerialRun:
    """Run ``elf`` with UART0 as a TCP connection this object accepted (QEMU ``server=off``).

        with SerialRun(elf) as run:
            run.read_until(b"READY\\n")
            run.send(b"hello\\n")
            assert run.read_until(b"\\n") == b"hello\\n"
            assert run.wait(5) == 0

    Every wait has a deadline; leaving the block kills QEMU if it still runs.
    """

    def __init__(self, elf: Path | str, *, icount: bool = False, accept_timeout: float = 10.0) -> None:
        self.elf = Path(elf)
        if not self.elf.is_file():
            raise FileNotFoundError(self.elf)
        self.icount = icount
        self.accept_timeout = accept_timeout
        self.process: subprocess.Popen | None = None
        self.sock: socket.socket | None = None
        self._buffer = b""

    def __enter__(self) -> SerialRun:
        with socket.socket() as listener:
            listener.bind(("127.0.0.1", 0))
            listener.listen(1)
            listener.settimeout(self.accept_timeout)
            self.process = start_elf(self.elf, serial_port=listener.getsockname()[1], icount=self.icount)
            try:
                self.sock, _ = listener.accept()
            except (TimeoutError, socket.timeout):
                self.close()
                raise QemuTimeout(self.elf, self.accept_timeout, b"") from None
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def send(self, data: bytes) -> None:
        assert self.sock is not None
        self.sock.sendall(data)

    def read_until(self, token: bytes, timeout: float = 10.0) -> bytes:
        """Bytes up to and including the first ``token``; QemuTimeout if it does not come in time."""
        assert self.sock is not None
        deadline = time.monotonic() + timeout
        while token not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise QemuTimeout(self.elf, timeout, self._buffer)
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except (TimeoutError, socket.timeout):
                continue
            if not chunk:
                raise QemuTimeout(self.elf, timeout, self._buffer)  # QEMU closed the line
            self._buffer += chunk
        end = self._buffer.index(token) + len(token)
        head, self._buffer = self._buffer[:end], self._buffer[end:]
        return head

    def wait(self, timeout: float = 10.0) -> int:
        """QEMU's exit status (main's return); QemuTimeout (QEMU killed) after ``timeout`` s."""
        assert self.process is not None
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.close()
            raise QemuTimeout(self.elf, timeout, self._buffer) from None

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)
        if self.process is not None:
            for stream in (self.process.stdout, self.process.stderr):
                if stream is not None:
                    stream.close()
        if self.sock is not None:
            self.sock.close()
            self.sock = None
