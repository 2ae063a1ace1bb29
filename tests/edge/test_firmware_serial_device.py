"""A QEMU device speaking the serial binding over its UART: frames in, frames out, bad frames refused, still running."""

from __future__ import annotations

import json
import random
import shutil
import zlib
from pathlib import Path

import pytest

from edge.firmware.build import SERIAL_LINK_C, build_elf
from edge.firmware.qemu import QemuTimeout, SerialRun
from edge.serial_link import DEVICE_TO_HOST, Frame, FrameDecoder, FrameEncoder, Topic, cobs_encode, encode_frame

DEVICE_C = Path(__file__).parent / "firmware_c" / "serial_device.c"
pytestmark = pytest.mark.skipif(
    shutil.which("arm-none-eabi-gcc") is None or shutil.which("qemu-system-arm") is None,
    reason="make system-deps installs arm-none-eabi-gcc and qemu-system-arm",
)


@pytest.fixture(scope="module")
def device_elf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_elf("mps2-an386", [DEVICE_C, SERIAL_LINK_C], out_dir=tmp_path_factory.mktemp("serial_device"), name="device")


class Line:
    """The host end of the device's UART: decodes what it sends, one frame at a time."""

    def __init__(self, run: SerialRun) -> None:
        self.run = run
        self.decoder = FrameDecoder(accept=DEVICE_TO_HOST)
        self.encoder = FrameEncoder()
        self.events: list = []

    def next(self, timeout: float = 10.0):
        while not self.events:
            self.events += self.decoder.feed(self.run.read_until(b"\x00", timeout))
        return self.events.pop(0)

    def send(self, topic: Topic, payload: bytes) -> None:
        self.run.send(self.encoder.encode(topic, payload))


def test_device_announces_echoes_and_exits(device_elf: Path) -> None:
    model = random.Random(1).randbytes(3000)
    with SerialRun(device_elf) as run:
        line = Line(run)
        assert line.next() == Frame(Topic.STATUS, 0, b"online")
        announce = line.next()
        assert announce.topic is Topic.ANNOUNCE and json.loads(announce.payload)["id"] == "qemu-echo"
        line.send(Topic.MODEL, model)
        update = line.next()
        assert (update.topic, update.sequence, zlib.crc32(update.payload)) == (Topic.UPDATE, 2, zlib.crc32(model))
        line.send(Topic.TASK, b'{"round_id":1}')
        assert line.next() == Frame(Topic.TELEMETRY, 3, b'{"task-bytes":14,"v":1}')
        line.send(Topic.TASK, b"exit")
        assert run.wait(10) == 0


def test_device_refuses_each_bad_frame_with_its_code_and_keeps_running(device_elf: Path) -> None:
    good = encode_frame(Topic.MODEL, 9, b"weights")
    bad_crc = bytearray(good)
    bad_crc[6] ^= 0x20
    raw = lambda version, topic: cobs_encode(bytes((version, topic, 0, 0)) + zlib.crc32(bytes((version, topic, 0, 0))).to_bytes(4, "little")) + b"\x00"  # noqa: E731
    bad = [
        (b"\x09garbage\x00", "bad-cobs"),
        (cobs_encode(b"\x01\x82") + b"\x00", "truncated"),
        (bytes(bad_crc), "bad-crc"),
        (encode_frame(Topic.MODEL, 10, bytes(5000)), "oversized"),  # the image's buffer is 4096
        (raw(1, 0x42), "unknown-topic"),
        (raw(1, Topic.UPDATE), "unknown-topic"),  # device -> host id sent to the device
        (raw(2, Topic.TASK), "unsupported-version"),
    ]
    with SerialRun(device_elf) as run:
        line = Line(run)
        assert [line.next().topic for _ in range(2)] == [Topic.STATUS, Topic.ANNOUNCE]
        run.send(b"".join(frame for frame, _ in bad) + good)  # all at once: the device resynchronises each time
        replies = [line.next() for _ in range(len(bad) + 1)]
        assert [json.loads(r.payload).get("serial-error") for r in replies[:-1]] == [code for _, code in bad]
        assert all(r.topic is Topic.TELEMETRY for r in replies[:-1])
        assert (replies[-1].topic, replies[-1].payload) == (Topic.UPDATE, b"weights")
        assert [r.sequence for r in replies] == list(range(2, 2 + len(bad) + 1))
        line.send(Topic.TASK, b"exit")
        assert run.wait(10) == 0


def test_a_device_waiting_for_frames_does_not_exit_on_its_own(device_elf: Path) -> None:
    with SerialRun(device_elf) as run:
        Line(run).next()
        with pytest.raises(QemuTimeout):
            run.wait(0.5)


def test_the_same_device_links_for_the_nano33ble_and_the_codec_is_small(tmp_path: Path) -> None:
    import subprocess

    from edge.firmware.build import image_size

    elf = build_elf("nano33ble", [DEVICE_C, SERIAL_LINK_C], out_dir=tmp_path, name="device", optimize="-Os")
    size = image_size(elf)
    assert size.flash_bytes < 16 * 1024 and size.ram_bytes < 8 * 1024  # 4 KiB receive buffer + newlib
    symbols = subprocess.run(["arm-none-eabi-nm", "-S", "--defined-only", str(elf)], capture_output=True, text=True, check=True)
    codec = {f[3]: int(f[1], 16) for f in (line.split() for line in symbols.stdout.splitlines()) if len(f) == 4 and f[3].startswith("sl_")}
    assert {"sl_decoder_push", "sl_write_frame", "sl_crc32"} <= set(codec)
    assert min(int(f[0], 16) for f in (line.split() for line in symbols.stdout.splitlines()) if len(f) == 4 and f[3] in codec) >= 0x10000
    assert sum(codec.values()) < 2048  # the whole serial binding in under 2 KB of flash
