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
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

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


def qemu_command(elf: Path | str, *, icount: bool = False, serial_port: int | None = None, machine: str = MACHINE) -> list[str]:
    """The qemu-system-arm argv that runs ``elf`` (exposed for callers that manage the process)."""
    cmd = [QEMU, "-M", machine, "-display", "none", "-monitor", "none", "-nodefaults"]
    cmd += ["-semihosting-config", "enable=on,target=native", "-kernel", str(elf)]
    if icount:
        cmd += ["-icount", "shift=0"]
    if serial_port is None:
        cmd += ["-serial", "stdio"]
    else:
        cmd += ["-chardev", f"socket,id=s0,host=127.0.0.1,port={int(serial_port)},server=off", "-serial", "chardev:s0"]
    return cmd


def start_elf(elf: Path | str, *, serial_port: int, icount: bool = False) -> subprocess.Popen:
    """Start ``elf`` with UART0 wired to 127.0.0.1:``serial_port``; the caller waits or kills it."""
    return subprocess.Popen(qemu_command(elf, icount=icount, serial_port=serial_port), stdout=subprocess.PIPE, stderr=subprocess.PIPE)


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
