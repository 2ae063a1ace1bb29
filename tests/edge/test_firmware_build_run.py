"""edge.firmware: real arm-none-eabi-gcc builds, real QEMU runs of the board support."""

from __future__ import annotations

import random
import re
import shutil
from pathlib import Path

import pytest

from edge.firmware.build import BuildError, build_elf, image_size, objcopy
from edge.firmware.qemu import QemuTimeout, SerialRun, run_elf

FIRMWARE_C = Path(__file__).parent / "firmware_c"
SELFTEST = FIRMWARE_C / "board_selftest.c"
pytestmark = pytest.mark.skipif(
    shutil.which("arm-none-eabi-gcc") is None or shutil.which("qemu-system-arm") is None,
    reason="make system-deps installs arm-none-eabi-gcc and qemu-system-arm",
)


def test_main_return_is_qemu_exit_status_and_printf_reaches_uart(tmp_path: Path) -> None:
    elf = build_elf("mps2-an386", [SELFTEST], out_dir=tmp_path, defines={"EXIT_STATUS": 42})
    result = run_elf(elf, timeout=10)
    assert result.exit_code == 42
    assert "board=mps2-an386 product_x100=337" in result.stdout  # 1.5 * 2.25 on the FPU
    assert "semihosting ok" in result.stdout + result.stderr


def test_icount_ticks_are_deterministic_and_scale_with_work(tmp_path: Path) -> None:
    elf = build_elf("mps2-an386", [SELFTEST], out_dir=tmp_path, defines={"EXIT_STATUS": 0})
    runs = [run_elf(elf, icount=True).stdout for _ in range(2)]
    assert runs[0] == runs[1]
    t1, t2 = map(int, re.search(r"ticks1000=(\d+) ticks2000=(\d+)", runs[0]).groups())
    assert 0 < t1 < t2 and abs(t2 - 2 * t1) <= 2  # twice the loop, twice the ticks (±1 tick each)


def test_hard_fault_ends_the_run_with_status_127(tmp_path: Path) -> None:
    elf = build_elf("mps2-an386", [SELFTEST], out_dir=tmp_path, defines={"EXIT_STATUS": 0, "FAULT": None})
    result = run_elf(elf, timeout=10)
    assert result.exit_code == 127
    assert "HardFault" in result.stdout + result.stderr


def test_build_error_carries_gcc_output(tmp_path: Path) -> None:
    bad = tmp_path / "bad.c"
    bad.write_text("int main(void) { return undeclared; }\n")
    with pytest.raises(BuildError, match="undeclared"):
        build_elf("mps2-an386", [bad], out_dir=tmp_path)
    with pytest.raises(ValueError, match="unknown board"):
        build_elf("no-such-board", [bad], out_dir=tmp_path)


def test_ram_overflow_is_refused_at_link_time(tmp_path: Path) -> None:
    big = tmp_path / "big.c"
    big.write_text("static volatile char arena[300 * 1024]; int main(void) { arena[299000] = 1; return arena[299000]; }\n")
    with pytest.raises(BuildError, match="RAM|overflow"):
        build_elf("mps2-an386", [big], out_dir=tmp_path)


def test_an_image_that_never_exits_times_out(tmp_path: Path) -> None:
    hang = tmp_path / "hang.c"
    hang.write_text("int main(void) { for (;;) { __asm volatile(\"wfi\"); } }\n")
    elf = build_elf("mps2-an386", [hang], out_dir=tmp_path)
    with pytest.raises(QemuTimeout):
        run_elf(elf, timeout=1)


def test_nano33ble_links_at_0x10000_and_gives_bin_and_hex(tmp_path: Path) -> None:
    elf = build_elf("nano33ble", [SELFTEST], out_dir=tmp_path, defines={"EXIT_STATUS": 0})
    size = image_size(elf)
    assert 0 < size.flash_bytes < 0xF0000 and size.ram_bytes < 256 * 1024
    binary, hexfile = objcopy(elf, "binary"), objcopy(elf, "ihex")
    assert binary.stat().st_size == size.flash_bytes
    assert hexfile.read_text().startswith(":020000021000")  # extended segment address 0x1000 → 0x10000


# --------------------------------------------------------------- UART RX (host -> device)

def _fnv1a(data: bytes) -> int:
    h = 2166136261
    for byte in data:
        h = ((h ^ byte) * 16777619) & 0xFFFFFFFF
    return h


def test_uart_echo_over_a_socket_chardev_the_test_listens_on(tmp_path: Path) -> None:
    elf = build_elf("mps2-an386", [SELFTEST], out_dir=tmp_path, defines={"EXIT_STATUS": 7, "ECHO": None})
    with SerialRun(elf) as run:
        run.read_until(b"READY\n", timeout=10)
        run.send(b"hello, device\n")
        assert run.read_until(b"\n", timeout=10) == b"hello, device\n"
        assert run.wait(10) == 7


def test_uart_echo_from_stdin_on_the_stdio_chardev(tmp_path: Path) -> None:
    elf = build_elf("mps2-an386", [SELFTEST], out_dir=tmp_path, defines={"EXIT_STATUS": 0, "ECHO": None})
    result = run_elf(elf, timeout=10, stdin=b"abc\n")
    assert result.exit_code == 0
    assert result.stdout.endswith("READY\nabc\n")


@pytest.mark.parametrize(("icount", "stall"), [(False, None), (True, None), (False, 40_000_000)])
def test_uart_rx_bulk_bytes_all_arrive_in_order(tmp_path: Path, icount: bool, stall: int | None) -> None:
    """8 KB through a 1 KB RX ring; with ``stall`` the reader sleeps first and the UART must hold the host back."""
    data = random.Random(15).randbytes(8192)
    defines = {} if stall is None else {"STALL_LOOPS": stall}
    elf = build_elf("mps2-an386", [FIRMWARE_C / "uart_rx_bulk.c"], out_dir=tmp_path, name="bulk", defines=defines)
    with SerialRun(elf, icount=icount) as run:
        run.read_until(b"READY\n")
        run.send(len(data).to_bytes(4, "little") + data)
        line = run.read_until(b"\n", timeout=20)
        assert line == f"n={len(data)} fnv={_fnv1a(data):08x}\n".encode()
        assert run.wait(10) == 0


@pytest.mark.slow
def test_uart_host_to_device_throughput_64k(tmp_path: Path) -> None:
    """Measures what docs/protocol.md §7 quotes (run with -s to see it); the floor is the old 11 kB/s worst case."""
    import time

    data = random.Random(64).randbytes(65536)
    elf = build_elf("mps2-an386", [FIRMWARE_C / "uart_rx_bulk.c"], out_dir=tmp_path, name="bulk")
    rates = {}
    for icount in (False, True):
        with SerialRun(elf, icount=icount) as run:
            run.read_until(b"READY\n")
            start = time.monotonic()
            run.send(len(data).to_bytes(4, "little") + data)
            assert run.read_until(b"\n", timeout=60) == f"n={len(data)} fnv={_fnv1a(data):08x}\n".encode()
            rates[icount] = len(data) / (time.monotonic() - start) / 1000
            assert run.wait(10) == 0
    print(f"host->device over the socket chardev: {rates[False]:.1f} kB/s, with -icount shift=0 {rates[True]:.1f} kB/s")
    assert min(rates.values()) > 11
