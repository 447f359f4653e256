"""FIN-WAIT-2: our FIN is acknowledged; waiting for the peer's (RFC 9293 3.10.7.4; Linux tcp_fin_timeout)."""

from __future__ import annotations

from tests.tcp.helpers import (
    AK,
    FA,
    ISS,
    PA,
    Passive,
    R,
    cfg,
    establish_passive,
    event_types,
    from_peer,
    none_out,
    one,
    segs,
)
from utcp.tcp.state import TcpState


def _fin_wait_2(close: bool, **kw: object) -> Passive:
    x = establish_passive(cfg(**kw) if kw else None)
    if close:
        x.conn.close()
    else:
        x.conn.shutdown()
    segs(x.host, 0.1)
    x.host.receive(from_peer(x, AK, ack=ISS + 2), 0.15)
    assert x.conn.state is TcpState.FIN_WAIT_2
    x.host.events()
    return x


def test_half_closed_connection_keeps_receiving() -> None:
    x = _fin_wait_2(close=False)
    x.host.receive(from_peer(x, PA, ack=ISS + 2, payload=b"still talking"), 0.2)
    assert x.conn.read(100) == b"still talking"
    assert event_types(x.host) == ["DataReceived"]


def test_peer_fin_enters_time_wait_with_an_immediate_ack() -> None:
    x = _fin_wait_2(close=False)
    x.host.receive(from_peer(x, FA, ack=ISS + 2), 0.2)
    ack = one(x.host, 0.2)
    assert (ack.flags, ack.seq, ack.ack) == (AK, ISS + 2, x.peer_nxt + 1)
    assert x.conn.state is TcpState.TIME_WAIT
    assert event_types(x.host) == ["EofReceived"]


def test_orphaned_fin_wait_2_times_out_silently() -> None:
    x = _fin_wait_2(close=True, fin_wait2_timeout=30.0)
    assert x.host.next_deadline() == 0.15 + 30.0
    x.host.on_timer(30.15)
    none_out(x.host, 30.15)
    assert x.conn.state is TcpState.CLOSED
    assert event_types(x.host) == ["Closed"]
    assert x.host.connections() == []


def test_half_closed_fin_wait_2_waits_forever() -> None:
    x = _fin_wait_2(close=False)
    assert x.host.next_deadline() is None


def test_close_after_shutdown_starts_the_fin_wait_2_timer() -> None:
    x = _fin_wait_2(close=False, fin_wait2_timeout=10.0)
    x.conn.close()
    assert x.host.next_deadline() == 10.15


def test_data_after_close_is_reset() -> None:
    x = _fin_wait_2(close=True)
    x.host.receive(from_peer(x, PA, ack=ISS + 2, payload=b"x"), 0.2)
    rst = one(x.host, 0.2)
    assert (rst.flags, rst.seq) == (R, ISS + 2)
    assert x.conn.state is TcpState.CLOSED
