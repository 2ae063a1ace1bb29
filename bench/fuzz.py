"""Bounded fuzzing of the parsers that take bytes from outside: the wire decoder, the TD door, SPARQL parameters.

``python bench/fuzz.py`` fuzzes each target for ``--runs`` inputs (or ``--seconds``) and writes
``runs/bench/fuzz.json``: per target the engine, inputs tried, time, and crashes (an exception the
target does not document, or the process dying). The suite's smoke test runs it with a few
hundred inputs.

Engines:

* **atheris** (libFuzzer for Python, coverage-guided), when it can be imported: each target runs in
  a child process (``atheris.Fuzz`` never returns), libFuzzer's own ``Done N runs`` line gives the
  count and a crash leaves ``<target>-crash-*`` in ``fuzz-crashes/`` beside the JSON. Pin: PyPI ``atheris`` (3.0.0 is
  the newest cp311 wheel on this index; 3.1.0 is not there).
* **mutation** (no atheris): a seeded, dependency-free mutator (bit flips, byte insertions and
  deletions, splices, interesting integers) over a seed corpus, in-process. Not coverage-guided;
  it keeps the suite and machines without atheris honest.

Targets and what each may raise (anything else is a crash):

* ``wire``: :func:`edge.wire.decode_weights` / step sizes / hypergradient / ``parse_announce`` on
  mutated valid payloads, half of them with the CRC32 fixed up so the fuzzer gets past the
  checksum: only :class:`edge.wire.WireFormatError` / ``ControlMessageError``.
* ``td``: the TD door without SHACL (JSON, depth, duplicate keys, TD 1.1 schema, rules,
  JSON-LD to RDF, IRI safety, closed vocabulary) on mutated TDs: only ``ThingRejected`` /
  ``InvalidRDF`` (ValueErrors).
* ``sparql-params``: a named query's parameter binding and the query shape check on fuzzed
  strings: only ``QueryParamError`` / ``QueryTooComplex``; bound queries then run on an
  in-memory store.

* ``c-wire``: the firmware's serial-link decoder (``edge/firmware/serial_link.c``, COBS + CRC frames
  from the UART) compiled with clang's libFuzzer, AddressSanitizer and UBSan; a decoded frame's
  payload is read whole and must re-encode. Reported as skipped when ``clang`` is not installed
  (Debian ``clang-14`` + ``libfuzzer-14-dev``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import re
import shutil
import struct
import subprocess
import sys
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

OUT = ROOT / "runs" / "bench" / "fuzz.json"
TARGETS = ("wire", "td", "sparql-params")


# -- seeds and targets ------------------------------------------------------------------------------


def _wire_seeds() -> list[bytes]:
    import numpy as np

    from edge.wire import encode_model, encode_step_sizes, encode_weights, top_p_sparsify

    w = {"dense/kernel": np.arange(12, dtype=np.float32).reshape(3, 4), "dense/bias": np.ones(4, dtype=np.float32)}
    return [
        encode_model(w, round_id=3),
        encode_weights(w, round_id=4, device_id="nano-1", num_examples=7, metrics={"loss": 0.5}),
        encode_weights(None, round_id=5, device_id="esp-1", sparse=top_p_sparsify({"dense/kernel": w["dense/kernel"]}, 0.25)),
        encode_step_sizes({"dense/kernel": np.full((3, 4), 0.01, dtype=np.float32)}, round_id=6),
        json.dumps({"id": "urn:x", "title": "t"}).encode(),
    ]


def _wire_target() -> Callable[[bytes], None]:
    import numpy as np

    from edge.wire import ControlMessageError, WireFormatError, decode_hypergradient, decode_step_sizes, decode_weights, parse_announce

    spec = {"dense/kernel": ((3, 4), np.float32), "dense/bias": ((4,), np.float32)}
    calls = (lambda d: decode_weights(d), lambda d: decode_weights(d, spec), lambda d: decode_step_sizes(d, spec),
             lambda d: decode_hypergradient(d, spec))

    def run(data: bytes) -> None:
        if len(data) >= 8 and len(data) % 2:  # half the inputs: fix the CRC32 trailer so the body parser is reached
            data = data[:-4] + struct.pack("<I", zlib.crc32(data[:-4]))
        for decode in calls:
            try:
                decode(data)
            except WireFormatError:
                pass
        try:
            parse_announce(data)
        except ControlMessageError:
            pass

    return run


def _td_seeds() -> list[bytes]:
    from edge.profiles import PROFILES
    from edge.thing_description import thing_description

    seeds = [json.dumps(thing_description(PROFILES[p], f"fz-{p}")).encode() for p in sorted(PROFILES)[:2]]
    seeds.append(b'{"@context": "https://www.w3.org/2022/wot/td/v1.1", "title": "t", "securityDefinitions": '
                 b'{"n": {"scheme": "nosec"}}, "security": "n", "properties": {"p": {"type": "string", "forms": [{"href": "/p"}]}}}')
    return seeds


def _td_target() -> Callable[[bytes], None]:
    from ontology.directory import ThingRejected, parse_json_body, structural_problems
    from ontology.rdf_input import InvalidRDF
    from ontology.td_validation import rule_problems, schema_problems, unknown_terms
    from ontology.thing_description import td_to_graph

    def run(data: bytes) -> None:
        try:
            td = parse_json_body(data)
            structural_problems(td)
            schema_problems(td)
            rule_problems(td)
            if isinstance(td, dict):
                unknown_terms(td_to_graph(td))
        except (ThingRejected, InvalidRDF):
            pass

    return run


def _params_seeds() -> list[bytes]:
    return [b"https://w3id.org/tinyfleet/id/device/nano-1", b"urn:x", b"kws-small", b"12", b"SELECT * WHERE { ?s ?p ?o }"]


def _params_target() -> Callable[[bytes], None]:
    from ontology.named_queries import QueryParamError, bind_params, named_queries
    from ontology.query_sandbox import QueryTooComplex, check_query_shape
    from ontology.store import open_store

    store = open_store("memory:")
    queries = list(named_queries().values())

    def run(data: bytes) -> None:
        text = data.decode("utf-8", "replace")
        try:
            check_query_shape(text)
        except QueryTooComplex:
            pass
        query = queries[data[0] % len(queries)] if data else queries[0]
        raw = {p.name: text for p in query.params}
        try:
            bindings = bind_params(query, raw)
        except QueryParamError:
            return
        store.query(query.text, bindings, timeout_s=5, max_results=10, isolate=False, self_contained=True)

    return run


SETUP: dict[str, tuple[Callable[[], list[bytes]], Callable[[], Callable[[bytes], None]]]] = {
    "wire": (_wire_seeds, _wire_target),
    "td": (_td_seeds, _td_target),
    "sparql-params": (_params_seeds, _params_target),
}


# -- the mutation engine ------------------------------------------------------------------------------

_INTERESTING = [b"\x00", b"\xff", b"\x7f", b"\x80", b"\xff\xff\xff\xff", b"\x00\x00\x00\x80", b"{", b"}", b"[", b"]", b'"', b"\\",
                b"\\u0000", b" ", b"1e999", b"-0", b"null", b"<", b">", b"%", b"tf:"]


def mutate(data: bytes, rng: random.Random, corpus: list[bytes]) -> bytes:
    """One to four random edits of ``data``."""
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        choice = rng.randrange(6)
        if choice == 0 and out:  # flip a bit
            i = rng.randrange(len(out))
            out[i] ^= 1 << rng.randrange(8)
        elif choice == 1:  # insert something interesting
            i = rng.randrange(len(out) + 1)
            out[i:i] = rng.choice(_INTERESTING)
        elif choice == 2 and out:  # delete a run
            i = rng.randrange(len(out))
            del out[i : i + rng.randint(1, 16)]
        elif choice == 3 and out:  # overwrite with a random byte
            out[rng.randrange(len(out))] = rng.randrange(256)
        elif choice == 4 and corpus:  # splice with another input
            other = rng.choice(corpus)
            i, j = rng.randrange(len(out) + 1), rng.randrange(len(other) + 1)
            out = out[:i] + other[j:]
        elif out:  # duplicate a run (grows nesting and lengths)
            i = rng.randrange(len(out))
            out[i:i] = out[i : i + rng.randint(1, 64)]
    return bytes(out[: 1 << 20])


def run_mutation(target: str, runs: int, seconds: float | None, seed: int) -> dict[str, Any]:
    seeds, make = SETUP[target]
    corpus = seeds()
    fn = make()
    rng = random.Random(seed)
    crashes: list[dict[str, str]] = []
    started = time.monotonic()
    tried = 0
    while tried < runs and (seconds is None or time.monotonic() - started < seconds):
        data = corpus[tried] if tried < len(corpus) else mutate(rng.choice(corpus), rng, corpus)
        tried += 1
        try:
            fn(data)
        except Exception as exc:  # noqa: BLE001 - every undocumented exception is a finding
            crashes.append({"error": f"{type(exc).__name__}: {str(exc)[:200]}", "input_hex": data[:256].hex()})
            if len(crashes) >= 20:
                break
        else:
            if rng.random() < 0.05 and len(corpus) < 256:  # keep some survivors as new seeds
                corpus.append(data)
    return {"engine": "mutation", "inputs": tried, "seconds": round(time.monotonic() - started, 2),
            "crashes": len(crashes), "crash_examples": crashes[:5], "seed": seed}


# -- the atheris engine -------------------------------------------------------------------------------


def _atheris_child(target: str, runs: int, seconds: float | None, corpus_dir: Path, crash_dir: Path) -> None:
    import atheris

    seeds, make = SETUP[target]
    corpus_dir.mkdir(parents=True, exist_ok=True)
    for i, seed in enumerate(seeds()):
        (corpus_dir / f"seed-{i}").write_bytes(seed)
    with atheris.instrument_imports():
        fn = make()
    args = [sys.argv[0], f"-runs={runs}", f"-artifact_prefix={crash_dir}/{target}-", "-rss_limit_mb=4096", str(corpus_dir)]
    if seconds is not None:
        args.insert(1, f"-max_total_time={int(max(1, seconds))}")
    atheris.Setup(args, lambda data: fn(bytes(data)))
    atheris.Fuzz()


def run_atheris(target: str, runs: int, seconds: float | None, root: Path = OUT.parent) -> dict[str, Any]:
    work = root / "fuzz-corpus" / target
    crash_dir = root / "fuzz-crashes"
    crash_dir.mkdir(parents=True, exist_ok=True)
    before = set(crash_dir.glob(f"{target}-*"))
    started = time.monotonic()
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", target, "--runs", str(runs), "--corpus", str(work),
           "--crash-dir", str(crash_dir)] + (["--seconds", str(seconds)] if seconds is not None else [])
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=(seconds or 600) + 600)
    counts = re.findall(r"Done (\d+) runs in", done.stderr) or re.findall(r"#(\d+)\s", done.stderr)
    new = sorted(set(crash_dir.glob(f"{target}-*")) - before)
    crashed = done.returncode != 0
    return {"engine": "atheris", "inputs": int(counts[-1]) if counts else None, "seconds": round(time.monotonic() - started, 2),
            "crashes": len(new) if new else int(crashed), "crash_files": [p.name for p in new], "exit_status": done.returncode,
            **({"stderr_tail": done.stderr[-1500:]} if crashed else {})}


#: libFuzzer harness for the firmware's serial-link decoder (edge/firmware/serial_link.c): every byte of
#: the input after the first is pushed into a decoder (the first picks the accepted topic mask); each
#: decoded frame's payload is read whole (AddressSanitizer checks the bounds) and must re-encode.
C_HARNESS = r"""
#include "serial_link.h"
#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static uint8_t buf[SL_RAW_SIZE(256)];
    static uint8_t out[SL_ENCODED_SIZE(256)];
    sl_decoder_t d;
    sl_frame_t frame;
    unsigned accept = size ? (unsigned)(data[0] % 3u) + 1u : SL_ACCEPT_ANY;
    sl_decoder_init(&d, buf, sizeof buf, accept);
    for (size_t i = 1; i < size; i++) {
        sl_result_t r = sl_decoder_push(&d, data[i], &frame);
        (void)sl_result_code(r);
        if (r == SL_FRAME) {
            volatile uint8_t sink = 0;
            for (size_t j = 0; j < frame.len; j++) sink ^= frame.payload[j];
            (void)sink;
            if (sl_encode_frame(out, sizeof out, frame.topic, frame.sequence, frame.payload, frame.len) == 0) __builtin_trap();
        }
    }
    (void)sl_decoder_flush(&d);
    return 0;
}
"""


def _c_seeds() -> list[bytes]:
    from edge.serial_link import Topic, encode_frame

    frames = [encode_frame(Topic.MODEL, 7, b"\x01\x02\x00\x03" * 8), encode_frame(Topic.ANNOUNCE, 1, b'{"id": "x"}'),
              encode_frame(Topic.UPDATE, 65535, b""), encode_frame(Topic.TASK, 2, bytes(range(256))[:200])]
    return [bytes([i % 3]) + f for i, f in enumerate(frames)] + [b"\x02" + b"".join(frames)]


def c_wire(runs: int, seconds: float | None, root: Path = OUT.parent) -> dict[str, Any]:
    """The C serial-link decoder under clang's libFuzzer with AddressSanitizer and UBSan (skipped without clang)."""
    clang = shutil.which("clang") or shutil.which("clang-14")
    engine = "libFuzzer+ASan+UBSan (C serial-link decoder)"
    if clang is None:
        return {"engine": engine, "skipped": "clang is not installed (Debian clang + libfuzzer-14-dev)", "inputs": 0, "crashes": 0}
    work = root / "fuzz-c"
    corpus = work / "corpus"
    corpus.mkdir(parents=True, exist_ok=True)
    (work / "harness.c").write_text(C_HARNESS)
    for i, seed in enumerate(_c_seeds()):
        (corpus / f"seed-{i}").write_bytes(seed)
    source = ROOT / "edge" / "firmware"
    binary = work / "fuzz_serial_link"
    build = subprocess.run([clang, "-g", "-O1", "-fsanitize=fuzzer,address,undefined", "-fno-sanitize-recover=undefined",
                            f"-I{source}", str(work / "harness.c"), str(source / "serial_link.c"), "-o", str(binary)],
                           capture_output=True, text=True)
    if build.returncode != 0:
        return {"engine": engine, "skipped": f"build failed: {build.stderr[-500:]}", "inputs": 0, "crashes": 0}
    crash_dir = root / "fuzz-crashes"
    crash_dir.mkdir(parents=True, exist_ok=True)
    before = set(crash_dir.glob("c-serial-*"))
    started = time.monotonic()
    args = [str(binary), f"-runs={runs}", f"-artifact_prefix={crash_dir}/c-serial-", "-max_len=4096", str(corpus)]
    if seconds is not None:
        args.insert(1, f"-max_total_time={int(max(1, seconds))}")
    done = subprocess.run(args, capture_output=True, text=True, timeout=(seconds or 600) + 300)
    counts = re.findall(r"Done (\d+) runs in", done.stderr)
    new = sorted(set(crash_dir.glob("c-serial-*")) - before)
    return {"engine": engine, "compiler": Path(clang).name, "inputs": int(counts[-1]) if counts else None,
            "seconds": round(time.monotonic() - started, 2), "crashes": len(new) if new else int(done.returncode != 0),
            "crash_files": [p.name for p in new], "exit_status": done.returncode,
            **({"stderr_tail": done.stderr[-1500:]} if done.returncode else {})}


def have_atheris() -> bool:
    try:
        import atheris  # noqa: F401
    except ImportError:
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20_000, help="Inputs per target.")
    parser.add_argument("--seconds", type=float, default=None, help="Stop each target after this long.")
    parser.add_argument("--targets", default=",".join(TARGETS), help="Comma-separated: " + ", ".join(TARGETS))
    parser.add_argument("--engine", choices=("auto", "atheris", "mutation"), default="auto")
    parser.add_argument("--seed", type=int, default=16)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--no-c", action="store_true", help="Skip the C serial-link decoder (libFuzzer).")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--corpus", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--crash-dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    logging.disable(logging.WARNING)  # rdflib warns on every odd IRI a mutated TD makes
    if args.child:
        _atheris_child(args.child, args.runs, args.seconds, args.corpus, args.crash_dir)
        return 0
    engine = args.engine if args.engine != "auto" else ("atheris" if have_atheris() else "mutation")
    if engine == "atheris" and not have_atheris():
        parser.error("atheris is not installed")
    results: dict[str, Any] = {}
    for target in [t for t in args.targets.split(",") if t]:
        if target not in SETUP:
            parser.error(f"unknown target {target!r}; choose from {', '.join(TARGETS)}")
        results[target] = (run_atheris(target, args.runs, args.seconds, args.out.parent) if engine == "atheris"
                           else run_mutation(target, args.runs, args.seconds, args.seed))
        print(f"{target}: {results[target]['inputs']} inputs, {results[target]['crashes']} crash(es) [{engine}]", flush=True)
    if not args.no_c:
        results["c-wire"] = c_wire(args.runs, args.seconds, args.out.parent)
        print(f"c-wire: {results['c-wire'].get('inputs')} inputs, {results['c-wire']['crashes']} crash(es)"
              f"{' (' + results['c-wire']['skipped'] + ')' if 'skipped' in results['c-wire'] else ''}", flush=True)
    report = {"engine": engine, "python": sys.version.split()[0], "targets": results,
              "inputs": sum(r.get("inputs") or 0 for r in results.values()),
              "crashes": sum(r.get("crashes") or 0 for r in results.values())}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}: {report['inputs']} inputs, {report['crashes']} crash(es)")
    return 1 if report["crashes"] else 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
