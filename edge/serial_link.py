"""Serial binding v1: the MQTT topics of one device as COBS frames on a UART.

A microcontroller has no TCP stack, so a gateway on the host speaks MQTT for
it and the two talk over a byte stream (a UART, QEMU's socket chardev, a USB
CDC tty). Each MQTT message of the device becomes one frame::

    raw   = version u8 | topic id u8 | sequence u16 LE | payload | crc32 u32 LE
    frame = COBS(raw) | 0x00

``crc32`` is zlib's CRC-32 over ``version .. payload``. COBS removes every 0x00
from ``raw``, so 0x00 only ever ends a frame: after garbage, a lost byte or a
reset, the decoder resynchronises at the next 0x00 and loses nothing after it.
Empty frames (two 0x00 in a row) are ignored, so a sender may start with 0x00
to flush line noise. The C twin is ``edge/firmware/serial_link.c`` (same bytes,
same error order, tested against this module); the specification is
``docs/protocol.md`` § "Serial binding".

    >>> frame = encode_frame(Topic.STATUS, 7, b"online")
    >>> FrameDecoder(accept=DEVICE_TO_HOST).feed(b"\\x13garbage\\x00" + frame)[1]
    Frame(topic=<Topic.STATUS: 2>, sequence=7, payload=b'online')

Standard library only (plus :mod:`edge.wire`), so it runs on the gateway and
on Linux-class devices alike.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from enum import IntEnum

from edge.wire.errors import WireFormatError
from edge.wire.topics import Channel

VERSION = 1
DELIMITER = 0x00
HEADER_BYTES = 4  # version, topic id, sequence
CRC_BYTES = 4
MIN_RAW = HEADER_BYTES + CRC_BYTES
MAX_PAYLOAD = 65536  # the protocol's hard cap: one wire-codec payload at its default cap fits one frame


class Topic(IntEnum):
    """Topic ids: the device's MQTT channels. The high bit is set for host -> device."""

    ANNOUNCE = 0x01
    STATUS = 0x02
    TELEMETRY = 0x03
    UPDATE = 0x04
    TASK = 0x81
    MODEL = 0x82

    @property
    def channel(self) -> Channel:
        return Channel(self.name.lower())

    @property
    def from_device(self) -> bool:
        return not self.value & 0x80

    @classmethod
    def of_channel(cls, channel: Channel | str) -> Topic:
        return cls[Channel(channel).name]


DEVICE_TO_HOST = frozenset(t for t in Topic if t.from_device)
HOST_TO_DEVICE = frozenset(t for t in Topic if not t.from_device)


class SerialFrameError(WireFormatError):
    """A frame is refused; ``code`` names why. The decoder has already resynchronised."""

    CODE = "serial-frame"

    def __init__(self, message: str) -> None:
        super().__init__(self.CODE, message)


class GarbageFrame(SerialFrameError):
    """The bytes before a delimiter are not COBS: a COBS block runs past the delimiter."""

    CODE = "bad-cobs"


class TruncatedFrame(SerialFrameError):
    """Valid COBS but shorter than header + CRC (8 bytes), or the stream ended inside a frame."""

    CODE = "truncated"


class BadCrc(SerialFrameError):
    CODE = "bad-crc"


class OversizedFrame(SerialFrameError):
    """More than the receiver's ``max_payload``; the rest of the frame up to the next 0x00 is skipped."""

    CODE = "oversized"


class UnsupportedVersion(SerialFrameError):
    CODE = "unsupported-version"


class UnknownTopic(SerialFrameError):
    """A topic id this version does not define, or one that does not flow in this direction."""

    CODE = "unknown-topic"


ERRORS: tuple[type[SerialFrameError], ...] = (
    GarbageFrame, TruncatedFrame, BadCrc, OversizedFrame, UnsupportedVersion, UnknownTopic,
)


@dataclass(frozen=True)
class Frame:
    topic: Topic
    sequence: int
    payload: bytes


# ------------------------------------------------------------------ COBS


def cobs_encode(data: bytes) -> bytes:
    """Consistent Overhead Byte Stuffing (Cheshire & Baker 1999): no 0x00 in the output; no delimiter added."""
    out = bytearray()
    block = bytearray()
    for byte in data:
        if byte == 0:
            out.append(len(block) + 1)
            out += block
            block.clear()
            continue
        block.append(byte)
        if len(block) == 254:
            out.append(255)
            out += block
            block.clear()
    out.append(len(block) + 1)
    out += block
    return bytes(out)


def cobs_decode(data: bytes, *, max_size: int | None = None) -> bytes:
    """Invert :func:`cobs_encode`.

    GarbageFrame if a 0x00 is inside or the last block runs past the end;
    OversizedFrame as soon as the output would pass ``max_size`` (as the C
    decoder, which decodes byte by byte into its fixed buffer, sees it: the
    bytes of a block cut short count).
    """
    out = bytearray()
    i, n = 0, len(data)
    cap = n if max_size is None else max_size
    while i < n:
        code = data[i]
        end = i + code
        block = data[i + 1 : min(end, n)]
        if code == 0 or 0 in block:
            where = i if code == 0 else i + 1 + block.index(0)
            raise GarbageFrame(f"0x00 inside a COBS frame at byte {where}")
        if len(out) + len(block) > cap:
            raise OversizedFrame(f"over {cap} bytes after COBS")
        if end > n:
            raise GarbageFrame(f"COBS block at byte {i} needs {code - 1} bytes, {n - i - 1} left before the 0x00")
        out += block
        i = end
        if code < 255 and i < n:
            if len(out) + 1 > cap:
                raise OversizedFrame(f"over {cap} bytes after COBS")
            out.append(0)
    return bytes(out)


def max_encoded_size(max_payload: int) -> int:
    """Bytes the largest frame with ``max_payload`` bytes of payload takes on the line, delimiter included."""
    raw = max_payload + MIN_RAW
    return raw + raw // 254 + 2


# ------------------------------------------------------------------ frames


def encode_frame(topic: Topic | int, sequence: int, payload: bytes, *, max_payload: int = MAX_PAYLOAD) -> bytes:
    """One frame, COBS-encoded, ending with the 0x00 delimiter."""
    topic = Topic(topic)
    if not 0 <= sequence <= 0xFFFF:
        raise ValueError(f"sequence {sequence} is not a u16")
    payload = bytes(payload)
    if len(payload) > min(max_payload, MAX_PAYLOAD):
        raise OversizedFrame(f"payload of {len(payload)} bytes is over the cap of {min(max_payload, MAX_PAYLOAD)}")
    raw = bytes((VERSION, topic.value)) + sequence.to_bytes(2, "little") + payload
    raw += zlib.crc32(raw).to_bytes(4, "little")
    return cobs_encode(raw) + b"\x00"


def decode_frame(encoded: bytes, *, max_payload: int = MAX_PAYLOAD, accept: frozenset[Topic] = frozenset(Topic)) -> Frame:
    """Decode the bytes of one frame (without its 0x00); raise the SerialFrameError that names the fault.

    Checks in this order, as the C decoder does: size (while decoding COBS),
    COBS, length, CRC, version, topic id (and its direction, via ``accept``).
    """
    try:
        raw = cobs_decode(encoded, max_size=max_payload + MIN_RAW)
    except OversizedFrame:
        raise OversizedFrame(f"payload is over the cap of {max_payload} bytes") from None
    if len(raw) < MIN_RAW:
        raise TruncatedFrame(f"{len(raw)} bytes after COBS; a frame has at least {MIN_RAW}")
    body, stored = raw[:-CRC_BYTES], int.from_bytes(raw[-CRC_BYTES:], "little")
    computed = zlib.crc32(body)
    if stored != computed:
        raise BadCrc(f"CRC32 is 0x{stored:08x}, computed 0x{computed:08x}")
    if body[0] != VERSION:
        raise UnsupportedVersion(f"serial binding version {body[0]}; this decoder speaks {VERSION}")
    try:
        topic = Topic(body[1])
    except ValueError:
        raise UnknownTopic(f"topic id 0x{body[1]:02x} is not defined in version {VERSION}") from None
    if topic not in accept:
        raise UnknownTopic(f"topic id 0x{topic.value:02x} ({topic.channel.value}) does not flow this way")
    return Frame(topic, int.from_bytes(body[2:4], "little"), bytes(body[HEADER_BYTES:]))


class FrameDecoder:
    """Split a byte stream into frames; ``feed`` returns frames and refusals in stream order.

    A refusal is returned, not raised, so one bad frame never costs the good
    frames after it. Memory is bounded by ``max_encoded_size(max_payload)``:
    past that, bytes are counted, not kept, until the next 0x00.
    """

    def __init__(self, *, max_payload: int = MAX_PAYLOAD, accept: frozenset[Topic] = frozenset(Topic)) -> None:
        if not 0 <= max_payload <= MAX_PAYLOAD:
            raise ValueError(f"max_payload must be in [0, {MAX_PAYLOAD}]")
        self.max_payload = max_payload
        self.accept = accept
        # past this many encoded bytes the decoded frame is surely over max_payload (a COBS block of 255 bytes
        # decodes to at least 254), so the rest is counted, not kept
        self._limit = max_payload + MIN_RAW + (max_payload + MIN_RAW) // 254 + 2
        self._buffer = bytearray()
        self._skipped = 0  # bytes dropped from an oversized frame

    @property
    def pending(self) -> int:
        """Bytes of a frame not yet ended by a delimiter."""
        return len(self._buffer) + self._skipped

    def feed(self, data: bytes) -> list[Frame | SerialFrameError]:
        events: list[Frame | SerialFrameError] = []
        start = 0
        while start <= len(data):
            end = data.find(b"\x00", start)
            chunk = data[start:] if end < 0 else data[start:end]
            room = max(0, self._limit - len(self._buffer))
            self._buffer += chunk[:room]
            self._skipped += max(0, len(chunk) - room)
            if end < 0:
                break
            events += self._close()
            start = end + 1
        return events

    def flush(self) -> list[Frame | SerialFrameError]:
        """The stream ended: a frame without its delimiter is refused as truncated."""
        if not self.pending:
            return []
        size = self.pending
        self._buffer.clear()
        self._skipped = 0
        return [TruncatedFrame(f"stream ended {size} bytes into a frame, before its 0x00")]

    def _close(self) -> list[Frame | SerialFrameError]:
        encoded, skipped = bytes(self._buffer), self._skipped
        self._buffer.clear()
        self._skipped = 0
        if not encoded and not skipped:
            return []  # an empty frame: line idle or a sender's flush
        if skipped:
            return [OversizedFrame(f"{len(encoded) + skipped} encoded bytes: the payload is over the cap of {self.max_payload} bytes")]
        try:
            return [decode_frame(encoded, max_payload=self.max_payload, accept=self.accept)]
        except SerialFrameError as exc:
            return [exc]


class FrameEncoder:
    """Numbers outgoing frames: sequence 0, 1, ... per direction, wrapping at 2**16."""

    def __init__(self, *, max_payload: int = MAX_PAYLOAD, first_sequence: int = 0) -> None:
        self.max_payload = max_payload
        self.sequence = first_sequence

    def encode(self, topic: Topic | int, payload: bytes) -> bytes:
        frame = encode_frame(topic, self.sequence, payload, max_payload=self.max_payload)
        self.sequence = (self.sequence + 1) & 0xFFFF
        return frame
