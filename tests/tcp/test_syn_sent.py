"""SYN-SENT (RFC 9293 3.10.7.3; Linux tcp_rcv_synsent_state_process)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from tests.tcp.helpers import (
    AK,
    ISS,
    PA,
    PEER_ISS,
    RA,
    SA,
    B,
    R,
    S,
    cfg,
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
from utcp.tcp.errors import ConnectionRefused, ConnectionTimedOut
from utcp.tcp.events import Closed, Connected, Reset
from utcp.tcp.host import Host
from utcp.tcp.state import TcpState
from utcp.wire.packet import (
    IPv4Packet,
    Mss,
    Nop,
    SackPermitted,
    TcpFlags,
    TcpOption,
    TcpSegment,
    Timestamps,
    WindowScale,
)


def _connect(**kw: Any) -> tuple[Host, Connection, TcpSegment]:
    host = make_host(**kw)
    conn = host.connect(B, 80, 0.0)
    syn = one(host, 0.0)
    return host, conn, syn


def _synack(
    port: int,
    *,
    ack: int = ISS + 1,
    opts: tuple[TcpOption, ...] | None = None,
    flags: TcpFlags = SA,
    seq: int = PEER_ISS,
    window: int = 65535,
) -> IPv4Packet:
    return pkt(
        flags,
        seq,
        ack,
        sport=80,
        dport=port,
        window=window,
        options=syn_opts(tsval=100) if opts is None else opts,
    )


def test_connect_sends_a_syn_with_linux_option_order() -> None:
    host, conn, syn = _connect()
    assert conn.state is TcpState.SYN_SENT
    assert (syn.flags, syn.seq, syn.ack, syn.window) == (S, ISS, 0, 65535)
    assert syn.dst_port == 80 and syn.src_port == conn.local[1] == 40000
    assert syn.options == (Mss(1460), SackPermitted(), Timestamps(0, 0), Nop(), WindowScale(7))
    assert host.counters["ActiveOpens"] == 1
    assert host.counters["OutSegs"] == 1


@pytest.mark.parametrize(
    ("kw", "expected"),
    [
        ({"sack": False}, (Mss(1460), Nop(), Nop(), Timestamps(0, 0), Nop(), WindowScale(7))),
        ({"timestamps": False}, (Mss(1460), Nop(), Nop(), SackPermitted(), Nop(), WindowScale(7))),
        ({"window_scale": None}, (Mss(1460), SackPermitted(), Timestamps(0, 0))),
        ({"window_scale": None, "sack": False, "timestamps": False}, (Mss(1460),)),
    ],
)
def test_syn_options_pad_with_nops_like_linux_when_some_are_disabled(
    kw: dict[str, object], expected: tuple[object, ...]
) -> None:
    _, _, syn = _connect(config=cfg(**kw))
    assert syn.options == expected


def test_syn_ack_establishes_and_is_acknowledged_at_once() -> None:
    host, conn, _ = _connect()
    host.receive(_synack(conn.local[1]), 0.02)
    ack = one(host, 0.02)
    assert (ack.flags, ack.seq, ack.ack) == (AK, ISS + 1, PEER_ISS + 1)
    assert ack.window == (256 * 1024) >> 7  # the first scaled window: the whole buffer
    assert ack.options == (Nop(), Nop(), Timestamps(20, 100))
    assert conn.state is TcpState.ESTABLISHED
    assert [type(e) for e in host.events()] == [Connected]
    n = conn.negotiated
    assert (n.mss, n.snd_wscale, n.rcv_wscale, n.sack, n.timestamps) == (1448, 7, 7, True, True)
    assert conn.snd_wnd == 65535  # the window in a SYN-ACK is not scaled
    assert conn.stats.srtt == pytest.approx(0.02)


def test_peer_without_window_scale_gets_unscaled_windows() -> None:
    host, conn, _ = _connect()
    host.receive(_synack(conn.local[1], opts=syn_opts(tsval=100, ws=None)), 0.02)
    ack = one(host, 0.02)
    assert ack.window == 65535
    assert conn.negotiated.rcv_wscale == 0 and conn.negotiated.snd_wscale == 0


def test_peer_mss_limits_segment_size() -> None:
    host, conn, _ = _connect()
    host.receive(_synack(conn.local[1], opts=syn_opts(mss=1000, tsval=None)), 0.02)
    one(host, 0.02)
    assert conn.negotiated.mss == 1000
    conn.send(b"x" * 2500)
    out = segs(host, 0.03)
    assert [len(s.payload) for s in out] == [1000, 1000, 500]


def test_syn_ack_acking_the_wrong_sequence_draws_rst() -> None:
    host, conn, _ = _connect()
    host.receive(_synack(conn.local[1], ack=ISS + 5), 0.02)
    rst = one(host, 0.02)
    assert (rst.flags, rst.seq, rst.ack, rst.options) == (R, ISS + 5, 0, ())
    assert conn.state is TcpState.SYN_SENT


def test_rst_with_acceptable_ack_refuses_the_connection() -> None:
    host, conn, _ = _connect()
    host.receive(pkt(RA, 0, ISS + 1, sport=80, dport=conn.local[1]), 0.02)
    none_out(host, 0.02)
    assert conn.state is TcpState.CLOSED
    assert isinstance(conn.error, ConnectionRefused)
    evs = host.events()
    assert [type(e) for e in evs] == [Reset, Closed]
    assert host.counters["AttemptFails"] == 1
    assert host.connections() == []
    assert host.next_deadline() is None


def test_rst_without_ack_is_ignored() -> None:
    host, conn, _ = _connect()
    host.receive(pkt(R, 0, 0, sport=80, dport=conn.local[1]), 0.02)
    none_out(host, 0.02)
    assert conn.state is TcpState.SYN_SENT


def test_rst_with_unacceptable_ack_is_ignored() -> None:
    host, conn, _ = _connect()
    host.receive(pkt(RA, 0, ISS + 9, sport=80, dport=conn.local[1]), 0.02)
    none_out(host, 0.02)
    assert conn.state is TcpState.SYN_SENT


def test_syn_ack_echoing_a_timestamp_never_sent_is_reset_paws_active() -> None:
    host, conn, _ = _connect()
    host.receive(_synack(conn.local[1], opts=syn_opts(tsval=100, tsecr=99999)), 0.5)
    rst = one(host, 0.5)
    assert (rst.flags, rst.seq) == (R, ISS + 1)
    assert host.counters["PAWSActive"] == 1
    assert conn.state is TcpState.SYN_SENT


def test_bare_ack_in_syn_sent_is_answered_only_if_unacceptable() -> None:
    host, conn, _ = _connect()
    host.receive(pkt(AK, PEER_ISS, ISS + 1, sport=80, dport=conn.local[1]), 0.02)
    none_out(host, 0.02)  # acceptable ACK without SYN: dropped (fifth)
    assert conn.state is TcpState.SYN_SENT


def test_syn_is_retransmitted_with_exponential_backoff_then_times_out() -> None:
    host, conn, _ = _connect(config=cfg(syn_retries=3))
    times = []
    while (d := host.next_deadline()) is not None:
        host.on_timer(d)
        out = segs(host, d)
        if out:
            assert out[0].flags == S and out[0].seq == ISS
            times.append(d)
    assert times == [1.0, 3.0, 7.0]
    assert conn.state is TcpState.CLOSED
    assert isinstance(conn.error, ConnectionTimedOut)
    assert event_types(host) == ["Reset", "Closed"]
    assert host.counters["TCPTimeouts"] == 4
    assert host.counters["RetransSegs"] == 3
    assert host.counters["AttemptFails"] == 1


def test_retransmitted_syn_keeps_its_options_and_is_not_timed() -> None:
    host, conn, syn = _connect()
    host.on_timer(1.0)
    again = one(host, 1.0)
    assert again.options[:2] == syn.options[:2]
    assert again.options[2] == Timestamps(1000, 0)
    host.receive(_synack(conn.local[1], opts=syn_opts(tsval=100, tsecr=1000)), 1.05)
    one(host, 1.05)
    assert conn.stats.srtt == pytest.approx(0.05)  # from the echoed timestamp


def test_karn_no_rtt_sample_from_a_retransmitted_syn_without_timestamps() -> None:
    host, conn, _ = _connect(config=cfg(timestamps=False))
    host.on_timer(1.0)
    one(host, 1.0)
    host.receive(_synack(conn.local[1], opts=syn_opts(tsval=None)), 1.05)
    one(host, 1.05)
    assert conn.stats.srtt is None
    assert conn.stats.rto == 2.0  # the backed-off RTO stays until a valid sample (RFC 6298 5.7)


def test_data_on_a_syn_ack_is_ignored() -> None:
    host, conn, _ = _connect()
    p = _synack(conn.local[1])
    host.receive(replace(p, payload=replace(p.tcp, payload=b"early")), 0.02)
    ack = one(host, 0.02)
    assert ack.ack == PEER_ISS + 1
    assert conn.readable == 0


def test_data_queued_before_the_handshake_follows_the_ack() -> None:
    host, conn, _ = _connect()
    assert conn.send(b"hello") == 5
    none_out(host, 0.01)
    host.receive(_synack(conn.local[1]), 0.02)
    out = segs(host, 0.02)
    assert [(s.flags, s.seq, s.payload) for s in out] == [(PA, ISS + 1, b"hello")]


def test_close_in_syn_sent_deletes_the_connection_silently() -> None:
    host, conn, _ = _connect()
    conn.close()
    none_out(host, 0.1)
    assert conn.state is TcpState.CLOSED
    assert event_types(host) == ["Closed"]
    assert host.next_deadline() is None


def test_shutdown_in_syn_sent_sends_fin_once_established() -> None:
    host, conn, _ = _connect()
    conn.send(b"ab")
    conn.shutdown()
    host.receive(_synack(conn.local[1]), 0.02)
    out = segs(host, 0.02)
    assert [(s.flags, s.seq, s.payload) for s in out] == [(PA | 1, ISS + 1, b"ab")]
    assert conn.state is TcpState.FIN_WAIT_1


def test_ts_ack_after_syn_ack() -> None:
    host, conn, _ = _connect()
    host.receive(_synack(conn.local[1], opts=syn_opts(tsval=100)), 0.02)
    ack = one(host, 0.02)
    assert ack.options[-1] == ts(20, 100)[-1]
