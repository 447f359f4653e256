"""Congestion control (RFC 5681): initial window, slow start, fast retransmit, NewReno recovery (RFC 6582);
and end-to-end bulk transfers through random loss."""

from __future__ import annotations

import pytest

from tests.tcp.helpers import (
    AK,
    ISS,
    A,
    B,
    Pump,
    cfg,
    establish_passive,
    from_peer,
    lossy,
    make_host,
    segs,
)

MSS = 1448


def _seq(i: int) -> int:
    return ISS + 1 + i * MSS


def test_initial_window_is_ten_segments() -> None:
    x = establish_passive()
    x.conn.send(b"i" * (20 * MSS))
    out = segs(x.host, 0.1)
    assert len(out) == 10
    assert x.conn.stats.cwnd == 10 * MSS


def test_initial_window_follows_config() -> None:
    x = establish_passive(cfg(initial_cwnd=4))
    x.conn.send(b"i" * (20 * MSS))
    assert len(segs(x.host, 0.1)) == 4


def test_slow_start_grows_the_window_by_acked_bytes() -> None:
    x = establish_passive()
    x.conn.send(b"s" * (40 * MSS))
    segs(x.host, 0.1)
    x.host.receive(from_peer(x, AK, ack=_seq(2), tsecr=100), 0.15)
    out = segs(x.host, 0.15)
    assert x.conn.stats.cwnd == 12 * MSS
    assert [s.seq for s in out] == [_seq(i) for i in range(10, 14)]  # 2 acked + 2 more allowed


def test_three_duplicate_acks_trigger_fast_retransmit_newreno() -> None:
    x = establish_passive(peer_sack=False)
    x.conn.send(b"f" * (20 * MSS))
    segs(x.host, 0.1)  # segments 0..9; 0 is lost
    for t in (0.15, 0.151):
        x.host.receive(from_peer(x, AK, ack=_seq(0), tsecr=100), t)
        assert segs(x.host, t) == []
    x.host.receive(from_peer(x, AK, ack=_seq(0), tsecr=100), 0.152)
    out = segs(x.host, 0.152)
    assert [(s.seq, len(s.payload)) for s in out] == [(_seq(0), MSS)]
    assert x.host.counters["TCPRenoRecovery"] == 1
    assert x.host.counters["TCPFastRetrans"] == 1
    assert x.conn.stats.ssthresh == 5 * MSS
    assert x.conn.stats.cwnd == 5 * MSS


def test_newreno_partial_ack_retransmits_the_next_hole_at_once() -> None:
    x = establish_passive(peer_sack=False)
    x.conn.send(b"f" * (20 * MSS))
    segs(x.host, 0.1)  # 0..9 sent; 0 and 5 are lost
    for i in range(8):  # dupacks for 1-4 and 6-9
        x.host.receive(from_peer(x, AK, ack=_seq(0), tsecr=100), 0.15 + i * 0.001)
    out = segs(x.host, 0.16)
    assert out[0].seq == _seq(0)
    assert [s.seq for s in out[1:]] == [_seq(i) for i in range(10, 10 + len(out) - 1)]  # new data
    x.host.receive(from_peer(x, AK, ack=_seq(5), tsecr=100), 0.2)  # partial ACK: 5 is missing
    out = segs(x.host, 0.2)
    assert out[0].seq == _seq(5)
    assert x.host.counters["TCPFastRetrans"] == 2
    assert x.host.counters["TCPRenoRecovery"] == 1  # still one recovery episode
    x.host.receive(from_peer(x, AK, ack=x.conn.snd_nxt, tsecr=100), 0.25)  # full ACK ends recovery
    assert x.conn.stats.cwnd <= x.conn.stats.ssthresh
    assert x.host.counters["TCPTimeouts"] == 0


def test_window_updates_and_data_are_not_duplicate_acks() -> None:
    x = establish_passive(peer_sack=False)
    x.conn.send(b"f" * (10 * MSS))
    segs(x.host, 0.1)
    x.host.receive(from_peer(x, AK, ack=_seq(0), window=3000), 0.15)
    x.host.receive(from_peer(x, AK, ack=_seq(0), window=3001), 0.15)
    x.host.receive(from_peer(x, AK, ack=_seq(0), window=3001, payload=b"d"), 0.15)
    assert x.host.counters["TCPRenoRecovery"] == 0


def test_congestion_avoidance_adds_one_segment_per_window() -> None:
    x = establish_passive()
    conn = x.conn
    conn._cc.ssthresh = 10 * MSS  # start in congestion avoidance
    conn.send(b"c" * (40 * MSS))
    segs(x.host, 0.1)
    for i in range(1, 11):
        x.host.receive(from_peer(x, AK, ack=_seq(i), tsecr=100), 0.1 + i * 0.001)
        segs(x.host, 0.1 + i * 0.001)
    assert conn.stats.cwnd == 11 * MSS


def _transfer(size: int, loss: float, seed: int, **kw: object) -> tuple[bytes, bytes, Pump]:
    config = cfg(**kw) if kw else None
    a = make_host(A, config=config)
    b = make_host(B, iss=777_000, config=config, seed=2)
    lst = b.listen(B, 80)
    pump = Pump([a, b], drop=lossy(loss, seed))
    c = a.connect(B, 80, 0.0)
    pump.run(60.0, stop=lambda: lst.pending > 0)
    s = lst.accept()
    assert s is not None
    data = bytes((i * 7 + i // 251) & 0xFF for i in range(size))
    sent = 0
    got = bytearray()
    while len(got) < size and pump.now < 600:
        if sent < size:
            sent += c.send(data[sent : sent + 65536])
        if not pump.step():
            break
        got += s.read()
    c.close()
    pump.run(pump.now + 30, stop=lambda: s.eof_received)
    return data, bytes(got), pump


@pytest.mark.parametrize(
    ("loss", "seed", "kw"),
    [
        (0.0, 1, {}),
        (0.03, 3, {}),
        (0.03, 4, {"sack": False}),
        (0.05, 5, {"timestamps": False}),
        (0.05, 6, {"sack": False, "timestamps": False, "window_scale": None}),
    ],
    ids=["clean", "sack-ts", "newreno", "sack-no-ts", "bare"],
)
def test_bulk_transfer_through_random_loss_arrives_byte_exact(
    loss: float, seed: int, kw: dict[str, object]
) -> None:
    data, got, _pump = _transfer(2_000_000, loss, seed, **kw)
    assert len(got) == len(data)
    assert got == data
