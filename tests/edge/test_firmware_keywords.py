"""The keywords firmware (edge/firmware/device/keywords_firmware.c) under QEMU answers as a simulated keywords device.

Raw audio in: the host feeds the device the clips its simulated twin draws (firmware_sim.qemu_fleet.device_clips,
through edge.firmware.host_feed's FIFO, read by semihosting); MFCC, pooling and standardisation on the device; the
classifier round; an UPDATE out over the UART. Each UPDATE equals what firmware_sim.mqtt_round.run_task answers on
the simulated device of the same seed (task_client_app.task_device, its firmware_init) to the same TASK and MODEL.

Tolerance: rtol 1e-4, atol 1e-5 on δ and the losses, as tests/edge/test_firmware_device_round_classifier.py holds
the C round to on given features. Why not tighter: the features themselves differ from numpy's by float32 rounding
(the device's FFT is float32, numpy's float64; mel and DCT sums in another order: test_firmware_mfcc.py bounds them,
~1e-5 absolute on MFCCs up to ~95), the standardisation divides by spreads down to ~0.3, and the MLP's dot products
and tanh differ in the last bits too; 20 SGD steps carry those through. A real slip (a frame dropped, a pool off by
one, another clip) moves δ by orders of magnitude more (asserted: the twin fed the next clip instead differs).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
from pathlib import Path

import numpy as np
import pytest

from edge.firmware.host_feed import FEED_NAME, ClipFeed, record, start_fed_elf
from edge.mlp import init_mlp_weights
from edge.serial_link import DEVICE_TO_HOST, FrameDecoder, FrameEncoder, Topic
from edge.wire import MessageKind, SparseTensor, TaskAssignment, decode_weights, encode_model
from firmware_sim import task_families as families
from firmware_sim.mqtt_round import run_task
from firmware_sim.qemu_fleet import build_device_image, device_clips
from firmware_sim.task_client_app import firmware_init, task_device

SEED, DEVICE_ID = 6, "keywords-6"
RTOL, ATOL = 1e-4, 1e-5
STACK_MARGIN = 16 * 1024  # the RAM the Nano image leaves above .data + .bss (test_firmware_keywords_build.py)
FAMILY = families.keywords()
PRIVATE = FAMILY.private_names
META = {"private-names": ",".join(PRIVATE), "reconstruction-samples": 5, "stream-samples": 10, "probe-samples": 5,
        "inner-learning-rate": 0.02}  # fmt: skip
pytestmark = pytest.mark.skipif(
    shutil.which("arm-none-eabi-gcc") is None or shutil.which("qemu-system-arm") is None,
    reason="make system-deps installs arm-none-eabi-gcc and qemu-system-arm",
)


@pytest.fixture(scope="module")
def elf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_device_image("mps2-an386", DEVICE_ID, tmp_path_factory.mktemp("kw_fw")).elf


class Device:
    """A keywords firmware under QEMU: its UART on a socket we accept, its microphone a ClipFeed in its folder."""

    def __init__(self, elf: Path, folder: Path, clips) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.feed = ClipFeed(folder / FEED_NAME, clips).start()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(10)
        self.process = start_fed_elf(elf, folder, serial_port=self.listener.getsockname()[1], icount=True)
        self.sock, _ = self.listener.accept()
        self.sock.settimeout(60)
        self.decoder, self.encoder, self.events = FrameDecoder(accept=DEVICE_TO_HOST), FrameEncoder(), []

    def next(self):
        while not self.events:
            data = self.sock.recv(65536)
            assert data, "the device closed its UART"
            self.events += self.decoder.feed(data)
        return self.events.pop(0)

    def send(self, topic: Topic, payload: bytes) -> None:
        self.sock.sendall(self.encoder.encode(topic, payload))

    def close(self) -> None:
        self.process.kill()
        self.process.wait(10)
        for stream in (self.process.stdout, self.process.stderr):
            stream.close()
        self.sock.close()
        self.listener.close()
        self.feed.stop()


def theta(round_id: int, private: tuple[str, ...]) -> dict[str, np.ndarray]:
    return {k: v for k, v in init_mlp_weights(FAMILY.layer_sizes, 100 + round_id).items() if k not in private}


def telemetry(device: Device) -> dict:
    frame = device.next()
    assert frame.topic is Topic.TELEMETRY, frame
    return json.loads(frame.payload)


def assert_same_update(mine: bytes, want: bytes) -> None:
    got, ref = decode_weights(mine, expected_kind=MessageKind.UPDATE), decode_weights(want)
    assert (got.round_id, got.device_id, got.num_examples, len(mine)) == (ref.round_id, ref.device_id, ref.num_examples, len(want))
    assert list(got.metrics) == list(ref.metrics) and list(got.tensors) == list(ref.tensors)
    for name in ("loss-before", "loss-after", "prequential-loss", "reconstruction-loss"):
        if name in ref.metrics:
            assert got.metrics[name] == pytest.approx(ref.metrics[name], rel=RTOL, abs=1e-6), name
    for name, value in ref.tensors.items():
        mine_value = got.tensors[name]
        if isinstance(value, SparseTensor):
            np.testing.assert_array_equal(mine_value.indices, value.indices, err_msg=name)
            mine_value, value = mine_value.values, value.values
        np.testing.assert_allclose(mine_value, value, rtol=RTOL, atol=ATOL, err_msg=name)


def max_delta_difference(mine: bytes, want: bytes) -> float:
    got, ref = decode_weights(mine), decode_weights(want)
    values = lambda t: t.values if isinstance(t, SparseTensor) else t  # noqa: E731
    return max(float(np.max(np.abs(values(got.tensors[k]) - values(v)))) for k, v in ref.tensors.items())


def test_device_clips_are_the_simulated_devices_samples() -> None:
    stream = FAMILY.stream(SEED, 0)
    for (clip, label), _ in zip(device_clips(SEED), range(4)):
        features, want = next(stream)
        assert label == want
        np.testing.assert_array_equal(families.keyword_features(clip), features)


def test_record_refuses_what_is_not_a_clip() -> None:
    with pytest.raises(ValueError, match="1 to 32000 samples"):
        record(np.zeros((2, 3), np.float32), 0)
    with pytest.raises(ValueError, match="int32"):
        record(np.zeros(3, np.float32), 2**31)


def _read_record(fd: int) -> tuple[int, np.ndarray] | None:
    def exact(n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = os.read(fd, n - len(data))
            if not chunk:
                return b""
            data += chunk
        return data

    header = exact(12)
    if not header:
        return None
    assert header[:4] == b"TFC1"
    label, n = int.from_bytes(header[4:8], "little", signed=True), int.from_bytes(header[8:], "little")
    return label, np.frombuffer(exact(4 * n), "<f4")


def test_clip_feed_writes_records_in_order_and_ends_cleanly_however_the_reader_goes(tmp_path: Path) -> None:
    clips = [(np.full(5, i, np.float32), i) for i in range(3)]
    with ClipFeed(tmp_path / FEED_NAME, iter(clips)) as feed:  # a reader that takes every record, then EOF
        fd = os.open(tmp_path / FEED_NAME, os.O_RDONLY)
        got = [_read_record(fd) for _ in range(4)]
        os.close(fd)
    assert [(label, list(x)) for label, x in got[:3]] == [(i, [float(i)] * 5) for i in range(3)] and got[3] is None
    assert (feed.ended, feed.clips_written, feed.error) == ("clips exhausted", 3, None)

    endless = ClipFeed(tmp_path / "b.fifo", ((np.zeros(16000, np.float32), 0) for _ in iter(int, 1))).start()
    fd = os.open(tmp_path / "b.fifo", os.O_RDONLY)
    assert _read_record(fd)[0] == 0
    os.close(fd)  # the device goes away (QEMU killed) while the feed is writing
    endless._thread.join(5)
    assert endless.ended == "device closed"

    waiting = ClipFeed(tmp_path / "c.fifo", iter(clips)).start()  # no device ever opens it
    start = time.monotonic()
    waiting.stop()
    assert waiting.ended == "stopped" and time.monotonic() - start < 2


def test_clip_feed_refuses_a_path_that_is_not_a_fifo_and_stops_at_a_bad_clip(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(ValueError, match="not a FIFO"):
        ClipFeed(tmp_path / "file", iter(()))
    feed = ClipFeed(tmp_path / FEED_NAME, iter([(np.zeros(3, np.float32), 1), (np.zeros((2, 2), np.float32), 0)])).start()
    fd = os.open(tmp_path / FEED_NAME, os.O_RDONLY)
    assert _read_record(fd)[0] == 1 and _read_record(fd) is None  # the device sees the feed end after the good clip
    os.close(fd)
    feed.stop()
    assert feed.ended == "error" and "1 to 32000 samples" in str(feed.error)


def play_rounds(elf: Path, folder: Path, rounds: list[tuple[dict, float | None, tuple[str, ...]]]) -> None:
    """Each round's TASK and MODEL to the QEMU device fed its twin's clips; its UPDATE equals run_task's on the twin."""
    twin = task_device(FAMILY, SEED, stream_key=0)
    device = Device(elf, folder, device_clips(SEED))
    try:
        assert device.next().payload == b"online"
        assert json.loads(device.next().payload)["id"] == DEVICE_ID
        for round_id, (hyper, top_p, private) in enumerate(rounds, start=1):
            task = TaskAssignment(round_id=round_id, deadline_s=60.0, hyperparameters=hyper, top_p=top_p).to_json()
            model = encode_model(theta(round_id, private), round_id=round_id)
            device.send(Topic.MODEL, model)
            device.send(Topic.TASK, task)
            update = device.next()
            assert update.topic is Topic.UPDATE, (update, device.events)
            books = telemetry(device)
            assert books["round-id"] == round_id and 0 < books["feature-instructions"] < books["device-instructions"]
            assert 0 < books["stack-bytes"] < STACK_MARGIN, books  # what test_firmware_keywords_build.py leaves free
            want = run_task(twin, firmware_init(FAMILY, SEED), task, model).update
            assert_same_update(update.payload, want)
            print(f"round {round_id} {hyper}: max |δ_C − δ_numpy| {max_delta_difference(update.payload, want):.2e}, "
                  f"{books['device-instructions']:,} instructions ({books['feature-instructions']:,} in the front end), "
                  f"stack {books['stack-bytes']:,} B")
            if round_id == 1:  # the same round on the clips one later: far outside the tolerance
                shifted = task_device(FAMILY, SEED, stream_key=0)
                next(shifted.stream)
                with pytest.raises(AssertionError):
                    assert_same_update(update.payload, run_task(shifted, firmware_init(FAMILY, SEED), task, model).update)
    finally:
        device.close()
    assert device.feed.error is None


def test_keywords_rounds_under_qemu_answer_as_the_simulated_device(elf: Path, tmp_path: Path) -> None:
    """TinyMetaFed with Top-P (the private output layer rebuilt by SGD) and a whole-model dense round."""
    play_rounds(elf, tmp_path / "dev", [
        ({**META, "server-round": 1}, 0.1, PRIVATE),
        ({"stream-samples": 6, "probe-samples": 3, "server-round": 2}, None, ()),
    ])  # fmt: skip


@pytest.mark.slow
def test_more_keywords_rounds_dense_imprinted_and_replayed_answer_as_the_simulated_device(elf: Path, tmp_path: Path) -> None:
    """TinyMetaFed dense, TinyMetaFed imprinting its output layer (keywords' method: Top-25 %), FedAvg's 16 x 5 epochs."""
    play_rounds(elf, tmp_path / "dev", [
        ({**META, "server-round": 1}, None, PRIVATE),
        ({**META, "reconstruction-rule": "imprint", "reconstruction-samples": 8, "server-round": 2}, 0.25, PRIVATE),
        ({"stream-samples": 16, "local-epochs": 5, "probe-samples": 5, "server-round": 3}, None, ()),
    ])  # fmt: skip


def test_a_bad_clip_is_refused_with_its_reason_and_the_device_keeps_running(elf: Path, tmp_path: Path) -> None:
    good = device_clips(SEED)
    clips = [next(good) for _ in range(3)]
    short = (clips[1][0][:8000], clips[1][1])  # half a second: 24 frames, 6 pooled steps, not the MLP's 12
    nan = (clips[2][0].copy(), clips[2][1])
    nan[0][100] = np.nan
    bad_label = (clips[0][0], 9)  # a 4-class head
    device = Device(elf, tmp_path / "dev", iter([short, nan, bad_label]))
    hyper = {"stream-samples": 1, "probe-samples": 0}
    try:
        device.next(), device.next()
        reasons = []
        for round_id in (1, 2, 3, 4):
            device.send(Topic.MODEL, encode_model(theta(round_id, ()), round_id=round_id))
            device.send(Topic.TASK, TaskAssignment(round_id=round_id, deadline_s=60.0, hyperparameters=hyper).to_json())
            books = telemetry(device)
            reasons.append((books.get("round-error"), books.get("sample-error")))
    finally:
        device.close()
    assert reasons == [("stream-ended", "clip-too-short"), ("stream-ended", "non-finite"), ("bad-label", None),
                       ("stream-ended", "ended")]  # fmt: skip


def test_a_model_too_large_for_the_devices_ram_is_refused_with_the_numbers_and_the_next_round_runs(elf: Path, tmp_path: Path) -> None:
    """120-66-64-4 fits the 51,200-byte receive buffer (50 KB) but training it needs more RAM than the firmware has."""
    device = Device(elf, tmp_path / "dev", device_clips(SEED))
    hyper = {"stream-samples": 2, "probe-samples": 1}
    try:
        device.next(), device.next()
        big = init_mlp_weights((120, 66, 64, 4), 1)
        device.send(Topic.MODEL, encode_model(big, round_id=1))
        device.send(Topic.TASK, TaskAssignment(round_id=1, deadline_s=60.0, hyperparameters=hyper).to_json())
        refused = telemetry(device)
        device.send(Topic.MODEL, encode_model(theta(2, ()), round_id=2))
        device.send(Topic.TASK, TaskAssignment(round_id=2, deadline_s=60.0, hyperparameters=hyper).to_json())
        after = device.next()
    finally:
        device.close()
    assert refused["round-error"] == "too-large" and refused["round-id"] == 1, refused
    assert refused["reason"].startswith("model 120-66-64-4 needs ") and "B of RAM to train, device has " in refused["reason"]
    assert after.topic is Topic.UPDATE
