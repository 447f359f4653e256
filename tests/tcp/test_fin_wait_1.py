"""FIN-WAIT-1: our FIN is out, not yet acknowledged (RFC 9293 3.10.4, 3.10.7.4)."""

from __future__ import annotations

from tests.tcp.helpers import (
    AK,
    FA,
    ISS,
    PA,
    RA,
    Passive,
    R,
    establish_passive,
    event_types,
    from_peer,
    none_out,
    one,
    segs,
)
from utcp.tcp.state import TcpState
from utcp.wire.packet import TcpSegment


def _fin_wait_1() -> tuple[Passive, TcpSegment]:
    x = establish_passive()
    x.conn.close()
    fin = one(x.host, 0.1)
    assert x.conn.state is TcpState.FIN_WAIT_1
    return x, fin


def test_close_sends_fin_ack_at_snd_nxt() -> None:
    x, fin = _fin_wait_1()
    assert (fin.flags, fin.seq, fin.ack, fin.payload) == (FA, ISS + 1, x.peer_nxt, b"")
    assert x.conn.snd_nxt == ISS + 2


def test_fin_follows_queued_data_on_the_last_segment() -> None:
    x = establish_passive()
    x.conn.send(b"last words")
    x.conn.close()
    out = segs(x.host, 0.1)
    assert [(s.flags, s.seq, s.payload) for s in out] == [(FA | PA, ISS + 1, b"last words")]


def test_ack_of_the_fin_moves_to_fin_wait_2() -> None:
    x, _fin = _fin_wait_1()
    x.host.receive(from_peer(x, AK, ack=ISS + 2), 0.15)
    none_out(x.host, 0.15)
    assert x.conn.state is TcpState.FIN_WAIT_2


def test_ack_that_does_not_cover_the_fin_stays_in_fin_wait_1() -> None:
    x = establish_passive()
    x.conn.send(b"abc")
    x.conn.close()
    segs(x.host, 0.1)
    x.host.receive(from_peer(x, AK, ack=ISS + 4), 0.15)
    assert x.conn.state is TcpState.FIN_WAIT_1


def test_peer_fin_before_our_fin_is_acked_means_closing() -> None:
    x, _fin = _fin_wait_1()
    x.host.receive(from_peer(x, FA, ack=ISS + 1), 0.15)
    ack = one(x.host, 0.15)  # Linux tcp_fin: FIN-WAIT-1 acks at once
    assert (ack.flags, ack.seq, ack.ack) == (AK, ISS + 2, x.peer_nxt + 1)
    assert x.conn.state is TcpState.CLOSING


def test_fin_ack_covering_our_fin_goes_straight_to_time_wait() -> None:
    x, _fin = _fin_wait_1()
    x.host.receive(from_peer(x, FA, ack=ISS + 2), 0.15)
    ack = one(x.host, 0.15)
    assert (ack.flags, ack.ack) == (AK, x.peer_nxt + 1)
    assert x.conn.state is TcpState.TIME_WAIT


def test_lost_fin_is_retransmitted() -> None:
    x, _fin = _fin_wait_1()
    d = x.host.next_deadline()
    assert d is not None
    x.host.on_timer(d)
    again = one(x.host, d)
    assert (again.flags, again.seq) == (FA, ISS + 1)
    assert x.host.counters["RetransSegs"] == 1


def test_new_data_after_close_is_answered_with_rst() -> None:
    x, _fin = _fin_wait_1()
    x.host.receive(from_peer(x, PA, ack=ISS + 1, payload=b"more"), 0.15)
    rst = one(x.host, 0.15)
    assert (rst.flags, rst.seq) == (R, ISS + 1)  # tcp_v4_send_reset: seq = the segment's ACK
    assert x.conn.state is TcpState.CLOSED
    assert x.host.counters["TCPAbortOnData"] == 1
    assert "Reset" in event_types(x.host)


def test_after_shutdown_data_is_still_received() -> None:
    x = establish_passive()
    x.conn.shutdown()
    segs(x.host, 0.1)
    assert x.conn.state is TcpState.FIN_WAIT_1
    x.host.receive(from_peer(x, PA, ack=ISS + 1, payload=b"reply"), 0.15)
    assert x.conn.read(100) == b"reply"
    assert x.conn.state is TcpState.FIN_WAIT_1


def test_abort_in_fin_wait_1_sends_rst() -> None:
    x, _fin = _fin_wait_1()
    x.conn.abort()
    rst = one(x.host, 0.2)
    assert (rst.flags, rst.seq) == (RA, ISS + 2)
