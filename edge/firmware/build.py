"""Build bare-metal ELF images for TinyFleet's boards with arm-none-eabi-gcc + newlib-nano.

Why one function: the firmware, its C unit tests and the model compiler's
kernels all need the same flags, start-up code and linker script per board;
if each caller assembled its own gcc line they would drift (the FPU flags and
``CPACR`` start-up must match, or float code hard-faults).

    >>> elf = build_elf("mps2-an386", [Path("test.c")], out_dir=Path("/tmp/b"))  # doctest: +SKIP
    >>> run_elf(elf).exit_code  # edge.firmware.qemu                          # doctest: +SKIP

Every image gets ``startup.c`` (reset, FPU on, ``main``'s return value is the
exit status, printf → UART) and the board's ``board.c``; include ``board.h``
for the board interface and ``board_config.h`` for its clock constants.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

FIRMWARE_DIR = Path(__file__).resolve().parent
SERIAL_LINK_C = FIRMWARE_DIR / "serial_link.c"  # the serial binding (docs/protocol.md §7); add it to sources
GCC = "arm-none-eabi-gcc"

CPU_FLAGS = ("-mcpu=cortex-m4", "-mfpu=fpv4-sp-d16", "-mfloat-abi=hard", "-mthumb")
C_FLAGS = ("-std=c11", "-Wall", "-Wextra", "-ffunction-sections", "-fdata-sections", "-g")
LINK_FLAGS = ("-nostartfiles", "--specs=nano.specs", "--specs=nosys.specs", "-Wl,--gc-sections")


@dataclass(frozen=True)
class Board:
    """A board TinyFleet builds for: its directory under ``boards/`` and its QEMU machine, if any."""

    name: str
    directory: Path
    qemu_machine: str | None
    flash_bytes: int
    ram_bytes: int

    @property
    def linker_script(self) -> Path:
        return self.directory / "linker.ld"


BOARDS: dict[str, Board] = {
    "mps2-an386": Board("mps2-an386", FIRMWARE_DIR / "boards" / "mps2_an386", "mps2-an386", 1 << 20, 256 << 10),
    "nano33ble": Board("nano33ble", FIRMWARE_DIR / "boards" / "nano33ble", None, 0xF0000, 256 << 10),
}


class BuildError(RuntimeError):
    """gcc refused the sources; ``output`` is its full diagnostic text."""

    def __init__(self, message: str, output: str = "") -> None:
        super().__init__(f"{message}\n{output}".rstrip())
        self.output = output


@dataclass(frozen=True)
class ImageSize:
    """``arm-none-eabi-size`` of an ELF: flash holds text + data, RAM holds data + bss."""

    text: int
    data: int
    bss: int

    @property
    def flash_bytes(self) -> int:
        return self.text + self.data

    @property
    def ram_bytes(self) -> int:
        return self.data + self.bss


def board(name: str) -> Board:
    """The board called ``name``, or a ValueError listing the known ones."""
    try:
        return BOARDS[name]
    except KeyError:
        raise ValueError(f"unknown board {name!r}; known: {', '.join(sorted(BOARDS))}") from None


def toolchain_available() -> bool:
    """True when arm-none-eabi-gcc is on PATH (the Makefile's system-deps install it)."""
    return shutil.which(GCC) is not None


def build_elf(
    board_name: str,
    sources: Iterable[Path | str],
    include_dirs: Iterable[Path | str] = (),
    out_dir: Path | str = "build/firmware",
    defines: Mapping[str, str | int | None] | None = None,
    *,
    name: str = "firmware",
    optimize: str = "-O2",
    extra_flags: Iterable[str] = (),
    timeout: float = 120.0,
) -> Path:
    """Compile and link ``sources`` with the board support into ``out_dir/name.elf``; return its path.

    ``defines`` become ``-DKEY=VALUE`` (``None`` → ``-DKEY``). libm is linked.
    Raises BuildError with gcc's output when compilation or linking fails
    (for instance when .data + .bss overflow the board's RAM).
    """
    spec = board(board_name)
    sources = [Path(s) for s in sources]
    if not sources:
        raise ValueError("build_elf needs at least one C source (one of them defines main)")
    missing = [str(s) for s in sources if not s.is_file()]
    if missing:
        raise BuildError(f"missing sources: {', '.join(missing)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    elf = out / f"{name}.elf"
    cmd = [GCC, *CPU_FLAGS, *C_FLAGS, optimize, *LINK_FLAGS]
    cmd += [f"-I{d}" for d in (FIRMWARE_DIR, spec.directory, *map(Path, include_dirs))]
    for key, value in (defines or {}).items():
        cmd.append(f"-D{key}" if value is None else f"-D{key}={value}")
    cmd += [*extra_flags, f"-L{FIRMWARE_DIR}", f"-T{spec.linker_script}", f"-Wl,-Map={out / (name + '.map')}"]
    cmd += [str(FIRMWARE_DIR / "startup.c"), str(spec.directory / "board.c"), *map(str, sources)]
    cmd += ["-lm", "-o", str(elf)]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError:
        raise BuildError(f"{GCC} is not installed (make system-deps installs it)") from None
    if done.returncode != 0:
        raise BuildError(f"building {elf.name} for {spec.name} failed", done.stdout + done.stderr)
    return elf


def objcopy(elf: Path, fmt: str) -> Path:
    """Write ``elf`` as ``.bin`` (``fmt='binary'``) or ``.hex`` (``'ihex'``) beside it, for flashing."""
    suffix = {"binary": ".bin", "ihex": ".hex"}.get(fmt)
    if suffix is None:
        raise ValueError("fmt must be 'binary' or 'ihex'")
    target = elf.with_suffix(suffix)
    subprocess.run(["arm-none-eabi-objcopy", "-O", fmt, str(elf), str(target)], check=True, capture_output=True)
    return target


def image_size(elf: Path) -> ImageSize:
    """Sizes as ``arm-none-eabi-size`` reports them (Berkeley format)."""
    done = subprocess.run(["arm-none-eabi-size", "-B", str(elf)], check=True, capture_output=True, text=True)
    match = re.search(r"^\s*(\d+)\s+(\d+)\s+(\d+)", done.stdout.splitlines()[1])
    if match is None:
        raise BuildError(f"cannot read arm-none-eabi-size output for {elf}", done.stdout)
    return ImageSize(*(int(g) for g in match.groups()))
