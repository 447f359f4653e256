"""CLOSE-WAIT: the peer closed; we may still send (RFC 9293 3.10.4, 3.10.7.4)."""

from __future__ import annotations

from tests.tcp.helpers import (
    AK,
    FA,
    ISS,
    PA,
    Passive,
    R,
    establish_passive,
    from_peer,
    none_out,
    one,
    sack,
    segs,
    ts,
)
from utcp.tcp.state import TcpState


def _close_wait() -> Passive:
    x = establish_passive()
    x.host.receive(from_peer(x, FA), 0.1)
    assert x.conn.state is TcpState.CLOSE_WAIT
    x.host.events()
    return x


def test_data_can_still_be_sent() -> None:
    x = _close_wait()
    x.conn.send(b"response")
    out = segs(x.host, 0.11)
    assert [(s.flags, s.ack, s.payload) for s in out] == [(PA, x.peer_nxt + 1, b"response")]


def test_close_sends_fin_carrying_the_pending_ack() -> None:
    x = _close_wait()
    x.conn.close()
    fin = one(x.host, 0.12)  # the delayed ACK of the peer's FIN rides on our FIN
    assert (fin.flags, fin.seq, fin.ack) == (FA, ISS + 1, x.peer_nxt + 1)
    assert x.conn.state is TcpState.LAST_ACK
    assert x.host.next_deadline() is not None
    none_out(x.host, 0.15)


def test_retransmitted_fin_from_the_peer_is_acked_with_dsack() -> None:
    x = _close_wait()
    x.host.on_timer(0.14)
    one(x.host, 0.14)
    x.host.receive(from_peer(x, FA), 0.3)
    ack = one(x.host, 0.3)
    assert ack.ack == x.peer_nxt + 1
    assert ack.options == ts(300, 101) + sack((x.peer_nxt, x.peer_nxt + 1))


def test_rst_at_rcv_nxt_minus_one_is_accepted_after_fin() -> None:
    x = _close_wait()
    x.host.receive(from_peer(x, R, seq=x.peer_nxt, ack=0), 0.2)
    assert x.conn.state is TcpState.CLOSED
    assert x.host.counters["EstabResets"] == 1


def test_data_after_the_peer_fin_is_ignored() -> None:
    x = _close_wait()
    x.host.receive(from_peer(x, PA, seq=x.peer_nxt + 1, payload=b"zombie"), 0.12)
    assert x.conn.readable == 0
    x.host.on_timer(0.14)
    assert one(x.host, 0.14).flags == AK
