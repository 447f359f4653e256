"""scapy as an independent oracle: it dissects what utcp builds, and utcp parses what it builds."""

from __future__ import annotations

import socket
import struct
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP, TCP, IPOption_Router_Alert, TCPOptions
from scapy.packet import Raw

from tests.wire.strategies import (
    ipv4_addresses,
    option_length,
    options_length,
    options_with,
    u8,
    u16,
    u32,
)
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
    build_ipv4,
    parse_ipv4,
)

ScapyOption = tuple[Any, Any]

# Kinds scapy decodes itself would not come back as raw bytes; keep unknown kinds outside them.
SCAPY_KINDS = frozenset(TCPOptions[0])
unknown_for_both = st.builds(
    UnknownOption,
    kind=st.integers(6, 253).filter(lambda k: k not in SCAPY_KINDS and k != 8),
    data=st.binary(max_size=10),
)

oracle_options = options_with(unknown_for_both)


@st.composite
def option_lists(draw: st.DrawFn) -> tuple[TcpOption, ...]:
    options: list[TcpOption] = []
    for opt in draw(st.lists(oracle_options, max_size=10)):
        if options_length(options) + option_length(opt) <= 40:
            options.append(opt)
    return tuple(options)


def to_scapy(opt: TcpOption) -> ScapyOption:
    """The option as scapy's TCP(options=...) spells it."""
    match opt:
        case Eol():
            return ("EOL", None)
        case Nop():
            return ("NOP", None)
        case Mss(value=value):
            return ("MSS", value)
        case WindowScale(shift=shift):
            return ("WScale", shift)
        case SackPermitted():
            return ("SAckOK", b"")
        case Sack(blocks=blocks):
            return ("SAck", tuple(edge for block in blocks for edge in block))
        case Timestamps(tsval=tsval, tsecr=tsecr):
            return ("Timestamp", (tsval, tsecr))
        case Toa(port=port, address=address):
            return (254, struct.pack("!H", port) + socket.inet_pton(socket.AF_INET, address))
        case ToaV6(port=port, address=address):
            return (254, struct.pack("!H", port) + socket.inet_pton(socket.AF_INET6, address))
        case UnknownOption(kind=kind, data=data):
            return (kind, data)
    raise TypeError(opt)


def strip_eol(options: list[ScapyOption]) -> list[ScapyOption]:
    """scapy reports the zero padding as ('EOL', None) entries."""
    while options and options[-1] == ("EOL", None):
        options = options[:-1]
    return options


def normalize(options: list[ScapyOption]) -> list[ScapyOption]:
    return [
        (name, bytes(value) if isinstance(value, bytes | bytearray) else value) for name, value in options
    ]


segments = st.builds(
    TcpSegment,
    src_port=u16,
    dst_port=u16,
    seq=u32,
    ack=u32,
    flags=st.integers(0, 255).map(TcpFlags),
    window=u16,
    options=option_lists(),
    payload=st.binary(max_size=40),
    urgent=u16,
)


@settings(max_examples=200)
@given(
    st.builds(
        IPv4Packet,
        src=ipv4_addresses,
        dst=ipv4_addresses,
        payload=segments,
        ttl=u8,
        ident=u16,
        dont_fragment=st.booleans(),
    )
)
def test_scapy_dissects_what_utcp_builds(packet: IPv4Packet) -> None:
    segment = packet.tcp
    src, dst, ttl, ident, df = packet.src, packet.dst, packet.ttl, packet.ident, packet.dont_fragment
    data = build_ipv4(packet)
    dissected = IP(data)
    assert dissected.src == src and dissected.dst == dst
    assert dissected.ttl == ttl and dissected.id == ident and dissected.proto == 6
    assert int(dissected.flags) == (2 if df else 0) and dissected.frag == 0
    assert dissected.len == len(data)
    layer = dissected[TCP]
    assert (layer.sport, layer.dport, layer.seq, layer.ack) == (
        segment.src_port,
        segment.dst_port,
        segment.seq,
        segment.ack,
    )
    assert int(layer.flags) == int(segment.flags)
    assert layer.window == segment.window and layer.urgptr == segment.urgent
    assert normalize(strip_eol(layer.options)) == [to_scapy(o) for o in segment.options]
    if segment.payload:
        assert bytes(dissected[Raw].load) == segment.payload
    else:
        assert Raw not in dissected
    # Checksums: scapy recomputes them from scratch when the fields are deleted.
    rebuilt = IP(data)
    del rebuilt.chksum
    del rebuilt[TCP].chksum
    assert bytes(rebuilt) == data


@settings(max_examples=200)
@given(segments, ipv4_addresses, ipv4_addresses)
def test_utcp_parses_what_scapy_builds(segment: TcpSegment, src: str, dst: str) -> None:
    crafted = IP(src=src, dst=dst, id=9, flags="DF") / TCP(
        sport=segment.src_port,
        dport=segment.dst_port,
        seq=segment.seq,
        ack=segment.ack,
        flags=int(segment.flags),
        window=segment.window,
        urgptr=segment.urgent,
        options=[to_scapy(o) for o in segment.options],
    )
    if segment.payload:
        crafted = crafted / Raw(segment.payload)
    data = bytes(crafted)
    parsed = parse_ipv4(data)  # verifies scapy's checksums
    assert parsed == IPv4Packet(src, dst, segment, ident=9)
    assert build_ipv4(parsed) == data


def test_brief_example_syn() -> None:
    options = [("MSS", 1460), ("SAckOK", b""), ("Timestamp", (1, 0)), ("NOP", None), ("WScale", 7)]
    data = bytes(
        IP(src="198.18.0.2", dst="198.18.0.1")
        / TCP(sport=40000, dport=80, flags="S", options=options)
        / b"hi"
    )
    parsed = parse_ipv4(data)
    assert parsed.tcp.options == (Mss(1460), SackPermitted(), Timestamps(1, 0), Nop(), WindowScale(7))
    assert parsed.tcp.flags == TcpFlags.SYN and parsed.tcp.payload == b"hi"
    assert (parsed.dont_fragment, parsed.ident, parsed.ttl) == (False, 1, 64)
    assert build_ipv4(parsed) == data


def test_scapy_and_utcp_agree_on_ip_options() -> None:
    data = bytes(IP(src="198.18.0.2", dst="198.18.0.1", options=[IPOption_Router_Alert()]) / TCP())
    parsed = parse_ipv4(data)
    assert parsed.options == bytes.fromhex("94040000")
    assert build_ipv4(parsed) == data
