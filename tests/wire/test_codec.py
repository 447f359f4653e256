"""parse/build by example: exact bytes, option layouts, EOL handling, every validation message."""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.wire.strategies import fix_checksums, ones_sum_checksum, tcp_packet_with_option_area
from utcp.wire import (
    ChecksumError,
    EncodeError,
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
    WireError,
    build_ipv4,
    build_ipv4_reference,
    build_tcp,
    codec,
    parse_ipv4,
    parse_ipv4_reference,
    parse_tcp,
)

SRC = "198.18.0.2"
DST = "198.18.0.1"

LINUX_SYN_OPTIONS: tuple[TcpOption, ...] = (
    Mss(1460),
    SackPermitted(),
    Timestamps(1, 0),
    Nop(),
    WindowScale(7),
)


def parse_both(data: bytes | bytearray | memoryview, *, verify: bool = True) -> IPv4Packet:
    fast = parse_ipv4(data, verify_checksums=verify)
    reference = parse_ipv4_reference(data, verify_checksums=verify)
    assert fast == reference
    return fast


def build_both(packet: IPv4Packet) -> bytes:
    fast = build_ipv4(packet)
    assert build_ipv4_reference(packet) == fast
    return fast


def assert_parse_error(
    data: bytes, message: str, error: type[WireError] = WireError, *, verify: bool = True
) -> None:
    for parse in (parse_ipv4, parse_ipv4_reference):
        with pytest.raises(error) as info:
            parse(data, verify_checksums=verify)
        assert str(info.value) == message, parse.__name__


def assert_build_error(packet: IPv4Packet, fragment: str = "") -> None:
    for build in (build_ipv4, build_ipv4_reference):
        with pytest.raises(EncodeError) as info:
            build(packet)
        assert fragment in str(info.value), (build.__name__, str(info.value))


def tcp(
    options: tuple[TcpOption, ...] = (), payload: bytes = b"", flags: TcpFlags = TcpFlags.ACK
) -> IPv4Packet:
    seg = TcpSegment(40000, 80, 1, 2, flags, 65535, options, payload)
    return IPv4Packet(SRC, DST, seg, ident=7)


# --- exact bytes --------------------------------------------------------------------------------


def test_linux_syn_matches_hand_assembled_bytes() -> None:
    packet = tcp(LINUX_SYN_OPTIONS, flags=TcpFlags.SYN)
    options = bytes.fromhex("020405b4 0402080a 00000001 00000000 01030307")
    tcp_header = struct.pack("!HHIIHHHH", 40000, 80, 1, 2, (10 << 12) | 0x02, 65535, 0, 0) + options
    pseudo = socket.inet_aton(SRC) + socket.inet_aton(DST) + struct.pack("!BBH", 0, 6, len(tcp_header))
    tcp_csum = ones_sum_checksum(pseudo + tcp_header)
    tcp_header = tcp_header[:16] + tcp_csum.to_bytes(2, "big") + tcp_header[18:]
    ip = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 60, 7, 0x4000, 64, 6, 0, socket.inet_aton(SRC), socket.inet_aton(DST)
    )
    ip = ip[:10] + ones_sum_checksum(ip).to_bytes(2, "big") + ip[12:]
    assert build_both(packet) == ip + tcp_header
    assert parse_both(ip + tcp_header) == packet


def test_data_segment_round_trips() -> None:
    packet = tcp(
        (Nop(), Nop(), Timestamps(0xFFFFFFFF, 12345)), payload=b"x" * 101, flags=TcpFlags.PSH | TcpFlags.ACK
    )
    data = build_both(packet)
    assert len(data) == 20 + 32 + 101
    assert parse_both(data) == packet
    assert parse_both(bytearray(data)) == packet
    assert parse_both(memoryview(data)) == packet
    assert parse_ipv4(memoryview(b"\x00" + data)[1:]) == packet


def test_trailing_bytes_beyond_total_length_are_ignored() -> None:
    data = build_both(tcp(payload=b"abc"))
    assert parse_both(data + b"\x00" * 7) == tcp(payload=b"abc")


def test_ip_options_are_kept_verbatim_and_padded_when_building() -> None:
    router_alert = bytes.fromhex("94040000")
    packet = IPv4Packet(SRC, DST, TcpSegment(1, 2, 3, 4, TcpFlags.ACK, 5), options=router_alert)
    data = build_both(packet)
    assert data[0] == 0x46
    assert parse_both(data) == packet
    padded = build_both(IPv4Packet(SRC, DST, b"payload", protocol=17, options=b"\x94\x04"))
    assert parse_both(padded).options == b"\x94\x04\x00\x00"


def test_non_tcp_and_fragments_keep_bytes_payload() -> None:
    udp = IPv4Packet(SRC, DST, b"\x00\x35\x00\x35\x00\x08\x00\x00", protocol=17)
    assert parse_both(build_both(udp)) == udp
    first = IPv4Packet(SRC, DST, b"tcp header and data", more_fragments=True, dont_fragment=False)
    assert parse_both(build_both(first)) == first
    later = IPv4Packet(SRC, DST, b"more data", fragment_offset=185, dont_fragment=False)
    assert parse_both(build_both(later)) == later


def test_tcp_segment_alone() -> None:
    packet = tcp(LINUX_SYN_OPTIONS, payload=b"hello", flags=TcpFlags.SYN)
    raw = build_tcp(packet.tcp, SRC, DST)
    assert raw == build_ipv4(packet)[20:]
    assert parse_tcp(raw, SRC, DST) == packet.tcp
    assert parse_tcp(memoryview(raw), SRC, DST) == packet.tcp
    with pytest.raises(ChecksumError):
        parse_tcp(raw, SRC, "198.18.0.3")
    assert parse_tcp(raw, SRC, "198.18.0.3", verify_checksum=False) == packet.tcp
    with pytest.raises(WireError, match="invalid IPv4 address"):
        parse_tcp(raw, SRC, "not an address")


def test_reserved_bits_are_ignored_on_receive() -> None:
    packet = tcp(payload=b"z")
    data = bytearray(build_both(packet))
    data[6] |= 0x80  # IPv4 reserved flag (RFC 791)
    data[32] |= 0x0F  # TCP reserved bits (RFC 9293 3.1)
    assert parse_both(fix_checksums(bytes(data))) == packet


# --- options --------------------------------------------------------------------------------------

TS = bytes.fromhex("080a 00000001 00000002")
MSS = bytes.fromhex("020405b4")

OPTION_CASES: list[tuple[str, bytes, tuple[TcpOption, ...]]] = [
    ("none", b"", ()),
    ("nop nop ts", b"\x01\x01" + TS, (Nop(), Nop(), Timestamps(1, 2))),
    (
        "linux syn",
        MSS + b"\x04\x02" + TS + b"\x01\x03\x03\x07",
        (*LINUX_SYN_OPTIONS[:2], Timestamps(1, 2), *LINUX_SYN_OPTIONS[3:]),
    ),
    (
        "windows syn",
        MSS + bytes.fromhex("01030308 01010402"),
        (Mss(1460), Nop(), WindowScale(8), Nop(), Nop(), SackPermitted()),
    ),
    ("sack 1", bytes.fromhex("0101050a 00000064 000000c8"), (Nop(), Nop(), Sack(((100, 200),)))),
    (
        "ts sack 3",
        b"\x01\x01" + TS + b"\x01\x01\x05\x1a" + bytes(range(24)),
        (
            Nop(),
            Nop(),
            Timestamps(1, 2),
            Nop(),
            Nop(),
            Sack(tuple(struct.unpack("!II", bytes(range(i, i + 8))) for i in (0, 8, 16))),
        ),
    ),
    ("sack 4", b"\x01\x01\x05\x22" + bytes(32), (Nop(), Nop(), Sack(((0, 0),) * 4))),
    ("mss ws, padded", MSS + b"\x03\x03\x0e\x00", (Mss(1460), WindowScale(14))),
    ("nop then padding", b"\x01\x00\x00\x00", (Nop(),)),
    ("eol alone", b"\x00\x00\x00\x00", (Eol(),)),
    ("eol on a word boundary", MSS + b"\x00\x00\x00\x00", (Mss(1460), Eol())),
    ("eol then bytes", MSS + b"\x00\x01\x02\x03", (Mss(1460), UnknownOption(0, b"\x01\x02\x03"))),
    ("eol then extra zero words", MSS + bytes(8), (Mss(1460), UnknownOption(0, bytes(7)))),
    ("eol mid-word then bytes", b"\x01\x00\x00\x05", (Nop(), UnknownOption(0, b"\x00\x05"))),
    ("toa", bytes.fromhex("fe089c40c6120009"), (Toa(40000, "198.18.0.9"),)),
    ("toa v6", bytes.fromhex("fe149c40 20010db8000000000000000000000001"), (ToaV6(40000, "2001:db8::1"),)),
    (
        "kind 254 other length",
        bytes.fromhex("fe06deadbeef"),
        (UnknownOption(254, bytes.fromhex("deadbeef")),),
    ),
    ("mptcp-like unknown", bytes.fromhex("1e0c" + "00" * 10), (UnknownOption(30, bytes(10)),)),
    ("empty unknown", bytes.fromhex("fd02 0101"), (UnknownOption(253, b""), Nop(), Nop())),
    (
        "full 40 bytes",
        b"\x01\x01" + TS + b"\x01\x01\x05\x1a" + bytes(24),
        (Nop(), Nop(), Timestamps(1, 2), Nop(), Nop(), Sack(((0, 0),) * 3)),
    ),
]


@pytest.mark.parametrize(
    ("area", "expected"), [case[1:] for case in OPTION_CASES], ids=[c[0] for c in OPTION_CASES]
)
def test_option_area_parses_and_rebuilds_byte_exact(area: bytes, expected: tuple[TcpOption, ...]) -> None:
    data = tcp_packet_with_option_area(area)
    packet = parse_both(data)
    assert packet.tcp.options == expected
    assert build_both(packet) == data


@pytest.mark.parametrize(
    ("options", "expected_area"),
    [
        ((Mss(1460), WindowScale(7)), MSS + b"\x03\x03\x07\x00"),
        ((Eol(),), b"\x00\x00\x00\x00"),
        ((Nop(), Eol()), b"\x01\x00\x00\x00"),
        ((Eol(), Mss(1)), b"\x00\x02\x04\x00\x01\x00\x00\x00"),
        ((UnknownOption(0, b"\x07"),), b"\x00\x07\x00\x00"),
        ((SackPermitted(),), b"\x04\x02\x00\x00"),
        ((UnknownOption(200, b"abc"),), b"\xc8\x05abc\x00\x00\x00"),
    ],
)
def test_options_are_written_in_order_then_zero_padded(
    options: tuple[TcpOption, ...], expected_area: bytes
) -> None:
    data = build_both(tcp(options))
    assert data[40:] == expected_area
    assert data[32] >> 4 == 5 + len(expected_area) // 4


def test_eol_inside_the_padding_is_not_reported() -> None:
    # [Nop, Eol] and [Nop] are the same bytes; parsing gives the shorter list.
    assert parse_both(build_both(tcp((Nop(), Eol())))).tcp.options == (Nop(),)


def test_options_after_an_eol_come_back_as_a_trailer() -> None:
    data = build_both(tcp((Eol(), Mss(1))))
    packet = parse_both(data)
    assert packet.tcp.options == (UnknownOption(0, b"\x02\x04\x00\x01\x00\x00\x00"),)
    assert build_both(packet) == data


@given(st.data())
def test_fast_layouts_agree_with_construct(data: st.DataObject) -> None:
    layout = data.draw(st.sampled_from(codec._LAYOUTS))
    noise = data.draw(st.integers(0, (1 << (8 * layout.length)) - 1))
    area = ((noise & ~layout.mask) | layout.pattern).to_bytes(layout.length, "big")
    fast = codec._parse_options(area, 0, len(area))
    assert fast == codec._parse_options_reference(area)
    assert codec._encode_options(fast) == area


def test_fast_layouts_do_not_fall_back_to_construct(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(area: bytes) -> tuple[TcpOption, ...]:
        raise AssertionError("fell back to construct")

    monkeypatch.setattr(codec, "_parse_options_reference", refuse)
    for layout in codec._LAYOUTS:
        area = layout.pattern.to_bytes(layout.length, "big")
        assert len(codec._parse_options(area, 0, len(area))) == len(layout.skeleton.split())


# --- validation messages: both paths, same text ---------------------------------------------------

OPTION_ERRORS = [
    (b"\x01\x01\x01\x02", "tcp option 2 (mss) truncated: no length byte"),
    (b"\x02\x01\x00\x00", "tcp option 2 (mss) length 1 < 2"),
    (b"\x02\x03\x00\x00", "tcp option 2 (mss) length 3 != 4"),
    (b"\x03\x04\x00\x00", "tcp option 3 (wscale) length 4 != 3"),
    (b"\x04\x03\x00\x00", "tcp option 4 (sack-permitted) length 3 != 2"),
    (b"\x05\x02\x00\x00", "tcp option 5 (sack) length 2 is not 2+8n with n >= 1"),
    (b"\x05\x0b" + bytes(10), "tcp option 5 (sack) length 11 is not 2+8n with n >= 1"),
    (b"\x08\x08" + bytes(6), "tcp option 8 (timestamps) length 8 != 10"),
    (b"\x01\x01\x08\x0a" + bytes(4), "tcp option 8 (timestamps) length 10 > 6 bytes left in header"),
    (b"\x1e\x08\x00\x00", "tcp option 30 (unknown) length 8 > 4 bytes left in header"),
    (b"\xfe\x08\x00\x00", "tcp option 254 (toa) length 8 > 4 bytes left in header"),
    (b"\xfe\x00\x00\x00", "tcp option 254 (toa) length 0 < 2"),
    (b"\x01\x01\x01\xff", "tcp option 255 (unknown) truncated: no length byte"),
]


@pytest.mark.parametrize(("area", "message"), OPTION_ERRORS, ids=[m for _, m in OPTION_ERRORS])
def test_bad_option_is_rejected_with_its_name(area: bytes, message: str) -> None:
    assert_parse_error(tcp_packet_with_option_area(area), message)


def mutate(data: bytes, change: Callable[[bytearray], None], *, fix: bool = True) -> bytes:
    buf = bytearray(data)
    change(buf)
    return fix_checksums(bytes(buf)) if fix else bytes(buf)


def set_u16(offset: int, value: int) -> Callable[[bytearray], None]:
    def change(buf: bytearray) -> None:
        buf[offset : offset + 2] = value.to_bytes(2, "big")

    return change


def set_u8(offset: int, value: int) -> Callable[[bytearray], None]:
    def change(buf: bytearray) -> None:
        buf[offset] = value

    return change


def test_header_validation_messages() -> None:
    good = build_both(tcp(payload=b"0123456789"))  # 50 bytes
    assert len(good) == 50
    assert_parse_error(good[:19], "ipv4 header truncated: 19 bytes < 20")
    assert_parse_error(mutate(good, set_u8(0, 0x65)), "ipv4.version 6 != 4")
    assert_parse_error(mutate(good, set_u8(0, 0x43)), "ipv4.ihl 3 < 5")
    assert_parse_error(mutate(good[:44], set_u8(0, 0x4F)), "ipv4.ihl 15 (60 bytes) > 44 bytes available")
    assert_parse_error(mutate(good, set_u16(2, 90)), "ipv4.total_length 90 > 50 bytes available")
    assert_parse_error(mutate(good, set_u16(2, 16)), "ipv4.total_length 16 < header length 20")
    assert_parse_error(mutate(good, set_u16(2, 39)), "tcp header truncated: 19 bytes < 20")
    assert_parse_error(mutate(good, set_u8(32, 0x40)), "tcp.data_offset 4 < 5")
    assert_parse_error(mutate(good, set_u8(32, 0xF0)), "tcp.data_offset 15 (60 bytes) > 30 bytes in segment")


def test_checksum_errors_name_found_and_expected_values() -> None:
    good = build_both(tcp(payload=b"0123456789"))
    ip_sum = int.from_bytes(good[10:12], "big")
    bad_ip = mutate(good, set_u16(10, ip_sum ^ 0x0101), fix=False)
    assert_parse_error(
        bad_ip, f"ipv4.checksum 0x{ip_sum ^ 0x0101:04x} invalid (expected 0x{ip_sum:04x})", ChecksumError
    )
    assert parse_both(bad_ip, verify=False) == tcp(payload=b"0123456789")

    tcp_sum = int.from_bytes(good[36:38], "big")
    bad_tcp = mutate(good, set_u16(36, tcp_sum ^ 0x00FF), fix=False)
    assert_parse_error(
        bad_tcp, f"tcp.checksum 0x{tcp_sum ^ 0x00FF:04x} invalid (expected 0x{tcp_sum:04x})", ChecksumError
    )
    assert parse_both(bad_tcp, verify=False) == tcp(payload=b"0123456789")
    corrupted_payload = mutate(good, set_u8(45, 0x00), fix=False)
    expected = int.from_bytes(fix_checksums(corrupted_payload)[36:38], "big")
    assert expected != tcp_sum
    assert_parse_error(
        corrupted_payload, f"tcp.checksum 0x{tcp_sum:04x} invalid (expected 0x{expected:04x})", ChecksumError
    )


def test_checksum_is_verified_before_options() -> None:
    data = bytearray(tcp_packet_with_option_area(b"\x02\x03\x00\x00"))
    data[36] ^= 0xFF
    with pytest.raises(ChecksumError):
        parse_ipv4(bytes(data))
    assert_parse_error(bytes(data), "tcp option 2 (mss) length 3 != 4", verify=False)


# --- build errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("packet", "fragment"),
    [
        (tcp((Timestamps(1, 2),) * 4 + (Nop(),)), "tcp options 41 bytes > 40"),
        (tcp((Sack(()),)), "tcp option 5 (sack) length 2 is not 2+8n with n >= 1"),
        (tcp((Sack(((1, 2),) * 5),)), "tcp options 42 bytes > 40"),
        (tcp((UnknownOption(1, b""),)), "kind 1 (nop)"),
        (tcp((UnknownOption(7, bytes(300)),)), ""),
        (tcp((Toa(1, "2001:db8::1"),)), "invalid IPv4 address"),
        (tcp((ToaV6(1, "198.18.0.1"),)), "invalid IPv6 address"),
        (tcp((Mss(70000),)), ""),
        (tcp((WindowScale(-1),)), ""),
        (tcp((Timestamps(1 << 32, 0),)), ""),
        (tcp(("mss",)), ""),  # type: ignore[arg-type]
        (IPv4Packet("198.18.0", DST, b""), "invalid IPv4 address"),
        (IPv4Packet(SRC, DST, TcpSegment(65536, 1, 0, 0, TcpFlags.ACK, 0)), ""),
        (IPv4Packet(SRC, DST, TcpSegment(1, 1, 1 << 32, 0, TcpFlags.ACK, 0)), ""),
        (IPv4Packet(SRC, DST, TcpSegment(1, 1, 0, 0, TcpFlags(0x100), 0)), "flags"),
        (IPv4Packet(SRC, DST, TcpSegment(1, 1, 0, 0, TcpFlags.ACK, 65536)), ""),
        (IPv4Packet(SRC, DST, b"", ttl=256), ""),
        (IPv4Packet(SRC, DST, b"", fragment_offset=8192), "fragment_offset"),
        (IPv4Packet(SRC, DST, b"", options=bytes(41)), "ipv4 options 41 bytes > 40"),
        (IPv4Packet(SRC, DST, TcpSegment(1, 1, 0, 0, TcpFlags.ACK, 0), protocol=17), "protocol is 17"),
        (IPv4Packet(SRC, DST, TcpSegment(1, 1, 0, 0, TcpFlags.ACK, 0), more_fragments=True), "fragment"),
        (IPv4Packet(SRC, DST, bytes(65516)), "ipv4.total_length 65536 > 65535"),
        (tcp(payload=bytes(65516)), "tcp segment 65536 bytes > 65535"),
    ],
)
def test_unencodable_values_raise_encode_error(packet: IPv4Packet, fragment: str) -> None:
    assert_build_error(packet, fragment)


def test_largest_packet_builds() -> None:
    packet = IPv4Packet(SRC, DST, bytes(65515), protocol=17)
    assert len(build_both(packet)) == 65535


def test_the_plain_int_flag_bits_are_the_tcp_flags() -> None:
    from utcp.wire.packet import F_ACK, F_FIN, F_PSH, F_RST, F_SYN  # noqa: PLC0415

    assert tuple(int(f) for f in (TcpFlags.FIN, TcpFlags.SYN, TcpFlags.RST, TcpFlags.PSH, TcpFlags.ACK)) == (
        F_FIN,
        F_SYN,
        F_RST,
        F_PSH,
        F_ACK,
    )
