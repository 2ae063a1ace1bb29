"""Write a small example of a user's own task: a task.toml and its data in a real layout.

``python -m firmware_sim.tasks.example_task --out DIR`` writes the CSV one
(the default), ``--layout images`` an Omniglot-style image folder. Both are
generated here, from fixed seeds, so the example is the same on every machine
and nothing is downloaded; :func:`firmware_sim.user_task.load_user_task` reads
them as it reads a user's folder.

- **csv** (``machines``): condition monitoring. Each device is one machine,
  one ``data/<machine>.csv`` of sensor rows (vibration RMS, peak, crest
  factor, bearing temperature, motor current) labelled ``normal``,
  ``imbalance`` or ``bearing``. A fault looks alike on every machine in a
  shared latent space, but each machine's sensors have their own gains and
  offsets (mounting, calibration), so a model must adapt to its machine: the
  few-shot setting the federation meta-learns for.
- **images** (``glyphs``): ``data/<alphabet>/<character>/<imageid>_<drawer>.png``
  at Omniglot's 105 × 105, dark ink on white; each device is a drawer, whose
  hand (slant, stroke width, wobble) is the characters task's writer style
  (:mod:`firmware_sim.tasks.characters`).
- **wav** (``commands``): ``data/<word>/<speaker>_nohash_<k>.wav``, 16 kHz mono
  16-bit, spoken by espeak-ng (needed only to write the example) as the keywords
  task's speakers in their rooms (:mod:`firmware_sim.tasks.keywords`); each
  device is a speaker.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from firmware_sim.tasks import characters as chars
from firmware_sim.tasks.user_data import write_png

CSV_COLUMNS = ("vib_rms", "vib_peak", "crest", "bearing_temp_c", "current_a")
CSV_LABELS = ("normal", "imbalance", "bearing")
# each label's mean in the shared latent space (one row per label, one column per sensor)
_LATENT = np.array([[0.0, 0.0, 0.0, 0.0, 0.0], [1.6, 1.2, -0.6, 0.3, 0.9], [0.5, 1.8, 1.6, 1.4, 0.2]])
_SENSOR_BASE = np.array([2.0, 6.0, 3.0, 45.0, 4.0])  # what a healthy machine reads, in sensor units
_SENSOR_SCALE = np.array([0.6, 2.0, 0.8, 6.0, 0.7])
OMNIGLOT_SIZE = 105


def machine_rows(machine: int, rows: int, seed: int = 0) -> tuple[np.ndarray, list[str]]:
    """Sensor rows of one machine and their labels; the machine's own gains and offsets from (seed, machine)."""
    rng = np.random.default_rng([seed, machine])
    gain = rng.uniform(0.6, 1.5, size=len(CSV_COLUMNS))
    offset = rng.normal(0.0, 0.8, size=len(CSV_COLUMNS))
    labels = rng.integers(len(CSV_LABELS), size=rows)
    latent = _LATENT[labels] + rng.normal(0.0, 0.35, size=(rows, len(CSV_COLUMNS)))
    return _SENSOR_BASE + _SENSOR_SCALE * (gain * latent + offset), [CSV_LABELS[i] for i in labels]


def write_csv_task(out: Path, machines: int = 6, rows: int = 60, seed: int = 0) -> Path:
    """``out/task.toml`` and ``out/data/machine_NN.csv``; the task folder."""
    data = out / "data"
    data.mkdir(parents=True, exist_ok=True)
    for machine in range(machines):
        values, labels = machine_rows(machine, rows, seed)
        with open(data / f"machine_{machine:02d}.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow([*CSV_COLUMNS, "label"])
            writer.writerows([*(f"{v:.4f}" for v in row), label] for row, label in zip(values, labels))
    (out / "task.toml").write_text(f"""\
# A user's own task, written by `python -m firmware_sim.tasks.example_task` (see firmware_sim/user_task.py).
name = "machines"

[data]
layout = "csv"            # one <device>.csv per machine
path = "data"
label_column = "label"
labels = {json.dumps(list(CSV_LABELS))}
min_samples = 20

[model]
kind = "mlp"              # an MLP over the standardised sensor columns
hidden = [32]

[training]
learning_rate = 0.05
shots = 5
profile = "nano33ble"
""")
    return out


def write_image_task(out: Path, drawers: int = 6, alphabets: int = 2, characters: int = 6, seed: int = 0) -> Path:
    """``out/task.toml`` and an Omniglot-style ``out/data`` of alphabets × characters × drawers PNGs."""
    world = chars.CharacterSet(seed)
    page = np.minimum((np.arange(OMNIGLOT_SIZE) * chars.IMAGE_SIZE) // OMNIGLOT_SIZE, chars.IMAGE_SIZE - 1)
    for a in range(alphabets):
        for c in range(characters):
            folder = out / "data" / f"Alphabet_{a:02d}" / f"character{c + 1:02d}"
            folder.mkdir(parents=True, exist_ok=True)
            class_id = a * chars.CHARACTERS_PER_ALPHABET + c
            for d in range(drawers):
                rng = np.random.default_rng([seed, a, c, d])
                ink = chars.render(world.glyph(class_id), chars.writer_style(seed, d), rng)[..., 0]
                grey = np.round(255.0 * (1.0 - ink[np.ix_(page, page)])).astype(np.uint8)  # nearest-neighbour upscale
                write_png(folder / f"{class_id:04d}_{d + 1:02d}.png", grey)
    (out / "task.toml").write_text("""\
# A user's own task, written by `python -m firmware_sim.tasks.example_task --layout images`.
name = "glyphs"

[data]
layout = "images"         # <alphabet>/<character>/<imageid>_<drawer>.png; a device is a drawer
path = "data"
ink = "dark"
min_samples = 10

[model]
kind = "mlp"
hidden = [32]

[training]
learning_rate = 0.05
shots = 5
""")
    return out


SPEECH_WORDS = ("yes", "no", "up", "down")


def write_speech_task(out: Path, speakers: int = 4, clips: int = 5, seed: int = 0) -> Path:
    """``out/task.toml`` and a Speech Commands-style ``out/data`` of speakers × words × clips (espeak-ng speaks)."""
    from firmware_sim.tasks import keywords as kws
    from firmware_sim.tasks.audio import write_wav
    from firmware_sim.tasks.espeak import Synthesizer

    corpus = kws.KeywordCorpus(Synthesizer())
    for speaker in range(speakers):
        task = kws.sample_task(seed, speaker, SPEECH_WORDS)
        name = f"{zlib.crc32(f'speaker-{seed}-{speaker}'.encode()):08x}"  # Speech Commands names speakers by a hash
        for word in SPEECH_WORDS:
            (out / "data" / word).mkdir(parents=True, exist_ok=True)
            for k in range(clips):
                rng = np.random.default_rng([seed, speaker, SPEECH_WORDS.index(word), k])
                write_wav(out / "data" / word / f"{name}_nohash_{k}.wav", corpus.clip(task, word, rng))
    (out / "task.toml").write_text(f"""\
# A user's own task, written by `python -m firmware_sim.tasks.example_task --layout wav`.
name = "commands"

[data]
layout = "wav"            # <word>/<speaker>_nohash_<k>.wav; a device is a speaker
path = "data"
labels = {json.dumps(list(SPEECH_WORDS))}
min_samples = {min(10, clips * len(SPEECH_WORDS))}

[model]
kind = "mlp"
hidden = [32]

[training]
learning_rate = 0.02
shots = 5
""")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m firmware_sim.tasks.example_task", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="The task folder to write (created).")
    parser.add_argument("--layout", choices=("csv", "images", "wav"), default="csv",
                        help="Which example (default: csv; wav needs espeak-ng to write it).")  # fmt: skip
    parser.add_argument("--devices", type=int, default=6, help="Machines or drawers (default: 6).")
    args = parser.parse_args(argv)
    if args.devices < 1:
        parser.error("--devices must be >= 1")
    if args.layout == "csv":
        write_csv_task(args.out, machines=args.devices)
    elif args.layout == "images":
        write_image_task(args.out, drawers=args.devices)
    else:
        write_speech_task(args.out, speakers=args.devices)
    print(f"wrote {args.out / 'task.toml'} and {args.out / 'data'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
