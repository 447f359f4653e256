"""CLOSING: simultaneous close, both FINs crossed (RFC 9293 3.6 figure 13)."""

from __future__ import annotations

from tests.tcp.helpers import (
    AK,
    FA,
    ISS,
    Passive,
    R,
    establish_passive,
    event_types,
    from_peer,
    none_out,
    one,
)
from utcp.tcp.state import TcpState


def _closing() -> Passive:
    x = establish_passive()
    x.conn.close()
    one(x.host, 0.1)
    x.host.receive(from_peer(x, FA, ack=ISS + 1), 0.1)
    one(x.host, 0.1)
    assert x.conn.state is TcpState.CLOSING
    x.host.events()
    return x


def test_ack_of_our_fin_enters_time_wait() -> None:
    x = _closing()
    x.host.receive(from_peer(x, AK, seq=x.peer_nxt + 1, ack=ISS + 2), 0.15)
    none_out(x.host, 0.15)
    assert x.conn.state is TcpState.TIME_WAIT


def test_our_fin_is_retransmitted_until_acked() -> None:
    x = _closing()
    d = x.host.next_deadline()
    assert d is not None
    x.host.on_timer(d)
    again = one(x.host, d)
    assert (again.flags, again.seq, again.ack) == (FA, ISS + 1, x.peer_nxt + 1)


def test_rst_closes_without_error() -> None:
    x = _closing()
    x.host.receive(from_peer(x, R, seq=x.peer_nxt + 1, ack=0), 0.15)
    assert x.conn.state is TcpState.CLOSED
    assert x.conn.error is None
    assert event_types(x.host) == ["Closed"]
