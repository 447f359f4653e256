"""utcp.wire.fastpath.plain_segment agrees with the general parser on every packet it accepts, and
declines every packet that is not the plain data-segment, pure-ACK or FIN shape (or whose checksum is
wrong); syn_segment likewise for the handshake's SYN and SYN-ACK; the encoders write what build_ipv4
writes."""

from __future__ import annotations

import socket

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.wire.strategies import any_options, canonical_options, packets, segments
from utcp.tcp.options import parse_syn_options, syn_options
from utcp.wire import (
    IPv4Packet,
    Mss,
    Nop,
    SackPermitted,
    TcpFlags,
    TcpSegment,
    Timestamps,
    WindowScale,
    WireError,
    build_ipv4,
    parse_ipv4,
)
from utcp.wire.fastpath import (
    SegmentEncoder,
    encode_bare,
    plain_segment,
    plain_tcp_segment,
    syn_option_bytes,
    syn_segment,
)

PLAIN_FLAGS = (
    TcpFlags.ACK,
    TcpFlags.ACK | TcpFlags.PSH,
    TcpFlags.ACK | TcpFlags.FIN,
    TcpFlags.ACK | TcpFlags.PSH | TcpFlags.FIN,
)


def _data_packet(options: tuple[object, ...], payload: bytes, flags: TcpFlags = TcpFlags.ACK) -> bytes:
    seg = TcpSegment(40000, 80, 123456789, 987654321, flags, 502, options, payload)  # type: ignore[arg-type]
    return build_ipv4(IPv4Packet("198.18.0.1", "198.18.0.2", seg))


def _agrees(raw: bytes, verify: bool) -> None:
    shape = plain_segment(raw, verify)
    try:
        packet = parse_ipv4(raw, verify_checksums=verify)
    except WireError:
        assert shape is None  # malformed or bad checksum: the fast path never claims it
        return
    if shape is None:
        return  # declining is always allowed: the general path then handles it
    src, dst, sport, dport, seq, ack, window, tsval, tsecr, start, flags = shape
    seg = packet.tcp
    assert (socket.inet_ntoa(src), socket.inet_ntoa(dst)) == (packet.src, packet.dst)
    assert (sport, dport, seq, ack, window) == (seg.src_port, seg.dst_port, seg.seq, seg.ack, seg.window)
    assert seg.flags in PLAIN_FLAGS and int(seg.flags) == flags and seg.payload == raw[start:]
    assert plain_tcp_segment(raw, shape) == seg  # the value the general path gets without a second parse
    assert not packet.more_fragments and not packet.fragment_offset and not packet.options
    ts = seg.option(Timestamps)
    if ts is None:
        assert seg.options == () and tsval == tsecr == -1
    else:
        assert seg.options == (Nop(), Nop(), ts) and (tsval, tsecr) == (ts.tsval, ts.tsecr)


@settings(max_examples=300)
@given(packets(), st.booleans())
def test_agrees_with_the_general_parser_on_arbitrary_packets(packet: IPv4Packet, verify: bool) -> None:
    _agrees(build_ipv4(packet), verify)


@settings(max_examples=300)
@given(
    st.sampled_from([(), (Nop(), Nop(), Timestamps(5, 6))]),
    st.binary(max_size=200),
    st.sampled_from(PLAIN_FLAGS),
    st.integers(0, 1499),
    st.integers(0, 255),
)
def test_agrees_on_plain_segments_with_one_corrupted_byte(
    options: tuple[object, ...], payload: bytes, flags: TcpFlags, where: int, xor: int
) -> None:
    raw = bytearray(_data_packet(options, payload, flags))
    raw[where % len(raw)] ^= xor
    _agrees(bytes(raw), True)
    _agrees(bytes(raw), False)


def test_recognises_the_bulk_shapes() -> None:
    with_ts = _data_packet((Nop(), Nop(), Timestamps(1000, 2000)), b"x" * 1448, TcpFlags.ACK | TcpFlags.PSH)
    assert plain_segment(with_ts) == (
        bytes([198, 18, 0, 1]), bytes([198, 18, 0, 2]), 40000, 80, 123456789, 987654321, 502, 1000, 2000,
        52, 0x18,
    )  # fmt: skip
    plain = _data_packet((), b"y" * 10)
    assert plain_segment(plain) is not None and plain_segment(plain)[-2] == 40  # type: ignore[index]


def test_recognises_pure_acks() -> None:
    pure = _data_packet((Nop(), Nop(), Timestamps(7, 8)), b"")
    assert plain_segment(pure) == (
        bytes([198, 18, 0, 1]), bytes([198, 18, 0, 2]), 40000, 80, 123456789, 987654321, 502, 7, 8, 52, 0x10
    )  # fmt: skip
    assert plain_segment(_data_packet((), b""))[-2] == 40  # type: ignore[index]


def test_recognises_fins() -> None:
    fin = _data_packet((Nop(), Nop(), Timestamps(7, 8)), b"", TcpFlags.ACK | TcpFlags.FIN)
    assert plain_segment(fin)[-1] == 0x11  # type: ignore[index]
    last = _data_packet((), b"z", TcpFlags.ACK | TcpFlags.PSH | TcpFlags.FIN)
    assert plain_segment(last)[-1] == 0x19  # type: ignore[index]


def test_declines_other_shapes() -> None:
    assert plain_segment(_data_packet((Nop(), Nop(), Timestamps(1, 2)), b"")[:51]) is None  # truncated
    assert plain_segment(_data_packet((), b"")[:39]) is None
    assert plain_segment(_data_packet((), b"x", TcpFlags.FIN)) is None  # FIN without ACK
    assert plain_segment(_data_packet((), b"x", TcpFlags.ACK | TcpFlags.RST)) is None
    assert plain_segment(_data_packet((), b"x", TcpFlags.SYN)) is None


def test_a_bad_tcp_checksum_is_declined_unless_trusted() -> None:
    raw = bytearray(_data_packet((), b"payload"))
    raw[-1] ^= 0xFF
    assert plain_segment(bytes(raw), True) is None
    assert plain_segment(bytes(raw), False) is not None


u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
addresses = st.binary(min_size=4, max_size=4).map(socket.inet_ntoa)


@settings(max_examples=1000)
@given(
    addresses,
    addresses,
    u16,
    u16,
    st.booleans(),
    u16,
    u32,
    u32,
    st.sampled_from([0x10, 0x18, 0x11, 0x19]),
    u16,
    u32,
    u32,
    st.binary(max_size=300),
    st.integers(0, 40),
    st.integers(0, 40),
)
def test_the_encoder_writes_what_build_ipv4_writes(  # noqa: PLR0917
    src: str,
    dst: str,
    sport: int,
    dport: int,
    timestamps: bool,
    ident: int,
    seq: int,
    ack: int,
    flags: int,
    window: int,
    tsval: int,
    tsecr: int,
    stream: bytes,
    cut_front: int,
    cut_back: int,
) -> None:
    start, end = min(cut_front, len(stream)), max(len(stream) - cut_back, 0)
    end = max(end, start)
    options = (Nop(), Nop(), Timestamps(tsval, tsecr)) if timestamps else ()
    seg = TcpSegment(sport, dport, seq, ack, TcpFlags(flags), window, options, stream[start:end])
    expected = build_ipv4(IPv4Packet(src, dst, seg, ident=ident))
    encoder = SegmentEncoder(src, dst, sport, dport, timestamps)
    for data in (stream, bytearray(stream), memoryview(stream)):
        assert encoder.encode(ident, seq, ack, flags, window, tsval, tsecr, data, start, end) == expected
    if end > start:
        assert plain_segment(expected) is not None or flags & 0x01  # and it parses back the fast way


@settings(max_examples=1000)
@given(
    addresses,
    addresses,
    u16,
    u16,
    u16,
    u32,
    u32,
    st.sampled_from([0x02, 0x12, 0x04, 0x14, 0x10]),
    u16,
    u16,
    st.booleans(),
    st.none() | st.tuples(u32, u32),
    st.none() | st.integers(0, 14),
)
def test_bare_segments_with_syn_options_are_what_build_ipv4_writes(  # noqa: PLR0917
    src: str,
    dst: str,
    sport: int,
    dport: int,
    ident: int,
    seq: int,
    ack: int,
    flags: int,
    window: int,
    mss: int,
    sack: bool,
    timestamps: tuple[int, int] | None,
    wscale: int | None,
) -> None:
    # the handshake's segments (Connection._send_syn with Host.wire_output) against the value path
    options = syn_options(mss, sack, timestamps, wscale)
    seg = TcpSegment(sport, dport, seq, ack, TcpFlags(flags), window, options)
    expected = build_ipv4(IPv4Packet(src, dst, seg, ident=ident))
    area = syn_option_bytes(mss, sack, timestamps, wscale)
    raw = encode_bare(
        socket.inet_aton(src), socket.inet_aton(dst), ident, sport, dport, seq, ack, flags, window, area
    )
    assert raw == expected
    assert encode_bare(
        socket.inet_aton(src), socket.inet_aton(dst), ident, sport, dport, seq, ack, flags, window, b""
    ) == (
        build_ipv4(
            IPv4Packet(src, dst, TcpSegment(sport, dport, seq, ack, TcpFlags(flags), window), ident=ident)
        )
    )


# --- syn_segment: the handshake's SYN and SYN-ACK ---------------------------------------------------------


def _syn_agrees(raw: bytes, verify: bool) -> bool:
    """syn_segment(raw) declines, or gives exactly what the general parser gives (the fields, and the
    option list, which is then one `syn_options` writes). True when it accepted."""
    fields = syn_segment(raw, verify)
    try:
        packet = parse_ipv4(raw, verify_checksums=verify)
    except WireError:
        assert fields is None  # malformed or bad checksum: the fast path never claims it
        return False
    if fields is None:
        return False  # declining is always allowed: the general path then handles it
    src, dst, sport, dport, seq, ack, window, flags, mss, wscale, sack, tsval, tsecr = fields
    seg = packet.tcp
    assert (socket.inet_ntoa(src), socket.inet_ntoa(dst)) == (packet.src, packet.dst)
    assert (sport, dport, seq, ack, window) == (seg.src_port, seg.dst_port, seg.seq, seg.ack, seg.window)
    assert seg.flags in (TcpFlags.SYN, TcpFlags.SYN | TcpFlags.ACK) and int(seg.flags) == flags
    assert seg.payload == b""
    assert not packet.more_fragments and not packet.fragment_offset and not packet.options
    if mss < 0:
        assert seg.options == () and wscale == tsval == tsecr == -1 and not sack
    else:
        ts = (tsval, tsecr) if tsval >= 0 else None
        assert seg.options == syn_options(mss, sack, ts, wscale if wscale >= 0 else None)
    # what the engine negotiates from it (utcp.tcp.options.parse_syn_options)
    opts = parse_syn_options(seg)
    assert (opts.mss, opts.sack_permitted) == (mss if mss >= 0 else None, sack)
    assert opts.wscale == (min(wscale, 14) if wscale >= 0 else None)
    assert (opts.tsval, opts.tsecr) == ((tsval, tsecr) if tsval >= 0 else (None, 0))
    return True


def _syn_packet(flags: int, mss: int | None, sack: bool, ts: tuple[int, int] | None, ws: int | None) -> bytes:
    options = () if mss is None else syn_options(mss, sack, ts, ws)
    seg = TcpSegment(40000, 80, 123456789, 987654321, TcpFlags(flags), 64240, options)
    return build_ipv4(IPv4Packet("198.18.0.1", "198.18.0.2", seg))


@settings(max_examples=300)
@given(packets(), st.booleans())
def test_syn_segment_agrees_with_the_general_parser_on_arbitrary_packets(
    packet: IPv4Packet, verify: bool
) -> None:
    _syn_agrees(build_ipv4(packet), verify)


@settings(max_examples=500)
@given(
    segments(canonical_options() | any_options.filter(lambda o: len(o) < 8)),
    st.sampled_from([0x02, 0x12]),
    st.booleans(),
    st.booleans(),
)
def test_syn_segment_agrees_on_syns_with_arbitrary_options(
    seg: TcpSegment, flags: int, no_payload: bool, verify: bool
) -> None:
    payload = b"" if no_payload else seg.payload
    seg = TcpSegment(
        seg.src_port, seg.dst_port, seg.seq, seg.ack, TcpFlags(flags), seg.window, seg.options, payload
    )
    try:
        raw = build_ipv4(IPv4Packet("198.18.0.1", "198.18.0.2", seg))
    except (WireError, ValueError):
        return  # options the builder refuses
    _syn_agrees(raw, verify)


u8 = st.integers(0, 0xFF)


@settings(max_examples=1000)
@given(
    st.sampled_from([0x02, 0x12]),
    st.none() | u16,
    st.booleans(),
    st.none() | st.tuples(u32, u32),
    st.none() | u8,
    st.integers(0, 80),
    u8,
)
def test_syn_segment_takes_every_layout_syn_options_writes_and_no_corruption(  # noqa: PLR0917
    flags: int,
    mss: int | None,
    sack: bool,
    ts: tuple[int, int] | None,
    ws: int | None,
    where: int,
    xor: int,
) -> None:
    raw = _syn_packet(flags, mss, sack, ts, ws)
    if mss is None:
        sack, ts, ws = False, None, None  # no options at all
    assert _syn_agrees(raw, True)
    assert syn_segment(raw)[8:] == (  # type: ignore[index]
        -1 if mss is None else mss,
        -1 if ws is None else ws,
        sack,
        *(ts or (-1, -1)),
    )
    damaged = bytearray(raw)
    damaged[where % len(raw)] ^= xor
    _syn_agrees(bytes(damaged), True)
    _syn_agrees(bytes(damaged), False)


def test_syn_segment_declines_other_shapes() -> None:
    linux = (1460, True, (1, 2), 7)
    assert syn_segment(_syn_packet(0x02, *linux)) is not None
    for flags in (0x10, 0x03, 0x06, 0x16, 0x1A, 0x13, 0x42, 0x82, 0x22):  # not a bare SYN or SYN-ACK
        assert syn_segment(_syn_packet(flags, *linux)) is None
    with_data = TcpSegment(40000, 80, 1, 0, TcpFlags.SYN, 64240, syn_options(*linux), b"x")
    assert syn_segment(build_ipv4(IPv4Packet("198.18.0.1", "198.18.0.2", with_data))) is None
    for options in (
        (Mss(1460), WindowScale(7)),  # WS without its NOP
        (Nop(), Mss(1460)),
        (Mss(1460), Nop(), Nop(), Timestamps(1, 2), Nop(), Nop(), SackPermitted()),
        (Mss(1460), Mss(1400)),
    ):
        seg = TcpSegment(40000, 80, 1, 0, TcpFlags.SYN, 64240, options)
        assert syn_segment(build_ipv4(IPv4Packet("198.18.0.1", "198.18.0.2", seg))) is None, options
    assert syn_segment(_syn_packet(0x02, *linux)[:-4]) is None  # truncated
    raw = bytearray(_syn_packet(0x12, *linux))
    raw[-1] ^= 0xFF
    assert syn_segment(bytes(raw), True) is None
    assert syn_segment(bytes(raw), False) is not None
