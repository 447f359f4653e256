"""TIME-WAIT (RFC 9293 3.10.7.4; Linux tcp_timewait_state_process)."""

from __future__ import annotations

import pytest

from tests.tcp.helpers import (
    AK,
    FA,
    ISS,
    PEER_ISS,
    SA,
    Active,
    B,
    Passive,
    R,
    S,
    cfg,
    establish_active,
    establish_passive,
    event_types,
    from_peer,
    none_out,
    one,
    pkt,
    syn_opts,
)
from utcp.tcp.errors import TcpUsageError
from utcp.tcp.state import TcpState


def _time_wait(**kw: object) -> Active:
    x = establish_active(cfg(**kw) if kw else None)
    x.conn.close()
    one(x.host, 0.1)
    x.host.receive(from_peer(x, FA, ack=ISS + 2), 0.2)
    one(x.host, 0.2)
    assert x.conn.state is TcpState.TIME_WAIT
    x.host.events()
    return x


def test_time_wait_lasts_2msl_then_closes() -> None:
    x = _time_wait(time_wait=60.0)
    assert x.host.connections() == [x.conn]
    assert x.host.next_deadline() == pytest.approx(60.2)
    x.host.on_timer(60.2)
    assert x.conn.state is TcpState.CLOSED
    assert event_types(x.host) == ["Closed"]
    assert x.host.connections() == []


def test_retransmitted_fin_is_acked_and_restarts_the_timer() -> None:
    x = _time_wait(time_wait=60.0)
    x.host.receive(from_peer(x, FA, ack=ISS + 2), 10.0)
    ack = one(x.host, 10.0)
    assert (ack.flags, ack.seq, ack.ack) == (AK, ISS + 2, x.peer_nxt + 1)
    assert x.host.next_deadline() == pytest.approx(70.0)


def test_rst_kills_time_wait() -> None:
    x = _time_wait()
    x.host.receive(from_peer(x, R, seq=x.peer_nxt + 1, ack=0), 1.0)
    none_out(x.host, 1.0)
    assert x.conn.state is TcpState.CLOSED


def test_the_four_tuple_stays_taken_during_time_wait() -> None:
    x = _time_wait()
    with pytest.raises(TcpUsageError):
        x.host.connect(B, 80, 1.0, local_port=x.conn.local[1])


def _server_time_wait() -> Passive:
    """A listener-side connection that closed first, now in TIME-WAIT."""
    x = establish_passive()
    x.conn.close()
    one(x.host, 0.1)
    x.host.receive(from_peer(x, FA, ack=ISS + 2), 0.2)
    one(x.host, 0.2)
    assert x.conn.state is TcpState.TIME_WAIT
    x.host.events()
    return x


def test_new_syn_above_rcv_nxt_reopens_with_a_higher_isn() -> None:
    x = _server_time_wait()
    x.host.receive(pkt(S, PEER_ISS + 100_000, options=syn_opts(tsval=None)), 1.0)
    sa = one(x.host, 1.0)
    assert sa.flags == SA
    assert sa.seq == ISS + 2 + 65535 + 2  # Linux tcp_tw_isn: old snd_nxt + 65535 + 2
    assert sa.ack == PEER_ISS + 100_001
    [new] = x.host.connections()
    assert new is not x.conn and new.state is TcpState.SYN_RECEIVED


def test_new_syn_with_newer_timestamp_reopens_even_below_rcv_nxt() -> None:
    x = _server_time_wait()
    x.host.receive(pkt(S, PEER_ISS - 100_000, options=syn_opts(tsval=5000)), 1.0)
    assert one(x.host, 1.0).flags == SA


def test_old_syn_is_answered_with_an_ack_and_time_wait_stays() -> None:
    x = _server_time_wait()
    x.host.receive(pkt(S, PEER_ISS - 100_000, options=syn_opts(tsval=50)), 1.0)
    ack = one(x.host, 1.0)
    assert (ack.flags, ack.ack) == (AK, x.peer_nxt + 1)
    assert x.conn.state is TcpState.TIME_WAIT


def test_syn_above_rcv_nxt_with_an_old_timestamp_fails_paws() -> None:
    x = _server_time_wait()
    x.host.receive(pkt(S, PEER_ISS + 100_000, options=syn_opts(tsval=50)), 1.0)
    ack = one(x.host, 1.0)
    assert (ack.flags, ack.ack) == (AK, x.peer_nxt + 1)
    assert x.host.counters["PAWSTimewait"] == 1  # LINUX_MIB_PAWS_TW_REJECTED (measured on 6.18)
    assert x.conn.state is TcpState.TIME_WAIT


def test_new_syn_without_a_listener_is_answered_with_an_ack() -> None:
    x = _time_wait()  # the client side: no listener on its port
    x.host.receive(
        pkt(S, x.peer_nxt + 100_000, sport=80, dport=x.conn.local[1], options=syn_opts(tsval=None)), 1.0
    )
    ack = one(x.host, 1.0)
    assert (ack.flags, ack.ack) == (AK, x.peer_nxt + 1)  # Linux: TCP_TW_SYN falls through to TCP_TW_ACK
    assert x.conn.state is TcpState.TIME_WAIT
