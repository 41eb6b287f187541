"""The batch envelope: how the agent's uploader carries records to the collector.

What: ``encode_batch`` builds the bytes of one batch; ``decode_batch`` turns untrusted bytes
back into a validated ``Batch``, refusing anything outside the format below or its limits.

Format (schema 1.x), complete enough to write another uploader from:

1. Build one msgpack map (MessagePack spec, "new" format with str8 and UTF-8 strings) with
   exactly these six keys, all msgpack ``str``, in any order:

   =============  ==========  ============================================================
   key            msgpack     value
   =============  ==========  ============================================================
   ``v``          str         schema version ``"major.minor"``, currently ``"1.1"``; the
                              collector accepts any minor of its major and refuses others
   ``agent_id``   str         the agent's id, 1..256 characters (the collector takes the
                              agent's identity from its credential and may compare)
   ``unit_id``    str         the unit (site) the agent belongs to, 1..256 characters
   ``batch_seq``  int         0..2**63-1, unique per agent; ``(agent_id, batch_seq)`` is the
                              idempotency key: a re-sent batch reuses its number
   ``created``    float64     seconds since the Unix epoch when the batch was built
                              (an int is accepted), within 0..4102444800
   ``records``    array       0..50000 records, each a map as described in SCHEMA.md
   =============  ==========  ============================================================

   A record is a msgpack map with ``str`` keys, each at most once: ``type``, ``ts`` and the
   other fields of its type (a map holding a key twice, the envelope or a record, is
   refused: readers disagree on which value counts, and a record's bytes are stored as
   sent). Values are ``nil``, ``bool``, ``int`` (fitting int64; ports, VLAN ids and counters
   have tighter ranges), ``float`` (float64 preferred; float32 accepted; NaN and infinities
   refused; an int is accepted where a float is expected), ``str`` (valid UTF-8, no NUL), or an
   ``array`` of ``str`` or of numbers. No ``bin``, no ``ext`` (so no msgpack timestamps),
   no nested maps. Every field SCHEMA.md lists for the type is present (``nil`` when
   unknown) except the flow id of ``weird`` and ``alert`` records, which may be absent;
   unknown fields are refused. Limits: strings 8192 characters, lists 1024 items of at most
   1024 characters, 64 keys per record (see ``wire.limits`` and ``wire.validate``).

2. Compress the msgpack bytes with zstd (RFC 8878): one frame, or several concatenated
   frames, and nothing else (no skippable frames, no bytes before or after); content size
   in the header optional; checksum optional; no dictionary; a window of at most 8 MiB
   (levels 1..19 without long-distance matching). The body is at most 8 MiB compressed and
   32 MiB decompressed. No bytes may follow the msgpack map.

How it is sent (HTTP path, authentication, the acknowledgement) is the collector's and the
uploader's business; this module only defines the body. A batch's content, for idempotency,
is its records' msgpack bytes as sent (``records_digest``): a batch re-sent under its
``batch_seq`` must carry its records in the same bytes (``created`` may change), or the
collector refuses it as another batch under a used number.

Why these choices: msgpack is compact and fast to parse with hard size limits; zstd
compresses repetitive records ~10x at low CPU. The decoder is written for hostile input:
the compressed size is checked before anything else; the frame and block headers are
walked (``wire.zstdframe``) so truncation, trailing bytes, dictionaries, big windows and big
declared sizes are refused before decoding; decompression is streamed 1 MiB at a time and
stops as soon as the output passes the limit, whether or not the frame declares its content
size, so no zstd bomb can make it allocate much more than the limit; msgpack is parsed with
per-container and per-string limits; and every record is validated.
"""

from __future__ import annotations

import hashlib
import io
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

import msgpack
import zstandard

from wire.errors import EnvelopeError, ValidationError
from wire.limits import (
    MAX_BATCH_COMPRESSED,
    MAX_BATCH_DECOMPRESSED,
    MAX_BATCH_RECORDS,
    MAX_FIELDS,
    MAX_LIST_LEN,
    MAX_STRING_LEN,
    MAX_ZSTD_WINDOW,
)
from wire.validate import Batch, validate_batch
from wire.version import SCHEMA_VERSION
from wire.zstdframe import MAGIC, scan_frames

#: The four bytes every zstd frame starts with (magic number 0xFD2FB528, little endian).
ZSTD_MAGIC: Final = MAGIC.to_bytes(4, "little")
#: Default compression level: fast, and ~10x on typical record batches.
DEFAULT_LEVEL: Final = 3
#: Decompression is read in pieces of this size, so a bomb stops within one piece of the limit.
_READ_CHUNK: Final = 1 << 20
#: Envelope keys (6) and record keys share msgpack's map length limit.
_MAX_MAP_LEN: Final = max(MAX_FIELDS, 6)
#: A str may hold up to 4 UTF-8 bytes per character; the validator then counts characters.
_MAX_STR_BYTES: Final = 4 * MAX_STRING_LEN
#: First bytes of a msgpack array: fixarray (0x90-0x9f), array 16, array 32.
_ARRAY_HEADS: Final = frozenset(range(0x90, 0xA0)) | {0xDC, 0xDD}


def encode_batch(
    agent_id: str,
    unit_id: str,
    batch_seq: int,
    records: Iterable[Mapping[str, object]],
    created: float | None = None,
    *,
    level: int = DEFAULT_LEVEL,
    validate: bool = True,
) -> bytes:
    """Build the zstd-compressed msgpack body of one batch.

    ``created`` defaults to the current time. With ``validate`` (the default) the envelope and
    every record are checked first, so a batch this returns is one the collector accepts;
    an uploader that validated its records when spooling them may pass ``validate=False``.
    Raises ``ValidationError`` (``EnvelopeError`` for envelope fields).
    """
    envelope: dict[str, Any] = {
        "v": SCHEMA_VERSION,
        "agent_id": agent_id,
        "unit_id": unit_id,
        "batch_seq": batch_seq,
        "created": time.time() if created is None else created,
        "records": list(records),
    }
    if validate:
        validate_batch(envelope, max_records=MAX_BATCH_RECORDS)
    try:
        payload = msgpack.packb(envelope, use_bin_type=True)
    except (TypeError, ValueError, OverflowError) as e:  # only reachable with validate=False
        raise EnvelopeError(f"batch cannot be encoded as msgpack: {e}") from None
    return bytes(zstandard.ZstdCompressor(level=level).compress(payload))


def decompress_bounded(data: bytes, max_decompressed: int = MAX_BATCH_DECOMPRESSED) -> bytes:
    """Decompress zstd ``data``, refusing output beyond ``max_decompressed`` bytes.

    First walks the frame headers (``wire.zstdframe``): truncated frames, trailing bytes,
    dictionaries, windows over ``MAX_ZSTD_WINDOW`` and declared sizes over the limit are
    refused without decoding. Then streams the frames (content size declared or not) and
    stops one chunk after the limit is crossed, so memory stays near
    ``max_decompressed + 1 MiB`` for any input.
    """
    frames = scan_frames(data)
    declared = 0
    for frame in frames:
        if frame.window_size > MAX_ZSTD_WINDOW:
            raise EnvelopeError(
                f"zstd frame asks for a {frame.window_size}-byte window (at most {MAX_ZSTD_WINDOW})"
            )
        declared += frame.content_size or 0
    if declared > max_decompressed:
        raise EnvelopeError(f"batch body decompresses to more than {max_decompressed} bytes")
    dctx = zstandard.ZstdDecompressor(max_window_size=MAX_ZSTD_WINDOW)
    out = bytearray()
    try:
        with dctx.stream_reader(io.BytesIO(data), read_across_frames=True) as reader:
            while True:
                chunk = reader.read(_READ_CHUNK)
                if not chunk:
                    break
                out += chunk
                if len(out) > max_decompressed:
                    raise EnvelopeError(
                        f"batch body decompresses to more than {max_decompressed} bytes"
                    )
    except zstandard.ZstdError as e:
        raise EnvelopeError(f"batch body is not valid zstd: {e}") from None
    return bytes(out)


def _limits(max_records: int) -> dict[str, Any]:
    """msgpack's parsing options: str as UTF-8, lists, str keys, and a limit on everything."""
    return {
        "raw": False,
        "use_list": True,
        "strict_map_key": True,
        "max_str_len": _MAX_STR_BYTES,
        "max_bin_len": 0,
        "max_ext_len": 0,
        "max_array_len": max(max_records, MAX_LIST_LEN),
        "max_map_len": _MAX_MAP_LEN,
    }


def _unique_map(pairs: list[tuple[Any, Any]]) -> dict[Any, Any]:
    """The reference parser's maps: msgpack would keep a repeated key's last value; refused.

    It raises the `EnvelopeError` itself (a class of an interpreted module): an exception
    class of this compiled module, caught with ``except ... as``, made mypyc's code check
    every exception reaching that clause against it (a TypeError for msgpack's ValueError)."""
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[Any] = set()
        for key, _ in pairs:
            if key in seen:
                shown = repr(key)
                shown = shown if len(shown) <= 60 else shown[:57] + "..."
                raise EnvelopeError(f"batch payload has a map holding the key {shown} twice")
            seen.add(key)
    return out


def unpack_envelope(payload: bytes, max_records: int = MAX_BATCH_RECORDS) -> object:
    """Parse the msgpack payload with limits on every container and string, refusing a map
    that holds a key twice; no validation. The reference parser: it words every refusal."""
    try:
        return msgpack.unpackb(payload, object_pairs_hook=_unique_map, **_limits(max_records))
    except EnvelopeError:
        raise  # (a key twice: worded already; it is a ValueError, so before the clause below)
    except msgpack.ExtraData:
        raise EnvelopeError("batch payload has bytes after the msgpack map") from None
    except (ValueError, TypeError, OverflowError, msgpack.UnpackException) as e:
        # ValueError covers msgpack's FormatError, StackError, OutOfData-style "incomplete
        # input", invalid UTF-8 (UnicodeDecodeError) and the max_*_len limits.
        raise EnvelopeError(f"batch payload is not valid msgpack: {type(e).__name__}: {e}") from None


def _unpacker(payload: bytes, max_records: int) -> Any:
    up = msgpack.Unpacker(None, max_buffer_size=max(len(payload), 1), **_limits(max_records))
    up.feed(payload)
    return up


def _map_len(payload: bytes, at: int) -> int:
    """The entry count of the msgpack map whose header is at ``payload[at]`` (-1: not a map)."""
    head = payload[at]
    if head & 0xF0 == 0x80:  # fixmap
        return head & 0x0F
    if head == 0xDE:  # map 16
        return (payload[at + 1] << 8) | payload[at + 2]
    if head == 0xDF:  # map 32
        return int.from_bytes(payload[at + 1 : at + 5], "big")
    return -1


def _unpack_with_spans(payload: bytes, max_records: int) -> tuple[dict[str, Any], list[int]] | None:
    """The envelope map and the offsets bounding each record in ``payload`` (record ``i`` is
    ``payload[offsets[i]:offsets[i + 1]]``), or None for anything but a well-formed map with
    one ``records`` array, each key once in it and in every record: the caller then parses
    with ``unpack_envelope``, whose errors are the reference. (A record map with a key twice
    makes a dict with fewer entries than its header counts: one comparison per record.)"""
    try:
        up = _unpacker(payload, max_records)
        envelope: dict[str, Any] = {}
        offsets: list[int] | None = None
        for _ in range(up.read_map_header()):
            key = up.unpack()
            if type(key) is not str or key in envelope:
                return None
            if key == "records" and payload[up.tell()] in _ARRAY_HEADS:
                count = up.read_array_header()
                if count > max_records:
                    return None
                unpack, tell = up.unpack, up.tell
                offsets = [tell()]
                records = []
                for _ in range(count):
                    records.append(unpack())
                    offsets.append(tell())
                envelope[key] = records
            else:
                envelope[key] = up.unpack()
        if offsets is None or up.tell() != len(payload):
            return None
        for rec, at in zip(envelope["records"], offsets, strict=False):
            if type(rec) is dict and len(rec) != _map_len(payload, at):
                return None
        return envelope, offsets
    except (ValueError, TypeError, OverflowError, IndexError, msgpack.UnpackException):
        return None


def _payload(data: bytes | bytearray | memoryview, max_compressed: int, max_decompressed: int) -> bytes:
    """The decompressed msgpack of a body, after its type and compressed size are checked."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise EnvelopeError(f"batch body must be bytes, got {type(data).__name__}")
    if len(data) > max_compressed:
        raise EnvelopeError(f"batch body is larger than {max_compressed} bytes ({len(data)})")
    return decompress_bounded(bytes(data), max_decompressed)


def decode_batch_spans(
    data: bytes | bytearray | memoryview,
    max_compressed: int = MAX_BATCH_COMPRESSED,
    max_decompressed: int = MAX_BATCH_DECOMPRESSED,
    max_records: int = MAX_BATCH_RECORDS,
) -> tuple[Batch, bytes, list[int] | None]:
    """``decode_batch`` (records validated), plus the decompressed msgpack payload and the
    offsets bounding each record's bytes in it (``None`` when the payload was not parsed
    that way): a store can keep a record's bytes as they came instead of packing it again.
    A record's bytes decode to exactly the validated record (same msgpack, same parser)."""
    payload = _payload(data, max_compressed, max_decompressed)
    parsed = _unpack_with_spans(payload, max_records)
    if parsed is not None:
        envelope, offsets = parsed
        try:
            return validate_batch(envelope, max_records=max_records), payload, offsets
        except ValidationError:
            pass  # worded by the reference below (it may find a key twice in a nested map first)
    return validate_batch(unpack_envelope(payload, max_records), max_records=max_records), payload, None


def records_digest(records: Sequence[Mapping[str, Any]], payload: bytes | None = None,
                   offsets: Sequence[int] | None = None) -> bytes:
    """The SHA-256 of a batch's content: its records' msgpack bytes as they came
    (``payload[offsets[0]:offsets[-1]]`` of ``decode_batch_spans``), else the records packed
    as ``encode_batch`` packs them (the same bytes for a batch it built). The envelope is
    left out: ``created`` changes when an agent rebuilds a batch to send it again."""
    if payload is None or offsets is None:
        payload, offsets = packed_records(records)
    return hashlib.sha256(memoryview(payload)[offsets[0] : offsets[-1]]).digest()


def packed_records(records: Sequence[Mapping[str, Any]]) -> tuple[bytes, list[int]]:
    """The records packed one after another as ``encode_batch`` packs them, and the offsets
    bounding each (``decode_batch_spans``' shape: record ``i`` is ``payload[offsets[i]:offsets[i + 1]]``)."""
    pack = msgpack.Packer(use_bin_type=True).pack
    parts = [pack(rec if type(rec) is dict else dict(rec)) for rec in records]
    offsets = [0]
    for part in parts:
        offsets.append(offsets[-1] + len(part))
    return b"".join(parts), offsets


def decode_batch(
    data: bytes | bytearray | memoryview,
    max_compressed: int = MAX_BATCH_COMPRESSED,
    max_decompressed: int = MAX_BATCH_DECOMPRESSED,
    max_records: int = MAX_BATCH_RECORDS,
    *,
    validate_records: bool = True,
) -> Batch:
    """Decode and validate one batch body received from an (untrusted) agent.

    Raises ``EnvelopeError`` for size, zstd, msgpack, envelope or version problems and
    ``ValidationError`` (message ``records[i]: ...``) for the first invalid record. With
    ``validate_records=False`` records are left for the caller to check one by one with
    ``wire.validate_record`` (e.g. to store the good ones and count the bad).
    """
    payload = _payload(data, max_compressed, max_decompressed)
    envelope = unpack_envelope(payload, max_records)
    return validate_batch(envelope, max_records=max_records, validate_records=validate_records)

