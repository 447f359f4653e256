"""Internet checksum against known vectors and a textbook loop; RFC 1624 incremental updates
against full recomputation."""

from __future__ import annotations

import socket

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.wire.strategies import ones_sum_checksum
from utcp.wire import (
    IPv4Packet,
    Nop,
    TcpFlags,
    TcpSegment,
    Timestamps,
    build_ipv4,
    checksum_update16,
    checksum_update32,
    checksum_update_bytes,
    internet_checksum,
    parse_ipv4,
    tcp_checksum,
)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (bytes.fromhex("0001f203f4f5f6f7"), 0x220D),  # RFC 1071 section 3: sum 0xddf2
        (bytes.fromhex("450000730000400040110000c0a80001c0a800c7"), 0xB861),  # a classic IPv4 header
        (bytes.fromhex("450000730000400040110000c0a80001c0a800c7")[:-1], 0xB861 + 0xC7),  # odd: pads a zero
        (b"", 0xFFFF),
        (b"\x00\x00\x00", 0xFFFF),  # all zero: +0 sum
        (b"\xff\xff", 0x0000),  # sum -0
        (b"\x01", 0xFEFF),
        (b"\x00\x01" * 0xFFFF, 0x0000),  # 0xFFFF ones fold to -0, not +0
    ],
)
def test_known_vectors(data: bytes, expected: int) -> None:
    assert internet_checksum(data) == expected
    assert ones_sum_checksum(data) == expected


def test_verifies_to_zero_over_a_header_with_its_checksum() -> None:
    header = bytes.fromhex("45000073000040004011b861c0a80001c0a800c7")
    assert internet_checksum(header) == 0
    assert internet_checksum(memoryview(header)) == 0
    assert internet_checksum(bytearray(header)) == 0


@settings(max_examples=500)
@given(st.binary(max_size=2000))
def test_matches_the_textbook_loop(data: bytes) -> None:
    assert internet_checksum(data) == ones_sum_checksum(data)


def test_tcp_checksum_with_pseudo_header() -> None:
    packet = IPv4Packet("198.18.0.2", "198.18.0.1", TcpSegment(1, 2, 3, 4, TcpFlags.ACK, 5, payload=b"odd"))
    segment = build_ipv4(packet)[20:]
    assert tcp_checksum("198.18.0.2", "198.18.0.1", segment) == 0
    assert tcp_checksum(socket.inet_aton("198.18.0.2"), socket.inet_aton("198.18.0.1"), segment) == 0
    zeroed = segment[:16] + b"\x00\x00" + segment[18:]
    pseudo = (
        socket.inet_aton("198.18.0.2")
        + socket.inet_aton("198.18.0.1")
        + bytes((0, 6))
        + len(segment).to_bytes(2)
    )
    expected = ones_sum_checksum(pseudo + zeroed)
    assert (
        tcp_checksum("198.18.0.2", "198.18.0.1", zeroed) == expected == int.from_bytes(segment[16:18], "big")
    )
    assert tcp_checksum("198.18.0.2", "198.18.0.3", segment) != 0


# --- RFC 1624 ---------------------------------------------------------------------------------


def test_rfc1624_example_gives_plus_zero_where_eqn2_gave_minus_zero() -> None:
    # RFC 1624 section 4: other words sum to 0xCD7A, m = 0x5555 -> m' = 0x3285; HC = 0xDD2F.
    old = bytes.fromhex("cd7a5555")
    new = bytes.fromhex("cd7a3285")
    assert internet_checksum(old) == 0xDD2F
    assert internet_checksum(new) == 0x0000
    assert checksum_update16(0xDD2F, 0x5555, 0x3285) == 0x0000
    assert checksum_update_bytes(0xDD2F, b"\x55\x55", b"\x32\x85", offset=2) == 0x0000


def _expected_incremental(new_data: bytes) -> int:
    full = internet_checksum(new_data)
    if not any(new_data):
        # The one representational corner: all-zero data sums to +0 (checksum 0xFFFF) while an
        # update from non-zero data reaches -0 (0x0000). Both verify; IP/TCP data is never all zero.
        return 0x0000
    return full


@st.composite
def word_changes(draw: st.DrawFn) -> tuple[bytes, int, int]:
    """Data, the index of a 16-bit word, its new value; half the time the new value makes the
    new sum exactly -0 (checksum 0x0000), the corner RFC 1624 eqn. 3 exists for."""
    words = draw(st.integers(1, 40))
    data = draw(st.binary(min_size=2 * words, max_size=2 * words))
    index = draw(st.integers(0, words - 1))
    if draw(st.booleans()):
        others = data[: 2 * index] + b"\x00\x00" + data[2 * index + 2 :]
        rest = 0xFFFF - internet_checksum(others)  # one's-complement sum of the other words
        new_word = 0xFFFF - rest
    else:
        new_word = draw(st.integers(0, 0xFFFF))
    return data, index, new_word


@settings(max_examples=500)
@given(word_changes())
def test_update16_equals_full_recompute(change: tuple[bytes, int, int]) -> None:
    data, index, new_word = change
    old_word = int.from_bytes(data[2 * index : 2 * index + 2], "big")
    new_data = data[: 2 * index] + new_word.to_bytes(2, "big") + data[2 * index + 2 :]
    updated = checksum_update16(internet_checksum(data), old_word, new_word)
    assert updated == _expected_incremental(new_data)
    assert (
        checksum_update_bytes(
            internet_checksum(data),
            data[2 * index : 2 * index + 2],
            new_data[2 * index : 2 * index + 2],
            offset=2 * index,
        )
        == updated
    )


@settings(max_examples=300)
@given(st.binary(min_size=4, max_size=60), st.data())
def test_update32_equals_full_recompute(data: bytes, draw: st.DataObject) -> None:
    data = data[: len(data) // 2 * 2]
    offset = draw.draw(st.integers(0, len(data) // 2 - 2)) * 2
    new_value = draw.draw(st.integers(0, 0xFFFFFFFF))
    old_value = int.from_bytes(data[offset : offset + 4], "big")
    new_data = data[:offset] + new_value.to_bytes(4, "big") + data[offset + 4 :]
    assert checksum_update32(internet_checksum(data), old_value, new_value) == _expected_incremental(new_data)


@settings(max_examples=500)
@given(st.binary(min_size=1, max_size=80), st.data())
def test_update_bytes_equals_full_recompute_at_any_offset(data: bytes, draw: st.DataObject) -> None:
    start = draw.draw(st.integers(0, len(data) - 1))
    end = draw.draw(st.integers(start, len(data)))
    replacement = draw.draw(st.binary(min_size=end - start, max_size=end - start))
    new_data = data[:start] + replacement + data[end:]
    updated = checksum_update_bytes(internet_checksum(data), data[start:end], replacement, offset=start)
    if start == end:
        assert updated == internet_checksum(data)  # nothing replaced, nothing changes
    else:
        assert updated == _expected_incremental(new_data)


def test_nat_rewrite_of_address_port_and_seq_verifies() -> None:
    """What a NAT box does: rewrite in place, fix both checksums incrementally, no full pass."""
    segment = TcpSegment(
        40000, 80, 1000, 2000, TcpFlags.ACK, 502, (Nop(), Nop(), Timestamps(1, 2)), b"payload"
    )
    data = bytearray(build_ipv4(IPv4Packet("198.18.0.2", "198.18.0.1", segment)))
    ip_sum = int.from_bytes(data[10:12], "big")
    tcp_sum = int.from_bytes(data[36:38], "big")
    old_src = int.from_bytes(data[12:16], "big")
    new_src = int.from_bytes(socket.inet_aton("198.19.255.254"), "big")
    data[12:16] = new_src.to_bytes(4, "big")
    ip_sum = checksum_update32(ip_sum, old_src, new_src)
    tcp_sum = checksum_update32(tcp_sum, old_src, new_src)  # the pseudo-header holds the address
    tcp_sum = checksum_update16(tcp_sum, 40000, 61000)
    data[20:22] = (61000).to_bytes(2, "big")
    tcp_sum = checksum_update_bytes(tcp_sum, bytes(data[28:32]), (2000 + 77).to_bytes(4, "big"), offset=8)
    data[28:32] = (2000 + 77).to_bytes(4, "big")
    data[10:12] = ip_sum.to_bytes(2, "big")
    data[36:38] = tcp_sum.to_bytes(2, "big")
    packet = parse_ipv4(bytes(data))  # verifies both checksums
    assert (packet.src, packet.tcp.src_port, packet.tcp.ack) == ("198.19.255.254", 61000, 2077)
    assert build_ipv4(packet) == bytes(data)


def test_update_argument_errors() -> None:
    with pytest.raises(ValueError, match="changes length"):
        checksum_update_bytes(0, b"ab", b"abc")
    with pytest.raises(ValueError, match="16 bits"):
        checksum_update16(0x10000, 0, 0)
    with pytest.raises(ValueError, match="32 bits"):
        checksum_update32(0, 1 << 32, 0)
    with pytest.raises(ValueError, match="offset"):
        checksum_update_bytes(0, b"a", b"b", offset=-1)
