"""Retransmission timer (RFC 6298): RTO, exponential backoff, Karn's algorithm, the retry limit."""

from __future__ import annotations

import pytest

from tests.tcp.helpers import (
    AK,
    ISS,
    PA,
    cfg,
    establish_passive,
    event_types,
    fire,
    from_peer,
    none_out,
    one,
    segs,
)
from utcp.tcp.errors import ConnectionTimedOut
from utcp.tcp.state import TcpState
from utcp.wire.packet import Timestamps

MSS = 1448


def test_unacked_data_is_retransmitted_after_the_rto_with_backoff() -> None:
    x = establish_passive()
    assert x.conn.stats.rto == pytest.approx(0.2)  # srtt 10 ms from the handshake, floored at min_rto
    x.conn.send(b"data")
    first = one(x.host, 0.1)
    times = []
    for _ in range(3):
        d = x.host.next_deadline()
        assert d is not None
        x.host.on_timer(d)
        again = one(x.host, d)
        assert (again.flags, again.seq, again.payload) == (first.flags, first.seq, first.payload)
        times.append(round(d, 6))
    assert times == [0.3, 0.7, 1.5]
    assert x.host.counters["RetransSegs"] == 3
    assert x.host.counters["TCPTimeouts"] == 3
    assert x.conn.stats.retransmitted_segments == 3


def test_the_rto_restarts_when_new_data_is_acked() -> None:
    x = establish_passive()
    x.conn.send(b"a" * (3 * MSS))
    segs(x.host, 0.1)
    x.host.receive(from_peer(x, AK, ack=ISS + 1 + MSS, tsecr=100), 0.25)
    d = x.host.next_deadline()
    assert d is not None and d > 0.3  # restarted at 0.25, not 0.3


def test_all_data_acked_stops_the_timer() -> None:
    x = establish_passive()
    x.conn.send(b"a")
    segs(x.host, 0.1)
    x.host.receive(from_peer(x, AK, ack=ISS + 2, tsecr=100), 0.12)
    assert x.host.next_deadline() is None


def test_retry_limit_fails_the_connection_with_timeout() -> None:
    x = establish_passive(cfg(retries=3))
    x.conn.send(b"lost")
    segs(x.host, 0.1)
    n = 0
    while (d := x.host.next_deadline()) is not None and n < 20:
        x.host.on_timer(d)
        segs(x.host, d)
        n += 1
    assert x.conn.state is TcpState.CLOSED
    assert isinstance(x.conn.error, ConnectionTimedOut)
    assert x.host.counters["RetransSegs"] == 3
    assert event_types(x.host)[-2:] == ["Reset", "Closed"]
    assert x.host.counters["EstabResets"] == 1


def test_rto_is_clamped_to_max_rto() -> None:
    x = establish_passive(cfg(max_rto=1.0, retries=10))
    x.conn.send(b"x")
    segs(x.host, 0.1)
    gaps = []
    last = 0.1
    for _ in range(5):
        d = x.host.next_deadline()
        assert d is not None
        x.host.on_timer(d)
        segs(x.host, d)
        gaps.append(round(d - last, 6))
        last = d
    assert gaps == [0.2, 0.4, 0.8, 1.0, 1.0]


def test_karn_no_sample_from_a_retransmitted_segment_without_timestamps() -> None:
    x = establish_passive(cfg(timestamps=False))
    srtt = x.conn.stats.srtt
    x.conn.send(b"k")
    one(x.host, 0.1)
    assert fire(x.host) == pytest.approx(0.3)
    one(x.host, 0.3)
    x.host.receive(from_peer(x, AK, ack=ISS + 2), 0.9)  # ambiguous: for the original or the copy?
    assert x.conn.stats.srtt == srtt
    assert x.conn.stats.rto == pytest.approx(0.4)  # the backed-off RTO stays (RFC 6298 5.7)
    x.conn.send(b"m")
    one(x.host, 1.0)
    x.host.receive(from_peer(x, AK, ack=ISS + 3), 1.05)
    assert x.conn.stats.srtt != srtt  # a clean sample updates the estimate and clears the backoff
    assert x.conn.stats.rto == pytest.approx(0.2)


def test_timestamps_give_rtt_samples_even_for_retransmissions() -> None:
    x = establish_passive()
    x.conn.send(b"k")
    one(x.host, 0.1)
    assert fire(x.host) == pytest.approx(0.3)
    again = one(x.host, 0.3)
    tsopt = again.option(Timestamps)
    assert tsopt is not None
    tsval = tsopt.tsval
    assert tsval == 300
    x.host.receive(from_peer(x, AK, ack=ISS + 2, tsecr=tsval), 0.35)
    assert x.conn.stats.srtt == pytest.approx(0.875 * 0.01 + 0.125 * 0.05)


def test_after_a_timeout_only_the_first_segment_is_resent_then_slow_start() -> None:
    x = establish_passive()
    x.conn.send(b"s" * (4 * MSS))
    assert len(segs(x.host, 0.1)) == 4
    assert fire(x.host) == pytest.approx(0.3)
    out = segs(x.host, 0.3)
    assert [s.seq for s in out] == [ISS + 1]  # loss window: one segment
    assert x.conn.stats.cwnd == MSS
    x.host.receive(from_peer(x, AK, ack=ISS + 1 + MSS, tsecr=300), 0.35)
    out = segs(x.host, 0.35)
    assert [s.seq for s in out] == [ISS + 1 + MSS, ISS + 1 + 2 * MSS]  # cwnd 2 after one ACK
    assert x.conn.stats.ssthresh == 2 * MSS


def test_ack_for_retransmitted_fin_and_data() -> None:
    x = establish_passive()
    x.conn.send(b"end")
    x.conn.close()
    first = one(x.host, 0.1)
    assert fire(x.host) == pytest.approx(0.3)
    again = one(x.host, 0.3)
    assert (again.flags, again.payload) == (first.flags, b"end")
    assert again.flags == PA | 1
    x.host.receive(from_peer(x, AK, ack=ISS + 5, tsecr=300), 0.32)
    none_out(x.host, 0.32)
    assert x.conn.state is TcpState.FIN_WAIT_2
