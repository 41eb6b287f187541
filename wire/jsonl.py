"""JSON-lines files of records: the agent's offline output (``replay --jsonl``) and its reader.

What: ``JsonlWriter(path_or_binary_file)`` writes one compact JSON object per line
(``separators=(",", ":")``, ``ensure_ascii=False``, UTF-8, ``\\n`` line ends);
``read_jsonl(path_or_binary_file)`` yields the records back as dicts.

Why this shape: the tools in ``../shared/tools`` and every test read this file; compact
UTF-8 keeps Chinese text readable and about a third of the size of ``\\uXXXX`` escapes.
Floats are written as the shortest text that round-trips, so a ``ts`` keeps its
microseconds exactly; ``NaN``/``Infinity`` are refused because they are not JSON.

Speed: lines are encoded by orjson (a compiled encoder, about 9x the standard library's
``json`` on these records; it was a quarter of the agent's CPU with every decoder on), and
collected in memory, handing the file one large ``write`` per ``buffer_size`` bytes (1 MiB
by default): millions of records cost only a few thousand system calls. orjson writes
NaN and infinities as ``null``; ``encode_line`` checks the floats of a record (top level
and lists, the shapes records have) and refuses those, as ``json`` did.

Limits: records are not validated unless ``validate=True`` (the agent validates where it
spools). A record whose strings hold lone surrogates cannot be UTF-8 and is refused with
``ValidationError``, as is anything ``json`` cannot encode. Data sits in the writer's buffer
until ``flush``/``close``; the file is not fsynced (durability is the spool's job). A file
object passed in is flushed but not closed by ``close``; a path is opened and closed here.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Iterator, Mapping
from types import TracebackType
from typing import IO, Any, Final, Protocol, cast

import orjson

from wire.errors import ValidationError

#: Bytes collected before one write to the file.
DEFAULT_BUFFER_SIZE: Final = 1 << 20

_dumps: Final = orjson.dumps
_OPTIONS: Final = orjson.OPT_APPEND_NEWLINE  # compact, UTF-8 (no \\u escapes), key order kept
_isfinite: Final = math.isfinite


class BinaryWritable(Protocol):
    """What the writer needs from a file object opened for binary writing."""

    def write(self, data: bytes, /) -> object: ...

    def flush(self) -> object: ...


PathLike = str | os.PathLike[str]


def encode_line(record: Mapping[str, object]) -> bytes:
    """One record as a line of compact UTF-8 JSON, ending with ``\\n``."""
    try:
        line = _dumps(record, option=_OPTIONS)
    except orjson.JSONEncodeError as e:
        if "surrogates" in str(e):
            raise ValidationError("record holds a string with a lone surrogate (not valid UTF-8)") from None
        raise ValidationError(f"record cannot be written as JSON: {e}") from None
    for v in record.values():
        t = type(v)
        if t is float:
            if not _isfinite(cast(float, v)):
                raise ValidationError(f"record cannot be written as JSON: out of range float {v!r}")
        elif t is list:
            for x in cast(list[object], v):
                if type(x) is float and not _isfinite(x):
                    raise ValidationError(f"record cannot be written as JSON: out of range float {x!r}")
    return line


class JsonlWriter:
    """Writes records to a JSON-lines file, buffered; use as a context manager or call close()."""

    def __init__(
        self,
        path_or_binary_file: PathLike | BinaryWritable,
        *,
        buffer_size: int = DEFAULT_BUFFER_SIZE,
        validate: bool = False,
    ) -> None:
        self._owned: IO[bytes] | None = None
        if isinstance(path_or_binary_file, str | os.PathLike):
            self._owned = open(path_or_binary_file, "wb")  # noqa: SIM115 - closed in close()
            self._file: BinaryWritable = self._owned
        else:
            self._file = path_or_binary_file
        self._buffer_size = buffer_size
        self._validate = validate
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._closed = False
        #: Records accepted so far (written or waiting in the buffer).
        self.records_written = 0

    def write(self, record: Mapping[str, object]) -> None:
        """Append one record (raises ``ValidationError`` if it cannot be written)."""
        if self._closed:
            raise ValueError("write to a closed JsonlWriter")
        if self._validate:
            from wire.validate import validate_record  # imported on use: its tables cost ~100 ms to build

            validate_record(record)
        line = encode_line(record)
        self._pending.append(line)
        self._pending_bytes += len(line)
        self.records_written += 1
        if self._pending_bytes >= self._buffer_size:
            self._drain()

    def write_many(self, records: Iterable[Mapping[str, object]]) -> int:
        """Append every record of ``records``; return how many were written."""
        n = 0
        for record in records:
            self.write(record)
            n += 1
        return n

    def _drain(self) -> None:
        if self._pending:
            self._file.write(b"".join(self._pending))
            self._pending.clear()
            self._pending_bytes = 0

    def flush(self) -> None:
        """Hand everything buffered to the file and flush the file object."""
        self._drain()
        self._file.flush()

    def close(self) -> None:
        """Flush, and close the file if this writer opened it. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        try:
            self.flush()
        finally:
            if self._owned is not None:
                self._owned.close()

    def __enter__(self) -> JsonlWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def read_jsonl(
    path_or_binary_file: PathLike | IO[bytes], *, validate: bool = False
) -> Iterator[dict[str, Any]]:
    """Yield the records of a JSON-lines file; blank lines are skipped.

    A line that is not valid UTF-8 JSON, or not a JSON object, raises ``ValidationError``
    naming the line number; with ``validate=True`` every record is also validated.
    """
    if isinstance(path_or_binary_file, str | os.PathLike):
        with open(path_or_binary_file, "rb") as f:
            yield from _read_lines(f, validate)
    else:
        yield from _read_lines(path_or_binary_file, validate)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _read_lines(f: Iterable[bytes], validate: bool) -> Iterator[dict[str, Any]]:
    for lineno, raw in enumerate(f, 1):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw.decode("utf-8"), parse_constant=_refuse_constant)
        except (UnicodeDecodeError, ValueError) as e:
            raise ValidationError(f"line {lineno}: not a UTF-8 JSON line: {e}") from None
        if type(record) is not dict:
            raise ValidationError(f"line {lineno}: expected a JSON object, got {type(record).__name__}")
        if validate:
            from wire.validate import validate_record

            try:
                validate_record(record)
            except ValidationError as e:
                raise ValidationError(
                    f"line {lineno}: {e.message}", record_type=e.record_type, field=e.field
                ) from None
        yield record
