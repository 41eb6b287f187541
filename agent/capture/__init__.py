"""Packet sources: capture files (``pcapfile``), the live AF_PACKET TPACKET_V3 ring
(``afpacket``, with ``bpf`` filters and the fanout ``workers``), NFQUEUE (``agent.enforce``).

Every source yields ``(timestamp, linktype, frame bytes)`` tuples, in batches. The live
modules are Linux-only and are imported by their users, not here.
"""

from agent.capture import linktypes
from agent.capture.pcapfile import CaptureError, CaptureFile, Packet, PcapRegion, open_capture

__all__ = ["CaptureError", "CaptureFile", "Packet", "PcapRegion", "linktypes", "open_capture"]
