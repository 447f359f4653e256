"""LAST-ACK: we closed after the peer did; waiting for the ACK of our FIN (RFC 9293 3.10.7.4)."""

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


def _last_ack() -> Passive:
    x = establish_passive()
    x.host.receive(from_peer(x, FA), 0.1)
    x.conn.close()
    one(x.host, 0.1)
    assert x.conn.state is TcpState.LAST_ACK
    x.host.events()
    return x


def test_ack_of_our_fin_closes_without_time_wait() -> None:
    x = _last_ack()
    x.host.receive(from_peer(x, AK, seq=x.peer_nxt + 1, ack=ISS + 2), 0.15)
    none_out(x.host, 0.15)
    assert x.conn.state is TcpState.CLOSED
    assert event_types(x.host) == ["Closed"]
    assert x.host.connections() == []
    assert x.host.next_deadline() is None
    assert x.host.counters["EstabResets"] == 0


def test_fin_is_retransmitted_with_backoff() -> None:
    x = _last_ack()
    first = x.host.next_deadline()
    assert first is not None
    x.host.on_timer(first)
    assert one(x.host, first).flags == FA
    second = x.host.next_deadline()
    assert second is not None and second - first > first - 0.1


def test_rst_closes_without_error() -> None:
    x = _last_ack()
    x.host.receive(from_peer(x, R, seq=x.peer_nxt + 1, ack=0), 0.15)
    assert x.conn.state is TcpState.CLOSED
    assert x.conn.error is None
