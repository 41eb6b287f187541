"""Durable local spool: every record is stored here before it is uploaded (see ``store``)."""

from agent.spool.store import Batch, Spool, SpoolCorrupt, SpoolError, SpoolStats

__all__ = ["Batch", "Spool", "SpoolCorrupt", "SpoolError", "SpoolStats"]
