"""The host's half of the emulated sample source: labelled clips into the FIFO a QEMU firmware reads by semihosting.

Why a FIFO and semihosting: QEMU's UART moves host->device bytes at 11-47 kB/s,
and one second of float32 audio is 64 KB; a semihosting read is one host
``read()`` (190-1000 MB/s measured), so the device's microphone is replaced by
this feed while its serial protocol keeps the UART (see
``edge/firmware/device/sample_source.h``, which reads what :func:`record` writes).

A :class:`ClipFeed` writes clips from any iterator of ``(clip, label)`` (the
caller's: for a fleet device, the very clips its simulated twin draws, from
``firmware_sim``; edge imports none of it) as they are asked for: the FIFO
holds about one clip, so the generator runs one clip ahead of the device and
the device reads each clip once, in order. Nothing here can stall a caller:

- the writer opens the FIFO without blocking (retrying until the device opens
  it) and waits on it with ``select``, so :meth:`ClipFeed.stop` ends it within
  ``POLL_S`` whatever the device does;
- a device that goes away (QEMU killed) closes the read end: the writer's
  ``BrokenPipeError`` ends the feed, recorded in :attr:`ClipFeed.ended`;
- a clip that cannot be a record (not 1-D, empty, too long, a label outside
  int32) raises ``ValueError`` from :func:`record` in the writer thread, which
  stops (closing the FIFO: the device sees the feed end and refuses the round
  with ``sample-error: ended``), and :attr:`ClipFeed.error` says why.

    >>> record(np.zeros(3, np.float32), 2)[:12]
    b'TFC1\\x02\\x00\\x00\\x00\\x03\\x00\\x00\\x00'
"""

from __future__ import annotations

import errno
import logging
import os
import select
import stat
import subprocess
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from edge.firmware.qemu import qemu_command

log = logging.getLogger(__name__)

MAGIC = b"TFC1"
FEED_NAME = "samples.fifo"  # sample_source.h's SS_FEED_PATH, relative to QEMU's working directory
MAX_CLIP_SAMPLES = 32000  # sample_source.h's SS_MAX_CLIP_SAMPLES
POLL_S = 0.1


def record(clip: np.ndarray, label: int) -> bytes:
    """One feed record: ``"TFC1" | label int32 LE | n uint32 LE | n float32 LE`` (the clip's float32 bits, unchanged)."""
    samples = np.asarray(clip)
    if samples.ndim != 1 or not 0 < samples.size <= MAX_CLIP_SAMPLES:
        raise ValueError(f"a clip is 1 to {MAX_CLIP_SAMPLES} samples in one dimension, got shape {samples.shape}")
    if not -(2**31) <= int(label) < 2**31:
        raise ValueError(f"label {label} does not fit an int32")
    header = MAGIC + int(label).to_bytes(4, "little", signed=True) + samples.size.to_bytes(4, "little")
    return header + samples.astype("<f4").tobytes()


class ClipFeed:
    """Write ``clips`` into the FIFO at ``path`` (created if missing) from a thread; see the module docstring."""

    def __init__(self, path: Path | str, clips: Iterable[tuple[np.ndarray, int]]) -> None:
        self.path = Path(path)
        self._clips: Iterator[tuple[np.ndarray, int]] = iter(clips)
        if self.path.exists() and not stat.S_ISFIFO(self.path.stat().st_mode):
            raise ValueError(f"{self.path} exists and is not a FIFO")
        if not self.path.exists():
            os.mkfifo(self.path)
        self.clips_written = 0  # whole records in the FIFO (the device may not have read the last one yet)
        self.ended = ""  # why the feed ended: "device closed", "clips exhausted", "stopped", "error"
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"clip-feed-{self.path.parent.name}", daemon=True)

    def start(self) -> ClipFeed:
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def __enter__(self) -> ClipFeed:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def _open(self) -> int | None:
        """The FIFO's write end, once the device has opened its read end; None if stopped first."""
        while not self._stop.is_set():
            try:
                return os.open(self.path, os.O_WRONLY | os.O_NONBLOCK)
            except OSError as exc:
                if exc.errno != errno.ENXIO:  # ENXIO: no reader yet
                    raise
            self._stop.wait(0.02)
        return None

    def _write(self, fd: int, data: bytes) -> bool:
        """All of ``data``, waiting for room; False if stopped first. BrokenPipeError if the device went away."""
        view = memoryview(data)
        while view:
            if self._stop.is_set():
                return False
            _, ready, _ = select.select([], [fd], [], POLL_S)
            if not ready:
                continue
            try:
                view = view[os.write(fd, view) :]
            except BlockingIOError:
                continue
        return True

    def _run(self) -> None:
        fd = None
        try:
            fd = self._open()
            if fd is None:
                self.ended = "stopped"
                return
            for clip, label in self._clips:
                if not self._write(fd, record(clip, int(label))):
                    self.ended = "stopped"
                    return
                self.clips_written += 1
            self.ended = "clips exhausted"
        except BrokenPipeError:
            self.ended = "device closed"
        except Exception as exc:  # a bad clip or a generator's failure: the device sees the feed end
            self.ended, self.error = "error", exc
            log.error("%s: clip feed stopped: %s", self.path, exc)
        finally:
            if fd is not None:
                os.close(fd)


def start_fed_elf(elf: Path | str, feed_dir: Path | str, *, serial_port: int, icount: bool = False) -> subprocess.Popen:
    """QEMU running ``elf`` in ``feed_dir`` (where its firmware opens ``samples.fifo``), UART0 to ``serial_port``.

    As :func:`edge.firmware.qemu.start_elf`, plus the working directory the semihosted feed is relative to.
    """
    cmd = qemu_command(Path(elf).resolve(), icount=icount, serial_port=serial_port)
    return subprocess.Popen(cmd, cwd=feed_dir, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
