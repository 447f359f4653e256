"""Bytes <-> typed values: IPv4, TCP and its options, checksums, a tcpdump-style formatter."""

from utcp.wire.checksum import (
    checksum_update16,
    checksum_update32,
    checksum_update_bytes,
    internet_checksum,
    tcp_checksum,
)
from utcp.wire.codec import (
    build_ipv4,
    build_ipv4_reference,
    build_tcp,
    parse_ipv4,
    parse_ipv4_reference,
    parse_tcp,
)
from utcp.wire.errors import ChecksumError, EncodeError, WireError
from utcp.wire.format import format_packet, format_segment
from utcp.wire.packet import (
    IPPROTO_TCP,
    Eol,
    IPv4Packet,
    Mss,
    Nop,
    Sack,
    SackPermitted,
    TcpFlags,
    TcpOption,
    TcpSegment,
    Timestamps,
    Toa,
    ToaV6,
    UnknownOption,
    WindowScale,
)
from utcp.wire.pcap import LINKTYPE_RAW, PcapWriter, read_pcap

__all__ = [
    "IPPROTO_TCP",
    "LINKTYPE_RAW",
    "ChecksumError",
    "EncodeError",
    "Eol",
    "IPv4Packet",
    "Mss",
    "Nop",
    "PcapWriter",
    "Sack",
    "SackPermitted",
    "TcpFlags",
    "TcpOption",
    "TcpSegment",
    "Timestamps",
    "Toa",
    "ToaV6",
    "UnknownOption",
    "WindowScale",
    "WireError",
    "build_ipv4",
    "build_ipv4_reference",
    "build_tcp",
    "checksum_update16",
    "checksum_update32",
    "checksum_update_bytes",
    "format_packet",
    "format_segment",
    "internet_checksum",
    "parse_ipv4",
    "parse_ipv4_reference",
    "parse_tcp",
    "read_pcap",
    "tcp_checksum",
]
