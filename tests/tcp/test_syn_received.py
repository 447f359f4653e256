"""SYN-RECEIVED: the request socket of a listener (Linux tcp_check_req) and the active side of a
simultaneous open (RFC 9293 3.10.7.4)."""

from __future__ import annotations

from tests.tcp.helpers import (
    AK,
    ISS,
    PA,
    PEER_ISS,
    RA,
    SA,
    A,
    B,
    R,
    S,
    event_types,
    make_host,
    none_out,
    one,
    pkt,
    segs,
    syn_opts,
    ts,
)
from utcp.tcp.connection import Connection
from utcp.tcp.errors import ConnectionRefused
from utcp.tcp.host import Host, Listener
from utcp.tcp.state import TcpState
from utcp.wire.packet import Mss, Nop, SackPermitted, TcpSegment, Timestamps, WindowScale


def _request() -> tuple[Host, Listener, Connection]:
    host = make_host()
    lst = host.listen(A, 80)
    host.receive(pkt(S, PEER_ISS, options=syn_opts(tsval=100)), 0.0)
    one(host, 0.0)
    [conn] = host.connections()
    return host, lst, conn


def test_third_ack_carrying_data_establishes_and_delivers() -> None:
    host, _lst, conn = _request()
    host.receive(pkt(PA, PEER_ISS + 1, ISS + 1, window=1000, options=ts(101, 0), payload=b"GET /"), 0.01)
    none_out(host, 0.01)  # the data waits for a delayed ACK
    assert conn.state is TcpState.ESTABLISHED
    assert event_types(host) == ["Connected", "DataReceived"]
    assert conn.read(100) == b"GET /"
    assert host.next_deadline() == 0.01 + 0.040
    host.on_timer(0.05)
    ack = one(host, 0.05)
    assert (ack.flags, ack.seq, ack.ack) == (AK, ISS + 1, PEER_ISS + 6)
    assert ack.options == (Nop(), Nop(), Timestamps(50, 101))
    assert host.counters["DelayedACKs"] == 1


def test_exact_rst_kills_the_request_silently() -> None:
    host, _lst, conn = _request()
    host.receive(pkt(R, PEER_ISS + 1, options=ts(100, 0)), 0.01)
    none_out(host, 0.01)
    assert conn.state is TcpState.CLOSED
    assert host.connections() == []
    assert host.counters["EmbryonicRsts"] == 1
    assert host.counters["AttemptFails"] == 1
    assert not [e for e in host.events() if type(e).__name__ in ("Reset", "Closed", "Connected")]


def test_in_window_inexact_rst_draws_a_challenge_ack() -> None:
    host, _lst, conn = _request()
    host.receive(pkt(R, PEER_ISS + 100, options=ts(100, 0)), 0.01)
    ack = one(host, 0.01)
    assert (ack.flags, ack.seq, ack.ack, ack.window) == (AK, ISS + 1, PEER_ISS + 1, 65535 >> 7)
    assert ack.options == (Nop(), Nop(), Timestamps(10, 100))
    assert conn.state is TcpState.SYN_RECEIVED
    assert host.counters["TCPChallengeACK"] == 1


def test_rst_outside_the_window_is_dropped() -> None:
    host, _lst, conn = _request()
    host.receive(pkt(R, PEER_ISS + 1_000_000, options=ts(100, 0)), 0.01)
    none_out(host, 0.01)
    assert conn.state is TcpState.SYN_RECEIVED


def test_out_of_window_segment_draws_an_ack() -> None:
    host, _lst, conn = _request()
    host.receive(pkt(AK, PEER_ISS + 1_000_000, ISS + 1, options=ts(100, 0)), 0.01)
    ack = one(host, 0.01)
    assert (ack.flags, ack.seq, ack.ack) == (AK, ISS + 1, PEER_ISS + 1)
    assert conn.state is TcpState.SYN_RECEIVED


def test_new_syn_in_window_resets_the_request() -> None:
    host, _lst, conn = _request()
    host.receive(pkt(S, PEER_ISS + 10, options=syn_opts(tsval=150)), 0.01)
    rst = one(host, 0.01)
    assert (rst.flags, rst.seq, rst.ack) == (RA, 0, PEER_ISS + 11)
    assert conn.state is TcpState.CLOSED
    assert host.counters["EmbryonicRsts"] == 1


def test_segment_without_ack_is_dropped() -> None:
    host, _lst, conn = _request()
    host.receive(pkt(PA & ~AK, PEER_ISS + 1, payload=b"x", options=ts(101, 0)), 0.01)
    none_out(host, 0.01)
    assert conn.state is TcpState.SYN_RECEIVED


def _simultaneous() -> tuple[Host, Connection, TcpSegment]:
    host = make_host()
    conn = host.connect(B, 80, 0.0, local_port=4000)
    one(host, 0.0)
    host.receive(pkt(S, PEER_ISS, sport=80, dport=4000, options=syn_opts(tsval=100)), 0.01)
    sa = one(host, 0.01)
    return host, conn, sa


def test_syn_in_syn_sent_answers_syn_ack_with_the_same_isn_and_full_options() -> None:
    _host, conn, sa = _simultaneous()
    assert conn.state is TcpState.SYN_RECEIVED
    assert (sa.flags, sa.seq, sa.ack, sa.window) == (SA, ISS, PEER_ISS + 1, 65535)
    assert sa.options == (Mss(1460), SackPermitted(), Timestamps(10, 100), Nop(), WindowScale(7))


def test_active_syn_received_establishes_on_a_plain_ack() -> None:
    host, conn, _sa = _simultaneous()
    host.receive(pkt(AK, PEER_ISS + 1, ISS + 1, sport=80, dport=4000, window=100, options=ts(110, 10)), 0.02)
    none_out(host, 0.02)
    assert conn.state is TcpState.ESTABLISHED
    assert conn.snd_wnd == 100 << 7
    assert event_types(host) == ["Connected"]


def test_rst_in_active_syn_received_means_refused() -> None:
    host, conn, _sa = _simultaneous()
    host.receive(pkt(R, PEER_ISS + 1, sport=80, dport=4000, options=ts(110, 10)), 0.02)
    assert conn.state is TcpState.CLOSED
    assert isinstance(conn.error, ConnectionRefused)
    assert host.counters["AttemptFails"] == 1


def test_unacceptable_ack_in_active_syn_received_draws_rst() -> None:
    host, conn, _sa = _simultaneous()
    host.receive(pkt(AK, PEER_ISS + 1, ISS + 50, sport=80, dport=4000, options=ts(110, 10)), 0.02)
    rst = one(host, 0.02)
    assert (rst.flags, rst.seq) == (R, ISS + 50)
    assert conn.state is TcpState.SYN_RECEIVED


def test_syn_ack_is_retransmitted_by_the_active_side() -> None:
    host, _conn, _sa = _simultaneous()
    assert host.next_deadline() == 1.0
    host.on_timer(1.0)
    again = one(host, 1.0)
    assert (again.flags, again.seq, again.ack) == (SA, ISS, PEER_ISS + 1)


def test_retransmitted_syn_in_active_syn_received_draws_a_challenge_ack() -> None:
    host, _conn, _sa = _simultaneous()
    host.receive(pkt(S, PEER_ISS, sport=80, dport=4000, options=syn_opts(tsval=120)), 0.3)
    out = segs(host, 0.3)
    assert [(s.flags, s.seq, s.ack) for s in out] == [(AK, ISS + 1, PEER_ISS + 1)]
    assert host.counters["TCPSYNChallenge"] == 1
