"""Property tests: the fast path equals the construct reference on every input, parsing untrusted
bytes raises only WireError, and whatever parses rebuilds to the same bytes."""

from __future__ import annotations

from collections.abc import Callable

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.wire.strategies import (
    any_options,
    fix_checksums,
    ones_sum_checksum,
    packets,
    segments,
    tcp_packet_with_option_area,
)
from utcp.wire import (
    IPv4Packet,
    TcpSegment,
    WireError,
    build_ipv4,
    build_ipv4_reference,
    parse_ipv4,
    parse_ipv4_reference,
)

Outcome = IPv4Packet | tuple[type, str]


def outcome(parse: Callable[..., IPv4Packet], data: bytes, verify: bool) -> Outcome:
    # Only WireError is caught: any other exception fails the test.
    try:
        return parse(data, verify_checksums=verify)
    except WireError as exc:
        return (type(exc), str(exc))


def check_parse(data: bytes) -> None:
    """Fast and reference agree (value, or exception type and message), with and without
    checksum verification; a packet that parses with verified checksums rebuilds byte-exact."""
    for verify in (True, False):
        fast = outcome(parse_ipv4, data, verify)
        assert fast == outcome(parse_ipv4_reference, data, verify)
        if verify and isinstance(fast, IPv4Packet):
            check_rebuild(data, fast)


def check_rebuild(data: bytes, packet: IPv4Packet) -> None:
    ihl = (data[0] & 0x0F) * 4
    if data[6] & 0x80:
        return  # the IPv4 reserved flag is ignored on receive and not kept
    if isinstance(packet.payload, TcpSegment) and data[ihl + 12] & 0x0F:
        return  # so are the TCP reserved bits
    total = int.from_bytes(data[2:4], "big")
    assert build_ipv4(packet) == data[:total]
    assert build_ipv4_reference(packet) == data[:total]


@settings(max_examples=300)
@given(packets())
def test_build_then_parse_gives_the_value_back(packet: IPv4Packet) -> None:
    data = build_ipv4(packet)
    assert build_ipv4_reference(packet) == data
    assert parse_ipv4(data) == packet
    assert parse_ipv4_reference(data) == packet
    ihl = (data[0] & 0x0F) * 4
    assert ones_sum_checksum(data[:ihl]) == 0  # independent RFC 1071 loop
    assert fix_checksums(data) == data


@settings(max_examples=300)
@given(segments(any_options), st.booleans())
def test_builders_agree_on_any_option_list(segment: TcpSegment, verify: bool) -> None:
    packet = IPv4Packet("198.18.0.2", "198.18.0.1", segment)
    results: list[bytes | tuple[type, str]] = []
    for build in (build_ipv4, build_ipv4_reference):
        try:
            results.append(build(packet))
        except WireError as exc:
            results.append((type(exc), str(exc)))
    fast, reference = results
    if isinstance(fast, tuple):
        assert isinstance(reference, tuple)
        assert fast[0] is reference[0]
        return
    assert fast == reference
    check_parse(fast)


@settings(max_examples=300)
@given(st.binary(max_size=80))
def test_random_bytes(data: bytes) -> None:
    check_parse(data)


@settings(max_examples=300)
@given(st.binary(min_size=20, max_size=100), st.integers(0, 10))
def test_random_bytes_shaped_like_tcp(body: bytes, ihl_extra: int) -> None:
    data = bytearray(body)
    data[0] = 0x45 + min(ihl_extra, 10)
    data[2:4] = len(data).to_bytes(2, "big")
    data[6] &= 0x40  # not a fragment
    data[9] = 6
    check_parse(fix_checksums(bytes(data)))


@settings(max_examples=200)
@given(packets(), st.data())
def test_truncated_packets(packet: IPv4Packet, data: st.DataObject) -> None:
    raw = build_ipv4(packet)
    cut = data.draw(st.integers(0, len(raw)))
    check_parse(raw[:cut])
    check_parse(fix_checksums(raw[:cut]))


@settings(max_examples=300)
@given(packets(), st.data())
def test_single_byte_mutations(packet: IPv4Packet, data: st.DataObject) -> None:
    raw = bytearray(build_ipv4(packet))
    index = data.draw(st.integers(0, len(raw) - 1))
    raw[index] = data.draw(st.integers(0, 255))
    check_parse(bytes(raw))
    check_parse(fix_checksums(bytes(raw)))


@settings(max_examples=300)
@given(packets(), st.data())
def test_field_mutations(packet: IPv4Packet, data: st.DataObject) -> None:
    raw = bytearray(build_ipv4(packet))
    ihl = (raw[0] & 0x0F) * 4
    fields = [(0, 1), (2, 2), (6, 2), (9, 1)]
    if isinstance(packet.payload, TcpSegment):
        fields += [(ihl + 12, 1)]  # data offset
        options_end = ihl + (raw[ihl + 12] >> 4) * 4
        fields += [(i, 1) for i in range(ihl + 20, options_end)]  # option kinds and lengths
    offset, size = data.draw(st.sampled_from(fields))
    raw[offset : offset + size] = data.draw(st.integers(0, (1 << (8 * size)) - 1)).to_bytes(size, "big")
    check_parse(fix_checksums(bytes(raw)))


interesting_kinds = st.sampled_from([0, 1, 2, 3, 4, 5, 8, 254, 30, 255])


@st.composite
def option_areas(draw: st.DrawFn) -> bytes:
    """Option areas assembled from plausible kind/length pieces, valid or not."""
    area = b""
    while len(area) < 40 and draw(st.booleans()):
        kind = draw(interesting_kinds)
        if kind in (0, 1):
            area += bytes((kind,))
            continue
        length = draw(st.sampled_from([0, 1, 2, 3, 4, 8, 10, 18, 20]) | st.integers(0, 45))
        area += bytes((kind, length)) + draw(
            st.binary(min_size=max(length - 2, 0), max_size=max(length - 2, 0))
        )
    return area[:40]


@settings(max_examples=400)
@given(option_areas() | st.binary(max_size=40), st.binary(max_size=5))
def test_random_option_areas(area: bytes, payload: bytes) -> None:
    check_parse(tcp_packet_with_option_area(area, payload))
