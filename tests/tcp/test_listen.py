"""LISTEN (RFC 9293 3.10.7.2) and the request socket a SYN creates (Linux tcp_conn_request)."""

from __future__ import annotations

from tests.tcp.helpers import (
    AK,
    FA,
    ISS,
    PEER_ISS,
    RA,
    SA,
    A,
    R,
    S,
    cfg,
    make_host,
    none_out,
    one,
    pkt,
    segs,
    state,
    syn_opts,
    ts,
)
from utcp.tcp.events import Connected
from utcp.tcp.state import TcpState
from utcp.wire.packet import Mss, Nop, SackPermitted, Timestamps, WindowScale


def test_syn_is_answered_with_syn_ack_mirroring_the_offered_options() -> None:
    host = make_host()
    host.listen(A, 80)
    host.receive(pkt(S, PEER_ISS, options=syn_opts(tsval=100)), 0.5)
    out = host.packets_to_send(0.5)
    assert len(out) == 1
    assert out[0].ident == 0  # a request socket has no IP ID counter (Linux: DF and id 0)
    sa = out[0].tcp
    assert (sa.flags, sa.seq, sa.ack, sa.window) == (SA, ISS, PEER_ISS + 1, 65535)
    assert (sa.src_port, sa.dst_port) == (80, 50000)
    assert sa.options == (Mss(1460), SackPermitted(), Timestamps(500, 100), Nop(), WindowScale(7))
    [conn] = host.connections()
    assert conn.state is TcpState.SYN_RECEIVED
    assert host.events() == []  # nothing the runtime must know before the handshake completes


def test_syn_without_options_gets_a_syn_ack_with_only_mss() -> None:
    host = make_host()
    host.listen(A, 80)
    host.receive(pkt(S, PEER_ISS), 0.0)
    sa = one(host, 0.0)
    assert sa.options == (Mss(1460),)
    host.receive(pkt(AK, PEER_ISS + 1, ISS + 1), 0.1)
    [conn] = host.connections()
    assert conn.state is TcpState.ESTABLISHED
    n = conn.negotiated
    assert (n.mss, n.snd_wscale, n.rcv_wscale, n.sack, n.timestamps) == (536, 0, 0, False, False)


def test_syn_ack_option_layout_without_timestamps() -> None:
    host = make_host()
    host.listen(A, 80)
    host.receive(pkt(S, PEER_ISS, options=syn_opts(tsval=None)), 0.0)
    assert one(host, 0.0).options == (Mss(1460), Nop(), Nop(), SackPermitted(), Nop(), WindowScale(7))


def test_syn_ack_option_layout_without_sack() -> None:
    host = make_host()
    host.listen(A, 80)
    host.receive(pkt(S, PEER_ISS, options=syn_opts(sack=False, tsval=7, ws=None)), 0.0)
    assert one(host, 0.0).options == (Mss(1460), Nop(), Nop(), Timestamps(0, 7))


def test_configured_mss_is_advertised() -> None:
    host = make_host(config=cfg(mss=1200))
    host.listen(A, 80)
    host.receive(pkt(S, PEER_ISS, options=syn_opts()), 0.0)
    assert one(host, 0.0).options[0] == Mss(1200)


def test_third_ack_establishes_and_queues_the_connection() -> None:
    host = make_host()
    lst = host.listen(A, 80)
    host.receive(pkt(S, PEER_ISS, options=syn_opts(tsval=100)), 0.0)
    one(host, 0.0)
    host.receive(pkt(AK, PEER_ISS + 1, ISS + 1, window=512, options=ts(101, 0)), 0.05)
    none_out(host, 0.05)
    assert lst.pending == 1
    [ev] = host.events()
    assert isinstance(ev, Connected) and ev.listener is lst
    conn = lst.accept()
    assert conn is not None and conn is ev.connection
    assert conn.state is TcpState.ESTABLISHED
    assert conn.snd_wnd == 512 << 7
    assert host.counters["PassiveOpens"] == 1
    assert lst.accept() is None


def test_rst_to_a_listener_is_ignored() -> None:
    host = make_host()
    host.listen(A, 80)
    host.receive(pkt(R, 1234), 0.0)
    none_out(host, 0.0)
    assert host.counters["OutRsts"] == 0


def test_ack_to_a_listener_draws_rst_with_seq_equal_to_ack() -> None:
    host = make_host()
    host.listen(A, 80)
    host.receive(pkt(AK, 1234, 98765, options=ts(5, 6)), 0.0)
    rst = one(host, 0.0)
    assert (rst.flags, rst.seq, rst.ack, rst.window, rst.options) == (R, 98765, 0, 0, ())
    assert host.counters["OutRsts"] == 1


def test_syn_with_fin_is_discarded() -> None:
    host = make_host()
    host.listen(A, 80)
    host.receive(pkt(S | FA & ~AK, PEER_ISS), 0.0)
    none_out(host, 0.0)
    assert host.connections() == []


def test_segment_without_syn_ack_or_rst_is_dropped() -> None:
    host = make_host()
    host.listen(A, 80)
    host.receive(pkt(FA & ~AK, PEER_ISS), 0.0)
    none_out(host, 0.0)


def test_wildcard_listener_accepts_on_any_local_address() -> None:
    host = make_host()
    lst = host.listen("0.0.0.0", 80)
    host.receive(pkt(S, PEER_ISS), 0.0)
    assert one(host, 0.0).flags == SA
    host.receive(pkt(AK, PEER_ISS + 1, ISS + 1), 0.1)
    assert lst.pending == 1


def test_syn_queue_overflow_drops_the_syn() -> None:
    host = make_host()
    lst = host.listen(A, 80, backlog=0)
    host.receive(pkt(S, PEER_ISS, sport=1001), 0.0)  # Linux admits backlog + 1
    host.receive(pkt(S, PEER_ISS, sport=1002), 0.0)
    assert [s.dst_port for s in segs(host, 0.0)] == [1001]
    assert host.counters["ListenDrops"] == 1
    assert lst.syn_pending == 1


def test_accept_queue_overflow_drops_new_syns_and_the_completing_ack() -> None:
    host = make_host()
    lst = host.listen(A, 80, backlog=0)
    host.receive(pkt(S, PEER_ISS, sport=1001), 0.0)
    host.receive(pkt(AK, PEER_ISS + 1, ISS + 1, sport=1001), 0.01)
    assert lst.pending == 1
    host.receive(pkt(S, PEER_ISS, sport=1002), 0.02)
    out = segs(host, 0.02)
    assert [s.dst_port for s in out] == [1001]  # only the first SYN-ACK
    assert host.counters["ListenOverflows"] == 1
    assert host.counters["ListenDrops"] == 1


def test_completing_ack_is_dropped_when_the_accept_queue_is_full() -> None:
    host = make_host()
    lst = host.listen(A, 80, backlog=1)
    host.receive(pkt(S, PEER_ISS, sport=1001), 0.0)
    host.receive(pkt(S, PEER_ISS, sport=1002), 0.0)
    host.receive(pkt(AK, PEER_ISS + 1, ISS + 1, sport=1001), 0.01)
    host.receive(pkt(S, PEER_ISS, sport=1003), 0.01)
    host.receive(pkt(AK, PEER_ISS + 1, ISS + 1, sport=1002), 0.02)
    assert lst.pending == 2  # backlog + 1, as Linux
    host.receive(pkt(AK, PEER_ISS + 1, ISS + 1, sport=1003), 0.03)
    assert lst.pending == 2
    assert host.counters["ListenOverflows"] == 1
    assert host.counters["ListenDrops"] == 1
    [req] = [c for c in host.connections() if c.remote[1] == 1003]
    assert req.state is TcpState.SYN_RECEIVED  # tcp_abort_on_overflow=0: the SYN-ACK timer goes on
    assert lst.accept() is not None
    host.receive(pkt(AK, PEER_ISS + 1, ISS + 1, sport=1003), 0.04)  # the peer's retransmitted ACK
    assert state(req) is TcpState.ESTABLISHED
    assert lst.pending == 2


def test_syn_ack_is_retransmitted_with_backoff_then_the_request_is_dropped() -> None:
    host = make_host(config=cfg(synack_retries=2))
    host.listen(A, 80)
    host.receive(pkt(S, PEER_ISS, options=syn_opts(tsval=100)), 0.0)
    one(host, 0.0)
    assert host.next_deadline() == 1.0
    host.on_timer(1.0)
    sa = one(host, 1.0)
    assert (sa.flags, sa.seq, sa.ack) == (SA, ISS, PEER_ISS + 1)
    assert host.next_deadline() == 3.0
    host.on_timer(3.0)
    one(host, 3.0)
    assert host.next_deadline() == 7.0
    host.on_timer(7.0)
    none_out(host, 7.0)
    assert host.connections() == []
    assert host.counters["RetransSegs"] == 2
    assert host.next_deadline() is None


def test_retransmitted_syn_draws_the_syn_ack_again() -> None:
    host = make_host()
    host.listen(A, 80)
    host.receive(pkt(S, PEER_ISS, options=syn_opts(tsval=100)), 0.0)
    one(host, 0.0)
    host.receive(pkt(S, PEER_ISS, options=syn_opts(tsval=300)), 0.3)
    sa = one(host, 0.3)
    assert (sa.flags, sa.seq, sa.ack) == (SA, ISS, PEER_ISS + 1)
    host.receive(pkt(S, PEER_ISS, options=syn_opts(tsval=400)), 0.4)  # within 500 ms: rate-limited
    none_out(host, 0.4)
    assert host.counters["TCPACKSkippedSynRecv"] == 1


def test_ack_with_wrong_ack_number_to_a_request_socket_draws_rst() -> None:
    host = make_host()
    host.listen(A, 80)
    host.receive(pkt(S, PEER_ISS), 0.0)
    one(host, 0.0)
    host.receive(pkt(AK, PEER_ISS + 1, ISS + 77), 0.1)
    rst = one(host, 0.1)
    assert (rst.flags, rst.seq) == (R, ISS + 77)
    [conn] = host.connections()
    assert conn.state is TcpState.SYN_RECEIVED


def test_listener_close_resets_queued_connections() -> None:
    host = make_host()
    lst = host.listen(A, 80)
    host.receive(pkt(S, PEER_ISS), 0.0)
    host.receive(pkt(AK, PEER_ISS + 1, ISS + 1), 0.1)
    segs(host, 0.1)
    lst.close()
    rst = one(host, 0.2)
    assert (rst.flags, rst.seq, rst.ack) == (RA, ISS + 1, PEER_ISS + 1)
    host.receive(pkt(S, PEER_ISS, sport=999), 0.3)
    assert one(host, 0.3).flags == RA  # nobody listens any more
    assert host.connections() == []
