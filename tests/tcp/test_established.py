"""ESTABLISHED (RFC 9293 3.10.7.4): data both ways, acknowledgments, reassembly, RST, FIN."""

from __future__ import annotations

import pytest

from tests.tcp.helpers import (
    AK,
    FA,
    ISS,
    PA,
    PEER_ISS,
    RA,
    R,
    cfg,
    establish_passive,
    event_types,
    fire,
    from_peer,
    none_out,
    one,
    sack,
    segs,
    state,
    ts,
)
from utcp.tcp.errors import ConnectionAborted, ConnectionReset, TcpUsageError
from utcp.tcp.state import TcpState
from utcp.wire.packet import Nop, Sack, Timestamps

MSS = 1448


def test_in_order_data_is_delivered_and_acked_after_the_delayed_ack_timeout() -> None:
    x = establish_passive()
    x.host.receive(from_peer(x, PA, payload=b"hello"), 0.1)
    none_out(x.host, 0.1)
    assert event_types(x.host) == ["DataReceived"]
    assert x.conn.readable == 5
    assert x.host.next_deadline() == pytest.approx(0.14)
    x.host.on_timer(0.14)
    ack = one(x.host, 0.14)
    assert (ack.flags, ack.seq, ack.ack, ack.window) == (AK, ISS + 1, PEER_ISS + 6, 2048)
    assert ack.options == (Nop(), Nop(), Timestamps(140, 101))
    assert x.conn.read(3) == b"hel"
    assert x.conn.read(10) == b"lo"
    assert x.conn.read(10) == b""


def test_second_full_segment_is_acked_at_once() -> None:
    x = establish_passive()
    x.host.receive(from_peer(x, AK, payload=b"a" * MSS), 0.1)
    none_out(x.host, 0.1)
    x.host.receive(from_peer(x, AK, seq=x.peer_nxt + MSS, payload=b"b" * MSS), 0.1)
    ack = one(x.host, 0.1)
    assert ack.ack == PEER_ISS + 1 + 2 * MSS
    assert ack.window == (256 * 1024 - 2 * MSS + 127) >> 7  # Linux rounds the free space up


def test_out_of_order_data_is_sacked_at_once_and_delivered_when_the_hole_fills() -> None:
    x = establish_passive()
    base = x.peer_nxt
    x.host.receive(from_peer(x, AK, seq=base + 100, payload=b"B" * 100), 0.1)
    dup = one(x.host, 0.1)
    assert (dup.flags, dup.ack) == (AK, base)
    assert dup.options == ts(100, 101) + sack((base + 100, base + 200))
    assert x.conn.readable == 0
    x.host.receive(from_peer(x, AK, seq=base + 300, payload=b"D" * 100), 0.11)
    dup2 = one(x.host, 0.11)
    assert dup2.options[3:] == sack((base + 300, base + 400), (base + 100, base + 200))
    x.host.receive(from_peer(x, AK, seq=base, payload=b"A" * 100), 0.12)
    ack = one(x.host, 0.12)  # filling a hole is acked at once (RFC 5681 4.2)
    assert ack.ack == base + 200
    assert ack.options[3:] == sack((base + 300, base + 400))
    x.host.receive(from_peer(x, AK, seq=base + 200, payload=b"C" * 100), 0.13)
    ack = one(x.host, 0.13)
    assert ack.ack == base + 400
    assert len(ack.options) == 3  # no SACK left
    assert x.conn.read(1000) == b"A" * 100 + b"B" * 100 + b"C" * 100 + b"D" * 100


def test_duplicate_segment_draws_an_immediate_dsack() -> None:
    x = establish_passive()
    base = x.peer_nxt
    x.host.receive(from_peer(x, AK, payload=b"x" * 10), 0.1)
    x.host.on_timer(0.14)
    one(x.host, 0.14)
    x.host.receive(from_peer(x, AK, payload=b"x" * 10), 0.2)
    ack = one(x.host, 0.2)
    assert ack.ack == base + 10
    assert ack.options == ts(200, 101) + sack((base, base + 10))
    assert x.conn.read(100) == b"x" * 10  # delivered once


def test_partly_old_segment_delivers_only_the_new_bytes_and_reports_the_old_part() -> None:
    x = establish_passive()
    base = x.peer_nxt
    x.host.receive(from_peer(x, AK, payload=b"0123456789"), 0.1)
    x.host.receive(from_peer(x, AK, payload=b"0123456789abcdef"), 0.11)
    none_out(x.host, 0.11)  # Linux: a partly new segment is queued and acked normally (delayed)
    x.host.on_timer(0.14)
    ack = one(x.host, 0.14)
    assert ack.ack == base + 16
    assert ack.options[3:] == sack((base, base + 10))
    assert x.conn.read(100) == b"0123456789abcdef"


def test_overlapping_out_of_order_segments_are_stored_once() -> None:
    x = establish_passive()
    base = x.peer_nxt
    data = bytes(range(200))
    x.host.receive(from_peer(x, AK, seq=base + 50, payload=data[50:120]), 0.1)
    x.host.receive(from_peer(x, AK, seq=base + 100, payload=data[100:180]), 0.1)
    x.host.receive(from_peer(x, AK, seq=base + 40, payload=data[40:60]), 0.1)
    segs(x.host, 0.1)
    x.host.receive(from_peer(x, AK, seq=base, payload=data[:45]), 0.1)
    ack = segs(x.host, 0.1)[-1]
    assert ack.ack == base + 180
    assert x.conn.read(1000) == data[:180]


def test_data_beyond_the_window_is_dropped_and_acked() -> None:
    x = establish_passive()
    x.host.receive(from_peer(x, AK, seq=x.peer_nxt + 300_000, payload=b"far"), 0.1)
    ack = one(x.host, 0.1)
    assert ack.ack == x.peer_nxt
    assert x.conn.readable == 0


def test_segment_without_ack_is_dropped() -> None:
    x = establish_passive()
    x.host.receive(from_peer(x, PA & ~AK, payload=b"no ack"), 0.1)
    none_out(x.host, 0.1)
    assert x.conn.readable == 0


def test_sent_data_is_segmented_with_psh_on_the_last_segment() -> None:
    x = establish_passive()
    assert x.conn.send(b"z" * (2 * MSS + 100)) == 2 * MSS + 100
    out = segs(x.host, 0.1)
    assert [(s.flags, s.seq, len(s.payload)) for s in out] == [
        (AK, ISS + 1, MSS),
        (AK, ISS + 1 + MSS, MSS),
        (PA, ISS + 1 + 2 * MSS, 100),
    ]
    assert all(s.ack == x.peer_nxt and s.options == ts(100, 101) for s in out)
    x.host.receive(from_peer(x, AK, ack=ISS + 1 + 2 * MSS + 100, tsecr=100), 0.15)
    none_out(x.host, 0.15)
    assert event_types(x.host) == ["SendSpace"]
    assert x.conn.stats.bytes_acked == 2 * MSS + 100
    # samples: 10 ms from the handshake (no TSecr on the third ACK), then 50 ms from TSecr
    assert x.conn.stats.srtt == pytest.approx(0.875 * 0.01 + 0.125 * 0.05)
    assert x.host.next_deadline() is None


def test_sending_stops_at_the_peer_window() -> None:
    x = establish_passive(window=1280)  # the third ACK carries 10 << 7
    x.conn.send(b"q" * 5000)
    out = segs(x.host, 0.1)
    assert [len(s.payload) for s in out] == [1280]
    x.host.receive(from_peer(x, AK, ack=ISS + 1 + 1280, window=20, tsecr=100), 0.2)
    out = segs(x.host, 0.2)
    # 1112 bytes would still fit, but sender SWS avoidance (RFC 9293 3.8.6.2.1) waits for a segment of
    # at least half the largest window offered (2560 / 2)
    assert [len(s.payload) for s in out] == [1448]
    x.host.receive(from_peer(x, AK, ack=ISS + 1 + 1280 + 1448, window=20, tsecr=100), 0.3)
    out = segs(x.host, 0.3)
    assert [len(s.payload) for s in out] == [1448, 824]


def test_window_updates_follow_linux_tcp_may_update_window() -> None:
    x = establish_passive(window=511 << 7)
    assert x.conn.snd_wnd == 511 << 7
    x.host.receive(from_peer(x, AK, window=1000), 0.05)  # same seq and ack, larger: taken
    assert x.conn.snd_wnd == 1000 << 7
    x.host.receive(from_peer(x, AK, window=1), 0.06)  # same seq and ack, smaller: a reordered old ACK
    assert x.conn.snd_wnd == 1000 << 7
    x.host.receive(from_peer(x, AK, window=0), 0.07)  # a zero window is always taken
    assert x.conn.snd_wnd == 0
    x.host.receive(from_peer(x, PA, window=3, payload=b"x"), 0.08)  # newer seq: taken
    assert x.conn.snd_wnd == 3 << 7


def test_ack_of_unsent_data_is_dropped_silently_in_established() -> None:
    x = establish_passive()
    x.host.receive(from_peer(x, PA, ack=ISS + 500, payload=b"data"), 0.1)
    none_out(x.host, 0.1)
    assert x.conn.readable == 0  # the whole segment is discarded (Linux tcp_ack < 0)
    assert x.conn.snd_una == ISS + 1


def test_old_ack_within_the_window_is_ignored_but_its_data_kept() -> None:
    x = establish_passive()
    x.conn.send(b"a" * 100)
    segs(x.host, 0.1)
    x.host.receive(from_peer(x, AK, ack=ISS + 101), 0.15)
    x.host.receive(from_peer(x, PA, ack=ISS + 50, payload=b"hi"), 0.16)
    assert x.conn.readable == 2
    assert x.conn.snd_una == ISS + 101


def test_exact_rst_resets_the_connection() -> None:
    x = establish_passive()
    x.host.receive(from_peer(x, R, ack=0, options=()), 0.1)
    none_out(x.host, 0.1)
    assert x.conn.state is TcpState.CLOSED
    assert isinstance(x.conn.error, ConnectionReset)
    assert event_types(x.host) == ["Reset", "Closed"]
    assert x.host.counters["EstabResets"] == 1
    with pytest.raises(ConnectionReset):
        x.conn.send(b"late")


def test_fin_moves_to_close_wait_and_its_ack_is_delayed() -> None:
    x = establish_passive()
    x.host.receive(from_peer(x, FA, payload=b"bye"), 0.1)
    assert x.conn.state is TcpState.CLOSE_WAIT
    assert x.conn.eof_received
    assert event_types(x.host) == ["DataReceived", "EofReceived"]
    none_out(x.host, 0.1)
    x.host.on_timer(0.14)
    ack = one(x.host, 0.14)
    assert (ack.flags, ack.ack) == (AK, x.peer_nxt + 4)
    assert x.conn.read(10) == b"bye"


def test_out_of_order_fin_waits_for_the_data_before_it() -> None:
    x = establish_passive()
    base = x.peer_nxt
    x.host.receive(from_peer(x, FA, seq=base + 5, payload=b"world"), 0.1)
    one(x.host, 0.1)
    assert x.conn.state is TcpState.ESTABLISHED
    x.host.receive(from_peer(x, AK, seq=base, payload=b"hello"), 0.11)
    ack = one(x.host, 0.11)
    assert ack.ack == base + 11
    assert state(x.conn) is TcpState.CLOSE_WAIT
    assert x.conn.read(100) == b"helloworld"


def test_abort_sends_rst_and_closes() -> None:
    x = establish_passive()
    x.conn.abort()
    rst = one(x.host, 0.2)
    assert (rst.flags, rst.seq, rst.ack) == (RA, ISS + 1, x.peer_nxt)
    assert rst.options == ts(200, 101)
    assert x.conn.state is TcpState.CLOSED
    assert isinstance(x.conn.error, ConnectionAborted)
    assert event_types(x.host) == ["Reset", "Closed"]
    assert x.host.counters["EstabResets"] == 1
    assert x.host.counters["OutRsts"] == 1
    assert x.host.connections() == []


def test_close_with_unread_data_sends_rst_instead_of_fin() -> None:
    x = establish_passive()
    x.host.receive(from_peer(x, PA, payload=b"unread"), 0.1)
    x.host.events()
    x.conn.close()
    rst = one(x.host, 0.12)
    assert (rst.flags, rst.seq, rst.ack) == (RA, ISS + 1, x.peer_nxt + 6)
    assert x.host.counters["TCPAbortOnClose"] == 1
    assert x.conn.state is TcpState.CLOSED
    assert x.conn.error is None
    assert event_types(x.host) == ["Closed"]


def test_send_after_shutdown_is_a_usage_error() -> None:
    x = establish_passive()
    x.conn.shutdown()
    with pytest.raises(TcpUsageError):
        x.conn.send(b"x")


def test_send_is_bounded_by_the_send_buffer() -> None:
    x = establish_passive(cfg(send_buffer=3000))
    assert x.conn.send(b"x" * 5000) == 3000
    assert x.conn.send_space == 0
    segs(x.host, 0.1)
    x.host.receive(from_peer(x, AK, ack=ISS + 1 + 1448), 0.15)
    assert x.conn.send_space == 1448


def test_reading_a_full_buffer_sends_a_window_update() -> None:
    x = establish_passive(cfg(recv_buffer=4 * MSS), peer_ws=None)
    base = x.peer_nxt
    for i in range(4):
        x.host.receive(from_peer(x, AK, seq=base + i * MSS, payload=b"w" * MSS), 0.1)
    acks = segs(x.host, 0.1)
    assert acks[-1].ack == base + 4 * MSS and acks[-1].window == 0
    x.conn.read(MSS // 4)
    none_out(x.host, 0.15)  # receiver SWS avoidance: a quarter segment does not reopen the window
    x.conn.read(4 * MSS)
    upd = one(x.host, 0.2)
    assert (upd.flags, upd.ack, upd.window) == (AK, base + 4 * MSS, 4 * MSS)


def test_sack_blocks_are_not_sent_when_sack_was_not_negotiated() -> None:
    x = establish_passive(peer_sack=False)
    x.host.receive(from_peer(x, AK, seq=x.peer_nxt + 100, payload=b"B" * 100), 0.1)
    dup = one(x.host, 0.1)
    assert not any(isinstance(o, Sack) for o in dup.options)


def test_keepalive_probes_an_idle_connection_and_resets_when_unanswered() -> None:
    x = establish_passive(cfg(keepalive_idle=10.0, keepalive_interval=2.0, keepalive_probes=3))
    assert x.host.next_deadline() == pytest.approx(10.01)
    times = []
    for _ in range(3):
        d = fire(x.host)
        probe = one(x.host, d)
        assert (probe.flags, probe.seq, probe.payload) == (AK, ISS, b"")  # SND.UNA - 1
        times.append(round(d, 6))
    assert times == [10.01, 12.01, 14.01]
    d = fire(x.host)
    rst = one(x.host, d)
    assert rst.flags == RA
    assert x.conn.state is TcpState.CLOSED
    assert x.host.counters["TCPKeepAlive"] == 3
    assert "Reset" in event_types(x.host)


def test_keepalive_answer_keeps_the_connection() -> None:
    x = establish_passive(cfg(keepalive_idle=10.0, keepalive_interval=2.0, keepalive_probes=3))
    d = fire(x.host)
    one(x.host, d)
    x.host.receive(from_peer(x, AK), d + 0.01)
    none_out(x.host, d + 0.01)
    assert x.host.next_deadline() == pytest.approx(d + 2.0)  # the probe timer runs out once more...
    d2 = fire(x.host)
    none_out(x.host, d2)  # ...sees the answer, and waits a full idle period again
    assert x.host.next_deadline() == pytest.approx(d + 0.01 + 10.0)
    assert x.conn.state is TcpState.ESTABLISHED
