"""Tests for agent.capture.pcapfile: classic pcap and pcapng reading, damage reporting, corpus.

Capture files are built byte by byte with struct in the tests themselves, so every field
(byte order, resolution, block lengths) is under the test's control; dpkt's writers and
reader serve as an independent second opinion.
"""

from __future__ import annotations

import pickle
import shutil
import struct
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import dpkt
import pytest

from agent.capture import CaptureError, CaptureFile, Packet, linktypes, open_capture

# ---------------------------------------------------------------------------------------------
# builders
# ---------------------------------------------------------------------------------------------

USEC_MAGIC = 0xA1B2C3D4
NSEC_MAGIC = 0xA1B23C4D

# (seconds, fraction in the file's units, frame bytes, original length or None = len(frame))
Rec = tuple[int, int, bytes, int | None]

RECORDS: list[Rec] = [
    (1_700_000_000, 1, b"\x01" * 60, None),
    (1_700_000_000, 999_999, b"\x02" * 14, None),
    (1_700_000_001, 0, b"", None),
    (1_700_000_002, 123_456, b"\x03" * 40, 1514),  # snapped: caplen < original length
    (4_000_000_000, 500_000, bytes(range(256)), None),  # beyond 2**31: seconds are unsigned
]


def pcap_bytes(
    records: Sequence[Rec],
    *,
    order: str = "<",
    nano: bool = False,
    linktype: int = linktypes.ETHERNET,
    snaplen: int = 65535,
) -> bytes:
    """A classic pcap file holding ``records``."""
    out = [struct.pack(order + "IHHiIII", NSEC_MAGIC if nano else USEC_MAGIC, 2, 4, 0, 0, snaplen, linktype)]
    for sec, frac, data, wirelen in records:
        out.append(
            struct.pack(order + "IIII", sec, frac, len(data), len(data) if wirelen is None else wirelen)
        )
        out.append(data)
    return b"".join(out)


def record_offsets(records: Sequence[Rec]) -> list[int]:
    """Start offset of each record in pcap_bytes(records), plus the end of file."""
    offs = [24]
    for _, _, data, _ in records:
        offs.append(offs[-1] + 16 + len(data))
    return offs


def pad4(b: bytes) -> bytes:
    return b + b"\0" * (-len(b) % 4)


def ng_block(order: str, btype: int, body: bytes) -> bytes:
    body = pad4(body)
    length = 12 + len(body)
    return struct.pack(order + "II", btype, length) + body + struct.pack(order + "I", length)


def ng_option(order: str, code: int, value: bytes) -> bytes:
    return struct.pack(order + "HH", code, len(value)) + pad4(value)


def ng_shb(order: str, options: bytes = b"") -> bytes:
    return ng_block(order, 0x0A0D0D0A, struct.pack(order + "IHHq", 0x1A2B3C4D, 1, 0, -1) + options)


def ng_idb(
    order: str,
    linktype: int,
    *,
    snaplen: int = 0,
    tsresol: int | None = None,
    tsoffset: int | None = None,
) -> bytes:
    opts = b""
    if tsresol is not None:
        opts += ng_option(order, 9, bytes([tsresol]))
    if tsoffset is not None:
        opts += ng_option(order, 14, struct.pack(order + "q", tsoffset))
    if opts:
        opts += ng_option(order, 0, b"")  # opt_endofopt
    return ng_block(order, 1, struct.pack(order + "HHI", linktype, 0, snaplen) + opts)


def ng_epb(order: str, ifid: int, units: int, data: bytes, wirelen: int | None = None) -> bytes:
    head = struct.pack(
        order + "IIIII",
        ifid,
        units >> 32,
        units & 0xFFFFFFFF,
        len(data),
        len(data) if wirelen is None else wirelen,
    )
    # An option after the data, as real writers add (epb_flags): the reader must not take it as data.
    return ng_block(order, 6, head + pad4(data) + ng_option(order, 2, b"\0\0\0\0") + ng_option(order, 0, b""))


def ng_spb(order: str, data: bytes, wirelen: int | None = None) -> bytes:
    return ng_block(order, 3, struct.pack(order + "I", len(data) if wirelen is None else wirelen) + data)


def ng_pb(order: str, ifid: int, units: int, data: bytes) -> bytes:
    head = struct.pack(order + "HHIIII", ifid, 0, units >> 32, units & 0xFFFFFFFF, len(data), len(data))
    return ng_block(order, 2, head + data)


def write(tmp_path: Path, data: bytes, name: str = "t.pcap") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def read_all(path: Path) -> tuple[list[Packet], CaptureError | None, CaptureFile]:
    """Every packet the reader yields before it stops, and the error it stopped with (if any)."""
    got: list[Packet] = []
    cf = CaptureFile(path)
    try:
        for pkt in cf:
            got.append(pkt)
    except CaptureError as exc:
        return got, exc, cf
    finally:
        cf.close()
    return got, None, cf


# ---------------------------------------------------------------------------------------------
# classic pcap
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("order", ["<", ">"], ids=["little-endian", "big-endian"])
@pytest.mark.parametrize("nano", [False, True], ids=["usec", "nsec"])
def test_classic_both_byte_orders_and_resolutions(tmp_path: Path, order: str, nano: bool) -> None:
    div = 1_000_000_000 if nano else 1_000_000
    records = [(s, f * 1000 + 7 if nano else f, d, w) for s, f, d, w in RECORDS]
    path = write(tmp_path, pcap_bytes(records, order=order, nano=nano, linktype=linktypes.RAW))
    with open_capture(path) as cf:
        assert cf.format == "pcap"
        assert cf.linktype == linktypes.RAW
        assert cf.offset == 24
        assert cf.size == path.stat().st_size
        got = list(cf)
        assert cf.offset == cf.size
        counters = cf.counters
    assert [ts for ts, _, _ in got] == [sec + frac / div for sec, frac, _, _ in records]
    assert [frame for _, _, frame in got] == [data for _, _, data, _ in records]
    assert {lt for _, lt, _ in got} == {linktypes.RAW}
    assert counters["packets"] == len(records)
    assert counters["bytes"] == sum(len(d) for _, _, d, _ in records)
    assert counters["truncated_records"] == 1  # the snapped one: counted, not an error


def test_classic_timestamp_keeps_exact_microseconds(tmp_path: Path) -> None:
    records: list[Rec] = [
        (1_700_000_000 + i, usec, b"x", None) for i, usec in enumerate(range(0, 1_000_000, 999))
    ]
    path = write(tmp_path, pcap_bytes(records))
    with CaptureFile(path) as cf:
        got = list(cf)
    # Formatting to 6 places gives back exactly the stored seconds and microseconds.
    assert [f"{ts:.6f}" for ts, _, _ in got] == [f"{s}.{u:06d}" for s, u, _, _ in records]


def test_classic_header_only_file_yields_nothing(tmp_path: Path) -> None:
    path = write(tmp_path, pcap_bytes([]))
    with CaptureFile(path) as cf:
        assert list(cf) == []
        assert list(cf.batches()) == []
        assert cf.offset == 24


def test_batches_sizes_and_order(tmp_path: Path) -> None:
    path = write(tmp_path, pcap_bytes(RECORDS))
    with CaptureFile(path) as cf:
        batches = list(cf.batches(2))
    assert [len(b) for b in batches] == [2, 2, 1]
    assert [frame for b in batches for _, _, frame in b] == [d for _, _, d, _ in RECORDS]


def test_batches_rejects_non_positive_size(tmp_path: Path) -> None:
    with CaptureFile(write(tmp_path, pcap_bytes(RECORDS))) as cf, pytest.raises(ValueError):
        cf.batches(0)


def test_iteration_resumes_like_a_file(tmp_path: Path) -> None:
    path = write(tmp_path, pcap_bytes(RECORDS))
    with CaptureFile(path) as cf:
        first = next(iter(cf.batches(2)))
        rest = list(cf)
        assert len(first) + len(rest) == len(RECORDS)
        assert list(cf) == []


def test_linktype_fcs_bits_are_masked(tmp_path: Path) -> None:
    # Upper bits of the classic link-type field say "FCS present, 4 bytes": not part of the type.
    path = write(tmp_path, pcap_bytes(RECORDS[:1], linktype=linktypes.ETHERNET | 0x14000000))
    with CaptureFile(path) as cf:
        assert cf.linktype == linktypes.ETHERNET


def test_dpkt_written_files_read_back(tmp_path: Path) -> None:
    path = tmp_path / "dpkt.pcap"
    frames = [bytes([i]) * (i + 1) for i in range(20)]
    with open(path, "wb") as f:
        w = dpkt.pcap.Writer(f, nano=True, linktype=linktypes.LINUX_SLL)
        for i, frame in enumerate(frames):
            w.writepkt(frame, ts=1_700_000_000 + i / 8)
    with CaptureFile(path) as cf:
        got = list(cf)
    assert [frame for _, _, frame in got] == frames
    assert [ts for ts, _, _ in got] == [1_700_000_000 + i / 8 for i in range(20)]
    assert {lt for _, lt, _ in got} == {linktypes.LINUX_SLL}


# ---------------------------------------------------------------------------------------------
# pcapng
# ---------------------------------------------------------------------------------------------


def test_pcapng_interfaces_resolutions_and_block_types(tmp_path: Path) -> None:
    o = "<"
    sec = 1_700_000_000
    data = [b"eth0" * 15, b"\x45raw", b"sll!" * 4, b"spb-frame-longer-than-snaplen", b"old packet block"]
    blob = b"".join(
        [
            ng_shb(o, ng_option(o, 2, b"test hardware") + ng_option(o, 0, b"")),
            ng_idb(o, linktypes.ETHERNET, snaplen=8),  # default resolution: microseconds
            ng_idb(o, linktypes.RAW, tsresol=9),  # decimal: nanoseconds
            ng_idb(o, linktypes.LINUX_SLL, tsresol=0x80 | 20, tsoffset=1_000),  # binary: 2**-20 s, +1000 s
            ng_epb(o, 0, sec * 10**6 + 250_000, data[0], wirelen=1514),
            ng_block(o, 4, b"\0\0\0\0"),  # name resolution block: skipped
            ng_epb(o, 1, sec * 10**9 + 123_456_789, data[1]),
            ng_block(o, 5, struct.pack(o + "III", 0, 0, 0)),  # interface statistics: skipped
            ng_epb(o, 2, sec * 2**20 + 2**19, data[2]),
            ng_block(o, 0x40000BAD, b"\0\0\0\x01custom"),  # custom block: skipped
            ng_spb(o, data[3][:8], wirelen=len(data[3])),  # cut to interface 0's snaplen (8)
            ng_pb(o, 1, (sec + 5) * 10**9, data[4]),
        ]
    )
    path = write(tmp_path, blob, "t.pcapng")
    with CaptureFile(path) as cf:
        assert cf.format == "pcapng"
        assert cf.linktype is None
        got = list(cf)
        counters = cf.counters
        assert cf.offset == cf.size
    assert got == [
        (sec + 0.25, linktypes.ETHERNET, data[0]),
        (sec + 123_456_789 / 10**9, linktypes.RAW, data[1]),
        (sec + 1_000 + 0.5, linktypes.LINUX_SLL, data[2]),
        (sec + 1_000 + 0.5, linktypes.ETHERNET, data[3][:8]),  # SPB: previous packet's time
        (sec + 5.0, linktypes.RAW, data[4]),
    ]
    assert counters["packets"] == 5
    assert counters["bytes"] == sum(len(f) for _, _, f in got)
    assert counters["interfaces"] == 3
    assert counters["sections"] == 1
    assert counters["blocks_skipped"] == 3
    assert counters["spb_packets"] == 1
    assert counters["truncated_records"] == 2  # the EPB with wirelen 1514 and the snapped SPB


def test_pcapng_big_endian_and_multiple_sections(tmp_path: Path) -> None:
    sec = 1_600_000_000
    blob = b"".join(
        [
            ng_shb(">"),
            ng_idb(">", linktypes.NULL),
            ng_idb(">", linktypes.IPV6, tsresol=3),  # milliseconds
            ng_epb(">", 1, sec * 1000 + 7, b"v6"),
            ng_epb(">", 0, sec * 10**6 + 1, b"null"),
            # Second section, other byte order: interface numbering starts again.
            ng_shb("<"),
            ng_idb("<", linktypes.NFLOG),
            ng_epb("<", 0, (sec + 1) * 10**6, b"nflog"),
            ng_shb(">"),
            ng_idb(">", linktypes.LINUX_SLL2, tsresol=0),  # whole seconds
            ng_spb(">", b"spb"),
            ng_epb(">", 0, sec + 2, b"sll2"),
        ]
    )
    path = write(tmp_path, blob, "t.pcapng")
    with CaptureFile(path) as cf:
        got = list(cf.batches(2))
        counters = cf.counters
    assert [p for b in got for p in b] == [
        (sec + 0.007, linktypes.IPV6, b"v6"),
        (sec + 0.000001, linktypes.NULL, b"null"),
        (sec + 1.0, linktypes.NFLOG, b"nflog"),
        (sec + 1.0, linktypes.LINUX_SLL2, b"spb"),
        (sec + 2.0, linktypes.LINUX_SLL2, b"sll2"),
    ]
    assert counters["sections"] == 3
    assert counters["interfaces"] == 4


def test_pcapng_same_instant_same_float_as_classic(tmp_path: Path) -> None:
    instants = [(1_700_000_000 + i * 13, (i * 104_729) % 1_000_000) for i in range(200)]
    classic = write(tmp_path, pcap_bytes([(s, u, b"x", None) for s, u in instants]))
    ng = write(
        tmp_path,
        ng_shb("<") + ng_idb("<", 1) + b"".join(ng_epb("<", 0, s * 10**6 + u, b"x") for s, u in instants),
        "t.pcapng",
    )
    with CaptureFile(classic) as a, CaptureFile(ng) as b:
        assert [ts for ts, _, _ in a] == [ts for ts, _, _ in b]


def test_dpkt_written_pcapng_reads_back(tmp_path: Path) -> None:
    path = tmp_path / "dpkt.pcapng"
    frames = [bytes([i]) * (i + 3) for i in range(10)]
    with open(path, "wb") as f:
        w = dpkt.pcapng.Writer(f, linktype=linktypes.ETHERNET)
        for i, frame in enumerate(frames):
            w.writepkt(frame, ts=1_700_000_000 + i / 4)
    with CaptureFile(path) as cf:
        got = list(cf)
    assert [(ts, lt, fr) for ts, lt, fr in got] == [
        (1_700_000_000 + i / 4, linktypes.ETHERNET, frame) for i, frame in enumerate(frames)
    ]


# ---------------------------------------------------------------------------------------------
# damage: errors name the file and offset, and come after every good packet
# ---------------------------------------------------------------------------------------------


def test_truncated_record_header(tmp_path: Path) -> None:
    offs = record_offsets(RECORDS)
    path = write(tmp_path, pcap_bytes(RECORDS)[: offs[2] + 15])  # third record: 15 of 16 header bytes
    got, err, cf = read_all(path)
    assert [f for _, _, f in got] == [d for _, _, d, _ in RECORDS[:2]]
    assert err is not None
    assert (err.path, err.offset) == (str(path), offs[2])
    assert str(err) == f"{path}: offset {offs[2]}: truncated record header: 15 of 16 bytes present"
    assert cf.offset == offs[2]


@pytest.mark.parametrize("batch", [1, 2, 4096])
def test_truncated_record_data_error_and_offset(tmp_path: Path, batch: int) -> None:
    offs = record_offsets(RECORDS)
    cut = offs[4] + 16 + 100  # last record: header complete, 100 of 256 data bytes
    path = write(tmp_path, pcap_bytes(RECORDS)[:cut])
    got: list[Packet] = []
    with CaptureFile(path) as cf:
        with pytest.raises(CaptureError) as info:
            for b in cf.batches(batch):
                got.extend(b)
        assert cf.offset == offs[4]
        assert cf.counters["packets"] == 4
        assert cf.counters["truncated_records"] == 1
        assert cf.counters["bytes"] == sum(len(d) for _, _, d, _ in RECORDS[:4])
        # The damage stays where it is: asking again gives the same error, no packets.
        with pytest.raises(CaptureError) as again:
            list(cf)
    assert [f for _, _, f in got] == [d for _, _, d, _ in RECORDS[:4]]
    err = info.value
    assert (err.path, err.offset) == (str(path), offs[4])
    assert err.message == "truncated record: 256 bytes of packet data expected, 100 present"
    assert str(again.value) == str(err)
    assert "\n" not in str(err)


def test_every_prefix_of_a_classic_file(tmp_path: Path) -> None:
    blob = pcap_bytes(RECORDS)
    offs = record_offsets(RECORDS)
    for cut in range(len(blob) + 1):
        path = write(tmp_path, blob[:cut])
        if cut < 24:
            with pytest.raises(CaptureError) as info:
                CaptureFile(path)
            assert info.value.offset == 0
            continue
        got, err, _ = read_all(path)
        complete = [i for i in range(len(RECORDS)) if offs[i + 1] <= cut]
        assert [f for _, _, f in got] == [RECORDS[i][2] for i in complete], cut
        if cut in offs:
            assert err is None, cut
        else:
            assert err is not None, cut
            assert err.offset == offs[len(complete)], cut


def test_every_prefix_of_a_pcapng_file(tmp_path: Path) -> None:
    o = ">"
    blocks = [
        (ng_shb(o), None),
        (ng_idb(o, linktypes.ETHERNET), None),
        (ng_epb(o, 0, 10**6, b"a" * 5), b"a" * 5),
        (ng_block(o, 5, b"\0" * 12), None),
        (ng_spb(o, b"bb"), b"bb"),
        (ng_shb("<"), None),
        (ng_idb("<", linktypes.RAW), None),
        (ng_epb("<", 0, 2 * 10**6, b"c" * 9), b"c" * 9),
    ]
    blob = b"".join(b for b, _ in blocks)
    ends = []
    pos = 0
    for b, _ in blocks:
        pos += len(b)
        ends.append(pos)
    for cut in range(len(blob) + 1):
        path = write(tmp_path, blob[:cut], "t.pcapng")
        if cut < ends[0]:
            with pytest.raises(CaptureError) as info:
                CaptureFile(path)
            assert info.value.offset == 0
            continue
        got, err, _ = read_all(path)
        expected = [frame for (_, frame), end in zip(blocks, ends, strict=True) if frame and end <= cut]
        assert [f for _, _, f in got] == expected, cut
        if cut in ends:
            assert err is None, cut
        else:
            assert err is not None, cut
            first_incomplete = next(i for i, end in enumerate(ends) if end > cut)
            assert err.offset == (ends[first_incomplete - 1] if first_incomplete else 0), cut


def test_oversized_caplen_is_damage(tmp_path: Path) -> None:
    blob = pcap_bytes(RECORDS[:2]) + struct.pack("<IIII", 1, 0, 10_000_000, 10_000_000) + b"\0" * 64
    path = write(tmp_path, blob)
    got, err, _ = read_all(path)
    assert len(got) == 2
    assert err is not None
    assert err.offset == record_offsets(RECORDS[:2])[2]
    assert "exceeds the maximum" in err.message


def _ng_error(tmp_path: Path, blob: bytes) -> tuple[list[Packet], CaptureError]:
    got, err, _ = read_all(write(tmp_path, blob, "t.pcapng"))
    assert err is not None
    return got, err


def test_pcapng_length_mismatch(tmp_path: Path) -> None:
    head = ng_shb("<") + ng_idb("<", 1) + ng_epb("<", 0, 1, b"good")
    bad = bytearray(ng_epb("<", 0, 2, b"bad!"))
    bad[-4:] = struct.pack("<I", len(bad) + 4)  # trailing length disagrees with leading length
    got, err = _ng_error(tmp_path, head + bytes(bad) + ng_epb("<", 0, 3, b"after"))
    assert [f for _, _, f in got] == [b"good"]
    assert err.offset == len(head)
    assert err.message == f"block length mismatch: {len(bad)} at start, {len(bad) + 4} at end"


@pytest.mark.parametrize(
    ("block", "message"),
    [
        (struct.pack("<II", 6, 30) + b"\0" * 22, "invalid block length 30 (block type 0x00000006)"),
        (struct.pack("<III", 6, 8, 8), "invalid block length 8 (block type 0x00000006)"),
        (ng_epb("<", 3, 1, b"x"), "packet refers to undefined interface 3"),
        (
            ng_block("<", 6, struct.pack("<IIIII", 0, 0, 0, 100, 100) + b"\0" * 8),
            "captured length 100 exceeds block length 40",
        ),
        (
            ng_block("<", 3, struct.pack("<I", 50) + b"\0" * 8),
            "simple packet block length 24 too short for 50 bytes of data",
        ),
        (
            ng_block("<", 0x0A0D0D0A, b"\x1a\x2b\x3c\x4e" + b"\0" * 12),
            "section header block has bad byte-order magic 0x4e3c2b1a",
        ),
        (
            ng_block(
                "<", 1, struct.pack("<HHI", 1, 0, 0) + ng_option("<", 9, b"\x06\x00") + ng_option("<", 0, b"")
            ),
            "if_tsresol option has length 2, expected 1",
        ),
        (
            ng_block("<", 1, struct.pack("<HHI", 1, 0, 0) + struct.pack("<HH", 9, 40)),
            "interface option 9 (length 40) runs past the block end",
        ),
    ],
)
def test_pcapng_malformed_blocks(tmp_path: Path, block: bytes, message: str) -> None:
    head = ng_shb("<") + ng_idb("<", 1) + ng_epb("<", 0, 1, b"good")
    got, err = _ng_error(tmp_path, head + block)
    assert [f for _, _, f in got] == [b"good"]
    assert (err.offset, err.message) == (len(head), message)


def test_pcapng_spb_before_interface(tmp_path: Path) -> None:
    got, err = _ng_error(tmp_path, ng_shb("<") + ng_spb("<", b"x"))
    assert got == []
    assert err.message == "simple packet block before any interface description block"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty file: no capture header"),
        (b"\xd4\xc3", "file too short for a capture header (2 bytes)"),
        (struct.pack("<IHH", USEC_MAGIC, 2, 4), "truncated pcap file header: 8 of 24 bytes present"),
        (
            struct.pack(">IHH", NSEC_MAGIC, 2, 4) + b"\0" * 12,
            "truncated pcap file header: 20 of 24 bytes present",
        ),
        (b"GET / HTTP/1.1\r\nHost: example\r\n\r\n", "not a capture file: unknown magic 0x20544547"),
        (b"\x1f\x8b\x08\x00" + b"\0" * 40, "not a capture file: gzip-compressed (decompress it first)"),
        (struct.pack("<IHHiIII", USEC_MAGIC, 1, 0, 0, 0, 65535, 1), "unsupported pcap version 1.0"),
        (b"\x0a\x0d\x0d\x0a\x1c\x00\x00\x00", "truncated section header block: 8 bytes present"),
        (ng_shb("<")[:-4], "truncated block: length 28, 24 bytes present"),
        (
            ng_block("<", 0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 2, 0, -1)),
            "unsupported pcapng version 2.0",
        ),
    ],
)
def test_not_a_capture_fails_at_open(tmp_path: Path, content: bytes, message: str) -> None:
    path = write(tmp_path, content, "x.bin")
    with pytest.raises(CaptureError) as info:
        open_capture(path)
    err = info.value
    assert (err.path, err.offset, err.message) == (str(path), 0, message)
    assert str(err) == f"{path}: offset 0: {message}"


def test_missing_file_is_an_os_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        CaptureFile(tmp_path / "nope.pcap")


def test_directory_is_not_a_capture(tmp_path: Path) -> None:
    with pytest.raises((CaptureError, IsADirectoryError)):
        CaptureFile(tmp_path)


def test_capture_error_is_one_line_and_picklable() -> None:
    err = CaptureError("/x/y.pcap", 1234, "bad\nthing")
    assert str(err) == "/x/y.pcap: offset 1234: bad thing"
    copy = pickle.loads(pickle.dumps(err))
    assert (copy.path, copy.offset, copy.message, str(copy)) == (err.path, err.offset, err.message, str(err))


def test_closed_file_refuses_iteration(tmp_path: Path) -> None:
    cf = CaptureFile(write(tmp_path, pcap_bytes(RECORDS)))
    with cf:
        assert not cf.closed
    assert cf.closed
    cf.close()  # idempotent
    with pytest.raises(ValueError):
        list(cf)


def test_linktype_constants() -> None:
    expected = {
        "NULL": 0,
        "ETHERNET": 1,
        "PPP": 9,
        "RAW_DLT12": 12,
        "RAW_DLT14": 14,
        "PPP_HDLC": 50,
        "PPP_ETHER": 51,
        "RAW": 101,
        "LOOP": 108,
        "LINUX_SLL": 113,
        "IPV4": 228,
        "IPV6": 229,
        "NFLOG": 239,
        "LINUX_SLL2": 276,
    }
    assert {name: getattr(linktypes, name) for name in expected} == expected
    assert {value: name for name, value in expected.items()} == linktypes.NAMES
    assert frozenset({101, 12, 14}) == linktypes.RAW_IP
    assert linktypes.name(113) == "LINUX_SLL"
    assert linktypes.name(147) == "LINKTYPE_147"


# ---------------------------------------------------------------------------------------------
# the shared corpus: every capture opens; classic files agree with dpkt
# ---------------------------------------------------------------------------------------------

CORPUS = Path(__file__).resolve().parents[3] / "../shared/corpus"
CORPUS_FILES = (
    sorted(p for p in CORPUS.rglob("*") if p.suffix in (".pcap", ".pcapng") and p.is_file())
    if CORPUS.is_dir()
    else []
)


@pytest.mark.skipif(not CORPUS.is_dir(), reason="../shared/corpus not present")
def test_corpus_is_there() -> None:
    assert CORPUS_FILES


@pytest.mark.skipif(not CORPUS.is_dir(), reason="../shared/corpus not present")
@pytest.mark.parametrize("path", CORPUS_FILES, ids=lambda p: str(p.relative_to(CORPUS)))
def test_corpus_capture_opens_and_matches_dpkt(path: Path) -> None:
    with CaptureFile(path) as cf:
        got = [p for b in cf.batches(7) for p in b]
        assert cf.offset == cf.size
        fmt = cf.format
    assert got, "no packets"
    assert {lt for _, lt, _ in got} <= linktypes.SUPPORTED
    if fmt == "pcap":
        with open(path, "rb") as f:
            reader = dpkt.pcap.Reader(f)
            theirs = [(ts, bytes(buf)) for ts, buf in reader]
        assert [fr for _, _, fr in got] == [fr for _, fr in theirs]
        # dpkt computes usec * 1e-6 (two roundings); ours is sec + usec / 1e6: same to well under 1 us.
        assert all(abs(a - b) < 1e-6 for (a, _, _), (b, _) in zip(got, theirs, strict=True))


@pytest.mark.skipif(not CORPUS.is_dir(), reason="../shared/corpus not present")
@pytest.mark.skipif(shutil.which("editcap") is None, reason="editcap (wireshark-common) not installed")
@pytest.mark.parametrize("out_format", ["pcapng", "nsecpcap"])
def test_wireshark_written_files_match_the_original(tmp_path: Path, out_format: str) -> None:
    """Files converted by Wireshark's editcap read back as the same packets, bit for bit."""
    # PPP_HDLC (50) is left out: Wireshark rewrites it as PPP (9), which is its choice, not damage.
    sources = [p for p in CORPUS_FILES if "ppp_ip_udp_dns" not in p.name][:12]
    for src in sources:
        out = tmp_path / f"{src.stem}.{out_format}"
        # -a adds a packet comment: an EPB option the reader must step over.
        subprocess.run(["editcap", "-F", out_format, "-a", "1:comment", str(src), str(out)], check=True)
        with CaptureFile(src) as a, CaptureFile(out) as b:
            assert list(a) == list(b), src


# ---------------------------------------------------------------------------------------------
# the benchmark script runs (its speed is reported, not asserted: CI machines vary)
# ---------------------------------------------------------------------------------------------


def test_benchmark_script_runs(tmp_path: Path) -> None:
    script = Path(__file__).with_name("bench_pcapfile.py")
    out = subprocess.run(
        [
            sys.executable,
            str(script),
            "--packets",
            "20000",
            "--repeat",
            "1",
            "--file",
            str(tmp_path / "b.pcap"),
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    assert "20000 packets" in out
    assert "packets/s" in out
