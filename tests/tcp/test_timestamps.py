"""Timestamps (RFC 7323): negotiation, the TSecr echo rules of section 4.3, RTT measurement."""

from __future__ import annotations

import pytest

from tests.tcp.helpers import (
    AK,
    ISS,
    PEER_ISS,
    A,
    S,
    establish_passive,
    from_peer,
    make_host,
    one,
    pkt,
    segs,
    syn_opts,
    ts,
)
from utcp.tcp.clock import TimestampClock
from utcp.wire.packet import TcpSegment, Timestamps

MSS = 1448


def _tsopt(seg: TcpSegment) -> Timestamps:
    for o in seg.options:
        if isinstance(o, Timestamps):
            return o
    raise AssertionError("no timestamps option")


def test_delayed_ack_echoes_the_earliest_unacknowledged_segment() -> None:
    x = establish_passive()
    x.host.receive(from_peer(x, AK, payload=b"a" * 100, tsval=200), 0.1)
    x.host.receive(from_peer(x, AK, seq=x.peer_nxt + 100, payload=b"b" * 100, tsval=210), 0.11)
    x.host.on_timer(0.14)
    ack = one(x.host, 0.14)
    assert _tsopt(ack) == Timestamps(140, 200)  # RFC 7323 4.3 (case 1): not 210


def test_out_of_order_segment_does_not_update_ts_recent() -> None:
    x = establish_passive()
    x.host.receive(from_peer(x, AK, seq=x.peer_nxt + 100, payload=b"b" * 100, tsval=300), 0.1)
    assert _tsopt(one(x.host, 0.1)).tsecr == 101
    x.host.receive(from_peer(x, AK, payload=b"a" * 100, tsval=310), 0.11)
    assert _tsopt(one(x.host, 0.11)).tsecr == 310  # the segment filling the hole (RFC 7323 4.3 case 2)


def test_rtt_is_measured_from_tsecr_on_acks_advancing_snd_una() -> None:
    x = establish_passive()
    x.conn.send(b"r")
    one(x.host, 0.1)
    x.host.on_timer(0.30000000000000004)
    segs(x.host, 0.3)
    x.host.receive(from_peer(x, AK, ack=ISS + 2, tsecr=300), 0.42)
    assert x.conn.stats.srtt == pytest.approx(0.875 * 0.01 + 0.125 * 0.12)


def test_no_timestamps_when_the_peer_did_not_offer_them() -> None:
    x = establish_passive(peer_ts=False)
    assert not x.conn.negotiated.timestamps
    x.conn.send(b"plain")
    seg = one(x.host, 0.1)
    assert seg.options == ()
    assert x.conn.negotiated.mss == 1460


def test_tsval_comes_from_the_clock_with_its_per_pair_offset() -> None:
    clock = TimestampClock(offset_mode="fixed", fixed_offset=0xFFFFFF00)
    host = make_host(ts_clock=clock)
    host.listen(A, 80)
    host.receive(pkt(S, PEER_ISS, options=syn_opts(tsval=5)), 0.5)
    sa = one(host, 0.5)
    assert _tsopt(sa) == Timestamps((500 + 0xFFFFFF00) & 0xFFFFFFFF, 5)  # wraps around 2**32
    host.receive(pkt(AK, PEER_ISS + 1, ISS + 1, options=ts(6, _tsopt(sa).tsval)), 0.6)
    [conn] = host.connections()
    assert conn.stats.srtt == pytest.approx(0.1)


def test_frozen_clock_gives_zero_rtt_samples_without_breaking() -> None:
    host = make_host(ts_clock=TimestampClock(frozen_at=42))
    host.listen(A, 80)
    host.receive(pkt(S, PEER_ISS, options=syn_opts(tsval=5)), 0.0)
    assert _tsopt(one(host, 0.0)).tsval == 42
    host.receive(pkt(AK, PEER_ISS + 1, ISS + 1, options=ts(6, 42)), 0.3)
    [conn] = host.connections()
    assert conn.stats.rto == pytest.approx(0.2)
