"""TCP_CORK (Linux tcp_nagle_check with TCP_NAGLE_CORK, the probe timer as its ceiling) and a
per-connection TCP_NODELAY."""

from __future__ import annotations

import pytest

from tests.tcp.helpers import AK, ISS, PA, establish_passive, fire, from_peer, none_out, one, segs
from utcp.wire.packet import TcpFlags

MSS = 1448
FA = TcpFlags.FIN | TcpFlags.ACK
FPA = TcpFlags.FIN | TcpFlags.PSH | TcpFlags.ACK


def test_a_corked_small_write_is_held_and_goes_with_the_fin() -> None:
    # The request/response server's use: cork, write the reply, close: one segment, reply and FIN.
    x = establish_passive()
    x.conn.cork = True
    x.conn.send(b"reply")
    none_out(x.host, 0.1)  # nothing in flight: Nagle alone would have sent it
    x.conn.close()
    seg = one(x.host, 0.1)
    assert (seg.flags, seg.seq, seg.payload) == (FPA, ISS + 1, b"reply")


def test_removing_the_cork_sends_what_it_held_coalesced() -> None:
    x = establish_passive()
    x.conn.cork = True
    x.conn.send(b"head")
    x.conn.send(b"body")
    none_out(x.host, 0.1)
    x.conn.cork = False
    seg = one(x.host, 0.1)
    assert (seg.flags, seg.payload) == (PA, b"headbody")


def test_full_segments_leave_while_corked_and_the_tail_waits() -> None:
    x = establish_passive()
    x.conn.cork = True
    x.conn.send(b"f" * (2 * MSS + 10))
    assert [len(s.payload) for s in segs(x.host, 0.1)] == [MSS, MSS]
    x.host.receive(from_peer(x, AK, ack=ISS + 1 + 2 * MSS, tsecr=100), 0.12)
    none_out(x.host, 0.12)  # all acknowledged, and the 10-byte tail is still corked (not Nagle)
    assert x.conn.cork


def test_the_probe_timer_is_the_corks_ceiling() -> None:
    # Linux: a corked partial segment with nothing in flight arms probe0 (tcp_check_probe_timer), which
    # sends it (tcp_write_wakeup) after max(RTO, TCP_RTO_MIN) without the cork being removed.
    x = establish_passive()
    x.conn.cork = True
    x.conn.send(b"late")
    none_out(x.host, 0.1)
    deadline = x.host.next_deadline()
    assert deadline is not None and deadline >= 0.1 + x.conn.config.persist_min
    assert fire(x.host) == deadline
    seg = one(x.host, deadline)
    assert (seg.seq, seg.payload) == (ISS + 1, b"late")
    assert x.conn.cork  # still corked: only this segment went


def test_a_held_segment_is_kept_through_an_ack_that_acks_nothing_new() -> None:
    x = establish_passive()
    x.conn.cork = True
    x.conn.send(b"x")
    none_out(x.host, 0.1)
    x.host.receive(from_peer(x, AK, window=4096, tsecr=100), 0.15)  # a window update
    none_out(x.host, 0.15)
    x.conn.shutdown()  # send_eof: the FIN carries it
    seg = one(x.host, 0.16)
    assert (seg.flags, seg.payload) == (FPA, b"x")


def test_uncorked_connections_keep_nagle() -> None:
    x = establish_passive()
    x.conn.send(b"a")
    assert one(x.host, 0.1).payload == b"a"
    x.conn.send(b"b")
    none_out(x.host, 0.11)  # Nagle: a small segment is unacknowledged


def test_setting_nodelay_on_a_connection_sends_what_nagle_held() -> None:
    x = establish_passive()
    assert not x.conn.nodelay  # config.nodelay's default
    x.conn.send(b"a")
    one(x.host, 0.1)
    x.conn.send(b"b")
    none_out(x.host, 0.11)
    x.conn.nodelay = True  # Linux TCP_NODELAY 1 pushes pending frames
    assert one(x.host, 0.12).payload == b"b"
    x.conn.send(b"c")
    assert one(x.host, 0.13).payload == b"c"


def test_cork_wins_over_nodelay() -> None:
    # Linux tcp_nagle_check: TCP_NAGLE_CORK holds partial segments whatever TCP_NODELAY says
    x = establish_passive()
    x.conn.nodelay = True
    x.conn.cork = True
    x.conn.send(b"a")
    none_out(x.host, 0.1)
    x.conn.close()
    assert one(x.host, 0.1).flags == FPA


def test_a_bare_fin_is_not_held_by_the_cork() -> None:
    x = establish_passive()
    x.conn.cork = True
    x.conn.close()
    assert one(x.host, 0.1).flags == FA


def test_ceiling_flushes_that_the_peer_acks_never_count_as_unanswered_probes() -> None:
    # Each flush by the probe timer counts a probe (Linux icsk_probes_out); the peer's ACK clears it, so
    # a corked connection that writes a little now and then outlives config.retries such flushes.
    x = establish_passive()
    x.conn.cork = True
    acked, now = ISS + 1, 0.1
    for i in range(x.conn.config.retries + 5):
        x.conn.send(b"tick")
        none_out(x.host, now)  # held; the probe timer armed
        held = now
        now = fire(x.host)
        # from its base every time: the ACK of the last flush cleared the backoff (tcp_ack_update_rtt)
        assert now - held == pytest.approx(max(x.conn.stats.rto, x.conn.config.persist_min)), i
        assert one(x.host, now).payload == b"tick", i
        acked += 4
        now += 0.01
        x.host.receive(from_peer(x, AK, ack=acked, tsecr=100), now)
        none_out(x.host, now)
    assert x.conn.state.name == "ESTABLISHED" and x.conn.error is None
