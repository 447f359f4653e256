"""tools.bench_conn_floor: the bare responder speaks enough TCP for the kernel client, and drops what it
cannot read (its figure is only a floor if it does the exchange for real)."""

from __future__ import annotations

import trio

from tools.bench_conn_floor import FloorResponder, _packet, floor_server
from utcp.lab.netns import netns
from utcp.wire.codec import parse_ipv4
from utcp.wire.packet import Mss, TcpFlags, TcpSegment

CLIENT, SERVER = bytes([198, 18, 0, 1]), bytes([198, 18, 0, 2])


def _segment(raw: bytes | None) -> TcpSegment:
    assert raw is not None
    seg = parse_ipv4(raw).payload  # checksums verified by the parse
    assert isinstance(seg, TcpSegment)
    return seg


def test_the_responder_answers_the_exchange_with_valid_segments() -> None:
    responder = FloorResponder(fd=-1)
    syn = _packet(CLIENT, SERVER, 40000, 5004, seq=1000, ack=0, flags=TcpFlags.SYN)
    seg = _segment(responder.answer(syn))
    assert seg.flags == TcpFlags.SYN | TcpFlags.ACK and seg.ack == 1001
    assert seg.option(Mss) is not None and (seg.src_port, seg.dst_port) == (5004, 40000)
    isn = seg.seq

    assert (
        responder.answer(_packet(CLIENT, SERVER, 40000, 5004, seq=1001, ack=isn + 1, flags=TcpFlags.ACK))
        is None
    )
    request = _packet(
        CLIENT, SERVER, 40000, 5004, seq=1001, ack=isn + 1, flags=TcpFlags.PSH | TcpFlags.ACK, payload=b"x"
    )
    reply = _segment(responder.answer(request))
    assert reply.flags == TcpFlags.FIN | TcpFlags.PSH | TcpFlags.ACK
    assert (reply.seq, reply.ack, reply.payload) == (isn + 1, 1002, b"y")

    fin = _packet(CLIENT, SERVER, 40000, 5004, seq=1002, ack=isn + 3, flags=TcpFlags.FIN | TcpFlags.ACK)
    last = _segment(responder.answer(fin))
    assert last.flags == TcpFlags.ACK and (last.seq, last.ack) == (isn + 3, 1003)
    assert responder.served == 1 and not responder.isn


def test_a_corrupt_or_short_packet_is_counted_and_dropped() -> None:
    responder = FloorResponder(fd=-1)
    syn = bytearray(_packet(CLIENT, SERVER, 40000, 5004, seq=1000, ack=0, flags=TcpFlags.SYN))
    syn[-1] ^= 0xFF  # the TCP checksum no longer verifies
    assert responder.answer(bytes(syn)) is None
    assert responder.answer(b"\x45\x00") is None
    assert responder.dropped == 2 and not responder.isn


def test_the_floor_serves_every_kernel_connection(privileged: None) -> None:
    async def run() -> tuple[float, float]:
        # raises unless all 200 were served without failure; a responder that gets the exchange wrong
        # leaves the client waiting on its 30 s socket timeouts: fail at 30 s in all
        with netns() as ns, trio.fail_after(30):
            return await floor_server(ns, 200)

    rate, cpu_us = trio.run(run)
    assert rate > 0 and cpu_us > 0
