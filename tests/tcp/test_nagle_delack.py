"""Nagle's algorithm (RFC 9293 3.7.4, Linux's Minshall variant) and delayed ACKs (RFC 9293 3.8.6.3)."""

from __future__ import annotations

from tests.tcp.helpers import (
    AK,
    ISS,
    PA,
    cfg,
    establish_passive,
    event_types,
    from_peer,
    none_out,
    one,
    segs,
)

MSS = 1448


def test_second_small_write_waits_for_the_ack_of_the_first() -> None:
    x = establish_passive()
    x.conn.send(b"a")
    assert one(x.host, 0.1).payload == b"a"
    x.conn.send(b"b")
    x.conn.send(b"c")
    none_out(x.host, 0.11)  # a small segment is unacknowledged
    x.host.receive(from_peer(x, AK, ack=ISS + 2, tsecr=100), 0.15)
    seg = one(x.host, 0.15)
    assert (seg.flags, seg.seq, seg.payload) == (PA, ISS + 2, b"bc")  # coalesced


def test_nodelay_sends_small_segments_at_once() -> None:
    x = establish_passive(cfg(nodelay=True))
    x.conn.send(b"a")
    one(x.host, 0.1)
    x.conn.send(b"b")
    assert one(x.host, 0.11).payload == b"b"


def test_full_segments_are_not_held_by_nagle() -> None:
    x = establish_passive()
    x.conn.send(b"a")
    one(x.host, 0.1)
    x.conn.send(b"f" * (2 * MSS + 10))
    out = segs(x.host, 0.11)
    assert [len(s.payload) for s in out] == [MSS, MSS]  # the 10-byte tail waits


def test_fin_pushes_a_held_small_segment() -> None:
    x = establish_passive()
    x.conn.send(b"a")
    one(x.host, 0.1)
    x.conn.send(b"b")
    x.conn.close()
    seg = one(x.host, 0.11)
    assert (seg.payload, bool(seg.flags & 1)) == (b"b", True)


def test_ack_rides_on_data_instead_of_waiting() -> None:
    x = establish_passive()
    x.host.receive(from_peer(x, PA, payload=b"question"), 0.1)
    none_out(x.host, 0.1)
    x.conn.read()
    x.conn.send(b"answer")
    seg = one(x.host, 0.12)
    assert (seg.ack, seg.payload) == (x.peer_nxt + 8, b"answer")
    assert x.host.next_deadline() is not None  # the retransmission timer, not a delayed ACK
    x.host.receive(from_peer(x, AK, seq=x.peer_nxt + 8, ack=ISS + 7, tsecr=120), 0.13)
    assert x.host.next_deadline() is None
    assert x.host.counters["DelayedACKs"] == 0


def test_delayed_ack_fires_after_config_delay() -> None:
    x = establish_passive(cfg(delayed_ack=0.1))
    x.host.receive(from_peer(x, PA, payload=b"x"), 0.1)
    none_out(x.host, 0.1)
    assert x.host.next_deadline() == 0.1 + 0.1
    x.host.on_timer(0.2)
    assert one(x.host, 0.2).ack == x.peer_nxt + 1
    assert x.host.counters["DelayedACKs"] == 1


def test_zero_delayed_ack_acks_every_segment() -> None:
    x = establish_passive(cfg(delayed_ack=0))
    x.host.receive(from_peer(x, PA, payload=b"x"), 0.1)
    assert one(x.host, 0.1).ack == x.peer_nxt + 1


def test_data_events_are_coalesced_until_drained() -> None:
    x = establish_passive()
    x.host.receive(from_peer(x, PA, payload=b"a"), 0.1)
    x.host.receive(from_peer(x, PA, seq=x.peer_nxt + 1, payload=b"b"), 0.1)
    assert event_types(x.host) == ["DataReceived"]
    x.host.receive(from_peer(x, PA, seq=x.peer_nxt + 2, payload=b"c"), 0.1)
    assert event_types(x.host) == ["DataReceived"]
    assert x.conn.read() == b"abc"
