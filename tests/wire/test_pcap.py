"""pcap writer/reader: round trip, scapy and tcpdump read what we write, foreign variants read."""

from __future__ import annotations

import io
import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from scapy.layers.inet import IP, TCP  # registers LINKTYPE_RAW -> IP
from scapy.utils import rdpcap

from utcp.wire import (
    LINKTYPE_RAW,
    IPv4Packet,
    Nop,
    PcapWriter,
    TcpFlags,
    TcpSegment,
    Timestamps,
    WireError,
    build_ipv4,
    parse_ipv4,
    read_pcap,
)


def sample_packets() -> list[bytes]:
    packets = []
    for i in range(5):
        options = (Nop(), Nop(), Timestamps(i, 0))
        segment = TcpSegment(40000, 80, 1000 + i, 7, TcpFlags.ACK, 502, options, b"x" * i)
        packets.append(build_ipv4(IPv4Packet("198.18.0.2", "198.18.0.1", segment, ident=i)))
    packets.append(build_ipv4(IPv4Packet("198.18.0.2", "198.18.0.1", b"udp", protocol=17)))
    return packets


TIMES = [0.0, 1.5, 1700000000.123456, 1700000000.999999, 2.0000004, 3.25]


def write_sample(f: io.BytesIO | io.BufferedWriter) -> list[bytes]:
    packets = sample_packets()
    writer = PcapWriter(f)
    for data, when in zip(packets, TIMES, strict=True):
        writer.write(data, when)
    writer.flush()
    return packets


def test_header_is_classic_microsecond_raw_ip() -> None:
    f = io.BytesIO()
    PcapWriter(f)
    assert struct.unpack("<IHHiIII", f.getvalue()) == (0xA1B2C3D4, 2, 4, 0, 0, 262144, LINKTYPE_RAW)


def test_round_trip_through_a_file(tmp_path: Path) -> None:
    path = tmp_path / "trace.pcap"
    with path.open("wb") as f:
        packets = write_sample(f)
    records = list(read_pcap(path))
    assert [data for _, data in records] == packets
    for (when, _), expected in zip(records, TIMES, strict=True):
        assert when == pytest.approx(expected, abs=1e-6)
    assert list(read_pcap(str(path))) == records
    with path.open("rb") as f:
        assert list(read_pcap(f)) == records


def test_scapy_reads_our_pcap(tmp_path: Path) -> None:
    path = tmp_path / "trace.pcap"
    with path.open("wb") as f:
        packets = write_sample(f)
    read = rdpcap(str(path))
    assert [bytes(p) for p in read] == packets
    assert [float(p.time) for p in read] == pytest.approx(TIMES, abs=1e-6)
    assert IP in read[1]
    assert read[1][TCP].seq == parse_ipv4(packets[1]).tcp.seq == 1001


@pytest.mark.skipif(shutil.which("tcpdump") is None, reason="tcpdump not installed")
def test_tcpdump_reads_our_pcap(tmp_path: Path) -> None:
    path = tmp_path / "trace.pcap"
    with path.open("wb") as f:
        write_sample(f)
    result = subprocess.run(
        ["tcpdump", "-nn", "-r", str(path)], capture_output=True, text=True, check=True, timeout=60
    )
    assert "link-type RAW" in result.stderr
    assert len(result.stdout.splitlines()) == 6


def test_snaplen_truncates_captured_bytes_but_keeps_original_length() -> None:
    f = io.BytesIO()
    PcapWriter(f, snaplen=30).write(bytes(100), 1.0)
    assert struct.unpack("<IIII", f.getvalue()[24:40]) == (1, 0, 30, 100)
    assert [data for _, data in read_pcap(io.BytesIO(f.getvalue()))] == [bytes(30)]


def test_reads_big_endian_and_nanosecond_files() -> None:
    body = struct.pack(">IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 65535, 228)
    body += struct.pack(">IIII", 5, 250_000_000, 3, 3) + b"abc"
    assert list(read_pcap(io.BytesIO(body))) == [(5.25, b"abc")]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\xd4\xc3\xb2\xa1", "file header truncated"),
        (b"\x0a\x0d\x0d\x0a" + bytes(20), "not a classic pcap"),
        (struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1), "linktype 1 is not raw IP"),
        (struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 101) + bytes(8), "record header truncated"),
        (
            struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 101)
            + struct.pack("<IIII", 0, 0, 10, 10)
            + b"abc",
            "record data truncated",
        ),
    ],
)
def test_malformed_files_raise_wire_error(content: bytes, message: str) -> None:
    with pytest.raises(WireError, match=message):
        list(read_pcap(io.BytesIO(content)))


def test_writer_rejects_negative_timestamps() -> None:
    with pytest.raises(ValueError, match="< 0"):
        PcapWriter(io.BytesIO()).write(b"", -1.0)
