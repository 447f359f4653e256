"""Connecting to oneself (SCENARIOS.md C): bind(ip:P) + connect(ip:P). The SYN comes back to the same
socket, which answers SYN-ACK with the same ISN and ends ESTABLISHED talking to itself."""

from __future__ import annotations

from tests.tcp.helpers import AK, ISS, SA, A, S, event_types, make_host
from utcp.tcp.connection import Connection
from utcp.tcp.host import Host
from utcp.tcp.state import TcpState
from utcp.wire.packet import Sack, TcpSegment


def _self_connected() -> tuple[Host, Connection, list[TcpSegment]]:
    host = make_host(loopback_visible=True)
    conn = host.connect(A, 40006, 0.0, local_port=40006)
    out = [p.tcp for p in host.packets_to_send(0.0)]
    return host, conn, out


def test_syn_synack_then_ack_with_dsack_like_the_kernel_capture() -> None:
    host, conn, out = _self_connected()
    assert [(s.flags, s.seq, s.ack) for s in out] == [
        (S, ISS, 0),
        (SA, ISS, ISS + 1),  # the same ISN: it is the same socket
        (AK, ISS + 1, ISS + 1),
    ]
    assert all((s.src_port, s.dst_port) == (40006, 40006) for s in out)
    last = out[-1]
    assert Sack(((ISS, ISS + 1),)) in last.options  # D-SACK {X:X+1}
    assert conn.state is TcpState.ESTABLISHED
    assert host.connections() == [conn]
    assert event_types(host) == ["Connected"]


def test_data_sent_comes_back() -> None:
    host, conn, _ = _self_connected()
    assert conn.send(b"echo?") == 5
    host.packets_to_send(0.01)
    assert conn.read(100) == b"echo?"
    host.on_timer(0.06)
    host.packets_to_send(0.06)
    assert conn.stats.in_flight == 0


def test_bulk_data_to_oneself_arrives_in_order() -> None:
    host, conn, _ = _self_connected()
    data = bytes(range(256)) * 2000
    got = bytearray()
    sent = 0
    now = 0.0
    while len(got) < len(data) and now < 10:
        sent += conn.send(data[sent:])
        host.packets_to_send(now)
        got += conn.read()
        d = host.next_deadline()
        now = max(now + 0.001, d if d is not None and d < now + 1 else now + 0.001)
        host.on_timer(now)
    assert bytes(got) == data


def test_self_connection_closes_through_simultaneous_close() -> None:
    host, conn, _ = _self_connected()
    conn.close()
    host.packets_to_send(0.1)
    assert conn.state is TcpState.TIME_WAIT  # both FINs are its own: CLOSING, then TIME-WAIT


def test_self_delivered_packets_are_not_returned_unless_loopback_visible() -> None:
    host = make_host()
    host.connect(A, 40006, 0.0, local_port=40006)
    assert host.packets_to_send(0.0) == []
    assert host.counters["OutSegs"] == 3
