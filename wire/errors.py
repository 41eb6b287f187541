"""The exceptions ``wire`` raises on bad input.

What: ``ValidationError`` for a record or envelope that breaks the contract in SCHEMA.md,
``EnvelopeError`` (a subclass) for problems with the batch container itself: size limits,
zstd, msgpack, envelope keys, the schema version.

Why one hierarchy: the collector's ingest handler catches ``ValidationError`` once and turns
it into a 4xx answer; the message is meant to be shown to the agent's operator, so it names
the record type, the field and (inside a batch) the record's index.

Limits: messages never contain the value of a free-text field (it may be personal data that
must not reach a log); they show types, lengths, and for format errors (addresses, enums) a
short, truncated repr of the offending value.
"""

from __future__ import annotations


class ValidationError(ValueError):
    """A record or a batch does not conform to the wire schema.

    Attributes (``None`` when not applicable): ``record_type``, ``field`` and ``index``
    (the record's position in a batch).
    """

    def __init__(
        self,
        message: str,
        *,
        record_type: str | None = None,
        field: str | None = None,
        index: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.record_type = record_type
        self.field = field
        self.index = index

    def at_index(self, index: int) -> ValidationError:
        """A copy of this error placed at ``records[index]`` of a batch (same class)."""
        err = type(self)(
            f"records[{index}]: {self.message}",
            record_type=self.record_type,
            field=self.field,
            index=index,
        )
        return err


class EnvelopeError(ValidationError):
    """The batch container (size, zstd frame, msgpack, envelope keys, version) is invalid."""
