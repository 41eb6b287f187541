"""Walks the structure of zstd frames (RFC 8878 section 3.1.1) without decompressing them.

What: ``scan_frames(data)`` checks that ``data`` is a sequence of one or more complete zstd
frames with nothing before, between or after them, and returns a ``FrameInfo`` per frame
(window size, declared content size if any, block count, checksum flag, end offset).

Why: the ``zstandard`` streaming readers silently return a short output for a truncated
frame and ignore bytes after the last frame, and they learn a frame's size only by
decoding it. Walking the frame and block headers first costs a few microseconds per
128 KiB block and lets ``wire.envelope`` refuse truncated bodies, trailing garbage,
dictionaries, skippable frames and oversized declared content sizes before decoding a
single byte; the bounded decompression that follows is then the only remaining defence
needed against bombs.

Limits: only headers are checked; the compressed block contents (and the checksum, if any)
are verified by the decoder itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from wire.errors import EnvelopeError

MAGIC: Final = 0xFD2FB528
_SKIPPABLE_MASK: Final = 0xFFFFFFF0
_SKIPPABLE_MAGIC: Final = 0x184D2A50
#: Largest block content a block may regenerate (RFC 8878 3.1.1.2.3, Block_Maximum_Size).
BLOCK_MAX_SIZE: Final = 128 * 1024
_BLOCK_RAW, _BLOCK_RLE, _BLOCK_COMPRESSED = 0, 1, 2
_DID_SIZES: Final = (0, 1, 2, 4)
_FCS_SIZES: Final = (0, 2, 4, 8)


@dataclass(frozen=True, slots=True)
class FrameInfo:
    """Header facts of one zstd frame found by ``scan_frames``."""

    window_size: int
    content_size: int | None  # None when the header does not declare it
    blocks: int
    checksum: bool
    end: int  # offset just past the frame in the scanned data


def _frame_header(data: bytes, pos: int) -> tuple[int, int | None, bool, int]:
    """Parse the frame header at ``pos`` (just past the magic). Returns
    (window_size, content_size, has_checksum, position of the first block)."""
    if pos >= len(data):
        raise EnvelopeError("zstd frame is truncated in its header")
    fhd = data[pos]
    pos += 1
    fcs_flag, single_segment, reserved = fhd >> 6, (fhd >> 5) & 1, (fhd >> 3) & 1
    checksum, did_flag = bool((fhd >> 2) & 1), fhd & 3
    if reserved:
        raise EnvelopeError("zstd frame header has its reserved bit set")
    if did_flag:
        raise EnvelopeError("zstd frames with a dictionary are not accepted")
    window_size = 0
    if not single_segment:
        if pos >= len(data):
            raise EnvelopeError("zstd frame is truncated in its header")
        wd = data[pos]
        pos += 1
        exponent, mantissa = wd >> 3, wd & 7
        window_base = 1 << (10 + exponent)
        window_size = window_base + (window_base // 8) * mantissa
    fcs_size = 1 if (fcs_flag == 0 and single_segment) else _FCS_SIZES[fcs_flag]
    content_size: int | None = None
    if fcs_size:
        if pos + fcs_size > len(data):
            raise EnvelopeError("zstd frame is truncated in its header")
        content_size = int.from_bytes(data[pos : pos + fcs_size], "little")
        if fcs_size == 2:
            content_size += 256
        pos += fcs_size
    if single_segment:
        window_size = content_size or 0
    return window_size, content_size, checksum, pos


def scan_frames(data: bytes, max_frames: int = 1 << 16) -> list[FrameInfo]:
    """Check that ``data`` is one or more complete zstd frames and nothing else.

    Raises ``EnvelopeError`` naming the problem: not zstd, skippable frame, dictionary,
    reserved bits or block type, truncation, or bytes after the last frame.
    """
    frames: list[FrameInfo] = []
    pos, n = 0, len(data)
    if n < 4:
        raise EnvelopeError("batch body is not a zstd frame (shorter than the magic number)")
    while pos < n:
        if len(frames) >= max_frames:
            raise EnvelopeError(f"batch body has more than {max_frames} zstd frames")
        if pos + 4 > n:
            raise EnvelopeError(f"batch body has {n - pos} stray bytes after its last zstd frame")
        magic = int.from_bytes(data[pos : pos + 4], "little")
        if magic != MAGIC:
            if (magic & _SKIPPABLE_MASK) == _SKIPPABLE_MAGIC:
                raise EnvelopeError("skippable zstd frames are not accepted")
            if pos == 0:
                raise EnvelopeError("batch body is not a zstd frame (bad magic number)")
            raise EnvelopeError(f"batch body has bytes after its last zstd frame (at offset {pos})")
        window_size, content_size, checksum, pos = _frame_header(data, pos + 4)
        blocks = 0
        while True:
            if pos + 3 > n:
                raise EnvelopeError("zstd frame is truncated (block header missing)")
            header = int.from_bytes(data[pos : pos + 3], "little")
            pos += 3
            last, block_type, size = header & 1, (header >> 1) & 3, header >> 3
            if block_type == 3:
                raise EnvelopeError("zstd frame uses the reserved block type")
            if size > BLOCK_MAX_SIZE:
                raise EnvelopeError("zstd block is larger than 128 KiB")
            pos += 1 if block_type == _BLOCK_RLE else size
            if pos > n:
                raise EnvelopeError("zstd frame is truncated (block cut short)")
            blocks += 1
            if last:
                break
        if checksum:
            pos += 4
            if pos > n:
                raise EnvelopeError("zstd frame is truncated (checksum missing)")
        frames.append(FrameInfo(window_size, content_size, blocks, checksum, pos))
    return frames
