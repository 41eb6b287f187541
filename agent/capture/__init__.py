"""Packet sources: capture files (pcap/pcapng) now; AF_PACKET ring and NFQUEUE later.

Every source yields ``(timestamp, linktype, frame bytes)`` tuples, in batches.
"""

from agent.capture import linktypes
from agent.capture.pcapfile import CaptureError, CaptureFile, Packet, PcapRegion, open_capture

__all__ = ["CaptureError", "CaptureFile", "Packet", "PcapRegion", "linktypes", "open_capture"]
