"""The loaders of a user's data read real files the test writes (PNG by Pillow, WAV by the stdlib, CSV by hand) and
refuse bad data with a message naming the file and row."""

from __future__ import annotations

import struct
import wave
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edge.features import FrontEnd
from firmware_sim.task_families import character_features
from firmware_sim.tasks.user_data import (
    SPREAD_FLOOR, DataError, DataSpec, area_resize, load_data, load_placed, pooled_mfcc, read_png, write_png,
)  # fmt: skip


def page(seed: int, size: int = 105) -> np.ndarray:
    """A white page with a dark blob: an Omniglot-like drawing."""
    rng = np.random.default_rng(seed)
    grey = np.full((size, size), 255, np.uint8)
    r, c = rng.integers(20, size - 40, size=2)
    grey[r : r + 30, c : c + 12] = 0
    return grey


def write_omniglot(root: Path, drawers: int = 3, characters: int = 4, mode: str = "1") -> None:
    for c in range(characters):
        folder = root / f"Alphabet_{c % 2}" / f"character{c:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        for d in range(drawers):
            Image.fromarray(page(10 * c + d)).convert(mode).save(folder / f"{c:04d}_{d + 1:02d}.png")


def write_wav(path: Path, samples: np.ndarray, rate: int = 16_000, channels: int = 1, width: int = 2) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pcm = np.round(np.clip(samples, -1, 1) * 32767).astype("<i2")
    if width == 1:
        pcm = (pcm // 256 + 128).astype(np.uint8)
    with wave.open(str(path), "wb") as writer:
        writer.setnchannels(channels)
        writer.setsampwidth(width)
        writer.setframerate(rate)
        writer.writeframes(np.repeat(pcm, channels).tobytes())


def tone(freq: float, seconds: float = 0.8) -> np.ndarray:
    t = np.arange(int(16_000 * seconds)) / 16_000
    return 0.3 * np.sin(2 * np.pi * freq * t)


def write_speech(root: Path, speakers=("a1b2c3d4", "ffee0011"), words=("yes", "no"), clips: int = 3) -> None:
    for w, word in enumerate(words):
        for s, speaker in enumerate(speakers):
            for k in range(clips):
                write_wav(root / word / f"{speaker}_nohash_{k}.wav", tone(300 + 400 * w + 20 * s + 5 * k))


def write_csv(path: Path, rows: list[list[object]], header=("a", "b", "label")) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(",".join(str(v) for v in row) for row in [list(header), *rows]) + "\n")


# --- PNG ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["1", "L", "LA", "RGB", "RGBA"])
def test_png_reader_decodes_what_pillow_wrote_exactly(tmp_path: Path, mode: str) -> None:
    """Integer decoding, so bit-identity with Pillow's own decoder is constructed, not hoped for."""
    rng = np.random.default_rng(1)
    grey = (rng.random((37, 53)) * 255).astype(np.uint8)
    grey[::4] = 255  # long runs, so the encoder picks different filters for different rows
    Image.fromarray(grey).convert(mode).save(tmp_path / "x.png")
    expected = np.asarray(Image.open(tmp_path / "x.png").convert("L"))
    assert np.array_equal(read_png(tmp_path / "x.png"), expected)


def _filtered_png(grey: np.ndarray, kind: int) -> bytes:
    """An 8-bit greyscale PNG whose every row uses filter ``kind`` (encoded here; Pillow decodes it as the reference)."""
    h, w = grey.shape
    rows, previous = [], np.zeros(w, np.int64)
    for row in grey.astype(np.int64):
        left = np.concatenate([[0], row[:-1]])
        up_left = np.concatenate([[0], previous[:-1]])
        if kind == 0:
            out = row
        elif kind == 1:
            out = row - left
        elif kind == 2:
            out = row - previous
        elif kind == 3:
            out = row - (left + previous) // 2
        else:
            p = left + previous - up_left
            pa, pb, pc = abs(p - left), abs(p - previous), abs(p - up_left)
            out = row - np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, previous, up_left))
        rows.append(bytes([kind]) + (out % 256).astype(np.uint8).tobytes())
        previous = row

    def chunk(tag: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"".join(rows))) + chunk(b"IEND", b""))  # fmt: skip


@pytest.mark.parametrize("kind", [0, 1, 2, 3, 4])
def test_png_reader_undoes_every_filter_type(tmp_path: Path, kind: int) -> None:
    grey = (np.random.default_rng(kind).random((9, 11)) * 255).astype(np.uint8)
    (tmp_path / "f.png").write_bytes(_filtered_png(grey, kind))
    assert np.array_equal(np.asarray(Image.open(tmp_path / "f.png")), grey)  # the encoding is right
    assert np.array_equal(read_png(tmp_path / "f.png"), grey)


def test_png_writer_is_read_back_by_pillow(tmp_path: Path) -> None:
    grey = page(3)
    write_png(tmp_path / "w.png", grey)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "w.png")), grey)


def test_unreadable_pngs_are_refused_naming_the_file(tmp_path: Path) -> None:
    write_png(tmp_path / "ok.png", page(0))
    data = (tmp_path / "ok.png").read_bytes()
    cases = {"trunc.png": data[:60], "crc.png": data[:40] + bytes([data[40] ^ 1]) + data[41:], "text.png": b"hello"}
    for name, blob in cases.items():
        (tmp_path / name).write_bytes(blob)
        with pytest.raises(DataError, match=rf"{name}: unreadable PNG"):
            read_png(tmp_path / name)
    Image.fromarray(page(0)).convert("P").save(tmp_path / "palette.png")
    with pytest.raises(DataError, match="palette.png: unreadable PNG.*palette"):
        read_png(tmp_path / "palette.png")


def test_area_resize_averages_exactly() -> None:
    image = np.arange(16, dtype=np.float64).reshape(4, 4)
    assert np.allclose(area_resize(image, 2), [[2.5, 4.5], [10.5, 12.5]])
    assert np.allclose(area_resize(np.ones((105, 105)), 28), 1.0)  # non-integer factor: weights still sum to one


# --- images ----------------------------------------------------------------------------------------------


def test_omniglot_folder_devices_are_drawers_and_labels_characters(tmp_path: Path) -> None:
    write_omniglot(tmp_path / "data", drawers=3, characters=4)
    data = load_data(DataSpec("images", tmp_path / "data", min_samples=4))
    assert data.devices == ("01", "02", "03")
    assert data.labels == ("Alphabet_0/character00", "Alphabet_0/character02", "Alphabet_1/character01",
                           "Alphabet_1/character03")  # fmt: skip
    x, y = data.device_arrays(1)
    assert x.shape == (4, 196) and sorted(y.tolist()) == [0, 1, 2, 3]
    # the drawing of character02 by drawer 02: its blob, as ink, pooled as the characters task pools
    expected = character_features(area_resize(1.0 - page(21) / 255.0, 28))
    assert np.allclose(x[y.tolist().index(1)], expected, atol=1e-6)  # float32 vs float64 resize: last bits only


def test_a_misnamed_drawing_or_a_file_for_a_folder_is_refused(tmp_path: Path) -> None:
    write_omniglot(tmp_path / "data")
    with pytest.raises(DataError, match=r"0000_01.png is a file; the images layout is a folder"):
        load_data(DataSpec("images", tmp_path / "data" / "Alphabet_0" / "character00" / "0000_01.png"))
    with pytest.raises(DataError, match=r"holds no samples in the wav layout \(<word>/<speaker>_nohash_<k>.wav\)"):
        load_data(DataSpec("wav", tmp_path / "data"))
    Image.fromarray(page(0)).save(tmp_path / "data" / "Alphabet_0" / "character00" / "scan.png")
    with pytest.raises(DataError, match=r"scan.png: an Omniglot file is named <imageid>_<drawer>.png"):
        load_data(DataSpec("images", tmp_path / "data", min_samples=1))


# --- wav ----------------------------------------------------------------------------------------------------


def test_speech_commands_folder_devices_are_speakers_and_features_standardised(tmp_path: Path) -> None:
    write_speech(tmp_path / "sc")
    write_wav(tmp_path / "sc" / "_background_noise_" / "noise.wav", tone(50, 2.0))  # not a word
    data = load_data(DataSpec("wav", tmp_path / "sc", min_samples=6, held_out=("ffee0011",)))
    assert data.devices == ("a1b2c3d4", "ffee0011") and data.labels == ("no", "yes")
    front = FrontEnd()
    pcm = [np.round(tone(300 + 400 * w + 5 * k) * 32767) / 32768 for w in range(2) for k in range(3)]  # as stored
    raw = np.stack([pooled_mfcc(np.pad(clip, (0, 3200)).astype(np.float32), front) for clip in pcm])
    # the scaler comes from the training speaker alone: its own features standardise to mean 0
    # tolerances: the loader sums in float64, the reference in float32 (last bits of features near 1e-7)
    assert np.allclose(data.mean, raw.mean(axis=0), rtol=1e-5, atol=1e-5)
    assert np.allclose(data.spread, raw.std(axis=0) + SPREAD_FLOOR, rtol=1e-5, atol=1e-5)
    x, _ = data.device_arrays(0)
    assert x.shape == (6, 120) and np.allclose(x.mean(axis=0), 0.0, atol=1e-3)


@pytest.mark.parametrize(("rate", "channels", "width", "said"), [
    (8_000, 1, 2, "8000 Hz, 1 channel"), (16_000, 2, 2, r"16000 Hz, 2 channel"), (16_000, 1, 1, r"16000 Hz, 1 channel\(s\), 8-bit"),
])  # fmt: skip
def test_wrong_wav_formats_are_refused_naming_the_file(tmp_path: Path, rate, channels, width, said) -> None:
    write_speech(tmp_path / "sc")
    write_wav(tmp_path / "sc" / "yes" / "a1b2c3d4_nohash_9.wav", tone(400), rate, channels, width)
    with pytest.raises(DataError, match=rf"a1b2c3d4_nohash_9.wav: {said}"):
        load_data(DataSpec("wav", tmp_path / "sc", min_samples=1))


def test_a_broken_or_misnamed_wav_is_refused(tmp_path: Path) -> None:
    write_speech(tmp_path / "sc")
    (tmp_path / "sc" / "no" / "a1b2c3d4_nohash_7.wav").write_bytes(b"RIFF....WAVEjunk")
    with pytest.raises(DataError, match="a1b2c3d4_nohash_7.wav: not a readable WAV"):
        load_data(DataSpec("wav", tmp_path / "sc", min_samples=1))
    (tmp_path / "sc" / "no" / "a1b2c3d4_nohash_7.wav").unlink()
    write_wav(tmp_path / "sc" / "no" / "take1.wav", tone(200))
    with pytest.raises(DataError, match=r"take1.wav: a Speech Commands file is named <speaker>_nohash_<k>.wav"):
        load_data(DataSpec("wav", tmp_path / "sc", min_samples=1))


# --- csv ------------------------------------------------------------------------------------------------------


def test_one_csv_per_device_standardised_by_the_training_devices_only(tmp_path: Path) -> None:
    write_csv(tmp_path / "d" / "m1.csv", [[1, 10, "ok"], [3, 30, "bad"]])
    write_csv(tmp_path / "d" / "m2.csv", [[5, 50, "ok"], [7, 70, "bad"]])
    write_csv(tmp_path / "d" / "m3.csv", [[1000, 1000, "ok"], [2000, 2000, "bad"]])  # held out: must not move the scaler
    data = load_data(DataSpec("csv", tmp_path / "d", min_samples=2, held_out=("m3",)))
    assert data.devices == ("m1", "m2", "m3") and data.labels == ("bad", "ok") and data.feature_names == ("a", "b")
    assert np.allclose(data.mean, [4.0, 40.0]) and np.allclose(data.spread, np.array([5**0.5, 500**0.5]) + SPREAD_FLOOR)
    x, y = data.device_arrays(0)
    assert np.allclose(x[:, 0], (np.array([1, 3]) - 4) / (5**0.5 + SPREAD_FLOOR)) and y.tolist() == [1, 0]


def test_one_csv_with_a_device_column(tmp_path: Path) -> None:
    write_csv(tmp_path / "all.csv", [["r2", 1, 2, "x"], ["r1", 3, 4, "y"], ["r2", 5, 6, "y"], ["r1", 7, 8, "x"]],
              header=("room", "a", "b", "label"))  # fmt: skip
    data = load_data(DataSpec("csv", tmp_path / "all.csv", device_column="room", min_samples=2))
    assert data.devices == ("r1", "r2") and data.feature_names == ("a", "b")
    assert data.samples["r2"].where == (f"{tmp_path / 'all.csv'}, line 2", f"{tmp_path / 'all.csv'}, line 4")


@pytest.mark.parametrize(("rows", "said"), [
    ([[1, 2, "ok"], [1, "two", "ok"]], r"m1.csv, line 3: column 'b' holds 'two', not a number"),
    ([[1, 2, "ok"], [1, "nan", "ok"]], r"m1.csv, line 3: column 'b' holds 'nan', not a finite number"),
    ([[1, 2, "ok"], [1, 2]], r"m1.csv, line 3: 2 cells, the header has 3"),
    ([[1, 2, "ok"], [1, 2, " "]], r"m1.csv, line 3: empty label"),
])  # fmt: skip
def test_bad_csv_rows_are_refused_naming_file_and_line(tmp_path: Path, rows, said) -> None:
    write_csv(tmp_path / "d" / "m1.csv", rows)
    write_csv(tmp_path / "d" / "m2.csv", [[1, 2, "ok"], [3, 4, "bad"]])
    with pytest.raises(DataError, match=said):
        load_data(DataSpec("csv", tmp_path / "d", min_samples=1))


def test_unknown_label_missing_column_and_too_few_samples_are_refused(tmp_path: Path) -> None:
    write_csv(tmp_path / "d" / "m1.csv", [[1, 2, "ok"], [3, 4, "bad"], [5, 6, "ok"]])
    write_csv(tmp_path / "d" / "m2.csv", [[1, 2, "ok"], [3, 4, "meh"], [5, 6, "bad"]])
    with pytest.raises(DataError, match=r"m2.csv, line 3: label 'meh' is not one of the task's labels \['ok', 'bad'\]"):
        load_data(DataSpec("csv", tmp_path / "d", labels=("ok", "bad"), min_samples=1))
    with pytest.raises(DataError, match=r"device 'm1' \(.*m1.csv.*\) has 3 samples; min_samples is 5"):
        load_data(DataSpec("csv", tmp_path / "d", min_samples=5))
    with pytest.raises(DataError, match=r"m1.csv: no column \['temp'\] in the header"):
        load_data(DataSpec("csv", tmp_path / "d", feature_columns=("temp",), min_samples=1))
    with pytest.raises(ValueError, match=r"has 2 devices \(seeds 0..1\); seed 2 names none"):
        load_data(DataSpec("csv", tmp_path / "d", min_samples=1)).device(2)


def test_a_placed_device_uses_the_tasks_labels_and_scaler(tmp_path: Path) -> None:
    write_csv(tmp_path / "d" / "m1.csv", [[1, 10, "ok"], [3, 30, "bad"]])
    write_csv(tmp_path / "d" / "m2.csv", [[5, 50, "ok"], [7, 70, "bad"]])
    data = load_data(DataSpec("csv", tmp_path / "d", min_samples=2))
    write_csv(tmp_path / "mine" / "pi.csv", [[4, 40, "bad"], [4, 40, "ok"]])
    x, y = load_placed(data, tmp_path / "mine")
    assert np.allclose(x, 0.0) and y.tolist() == [0, 1]  # (4 - mean 4) / spread: the task's constants, not its own
    write_csv(tmp_path / "other" / "pi.csv", [[4, 40, "bad"], [4, 40, "great"]])
    with pytest.raises(DataError, match=r"pi.csv, line 3: label 'great' is not one of"):
        load_placed(data, tmp_path / "other")
    write_csv(tmp_path / "two" / "a.csv", [[4, 40, "bad"], [4, 40, "ok"]])
    write_csv(tmp_path / "two" / "b.csv", [[4, 40, "bad"], [4, 40, "ok"]])
    with pytest.raises(DataError, match=r"holds 2 devices \(\['a', 'b'\]\); a placed device takes the data of one"):
        load_placed(data, tmp_path / "two")
