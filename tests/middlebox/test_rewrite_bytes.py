"""The byte fast path (RFC 1624 incremental checksums) gives exactly the bytes of the value path."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.middlebox.packets import CLIENT, FA, LIP, PA, RA, RS, SA, VIP, A, R, S, tcp
from tests.middlebox.test_fullnat import (
    CPORT,
    LPORT,
    LVS_ISN,
    RS_ISN,
    RSPORT,
    U32,
    VPORT,
    client_syn,
    make_lb,
    rs_synack,
)
from utcp.middlebox import Direction, Rewrite, apply_rewrite, peek_tcp, rewrite_bytes
from utcp.wire.codec import build_ipv4, parse_ipv4
from utcp.wire.errors import ChecksumError
from utcp.wire.packet import IPv4Packet, Mss, Nop, Sack, TcpOption, Timestamps, UnknownOption

TO_S, TO_C = Direction.TO_SERVER, Direction.TO_CLIENT

SAMPLES = [
    tcp(CLIENT, 40000, VIP, 80, A, 5, 6),
    tcp(CLIENT, 40000, VIP, 80, PA, U32 - 3, 17, payload=b"hello world", ident=9),
    tcp(RS, 80, LIP, 5000, A, 1, 2, options=(Nop(), Nop(), Timestamps(1, 2))),
    tcp(RS, 80, LIP, 5000, A, 1, 2, options=(Nop(), Nop(), Sack(((10, 20), (U32 - 5, 3), (40, 50))))),
    # A SACK option at an odd offset (after one NOP): the edges straddle 16-bit words.
    tcp(RS, 80, LIP, 5000, A, 1, 2, options=(Nop(), Sack(((100, 200),)), Nop(), Nop(), Nop()), payload=b"x"),
    tcp(RS, 80, LIP, 5000, R, 7, 0),  # no ACK flag: the ack field must stay as it is
    tcp(CLIENT, 1, VIP, 2, FA, 0, U32 - 1, options=(UnknownOption(99, b"abc"), Nop())),
]
REWRITES = [
    Rewrite(),
    Rewrite(src=LIP, dst=RS, sport=5000, dport=3269, seq_delta=12345),
    Rewrite(src=VIP, dst=CLIENT, sport=3306, dport=61902, ack_delta=-12345, sack_delta=-12345),
    Rewrite(dst=RS, seq_delta=U32 - 1, ack_delta=7, sack_delta=U32 - 7, ttl_decrement=1),
    Rewrite(src=CLIENT, sport=61902),
]


@pytest.mark.parametrize("packet", SAMPLES)
@pytest.mark.parametrize("rw", REWRITES)
def test_rewrite_bytes_equals_the_value_path(packet: IPv4Packet, rw: Rewrite) -> None:
    expected = build_ipv4(apply_rewrite(packet, rw))
    got = rewrite_bytes(build_ipv4(packet), rw)
    assert got == expected
    parse_ipv4(got, verify_checksums=True)


@st.composite
def header_and_rewrite(draw: st.DrawFn) -> tuple[IPv4Packet, Rewrite]:
    u32 = st.integers(0, U32 - 1)
    edges = draw(st.lists(st.tuples(u32, u32), max_size=3))
    options: tuple[TcpOption, ...] = (
        (*(Nop(),) * draw(st.integers(0, 3)), Sack(tuple(edges))) if edges else ()
    )
    packet = tcp(
        RS,
        80,
        LIP,
        5000,
        draw(st.sampled_from([A, PA, FA, R, R | A, S, SA])),
        draw(u32),
        draw(u32),
        options=options,
        payload=draw(st.binary(max_size=33)),
        ttl=draw(st.integers(2, 255)),
    )
    delta = draw(u32)
    rw = Rewrite(
        src=draw(st.sampled_from([CLIENT, LIP, "198.19.255.254"])),
        dst=CLIENT,
        sport=draw(st.integers(1, 65535)),
        dport=61902,
        seq_delta=draw(u32),
        ack_delta=delta,
        sack_delta=delta,
        ttl_decrement=1,
    )
    return packet, rw


@settings(max_examples=60, deadline=None)
@given(header_and_rewrite())
def test_rewrite_bytes_equals_the_value_path_for_any_header(case: tuple[IPv4Packet, Rewrite]) -> None:
    packet, rw = case
    assert rewrite_bytes(build_ipv4(packet), rw) == build_ipv4(apply_rewrite(packet, rw))


def test_a_wrong_checksum_stays_wrong() -> None:
    data = bytearray(build_ipv4(SAMPLES[1]))
    data[-1] ^= 0xFF  # corrupt the payload, not the checksum
    out = rewrite_bytes(bytes(data), REWRITES[1])
    with pytest.raises(ChecksumError):
        parse_ipv4(out, verify_checksums=True)


def test_peek_rejects_what_is_not_plain_ipv4_tcp() -> None:
    good = build_ipv4(SAMPLES[0])
    assert peek_tcp(good) is not None
    assert peek_tcp(good[:30]) is None
    assert peek_tcp(b"\x60" + good[1:]) is None  # IPv6 version nibble
    fragment = build_ipv4(IPv4Packet(src=CLIENT, dst=VIP, payload=good[20:], more_fragments=True))
    assert peek_tcp(fragment) is None
    with pytest.raises(ValueError, match="not an unfragmented"):
        rewrite_bytes(good[:30], Rewrite())


def _flow() -> list[tuple[IPv4Packet, Direction, float]]:
    """A FullNAT conversation with every kind of segment, including the seq wrap and SACK."""
    c_isn = U32 - 30
    return [
        (client_syn(c_isn), TO_S, 0.0),
        (client_syn(c_isn), TO_S, 1.0),  # retransmitted SYN
        (rs_synack(), TO_C, 1.1),
        (tcp(CLIENT, CPORT, VIP, VPORT, A, c_isn + 1, RS_ISN + 1), TO_S, 1.2),  # third ACK: TOA
        (
            tcp(CLIENT, CPORT, VIP, VPORT, PA, c_isn + 1, RS_ISN + 1, payload=b"a" * 40),
            TO_S,
            1.3,
        ),  # early data
        (tcp(RS, RSPORT, LIP, LPORT, PA, RS_ISN + 1, LVS_ISN + 41, payload=b"b" * 100), TO_C, 1.4),
        (tcp(CLIENT, CPORT, VIP, VPORT, PA, (c_isn + 41) % U32, RS_ISN + 101, payload=b"c" * 30), TO_S, 1.5),
        (
            tcp(
                RS,
                RSPORT,
                LIP,
                LPORT,
                A,
                RS_ISN + 101,
                LVS_ISN + 41,
                options=(Nop(), Nop(), Sack(((LVS_ISN + 51, LVS_ISN + 71),))),
            ),
            TO_C,
            1.6,
        ),
        (tcp(CLIENT, CPORT, VIP, VPORT, FA, (c_isn + 71) % U32, RS_ISN + 101), TO_S, 1.7),
        (tcp(RS, RSPORT, LIP, LPORT, FA, RS_ISN + 101, LVS_ISN + 72), TO_C, 1.8),
        (tcp(CLIENT, CPORT, VIP, VPORT, A, (c_isn + 72) % U32, RS_ISN + 102), TO_S, 1.9),
        (tcp(CLIENT, 1, VIP, VPORT, S, 5, options=(Mss(1460),)), TO_S, 2.0),  # second connection
        (tcp(RS, RSPORT, LIP, LPORT + 1, SA, 9, LVS_ISN + 1, options=(Mss(1400),)), TO_C, 2.1),
        (tcp(CLIENT, 1, VIP, VPORT, A, 6, 10), TO_S, 2.2),
        (tcp(CLIENT, 1, VIP, VPORT, PA, 6, 10, payload=b"d"), TO_S, 2.3),
        (tcp(RS, RSPORT, LIP, LPORT + 1, RA, 10, LVS_ISN + 2), TO_C, 2.4),
        (tcp(CLIENT, CPORT, RS, RSPORT, S, 77), TO_S, 2.5),  # not for the LB: passes
        (tcp(CLIENT, 9, VIP, VPORT, A, 1, 1), TO_S, 2.6),  # no entry: dropped
        (tcp(CLIENT, 2, VIP, VPORT, S, 5), TO_S, 3.0),  # a third connection, left to expire
        (tcp(RS, RSPORT, LIP, LPORT + 2, SA, 9, LVS_ISN + 1), TO_C, 3.1),
        (tcp(CLIENT, 2, VIP, VPORT, A, 6, 10), TO_S, 3.2),
        (tcp(RS, RSPORT, LIP, LPORT + 2, PA, 10, LVS_ISN + 1, payload=b"e" * 5), TO_C, 3.3),
        (tcp(CLIENT, 3, VIP, VPORT, S, 5), TO_S, 200.0),  # arrives after the expiry RSTs are due
    ]


def test_fullnat_byte_path_matches_the_value_path_packet_for_packet() -> None:
    by_value = make_lb()
    by_bytes = make_lb()
    got: list[tuple[bytes, Direction]] = []
    for packet, direction, now in _flow():
        expected = [(build_ipv4(e.packet), e.direction) for e in by_value.process(packet, direction, now)]
        got = [(e.data, e.direction) for e in by_bytes.process_bytes(build_ipv4(packet), direction, now)]
        assert got == expected, (packet, now)
    # The last packet came after the third connection's idle timeout: its two RSTs lead.
    assert [parse_ipv4(data).tcp.flags for data, _ in got] == [R, R, S]
    # Established-flow segments took the fast path; SYNs, SYN-ACKs (MSS) and TOA-carrying ACKs did not.
    assert by_bytes.stats["lb_bytes_fast_path"] == 8
    assert by_bytes.stats["lb_bytes_slow_path"] == 13
    by_bytes_counts = {k: v for k, v in by_bytes.stats.items() if not k.startswith("lb_bytes_")}
    assert by_bytes_counts == dict(by_value.stats)
    assert by_bytes.format_entries(200.0) == by_value.format_entries(200.0)


def test_byte_path_counts_and_drops_bad_input() -> None:
    lb = make_lb()
    assert lb.process_bytes(b"\x45\x00garbage", TO_S, 0.0) == []
    assert lb.stats["dropped_unparseable"] == 1
    data = bytearray(build_ipv4(dataclasses.replace(client_syn())))
    data[-1] ^= 0x01  # breaks the TCP checksum
    assert lb.process_bytes(bytes(data), TO_S, 0.0) == []
    assert lb.stats["dropped_bad_checksum"] == 1
    assert lb.entries() == []
