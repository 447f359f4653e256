"""Flow control: window scaling (RFC 7323 2), zero windows and persist probes (RFC 9293 3.8.6.1), silly
window syndrome avoidance on both sides (RFC 9293 3.8.6.2)."""

from __future__ import annotations

import pytest

from tests.tcp.helpers import (
    AK,
    ISS,
    PA,
    cfg,
    establish_passive,
    fire,
    from_peer,
    none_out,
    one,
    segs,
)
from utcp.tcp.errors import ConnectionTimedOut
from utcp.tcp.state import TcpState

MSS = 1448


def test_scaled_windows_both_ways() -> None:
    x = establish_passive(cfg(recv_buffer=1 << 20, window_scale=9), peer_ws=3)
    n = x.conn.negotiated
    assert (n.snd_wscale, n.rcv_wscale) == (3, 9)
    x.host.receive(from_peer(x, AK, window=3000), 0.05)
    assert x.conn.snd_wnd == 24000
    x.host.receive(from_peer(x, AK, payload=b"x" * 10), 0.06)
    x.host.on_timer(0.1)
    ack = one(x.host, 0.1)
    assert ack.window == ((1 << 20) - 10 + 511) >> 9


def test_without_window_scale_the_window_is_capped_at_65535() -> None:
    x = establish_passive(cfg(recv_buffer=1 << 20), peer_ws=None)
    x.host.receive(from_peer(x, AK, payload=b"x" * 10, window=65535), 0.06)
    x.host.on_timer(0.1)
    assert one(x.host, 0.1).window == 65535


def test_zero_window_stops_sending_and_persist_probes_back_off() -> None:
    x = establish_passive(window=0)
    assert x.conn.snd_wnd == 0
    x.conn.send(b"blocked")
    none_out(x.host, 0.1)
    times = []
    for _ in range(3):
        d = fire(x.host)
        probe = one(x.host, d)
        # Linux tcp_xmit_probe_skb: SND.UNA - 1, no data
        assert (probe.flags, probe.seq, probe.payload) == (AK, ISS, b"")
        times.append(round(d, 6))
        x.host.receive(from_peer(x, AK, ack=ISS + 1, window=0), d + 0.005)
        none_out(x.host, d + 0.005)
    assert times == [0.3, 0.7, 1.5]
    assert x.host.counters["TCPWinProbe"] == 3
    assert x.conn.state is TcpState.ESTABLISHED


def test_window_opening_resumes_sending() -> None:
    x = establish_passive(window=0)
    x.conn.send(b"blocked")
    none_out(x.host, 0.1)
    x.host.receive(from_peer(x, AK, ack=ISS + 1, window=100), 0.2)
    out = segs(x.host, 0.2)
    assert [s.payload for s in out] == [b"blocked"]


def test_probe_sends_data_when_part_of_the_window_opened() -> None:
    x = establish_passive(window=0)
    x.conn.send(b"z" * 5000)
    segs(x.host, 0.1)
    x.conn._snd_wnd = 100  # a window update that was lost: the probe finds room
    d = fire(x.host)
    out = one(x.host, d)
    assert len(out.payload) == 100


def test_unanswered_zero_window_probes_fail_the_connection() -> None:
    x = establish_passive(cfg(retries=3), window=0)
    x.conn.send(b"never")
    segs(x.host, 0.1)
    for _ in range(10):
        if x.conn.state is TcpState.CLOSED:
            break
        d = fire(x.host)
        segs(x.host, d)
    assert isinstance(x.conn.error, ConnectionTimedOut)


def test_receiver_offers_zero_window_when_the_buffer_is_full() -> None:
    x = establish_passive(cfg(recv_buffer=3000), peer_ws=None)
    x.host.receive(from_peer(x, AK, payload=b"a" * 1500), 0.1)
    x.host.receive(from_peer(x, AK, seq=x.peer_nxt + 1500, payload=b"b" * 1500), 0.1)
    ack = segs(x.host, 0.1)[-1]
    assert (ack.ack, ack.window) == (x.peer_nxt + 3000, 0)
    x.host.receive(from_peer(x, AK, seq=x.peer_nxt + 3000, payload=b"c"), 0.2)  # a probe with data
    ack = one(x.host, 0.2)
    assert (ack.ack, ack.window) == (x.peer_nxt + 3000, 0)
    assert x.host.counters["TCPZeroWindowDrop"] == 1


def test_zero_window_probe_without_data_is_answered() -> None:
    x = establish_passive(cfg(recv_buffer=1500), peer_ws=None)
    x.host.receive(from_peer(x, AK, payload=b"a" * 1500), 0.1)
    segs(x.host, 0.1)
    x.host.on_timer(0.2)
    segs(x.host, 0.2)
    x.host.receive(from_peer(x, AK, seq=x.peer_nxt + 1499), 1.0)  # SND.UNA - 1 style probe
    ack = one(x.host, 1.0)
    assert (ack.ack, ack.window) == (x.peer_nxt + 1500, 0)


def test_receiver_sws_avoidance_keeps_a_small_window_closed() -> None:
    x = establish_passive(cfg(recv_buffer=4000), peer_ws=None)
    x.host.receive(from_peer(x, AK, payload=b"a" * 1000), 0.1)
    x.host.receive(from_peer(x, AK, seq=x.peer_nxt + 1000, payload=b"b" * 1000), 0.1)
    x.host.receive(from_peer(x, AK, seq=x.peer_nxt + 2000, payload=b"c" * 1000), 0.1)
    x.host.receive(from_peer(x, AK, seq=x.peer_nxt + 3000, payload=b"d" * 1000), 0.1)
    assert segs(x.host, 0.1)[-1].window == 0
    x.conn.read(500)  # less than min(buffer / 2, MSS) freed: the window stays shut
    x.host.receive(from_peer(x, AK, seq=x.peer_nxt + 3999), 0.2)  # a zero-window probe
    assert one(x.host, 0.2).window == 0
    x.conn.read(1000)
    x.host.receive(from_peer(x, AK, seq=x.peer_nxt + 3999), 0.8)
    assert one(x.host, 0.8).window == 1500


def test_right_edge_never_moves_left() -> None:
    x = establish_passive(cfg(recv_buffer=4000), peer_ws=None)
    # the SYN-ACK offered 4000; fill 3000 of it, the next ACK still reaches the same right edge
    x.host.receive(from_peer(x, AK, payload=b"a" * 3000), 0.1)
    ack = segs(x.host, 0.1)[-1]
    assert ack.ack + ack.window == x.peer_nxt + 4000


def test_sender_does_not_send_tiny_segments_into_a_small_window() -> None:
    x = establish_passive(window=65535)
    x.conn.send(b"s" * (60 * MSS))
    segs(x.host, 0.1)
    # the peer acks everything but offers a window of 100 bytes: far below half of what it offered before
    x.host.receive(from_peer(x, AK, ack=x.conn.snd_nxt, window=100 >> 7 or 1, tsecr=100), 0.2)
    assert x.conn.snd_wnd == 128
    none_out(x.host, 0.2)
    d = x.host.next_deadline()
    assert d == pytest.approx(0.4)  # the persist timer takes over


def test_the_first_read_sends_no_window_update_the_reply_carries_the_scaled_window() -> None:
    # The SYN-ACK offered 65535 (a SYN's window is never scaled); the 256 KB scaled window that follows
    # the handshake is not one a 1-byte read opened: Linux (tcp_cleanup_rbuf, its window grown from
    # rcv_ssthresh) sends nothing here either, and the reply carries the window.
    x = establish_passive()
    x.host.receive(from_peer(x, PA, payload=b"x"), 0.02)
    none_out(x.host, 0.02)  # the ACK is delayed
    assert x.conn.read() == b"x"
    none_out(x.host, 0.02)
    x.conn.send(b"y")
    reply = one(x.host, 0.02)
    assert (reply.flags, reply.ack, reply.window) == (PA, x.peer_nxt + 1, (256 * 1024) >> 7)


def test_a_read_that_frees_a_window_filled_by_data_advertises_it_at_once() -> None:
    # Linux tcp_cleanup_rbuf(): the read at least doubles a small window -> ACK now
    x = establish_passive(cfg(recv_buffer=16384))
    seq = x.peer_nxt
    for _ in range(8):
        x.host.receive(from_peer(x, AK, seq=seq, payload=b"d" * MSS), 0.02)
        seq += MSS
    acks = segs(x.host, 0.02)
    assert acks[-1].ack == seq
    small = x.conn.rcv_wnd
    assert 2 * small <= 16384
    assert len(x.conn.read()) == 8 * MSS
    update = one(x.host, 0.02)
    assert (update.flags, update.ack, update.window) == (AK, seq, 16384 >> 7)
