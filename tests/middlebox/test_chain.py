"""`Chain`: boxes in series behave as the same boxes wired one after the other."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from utcp.middlebox import (
    DROPPED_UNPARSEABLE,
    Direction,
    FullNat,
    FullNatConfig,
    RealServer,
    RsToa,
    RsToaConfig,
    ToaMode,
    VirtualService,
)
from utcp.middlebox.chain import Chain
from utcp.wire.codec import build_ipv4
from utcp.wire.packet import IPv4Packet, Mss, TcpFlags, TcpSegment, Timestamps, Toa

Step = Callable[[IPv4Packet, Direction], list[tuple[Direction, IPv4Packet | bytes]]]
CLIENT, VIP, LIP, RS = "198.18.1.1", "198.18.100.1", "198.18.3.1", "198.18.2.1"
CPORT, VPORT, RSPORT = 40000, 80, 8080
S, A, R = TcpFlags.SYN, TcpFlags.ACK, TcpFlags.RST


def _boxes() -> tuple[FullNat, RsToa]:
    service = VirtualService(VIP, VPORT, (RealServer(RS, RSPORT),))
    lb = FullNat(FullNatConfig(services=(service,), local_addresses=(LIP,), seed=5))
    return lb, RsToa(RsToaConfig(mode=ToaMode.REWRITE))


def _pkt(  # noqa: PLR0917
    src: str, dst: str, sport: int, dport: int, seq: int, ack: int, flags: TcpFlags, **kw: object
) -> IPv4Packet:
    return IPv4Packet(src, dst, TcpSegment(sport, dport, seq, ack, flags, 65535, **kw))  # type: ignore[arg-type]


def _exchange(step: Step, rs_isn: int = 7000) -> list[tuple[Direction, IPv4Packet | bytes]]:
    """A handshake, data both ways, through `process(packet, direction)`; what came out, in order."""
    out: list[tuple[Direction, IPv4Packet | bytes]] = []
    syn = _pkt(CLIENT, VIP, CPORT, VPORT, 100, 0, S, options=(Mss(1460), Timestamps(1, 0)))
    out += step(syn, Direction.TO_SERVER)
    isn = _seq_of(out[-1][1])
    out += step(
        _pkt(RS, CLIENT, RSPORT, CPORT, rs_isn, isn + 1, S | A, options=(Mss(1460),)), Direction.TO_CLIENT
    )
    out += step(_pkt(CLIENT, VIP, CPORT, VPORT, 101, rs_isn + 1, A), Direction.TO_SERVER)
    out += step(_pkt(CLIENT, VIP, CPORT, VPORT, 101, rs_isn + 1, A, payload=b"GET"), Direction.TO_SERVER)
    out += step(
        _pkt(RS, CLIENT, RSPORT, CPORT, rs_isn + 1, isn + 4, A, payload=b"x" * 1000), Direction.TO_CLIENT
    )
    out += step(_pkt(CLIENT, VIP, CPORT, VPORT, 104, rs_isn + 1001, A), Direction.TO_SERVER)
    return out


def _seq_of(packet: IPv4Packet | bytes) -> int:
    if isinstance(packet, bytes):
        return int.from_bytes(packet[24:28], "big")
    return packet.tcp.seq


def test_chain_equals_the_boxes_wired_in_series() -> None:
    lb, toa = _boxes()
    chain = Chain(_boxes())

    def by_hand(packet: IPv4Packet, direction: Direction) -> list[tuple[Direction, IPv4Packet | bytes]]:
        if direction is Direction.TO_SERVER:
            return [
                (e2.direction, e2.packet)
                for e in lb.process(packet, direction, 0.0)
                for e2 in toa.process(e.packet, e.direction, 0.0)
            ]
        return [
            (e2.direction, e2.packet)
            for e in toa.process(packet, direction, 0.0)
            for e2 in lb.process(e.packet, e.direction, 0.0)
        ]

    def chained(packet: IPv4Packet, direction: Direction) -> list[tuple[Direction, IPv4Packet | bytes]]:
        return [(e.direction, e.packet) for e in chain.process(packet, direction, 0.0)]

    expected = _exchange(by_hand)
    assert _exchange(chained) == expected
    # The RS saw the client's address (rewrite TOA) and the client only ever saw the VIP.
    to_rs = [p for d, p in expected if d is Direction.TO_SERVER]
    to_client = [p for d, p in expected if d is Direction.TO_CLIENT]
    assert all(isinstance(p, IPv4Packet) and (p.src, p.dst) == (CLIENT, RS) for p in to_rs)
    assert all(isinstance(p, IPv4Packet) and (p.src, p.dst) == (VIP, CLIENT) for p in to_client)
    assert isinstance(to_rs[0], IPv4Packet) and to_rs[0].tcp.option(Toa) == Toa(CPORT, CLIENT)
    assert chain.stats["0.FullNat.toa_inserted"] == lb.stats["toa_inserted"] == 3  # SYN, third ACK, request
    assert chain.stats["1.RsToa.toa_in_rewritten"] == toa.stats["toa_in_rewritten"] == 4


def test_process_bytes_gives_the_bytes_of_process() -> None:
    by_value, by_bytes = Chain(_boxes()), Chain(_boxes())

    def values(packet: IPv4Packet, direction: Direction) -> list[tuple[Direction, IPv4Packet | bytes]]:
        return [(e.direction, build_ipv4(e.packet)) for e in by_value.process(packet, direction, 0.0)]

    def raw(packet: IPv4Packet, direction: Direction) -> list[tuple[Direction, IPv4Packet | bytes]]:
        return [(e.direction, e.data) for e in by_bytes.process_bytes(build_ipv4(packet), direction, 0.0)]

    assert _exchange(raw) == _exchange(values)
    assert by_bytes.stats["0.FullNat.lb_bytes_fast_path"] >= 2  # the LB kept its fast path in the chain


def test_timer_output_walks_on_through_the_following_boxes() -> None:
    lb, toa = _boxes()
    chain = Chain([lb, toa])
    _exchange(lambda p, d: [(e.direction, e.packet) for e in chain.process(p, d, 0.0)])
    deadline = chain.next_deadline()
    assert deadline is not None and deadline == min(lb.next_deadline() or 1e18, toa.next_deadline() or 1e18)
    out = chain.on_timer(deadline)
    # LB expiry (DPVS tcp_send_rst): the RST for the RS crossed the TOA box (rewritten to the client's
    # address, as slb_toa does for the LVS tuple), the one for the client left towards the client.
    kinds = [(e.direction, e.packet.src, e.packet.dst, e.packet.tcp.flags) for e in out]
    assert kinds == [(Direction.TO_SERVER, CLIENT, RS, R), (Direction.TO_CLIENT, VIP, CLIENT, R)]


def test_malformed_input_is_counted_unprefixed_too() -> None:
    chain = Chain(_boxes())
    stats = chain.stats
    assert chain.process(b"\x45\x00garbage", Direction.TO_SERVER, 0.0) == []
    assert chain.process_bytes(b"\x45\x00garbage", Direction.TO_SERVER, 0.0) == []
    assert stats is chain.stats  # updated in place: a runtime may hold it
    assert chain.stats[DROPPED_UNPARSEABLE] == 2 and chain.stats["0.FullNat.dropped_unparseable"] == 2


def test_an_empty_chain_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one box"):
        Chain([])


def test_entries_lists_every_boxs_table() -> None:
    lb, toa = _boxes()
    chain = Chain([lb, toa])
    _exchange(lambda p, d: [(e.direction, e.packet) for e in chain.process(p, d, 0.0)])
    assert chain.entries() == [*lb.entries(), *toa.entries()] and len(chain.entries()) == 2
