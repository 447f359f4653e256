"""Hypothesis strategies and byte helpers for the wire tests (independent of utcp.wire's code)."""

from __future__ import annotations

import socket
import struct

from hypothesis import strategies as st

from utcp.wire import (
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

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
ipv4_addresses = st.binary(min_size=4, max_size=4).map(socket.inet_ntoa)
ipv6_addresses = st.binary(min_size=16, max_size=16).map(lambda b: socket.inet_ntop(socket.AF_INET6, b))
flags = st.integers(0, 0xFF).map(TcpFlags)

KNOWN_KINDS = frozenset({0, 1, 2, 3, 4, 5, 8, 254})


def option_length(opt: TcpOption) -> int:
    """Encoded size, written out here independently of the library."""
    match opt:
        case Eol() | Nop():
            return 1
        case Mss():
            return 4
        case WindowScale():
            return 3
        case SackPermitted():
            return 2
        case Sack(blocks=blocks):
            return 2 + 8 * len(blocks)
        case Timestamps():
            return 10
        case Toa():
            return 8
        case ToaV6():
            return 20
        case UnknownOption(kind=0, data=data):
            return 1 + len(data)
        case UnknownOption(data=data):
            return 2 + len(data)
    raise TypeError(opt)


def options_length(options: tuple[TcpOption, ...] | list[TcpOption]) -> int:
    return sum(option_length(o) for o in options)


sack_blocks = st.lists(st.tuples(u32, u32), min_size=1, max_size=4).map(tuple)

unknown_options = st.builds(
    UnknownOption,
    kind=st.integers(2, 255).filter(lambda k: k not in KNOWN_KINDS),
    data=st.binary(max_size=12),
) | st.builds(
    UnknownOption,
    kind=st.just(254),
    data=st.binary(max_size=12).filter(lambda d: len(d) not in (6, 18)),
)


# Options whose parse gives back the very same value (no EOL: see canonical_options).
def options_with(unknown: st.SearchStrategy[UnknownOption]) -> st.SearchStrategy[TcpOption]:
    """Every known option kind (but Eol), plus unknown ones drawn from `unknown`."""
    return st.one_of(
        st.just(Nop()),
        st.builds(Mss, u16),
        st.builds(WindowScale, u8),
        st.just(SackPermitted()),
        st.builds(Sack, sack_blocks),
        st.builds(Timestamps, u32, u32),
        st.builds(Toa, u16, ipv4_addresses),
        st.builds(ToaV6, u16, ipv6_addresses),
        unknown,
    )


value_options = options_with(unknown_options)


@st.composite
def canonical_options(draw: st.DrawFn) -> tuple[TcpOption, ...]:
    """An option list within 40 bytes that parses back to itself: an Eol only at the end and
    only where its byte starts a 4-byte word (elsewhere it is part of the implicit padding)."""
    options: list[TcpOption] = []
    for opt in draw(st.lists(value_options, max_size=12)):
        if options_length(options) + option_length(opt) <= 40:
            options.append(opt)
    used = options_length(options)
    if used % 4 == 0 and used < 40 and draw(st.booleans()):
        options.append(Eol())
    return tuple(options)


# Anything the builders accept or reject: EOL anywhere, trailers, known kinds as unknown ones,
# lists too long, kind 1 with data.
any_option: st.SearchStrategy[TcpOption] = st.one_of(
    value_options,
    st.just(Eol()),
    st.builds(UnknownOption, kind=st.integers(0, 255), data=st.binary(max_size=8)),
    st.builds(Sack, st.lists(st.tuples(u32, u32), max_size=5).map(tuple)),
)
any_options = st.lists(any_option, max_size=10).map(tuple)


def segments(options: st.SearchStrategy[tuple[TcpOption, ...]]) -> st.SearchStrategy[TcpSegment]:
    return st.builds(
        TcpSegment,
        src_port=u16,
        dst_port=u16,
        seq=u32,
        ack=u32,
        flags=flags,
        window=u16,
        options=options,
        payload=st.binary(max_size=64),
        urgent=u16,
    )


ip_options = st.integers(0, 10).flatmap(lambda words: st.binary(min_size=4 * words, max_size=4 * words))


def packets(
    options: st.SearchStrategy[tuple[TcpOption, ...]] | None = None,
) -> st.SearchStrategy[IPv4Packet]:
    """Valid packets (TCP, non-TCP, TCP fragments with a bytes payload); with the default
    canonical options they round-trip by value."""
    if options is None:
        options = canonical_options()
    common = {
        "src": ipv4_addresses,
        "dst": ipv4_addresses,
        "ttl": u8,
        "ident": u16,
        "tos": u8,
        "dont_fragment": st.booleans(),
        "options": ip_options,
    }
    tcp = st.builds(IPv4Packet, payload=segments(options), protocol=st.just(6), **common)
    other = st.builds(
        IPv4Packet,
        payload=st.binary(max_size=64),
        protocol=u8.filter(lambda p: p != 6),
        more_fragments=st.booleans(),
        fragment_offset=st.integers(0, 0x1FFF),
        **common,
    )
    fragment = st.builds(
        IPv4Packet,
        payload=st.binary(max_size=64),
        protocol=st.just(6),
        more_fragments=st.just(True),
        fragment_offset=st.integers(0, 0x1FFF),
        **common,
    ) | st.builds(
        IPv4Packet,
        payload=st.binary(max_size=64),
        protocol=st.just(6),
        more_fragments=st.booleans(),
        fragment_offset=st.integers(1, 0x1FFF),
        **common,
    )
    return st.one_of(tcp, tcp, other, fragment)


# --- raw byte helpers -------------------------------------------------------------------------------


def ones_sum_checksum(data: bytes) -> int:
    """Textbook RFC 1071 loop, the independent oracle for the fast checksum."""
    if len(data) % 2:
        data += b"\x00"
    total = 0
    for (word,) in struct.iter_unpack("!H", data):
        total += word
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def fix_checksums(raw: bytes) -> bytes:
    """Recompute the IPv4 header checksum and, when the layout allows, the TCP checksum, so a
    mutated packet gets past checksum verification and reaches the deeper checks."""
    data = bytearray(raw)
    if len(data) < 20:
        return bytes(data)
    ihl = (data[0] & 0x0F) * 4
    if ihl < 20 or ihl > len(data):
        return bytes(data)
    total = int.from_bytes(data[2:4], "big")
    fragment = int.from_bytes(data[6:8], "big")
    if data[9] == 6 and not fragment & 0x3FFF and ihl + 18 <= total <= len(data):
        data[ihl + 16 : ihl + 18] = b"\x00\x00"
        pseudo = bytes(data[12:20]) + bytes((0, 6)) + (total - ihl).to_bytes(2, "big")
        data[ihl + 16 : ihl + 18] = ones_sum_checksum(pseudo + bytes(data[ihl:total])).to_bytes(2, "big")
    data[10:12] = b"\x00\x00"
    data[10:12] = ones_sum_checksum(bytes(data[:ihl])).to_bytes(2, "big")
    return bytes(data)


def tcp_packet_with_option_area(area: bytes, payload: bytes = b"data") -> bytes:
    """A TCP/IPv4 packet carrying `area` (padded to 4 bytes with zeros) as its option bytes."""
    area = area + bytes(-len(area) % 4)
    tcp = struct.pack("!HHIIHHHH", 1234, 80, 1, 2, ((20 + len(area)) // 4) << 12 | 0x18, 1000, 0, 0)
    segment = tcp + area + payload
    ip = struct.pack(
        "!BBHHHBBH4s4s",
        0x45,
        0,
        20 + len(segment),
        7,
        0x4000,
        64,
        6,
        0,
        socket.inet_aton("198.18.0.2"),
        socket.inet_aton("198.18.0.1"),
    )
    return fix_checksums(ip + segment)
