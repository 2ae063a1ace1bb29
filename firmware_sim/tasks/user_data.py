"""A user's per-device data in one of three real layouts, turned into what a device's learner eats.

The layouts, and who a *device* is in each:

- ``images`` (Omniglot): ``<root>/<alphabet>/<character>/<imageid>_<drawer>.png``;
  a device is a drawer, a label is ``alphabet/character``. Any PNG size,
  greyscale or colour; pooled to 14 × 14 like the characters task
  (:func:`firmware_sim.task_families.character_features`) after an area
  resize to 28 × 28. Omniglot draws dark ink on white (``ink = "dark"``).
- ``wav`` (Speech Commands): ``<root>/<word>/<speaker>_nohash_<k>.wav``,
  16 kHz mono 16-bit; a device is a speaker, a label is the word. Folders
  starting with ``_`` (``_background_noise_``) are not words. Clips are fitted
  to one second and run through the MFCC front end pooled over time, as the
  keywords task does (:data:`firmware_sim.task_families.KEYWORD_FRAME_POOL`).
- ``csv``: sensor rows with a label column. Either one CSV per device
  (``<root>/<device>.csv``) or rows naming their device in ``device_column``
  (one file, or a folder of files). Feature columns are every other column
  unless ``feature_columns`` lists them.

Audio and CSV features are standardised by a mean and spread computed from
the *training* devices only (every device not in ``held_out``): the constants
a firmware would ship, never fitted to the device being evaluated. The label
vocabulary is ``labels`` if given, else the sorted labels of the training
devices.

Bad data is refused, never skipped: :class:`DataError` names the file (and,
for CSV, the line) — an unreadable PNG, a wrong sample rate or width, a cell
that is not a number, an unknown label, a device with too few samples. The
PNG reader is a small zlib decoder (no Pillow: a device install has only
numpy), which also writes the 8-bit greyscale PNGs the example task ships.
Standard library and numpy only.
"""

from __future__ import annotations

import csv
import struct
import wave
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from edge.features import FrontEnd
from firmware_sim.task_families import KEYWORD_FRAME_POOL, character_features
from firmware_sim.tasks.audio import CLIP_SAMPLES, SAMPLE_RATE, fit_clip
from firmware_sim.tasks.characters import IMAGE_SIZE

Layout = Literal["images", "wav", "csv"]
LAYOUTS: tuple[str, ...] = ("images", "wav", "csv")
SPREAD_FLOOR = 1e-3  # added to every standard deviation, as the built-in tasks' scalers do: a constant column stays finite


class DataError(ValueError):
    """Data the user brought that cannot be used; the message names the file (and row) and what is wrong."""


@dataclass(frozen=True)
class DataSpec:
    """Where a task's data is and how to read it (the ``[data]`` table of a task.toml)."""

    layout: Layout
    path: Path
    label_column: str = "label"  # csv
    device_column: str | None = None  # csv: None means one file per device, named by its stem
    feature_columns: tuple[str, ...] | None = None  # csv: None means every column but the label and device ones
    labels: tuple[str, ...] | None = None  # the class order; None: sorted labels of the training devices
    held_out: tuple[str, ...] = ()  # devices kept out of the scaler and the label vocabulary
    min_samples: int = 10  # a device with fewer is refused (a round needs probe + shots + reconstruction samples)
    ink: Literal["dark", "light"] = "dark"  # images: dark ink on a light page (Omniglot), or the reverse

    def __post_init__(self) -> None:
        if self.layout not in LAYOUTS:
            raise DataError(f"data layout {self.layout!r} is not one of {', '.join(LAYOUTS)}")
        if self.ink not in ("dark", "light"):
            raise DataError(f"ink must be 'dark' or 'light', got {self.ink!r}")
        if self.min_samples < 1:
            raise DataError(f"min_samples must be >= 1, got {self.min_samples}")


@dataclass(frozen=True, eq=False)  # holds arrays
class DeviceSamples:
    """One device's samples as read: unstandardised features, label names and where each came from."""

    device: str
    raw: np.ndarray  # [n, n_features] float32
    labels: tuple[str, ...]
    where: tuple[str, ...]  # "file" or "file, line N": what an error about that sample names


@dataclass(frozen=True, eq=False)
class UserData:
    """Every device of a task's data folder, its label vocabulary and its training devices' scaler."""

    spec: DataSpec
    devices: tuple[str, ...]  # sorted: device seed i is devices[i]
    labels: tuple[str, ...]
    samples: dict[str, DeviceSamples]
    mean: np.ndarray | None = None  # None: features used as they are (images are already centred)
    spread: np.ndarray | None = None
    feature_names: tuple[str, ...] = field(default=())

    @property
    def n_features(self) -> int:
        return int(next(iter(self.samples.values())).raw.shape[1])

    def device(self, seed: int) -> str:
        """The device that seed ``seed`` plays (seeds index the devices in sorted order)."""
        if not 0 <= seed < len(self.devices):
            raise ValueError(
                f"{self.spec.path} has {len(self.devices)} devices (seeds 0..{len(self.devices) - 1}); "
                f"seed {seed} names none"
            )
        return self.devices[seed]

    def arrays(self, samples: DeviceSamples) -> tuple[np.ndarray, np.ndarray]:
        """Standardised features and class indices of ``samples``; DataError at the first unknown label."""
        index = {label: i for i, label in enumerate(self.labels)}
        y = np.empty(len(samples.labels), np.int64)
        for i, (label, where) in enumerate(zip(samples.labels, samples.where)):
            if label not in index:
                raise DataError(f"{where}: label {label!r} is not one of the task's labels {list(self.labels)}")
            y[i] = index[label]
        x = samples.raw if self.mean is None else (samples.raw - self.mean) / self.spread
        return x.astype(np.float32), y

    def device_arrays(self, seed: int) -> tuple[np.ndarray, np.ndarray]:
        return self.arrays(self.samples[self.device(seed)])


# --- reading a task's data --------------------------------------------------------------------------


def load_data(spec: DataSpec) -> UserData:
    """Every device under ``spec.path``, checked; the scaler and labels from the training devices."""
    samples, columns = read_layout(spec, spec.path)
    unknown = sorted(set(spec.held_out) - set(samples))
    if unknown:
        raise DataError(f"held_out names devices {unknown} that {spec.path} does not have (it has {sorted(samples)})")
    for device in samples.values():
        _check_enough(spec, device)
    training = [samples[d] for d in sorted(samples) if d not in spec.held_out]
    if not training:
        raise DataError(f"{spec.path}: every device is held out; the scaler needs training devices")
    labels = spec.labels or tuple(sorted({label for d in training for label in d.labels}))
    if len(labels) < 2:
        raise DataError(f"{spec.path}: a classifier needs at least 2 labels, the training devices have {list(labels)}")
    mean = spread = None
    if spec.layout != "images":
        stacked = np.concatenate([d.raw for d in training]).astype(np.float64)
        mean = stacked.mean(axis=0).astype(np.float32)
        spread = (stacked.std(axis=0) + SPREAD_FLOOR).astype(np.float32)
    data = UserData(spec, tuple(sorted(samples)), tuple(labels), samples, mean, spread, columns)
    for device in samples.values():
        data.arrays(device)  # every label of every device is known: refuse now, not in some later round
    return data


def load_placed(data: UserData, root: Path) -> tuple[np.ndarray, np.ndarray]:
    """The samples of one device placed with ``--data root``: the task's layout, labels and scaler.

    ``root`` must hold exactly one device (one drawer, one speaker, one CSV
    device); its features must have the task's width.
    """
    spec = data.spec
    found, columns = read_layout(spec, Path(root))
    if len(found) != 1:
        raise DataError(f"{root} holds {len(found)} devices ({sorted(found)}); a placed device takes the data of one")
    (samples,) = found.values()
    _check_enough(spec, samples)
    if samples.raw.shape[1] != data.n_features:
        raise DataError(f"{root}: {samples.raw.shape[1]} features per sample, the task's devices have {data.n_features}")
    if columns != data.feature_names:
        raise DataError(f"{root}: feature columns {list(columns)}, the task's are {list(data.feature_names)}")
    return data.arrays(samples)


ClipFeatures = Callable[[np.ndarray], np.ndarray]


def read_layout(spec: DataSpec, root: Path, clip_features: ClipFeatures | None = None,
                ) -> tuple[dict[str, DeviceSamples], tuple[str, ...]]:  # fmt: skip
    """Device name -> its samples, read from ``root`` in ``spec.layout``; and the CSV feature columns (else ()).

    ``clip_features`` replaces the pooled MFCCs of a wav clip (a built-in task's own front end and constants).
    """
    if not root.exists():
        raise DataError(f"no data at {root}")
    if spec.layout != "csv" and not root.is_dir():
        raise DataError(f"{root} is a file; the {spec.layout} layout is a folder ({_LAYOUT_HELP[spec.layout]})")
    if spec.layout == "wav":
        found, columns = _read_wavs(spec, root, clip_features)
    else:
        found, columns = (_read_images if spec.layout == "images" else _read_csv)(spec, root)
    if not found:
        raise DataError(f"{root} holds no samples in the {spec.layout} layout ({_LAYOUT_HELP[spec.layout]})")
    return found, columns


_LAYOUT_HELP = {
    "images": "<alphabet>/<character>/<imageid>_<drawer>.png",
    "wav": "<word>/<speaker>_nohash_<k>.wav",
    "csv": "<device>.csv files, or rows with a device column",
}


def _check_enough(spec: DataSpec, samples: DeviceSamples) -> None:
    if len(samples.labels) < spec.min_samples:
        first = samples.where[0].split(",")[0] if samples.where else "?"
        raise DataError(f"device {samples.device!r} ({first}...) has {len(samples.labels)} samples; "
                        f"min_samples is {spec.min_samples}")  # fmt: skip


class _Collector:
    """Samples grouped by device, in the order read."""

    def __init__(self) -> None:
        self.raw: dict[str, list[np.ndarray]] = {}
        self.labels: dict[str, list[str]] = {}
        self.where: dict[str, list[str]] = {}

    def add(self, device: str, raw: np.ndarray, label: str, where: str) -> None:
        self.raw.setdefault(device, []).append(np.asarray(raw, np.float32).reshape(-1))
        self.labels.setdefault(device, []).append(label)
        self.where.setdefault(device, []).append(where)

    def devices(self) -> dict[str, DeviceSamples]:
        return {
            d: DeviceSamples(d, np.stack(self.raw[d]), tuple(self.labels[d]), tuple(self.where[d])) for d in sorted(self.raw)
        }


def _subdirs(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith((".", "_")))


# --- images ------------------------------------------------------------------------------------------


def _read_images(spec: DataSpec, root: Path) -> tuple[dict[str, DeviceSamples], tuple[str, ...]]:
    out = _Collector()
    for alphabet in _subdirs(root):
        for character in _subdirs(alphabet):
            for path in sorted(character.glob("*.png")):
                stem = path.stem
                if "_" not in stem or not stem.rsplit("_", 1)[1]:
                    raise DataError(f"{path}: an Omniglot file is named <imageid>_<drawer>.png")
                image = image_features(read_png(path), spec.ink, path)
                out.add(stem.rsplit("_", 1)[1], image, f"{alphabet.name}/{character.name}", str(path))
    return out.devices(), ()


def image_features(grey: np.ndarray, ink: str = "dark", where: object = "image") -> np.ndarray:
    """A greyscale page (uint8, any size) -> the characters task's 196 pooled pixels (ink 1, page 0, centred)."""
    if grey.ndim != 2 or min(grey.shape) < 1:
        raise DataError(f"{where}: not a 2-D image (shape {grey.shape})")
    level = grey.astype(np.float64) / 255.0
    ink_level = 1.0 - level if ink == "dark" else level
    return character_features(area_resize(ink_level, IMAGE_SIZE))


def _area_weights(n_in: int, n_out: int) -> np.ndarray:
    """[n_out, n_in]: output cell i averages the input pixels it overlaps, each by the length of the overlap."""
    edges = np.linspace(0.0, n_in, n_out + 1)
    left, right = edges[:-1, None], edges[1:, None]
    pixels = np.arange(n_in)[None, :]
    overlap = np.clip(np.minimum(right, pixels + 1) - np.maximum(left, pixels), 0.0, None)
    return overlap / overlap.sum(axis=1, keepdims=True)


def area_resize(image: np.ndarray, size: int) -> np.ndarray:
    """Box-filter resize to ``size`` × ``size`` (exact averaging of covered area; no ringing, unlike Lanczos)."""
    rows, cols = _area_weights(image.shape[0], size), _area_weights(image.shape[1], size)
    return (rows @ image @ cols.T).astype(np.float32)


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_CHANNELS = {0: 1, 2: 3, 4: 2, 6: 4}  # colour type -> samples per pixel (3, palette, is refused)


def read_png(path: str | Path) -> np.ndarray:
    """A non-interlaced PNG as uint8 greyscale ``[height, width]``; DataError naming the file otherwise.

    Greyscale at 1/2/4/8/16 bits, RGB and the alpha variants at 8/16 bits
    (colour is averaged, alpha ignored). Chunk CRCs are checked.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None
    try:
        return _decode_png(data)
    except DataError as exc:
        raise DataError(f"{path}: unreadable PNG ({exc})") from None


def _decode_png(data: bytes) -> np.ndarray:
    if not data.startswith(PNG_SIGNATURE):
        raise DataError("no PNG signature")
    pos, header, idat = len(PNG_SIGNATURE), None, []
    while True:
        if pos + 8 > len(data):
            raise DataError("truncated before IEND")
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        body = data[pos + 8 : pos + 8 + length]
        crc = data[pos + 8 + length : pos + 12 + length]
        if len(body) != length or len(crc) != 4:
            raise DataError(f"truncated {kind!r} chunk")
        if zlib.crc32(kind + body) != struct.unpack(">I", crc)[0]:
            raise DataError(f"bad CRC in {kind.decode('latin-1')} chunk")
        pos += 12 + length
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
    if header is None or not idat:
        raise DataError("no IHDR or no IDAT chunk")
    width, height, depth, colour, _compression, _filter, interlace = header
    if colour not in _CHANNELS:
        raise DataError(f"colour type {colour} (palette) is not supported; save it as greyscale")
    if interlace:
        raise DataError("interlaced PNGs are not supported")
    if depth not in ((1, 2, 4, 8, 16) if colour == 0 else (8, 16)) or width == 0 or height == 0:
        raise DataError(f"{width}x{height} at bit depth {depth}, colour type {colour}, is not a valid PNG image")
    try:
        raw = zlib.decompress(b"".join(idat))
    except zlib.error as exc:
        raise DataError(f"image data does not inflate ({exc})") from None
    channels = _CHANNELS[colour]
    stride = (width * channels * depth + 7) // 8
    if len(raw) != height * (stride + 1):
        raise DataError(f"image data is {len(raw)} bytes, {height} rows of {stride + 1} expected")
    rows = _unfilter(np.frombuffer(raw, np.uint8).reshape(height, stride + 1), max(1, channels * depth // 8))
    return _to_grey(rows, width, channels, depth)


def _unfilter(rows: np.ndarray, bpp: int) -> np.ndarray:
    """Undo the per-row filters (None, Sub, Up, Average, Paeth) of PNG's filter method 0."""
    out = np.zeros((rows.shape[0], rows.shape[1] - 1), np.uint8)
    previous = np.zeros(rows.shape[1] - 1, np.uint8)
    for r, row in enumerate(rows):
        kind, line = int(row[0]), row[1:].copy()
        if kind == 1:
            for i in range(bpp, len(line)):
                line[i] = (int(line[i]) + int(line[i - bpp])) & 0xFF
        elif kind == 2:
            line = (line + previous).astype(np.uint8)
        elif kind == 3:
            for i in range(len(line)):
                left = int(line[i - bpp]) if i >= bpp else 0
                line[i] = (int(line[i]) + ((left + int(previous[i])) >> 1)) & 0xFF
        elif kind == 4:
            for i in range(len(line)):
                a = int(line[i - bpp]) if i >= bpp else 0
                b, c = int(previous[i]), int(previous[i - bpp]) if i >= bpp else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (int(line[i]) + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
        elif kind != 0:
            raise DataError(f"row {r} has filter type {kind}")
        out[r] = previous = line
    return out


def _to_grey(rows: np.ndarray, width: int, channels: int, depth: int) -> np.ndarray:
    height = rows.shape[0]
    if depth < 8:
        bits = np.unpackbits(rows, axis=1).reshape(height, -1, depth)[:, :width]
        values = (bits * (1 << np.arange(depth - 1, -1, -1, dtype=np.uint8))).sum(axis=2)
        return (values * (255 // ((1 << depth) - 1))).astype(np.uint8)
    samples = rows.reshape(height, width, channels, depth // 8)[..., 0]  # 16-bit: the high byte
    colour = samples[..., : 3 if channels >= 3 else 1].astype(np.float64)
    return np.round(colour.mean(axis=2)).astype(np.uint8)


def write_png(path: str | Path, grey: np.ndarray) -> None:
    """Write uint8 greyscale ``[height, width]`` as an 8-bit greyscale PNG (filter None on every row)."""
    grey = np.asarray(grey, np.uint8)
    height, width = grey.shape

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    raw = b"".join(b"\x00" + grey[r].tobytes() for r in range(height))
    Path(path).write_bytes(
        PNG_SIGNATURE + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")
    )  # fmt: skip


# --- wav ---------------------------------------------------------------------------------------------


def _read_wavs(spec: DataSpec, root: Path, clip_features: ClipFeatures | None,
               ) -> tuple[dict[str, DeviceSamples], tuple[str, ...]]:  # fmt: skip
    out, front_end = _Collector(), FrontEnd()
    features = clip_features or (lambda clip: pooled_mfcc(clip, front_end))
    for word in _subdirs(root):
        for path in sorted(word.glob("*.wav")):
            speaker, marker, _ = path.stem.partition("_nohash_")
            if not marker or not speaker:
                raise DataError(f"{path}: a Speech Commands file is named <speaker>_nohash_<k>.wav")
            out.add(speaker, features(read_clip(path)), word.name, str(path))
    return out.devices(), ()


def read_clip(path: Path) -> np.ndarray:
    """One 16 kHz mono 16-bit clip fitted to one second; DataError naming the file for anything else."""
    try:
        with wave.open(str(path)) as reader:
            rate, channels, width = reader.getframerate(), reader.getnchannels(), reader.getsampwidth()
            frames = reader.readframes(reader.getnframes())
    except (wave.Error, EOFError, OSError) as exc:
        raise DataError(f"{path}: not a readable WAV file ({exc})") from None
    if (rate, channels, width) != (SAMPLE_RATE, 1, 2):
        raise DataError(f"{path}: {rate} Hz, {channels} channel(s), {8 * width}-bit; "
                        f"Speech Commands clips are {SAMPLE_RATE} Hz mono 16-bit")  # fmt: skip
    samples = np.frombuffer(frames[: len(frames) // 2 * 2], "<i2").astype(np.float32) / 32768.0
    if samples.size == 0:
        raise DataError(f"{path}: the clip holds no samples")
    return fit_clip(samples, CLIP_SAMPLES, offset=0)


def pooled_mfcc(clip: np.ndarray, front_end: FrontEnd) -> np.ndarray:
    """The keywords task's features before scaling: 49 MFCC frames averaged in groups of KEYWORD_FRAME_POOL."""
    mfcc = front_end.mfcc(clip)
    steps = mfcc.shape[0] // KEYWORD_FRAME_POOL
    return mfcc[: steps * KEYWORD_FRAME_POOL].reshape(steps, KEYWORD_FRAME_POOL, -1).mean(axis=1).reshape(-1)


# --- csv ---------------------------------------------------------------------------------------------

def _read_csv(spec: DataSpec, root: Path) -> tuple[dict[str, DeviceSamples], tuple[str, ...]]:
    files = [root] if root.is_file() else sorted(root.glob("*.csv"))
    out, columns = _Collector(), None
    for path in files:
        header, rows = _csv_rows(path)
        features = _csv_features(spec, header, path)
        if columns is not None and features != columns:
            raise DataError(f"{path}: feature columns {list(features)} differ from {files[0]}'s {list(columns)}")
        columns = features
        for line, row in rows:
            where = f"{path}, line {line}"
            if len(row) != len(header):
                raise DataError(f"{where}: {len(row)} cells, the header has {len(header)}")
            cells = dict(zip(header, row))
            label = cells[spec.label_column].strip()
            if not label:
                raise DataError(f"{where}: empty label in column {spec.label_column!r}")
            device = path.stem if spec.device_column is None else cells[spec.device_column].strip()
            if not device:
                raise DataError(f"{where}: empty device in column {spec.device_column!r}")
            out.add(device, np.array([_number(cells[c], c, where) for c in features], np.float32), label, where)
    return out.devices(), columns or ()


def _csv_rows(path: Path) -> tuple[list[str], Iterable[tuple[int, list[str]]]]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read as UTF-8 text ({exc})") from None
    reader = csv.reader(text.splitlines())
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        raise DataError(f"{path}: empty file (a CSV needs a header row)") from None
    except csv.Error as exc:
        raise DataError(f"{path}, line 1: {exc}") from None
    try:
        rows = [(reader.line_num, row) for row in reader if any(cell.strip() for cell in row)]
    except csv.Error as exc:
        raise DataError(f"{path}, line {reader.line_num}: {exc}") from None
    return header, rows


def _csv_features(spec: DataSpec, header: Sequence[str], path: Path) -> tuple[str, ...]:
    needed = [spec.label_column] + ([spec.device_column] if spec.device_column else [])
    missing = [c for c in needed + list(spec.feature_columns or ()) if c not in header]
    if missing:
        raise DataError(f"{path}: no column {missing} in the header {list(header)}")
    if len(set(header)) != len(header):
        raise DataError(f"{path}: repeated column names in the header {list(header)}")
    features = spec.feature_columns or tuple(c for c in header if c not in needed)
    if not features:
        raise DataError(f"{path}: no feature columns besides {needed}")
    return tuple(features)


def _number(cell: str, column: str, where: str) -> float:
    try:
        value = float(cell)
    except ValueError:
        raise DataError(f"{where}: column {column!r} holds {cell!r}, not a number") from None
    if not np.isfinite(value):
        raise DataError(f"{where}: column {column!r} holds {cell!r}, not a finite number")
    return value
