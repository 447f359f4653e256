"""Bytes <-> typed values: IPv4, TCP and its options, checksums, a tcpdump-style formatter."""

from utcp.wire.errors import ChecksumError, WireError
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

__all__ = [
    "IPPROTO_TCP",
    "ChecksumError",
    "Eol",
    "IPv4Packet",
    "Mss",
    "Nop",
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
]
