"""Resource limits (issue 7, must-show 6): receive and send buffers, the accept backlog, the SYN queue and the
number of connections are bounded and configurable. Exceeding one is a clear TcpUsageError when the local
API asks for it, and a counted drop when a peer causes it; nothing grows without bound."""

from __future__ import annotations

import pytest

from tests.tcp.helpers import (
    AK,
    PA,
    PEER_ISS,
    A,
    B,
    S,
    cfg,
    establish_passive,
    from_peer,
    make_host,
    pkt,
    segs,
    syn_opts,
)
from utcp.tcp.config import TcpConfig
from utcp.tcp.errors import TcpUsageError
from utcp.tcp.events import SegmentDropped
from utcp.tcp.host import Host
from utcp.tcp.state import TcpState


@pytest.mark.parametrize(
    "kw", [{"recv_buffer": 0}, {"send_buffer": -1}, {"initial_cwnd": 0}, {"mss": 0}, {"mss": 70000}]
)
def test_nonsense_config_is_refused_at_construction(kw: dict[str, int]) -> None:
    with pytest.raises(TcpUsageError, match=next(iter(kw))):
        TcpConfig(**kw)  # type: ignore[arg-type]


def test_max_connections_must_be_positive() -> None:
    with pytest.raises(TcpUsageError, match="max_connections"):
        Host([A], max_connections=0)


def test_send_buffer_bounds_what_send_accepts() -> None:
    x = establish_passive(cfg(send_buffer=10_000))
    total = 0
    for _ in range(100):  # the peer never acknowledges: the buffer fills and stays full
        total += x.conn.send(b"z" * 4096)
        segs(x.host, x.now)
    assert total == 10_000
    assert x.conn.send_space == 0 and x.conn.send(b"more") == 0
    assert len(x.conn._sbuf) == 10_000


def test_receive_buffer_bounds_in_order_and_out_of_order_data() -> None:
    """A peer that ignores our window: bytes past it are dropped and counted, whatever it sends."""
    x = establish_passive(cfg(recv_buffer=20_000), peer_ws=None)
    now = x.now
    for i in range(200):  # 200 kB scattered ahead of RCV.NXT: what fits the window waits out of order
        seq = x.conn.rcv_nxt + 1000 + i * 3000
        x.host.receive(from_peer(x, PA, seq=seq, payload=b"o" * 1000, tsval=100 + i), now)
        segs(x.host, now)
    dropped = [e for e in x.host.events() if isinstance(e, SegmentDropped)]
    assert 0 < x.conn._ofo.size <= 20_000
    assert len(dropped) > 190 and {e.reason for e in dropped} == {"segment outside the receive window"}
    for i in range(200):  # 290 kB in order, pushed at RCV.NXT whatever the window, never read
        x.host.receive(from_peer(x, PA, seq=x.conn.rcv_nxt, payload=b"i" * 1450, tsval=200 + i), now)
        segs(x.host, now)
    zero_window_drops = x.host.counters["TCPZeroWindowDrop"]
    assert zero_window_drops > 150
    held = x.conn.readable + x.conn._ofo.size
    assert held <= 20_000, held
    assert x.conn.state is TcpState.ESTABLISHED
    data = x.conn.read()
    assert len(data) == x.conn.rcv_nxt - x.peer_nxt > 15_000
    assert set(data) == {ord("i"), ord("o")}  # in-order bytes, then held pieces the fill made contiguous
    segs(x.host, now)  # the read reopened the window (the update goes out)
    nxt = x.conn.rcv_nxt
    x.host.receive(from_peer(x, PA, seq=nxt, payload=b"n" * 1000, tsval=700), now + 0.1)
    assert x.conn.read().startswith(b"n" * 1000)


def test_tiny_out_of_order_segments_are_bounded_by_count_not_only_by_bytes() -> None:
    """One-byte segments scattered over the window: each would be an object of its own, so the queue
    holds at most recv_buffer / 512 pieces and drops the rest (TCPOFODrop, Linux tcp_data_queue_ofo);
    what it kept is still delivered once the hole is filled."""
    x = establish_passive(cfg(recv_buffer=64 * 1024), peer_ws=None)
    now = x.now
    base = x.conn.rcv_nxt
    for i in range(1000):  # bytes 2, 4, 6, ... ahead of a hole at RCV.NXT
        x.host.receive(from_peer(x, PA, seq=base + 2 + 2 * i, payload=bytes([i % 256]), tsval=100 + i), now)
        segs(x.host, now)
    limit = 64 * 1024 // 512
    assert x.conn._ofo.pieces == limit
    assert x.host.counters["TCPOFODrop"] == 1000 - limit
    assert {e.reason for e in x.host.events() if isinstance(e, SegmentDropped)} == {"out-of-order queue full"}
    x.host.receive(from_peer(x, PA, seq=base, payload=b"ab", tsval=2000), now)  # fills the first hole
    assert x.conn.read() == b"ab" + bytes([0])  # byte 2 was held; byte 3 is the next hole
    x.host.receive(from_peer(x, PA, seq=base + 3, payload=b"x", tsval=2001), now)
    assert x.conn.read() == b"x" + bytes([1])


def test_accept_backlog_bounds_the_accept_queue_and_counts_overflows() -> None:
    host = make_host()
    lst = host.listen(A, 80, backlog=2)
    for port in range(50_000, 50_010):
        host.receive(pkt(S, PEER_ISS, sport=port, options=syn_opts()), 0.0)
        for s in segs(host, 0.0):
            if s.flags == S | AK:
                host.receive(pkt(AK, PEER_ISS + 1, s.seq + 1, sport=port), 0.01)
        segs(host, 0.01)
    assert lst.pending == 3  # backlog + 1, as Linux sk_acceptq_is_full
    assert host.counters["ListenOverflows"] > 0
    assert lst.syn_pending <= 3
    # accepting makes room: the next completed handshake is queued
    assert lst.accept() is not None
    host.receive(pkt(S, PEER_ISS, sport=51_000, options=syn_opts()), 1.0)
    (synack,) = segs(host, 1.0)
    host.receive(pkt(AK, PEER_ISS + 1, synack.seq + 1, sport=51_000), 1.01)
    assert lst.pending == 3


def test_syn_queue_is_bounded_without_cookies() -> None:
    host = make_host()
    lst = host.listen(A, 80, backlog=4)
    for port in range(1000, 3000):
        host.receive(pkt(S, PEER_ISS, sport=port, options=syn_opts()), 0.0)
        segs(host, 0.0)
    assert lst.syn_pending == 5
    assert len(host.connections()) == 5
    assert host.counters["TCPReqQFullDrop"] == 2000 - 5
    assert host.counters["ListenDrops"] == 2000 - 5


def test_max_connections_refuses_connect_with_a_clear_error() -> None:
    host = make_host(max_connections=3)
    for port in (81, 82, 83):
        host.connect(B, port, 0.0)
    with pytest.raises(TcpUsageError, match=r"connection limit reached \(max_connections=3\)"):
        host.connect(B, 84, 0.0)
    assert len(host.connections()) == 3


def test_max_connections_drops_and_counts_peer_syns_then_frees_up() -> None:
    host = make_host(max_connections=3, config=cfg(synack_retries=1))
    lst = host.listen(A, 80, backlog=100)
    for port in range(40_000, 40_010):
        host.receive(pkt(S, PEER_ISS, sport=port, options=syn_opts()), 0.0)
    assert len(segs(host, 0.0)) == 3  # three SYN-ACKs, nothing for the rest
    assert lst.syn_pending == 3
    assert host.counters["TCPMaxConnectionsDrop"] == 7
    assert host.counters["ListenDrops"] == 7
    # the embryonic connections time out (one SYN-ACK retransmission); the slots come back
    now = 0.0
    while (d := host.next_deadline()) is not None:
        now = d
        host.on_timer(now)
        segs(host, now)
    assert host.connections() == []
    host.receive(pkt(S, PEER_ISS, sport=41_000, options=syn_opts()), now + 1)
    assert [s.flags for s in segs(host, now + 1)] == [S | AK]
