"""SYN cookies (TcpConfig(syn_cookies=True); Linux net/ipv4/syncookies.c): a full SYN queue answers with a
stateless cookie SYN-ACK; the ACK that returns a valid cookie makes the connection, a forged or stale one is
counted (SyncookiesFailed) and answered like any stray ACK to a listener (RST)."""

from __future__ import annotations

import pytest

from tests.tcp.helpers import AK, PA, PEER_ISS, SA, A, R, S, cfg, make_host, pkt, segs, syn_opts
from utcp.tcp.host import Host, Listener
from utcp.tcp.state import TcpState
from utcp.tcp.syncookies import MSS_TABLE, SynCookies, mss_index
from utcp.wire import Mss

KEY = ("198.18.0.2", 50000, "198.18.0.1", 80)


def test_cookie_round_trip_encodes_the_mss_index() -> None:
    c = SynCookies(b"k" * 16)
    for mss, expected in ((1460, 1460), (9000, 1460), (1400, 1300), (1300, 1300), (600, 536), (100, 536)):
        cookie = c.make(KEY, 12345, mss, 100.0)
        assert c.check(KEY, 12345, cookie, 100.0) == expected
        assert mss_index(mss) == MSS_TABLE.index(expected)


def test_cookie_fails_when_forged_for_another_tuple_or_too_old() -> None:
    c = SynCookies(b"k" * 16)
    cookie = c.make(KEY, 7, 1460, 600.0)
    assert c.check(KEY, 7, cookie, 600.0 + 119) == 1460  # Linux MAX_SYNCOOKIE_AGE: this minute and the last
    assert c.check(KEY, 7, cookie, 600.0 + 120) is None
    # another SYN sequence (as in Linux, the MSS index is additive: sseq + 1 would decode as index - 1)
    assert c.check(KEY, 7 + 100, cookie, 600.0) is None
    assert c.check(("198.18.0.3", 50000, "198.18.0.1", 80), 7, cookie, 600.0) is None
    assert c.check(KEY, 7, cookie ^ 0x10, 600.0) is None
    assert SynCookies(b"x" * 16).check(KEY, 7, cookie, 600.0) is None  # another host's secret
    # a blind guess almost never passes: 4 valid data values in 2**24, 2 counters in 256
    passed = sum(
        c.check(KEY, 7, (cookie + i * 7919) & 0xFFFFFFFF, 600.0) is not None for i in range(1, 20_000)
    )
    assert passed == 0


def _full(backlog: int = 1) -> tuple[Host, Listener]:
    host = make_host(config=cfg(syn_cookies=True))
    lst = host.listen(A, 80, backlog=backlog)
    for port in range(40_000, 40_000 + backlog + 1):
        host.receive(pkt(S, 1, sport=port, options=syn_opts()), 0.0)
    segs(host, 0.0)
    assert lst.syn_pending == backlog + 1
    return host, lst


def test_full_syn_queue_answers_with_a_cookie_and_keeps_no_state() -> None:
    host, lst = _full()
    host.receive(pkt(S, PEER_ISS, sport=50000, options=syn_opts(mss=1400)), 1.0)
    (synack,) = segs(host, 1.0)
    assert synack.flags == SA and synack.ack == PEER_ISS + 1
    assert synack.options == (Mss(1460),)  # no WS, SACK or TS: a cookie cannot carry them
    assert lst.syn_pending == 2 and len(host.connections()) == 2
    assert host.counters["SyncookiesSent"] == 1 and host.counters["TCPReqQFullDoCookies"] == 1
    # the ACK returning the cookie makes an ESTABLISHED connection (carrying data, even)
    host.receive(pkt(PA, PEER_ISS + 1, synack.seq + 1, sport=50000, payload=b"GET /"), 1.01)
    out = segs(host, 1.01)
    assert host.counters["SyncookiesRecv"] == 1
    conn = lst.accept()
    assert conn is not None and conn.state is TcpState.ESTABLISHED
    assert conn.read() == b"GET /"
    assert conn.negotiated.mss == 1300  # the table entry at or below the peer's 1400
    assert conn.iss == synack.seq and conn.irs == PEER_ISS
    assert all(s.flags & R == 0 for s in out)
    conn.send(b"200 OK")
    (reply,) = [s for s in segs(host, 1.02) if s.payload]
    assert reply.seq == synack.seq + 1 and reply.ack == PEER_ISS + 6


@pytest.mark.parametrize("delta", [4, -4, 0x1000000])
def test_forged_cookie_ack_is_counted_and_reset(delta: int) -> None:
    host, lst = _full()
    host.receive(pkt(S, PEER_ISS, sport=50000, options=syn_opts()), 1.0)
    (synack,) = segs(host, 1.0)
    host.receive(pkt(AK, PEER_ISS + 1, synack.seq + 1 + delta, sport=50000), 1.01)
    (rst,) = segs(host, 1.01)
    assert rst.flags == R
    assert host.counters["SyncookiesFailed"] == 1 and host.counters["SyncookiesRecv"] == 0
    assert lst.pending == 0


def test_stale_cookie_and_no_recent_overflow() -> None:
    host, lst = _full()
    host.receive(pkt(S, PEER_ISS, sport=50000, options=syn_opts()), 1.0)
    (synack,) = segs(host, 1.0)
    # 3 minutes later: no cookie sent for over TCP_SYNCOOKIE_VALID (2 min), the ACK is not even checked
    host.receive(pkt(AK, PEER_ISS + 1, synack.seq + 1, sport=50000), 181.0)
    assert [s.flags for s in segs(host, 181.0)] == [R]
    assert host.counters["SyncookiesFailed"] == 0 and host.counters["SyncookiesRecv"] == 0
    assert lst.pending == 0


def test_cookie_ack_with_full_accept_queue_is_dropped_and_counted() -> None:
    host, lst = _full(backlog=0)
    # two cookies out, then both ACKs: the accept queue (backlog 0 holds one) takes the first only
    synacks = []
    for port in (50000, 50001):
        host.receive(pkt(S, PEER_ISS, sport=port, options=syn_opts()), 1.0)
        synacks += segs(host, 1.0)
    for port, synack in zip((50000, 50001), synacks, strict=True):
        host.receive(pkt(AK, PEER_ISS + 1, synack.seq + 1, sport=port), 1.01)
        assert segs(host, 1.01) == []
    assert lst.pending == 1
    assert host.counters["SyncookiesRecv"] == 2 and host.counters["ListenOverflows"] == 1


def test_cookies_off_drops_the_syn() -> None:
    host = make_host()
    lst = host.listen(A, 80, backlog=0)
    for port in (1, 2, 3):
        host.receive(pkt(S, 1, sport=port, options=syn_opts()), 0.0)
    assert len(segs(host, 0.0)) == 1
    assert lst.syn_pending == 1 and host.counters["TCPReqQFullDrop"] == 2
    assert host.counters["SyncookiesSent"] == 0
