"""Types shared by the session scripts.

A session script is a function ``(ctx, client, client_port) -> Iterator[bytes]``
yielding complete Ethernet frames in the order one connection would put them
on the wire; the scheduler decides when each frame is emitted relative to
other sessions. Scripts draw every random choice from ``ctx.rng`` so a seed
determines the capture.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from agent.synth.content import Content
from agent.synth.frames import FrameBuilder, MacPair


@dataclass(frozen=True, slots=True)
class Client:
    """An inside host behind the gateway."""

    ip: bytes
    macs: MacPair


@dataclass(frozen=True, slots=True)
class SessionContext:
    """What every session script needs: the RNG, the shared content and the frame builder."""

    rng: random.Random
    content: Content
    builder: FrameBuilder


SessionScript = Callable[[SessionContext, Client, int], Iterator[bytes]]
