"""Must-show 3: the linux-tw-recycle preset (SCENARIOS.md D) on virtual time.

A server that closed actively remembers the peer's last TSval; for TCP_PAWS_MSL after that, a SYN from the
same address with an older TSval (or none) is dropped silently (PAWSPassive), then accepted. With a SNAT box
in utcp.sim, two clients with unrelated TS clocks share one address: the second cannot connect until the
cached stamp is TCP_PAWS_MSL old, while the `linux` preset lets it in at once.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from interop.scenario_d import OUTSIDE, UTCP_SERVER, sim_topology
from tests.tcp.helpers import (
    AK,
    ISS,
    PEER_ISS,
    SA,
    A,
    B,
    F,
    S,
    make_host,
    none_out,
    one,
    pkt,
    state,
    syn_opts,
    ts,
)
from utcp.policy import TCP_PAWS_MSL, LinuxPolicy, LinuxTwRecyclePolicy, Policy
from utcp.sim.network import Network
from utcp.tcp.connection import Connection
from utcp.tcp.events import SegmentDropped
from utcp.tcp.host import Host
from utcp.tcp.state import TcpState

PEER_TS = 3_000_000  # the peer's TSval on the connection the server closes
OLD_TS = 1_000_000  # another client's clock behind the same address: far behind


@dataclass
class Recycled:
    host: Host
    closed_at: float  # when TS.Recent was last stored (the stamp the cache keeps)


def _server_closes_actively(policy: Policy) -> Recycled:
    """The server (A:80) accepts B:50000, then closes first: FIN, B's ACK+FIN, TIME-WAIT."""
    host = make_host(policy=policy)
    lst = host.listen(A, 80)
    host.receive(pkt(S, PEER_ISS, options=syn_opts(tsval=PEER_TS)), 0.0)
    one(host, 0.0)
    host.receive(pkt(AK, PEER_ISS + 1, ISS + 1, options=ts(PEER_TS + 10, 0)), 0.01)
    conn = lst.accept()
    assert conn is not None
    conn.close()
    fin = one(host, 0.02)
    assert fin.flags == F | AK
    host.receive(pkt(F | AK, PEER_ISS + 1, ISS + 2, options=ts(PEER_TS + 30, 0)), 0.03)
    assert one(host, 0.03).flags == AK
    assert conn.state is TcpState.TIME_WAIT
    return Recycled(host, 0.03)


def _syn(host: Host, now: float, *, sport: int, tsval: int | None, src: str = B) -> bool:
    """A new SYN from `src`; True when the server answered with a SYN-ACK."""
    host.receive(pkt(S, 777_000, options=syn_opts(tsval=tsval), sport=sport, src=src), now)
    out = [p.tcp for p in host.packets_to_send(now)]
    assert all(s.flags == SA for s in out), out
    return bool(out)


def _time_wait_ends(x: Recycled) -> float:
    deadline = x.host.next_deadline()
    assert deadline is not None
    x.host.on_timer(deadline)
    assert [c for c in x.host.connections() if c.state is TcpState.TIME_WAIT] == []
    return deadline


def test_time_wait_is_recycled_after_3_5_rto_and_the_peer_timestamp_remembered() -> None:
    policy = LinuxTwRecyclePolicy()
    x = _server_closes_actively(policy)
    tw = x.host.connections()[0]
    ended = _time_wait_ends(x)
    assert ended - x.closed_at == pytest.approx(3.5 * tw.rto)
    assert ended - x.closed_at < 1.0  # instead of 60 s
    entry = policy.peer_cache.get(B)
    assert entry is not None and (entry.tsval, entry.stamp) == (PEER_TS + 30, x.closed_at)


def test_an_older_syn_is_dropped_for_tcp_paws_msl_then_accepted() -> None:
    x = _server_closes_actively(LinuxTwRecyclePolicy())
    _time_wait_ends(x)
    x.host.events()
    msl_ends = x.closed_at + TCP_PAWS_MSL
    dropped = 0
    for i, now in enumerate((1.0, 10.0, 30.0, msl_ends - 0.01)):
        assert not _syn(x.host, now, sport=51000 + i, tsval=OLD_TS)
        dropped += 1
        assert x.host.counters["PAWSPassive"] == dropped
    events = [e for e in x.host.events() if isinstance(e, SegmentDropped)]
    assert [e.counter for e in events] == ["PAWSPassive"] * dropped
    assert "tw_recycle" in events[0].reason and "older" in events[0].reason
    assert _syn(x.host, msl_ends + 0.01, sport=51100, tsval=OLD_TS)
    assert x.host.counters["PAWSPassive"] == dropped


def test_within_msl_a_syn_without_timestamps_is_dropped_but_a_newer_one_passes() -> None:
    x = _server_closes_actively(LinuxTwRecyclePolicy())
    _time_wait_ends(x)
    assert not _syn(x.host, 5.0, sport=52000, tsval=None)
    assert _syn(x.host, 5.0, sport=52001, tsval=PEER_TS + 29)  # older by 1 = TCP_PAWS_WINDOW: passes
    assert _syn(x.host, 5.0, sport=52002, tsval=PEER_TS + 5000)
    assert _syn(x.host, 5.0, sport=52003, tsval=OLD_TS, src="198.18.0.3")  # another address
    assert x.host.counters["PAWSPassive"] == 1


def test_paws_msl_is_a_knob() -> None:
    x = _server_closes_actively(LinuxTwRecyclePolicy(paws_msl=10.0))
    _time_wait_ends(x)
    assert not _syn(x.host, x.closed_at + 9.9, sport=53000, tsval=OLD_TS)
    assert _syn(x.host, x.closed_at + 10.1, sport=53001, tsval=OLD_TS)


def test_linux_6_keeps_time_wait_60s_and_accepts_the_older_syn() -> None:
    x = _server_closes_actively(LinuxPolicy())
    assert x.host.next_deadline() == pytest.approx(x.closed_at + 60.0)
    assert _syn(x.host, 1.0, sport=54000, tsval=OLD_TS)
    assert x.host.counters["PAWSPassive"] == 0


def test_a_passive_close_remembers_nothing() -> None:
    policy = LinuxTwRecyclePolicy()
    host = make_host(policy=policy)
    lst = host.listen(A, 80)
    host.receive(pkt(S, PEER_ISS, options=syn_opts(tsval=PEER_TS)), 0.0)
    one(host, 0.0)
    host.receive(pkt(AK, PEER_ISS + 1, ISS + 1, options=ts(PEER_TS + 10, 0)), 0.01)
    conn = lst.accept()
    assert conn is not None
    host.receive(pkt(F | AK, PEER_ISS + 1, ISS + 1, options=ts(PEER_TS + 20, 0)), 0.02)
    conn.close()  # LAST-ACK: the peer closed first
    host.packets_to_send(0.03)
    host.receive(pkt(AK, PEER_ISS + 2, ISS + 2, options=ts(PEER_TS + 30, 0)), 0.04)
    assert host.connections() == []
    assert len(policy.peer_cache) == 0
    assert _syn(host, 1.0, sport=55000, tsval=OLD_TS)


def test_a_syn_accepted_by_a_live_time_wait_skips_the_peer_check() -> None:
    x = _server_closes_actively(LinuxTwRecyclePolicy())
    # still in TIME-WAIT (0.7 s): a SYN above rcv_nxt on the same tuple reopens it (Linux TCP_TW_SYN passes
    # its ISN to tcp_conn_request, which then skips tcp_peer_is_proven)
    x.host.receive(pkt(S, PEER_ISS + 100_000, options=syn_opts(tsval=PEER_TS + 40)), 0.1)
    assert one(x.host, 0.1).flags == SA
    assert x.host.counters["PAWSPassive"] == 0
    none_out(x.host, 0.1)


# --- scenario D in utcp.sim: two clients behind one SNAT address --------------------------------------

# The topology is the scenario's own (interop.scenario_d.sim_topology): what the matrix's sim cells run.


@dataclass
class ScenarioD:
    net: Network
    server: Host
    a: Host
    b: Host


def _scenario_d(policy: Policy) -> ScenarioD:
    # unrelated TS clocks: A's runs far ahead of B's (tcp_timestamps=1 offsets, or two different machines)
    net, server, a, b = sim_topology(policy, (3_000_000_000, 1_000_000_000))
    server.listen(UTCP_SERVER, 80)
    return ScenarioD(net, server, a, b)


def _a_connects_and_the_server_closes_first(d: ScenarioD) -> None:
    conn = d.a.connect(UTCP_SERVER, 80, d.net.now)
    assert d.net.run_until(lambda: conn.state is TcpState.ESTABLISHED, 5.0)
    lst = d.server.listeners()[0]
    assert d.net.run_until(lambda: lst.pending > 0, 1.0)
    accepted = lst.accept()
    assert accepted is not None and accepted.remote[0] == OUTSIDE
    accepted.close()  # the server closes first: its side goes through TIME-WAIT
    assert d.net.run_until(lambda: conn.state is TcpState.CLOSE_WAIT, 1.0)
    conn.close()
    assert d.net.run_until(lambda: accepted.state in (TcpState.TIME_WAIT, TcpState.CLOSED), 1.0)


def _b_connects(d: ScenarioD, timeout: float) -> tuple[Connection, bool]:
    conn = d.b.connect(UTCP_SERVER, 80, d.net.now)
    ok = d.net.run_until(lambda: conn.state is TcpState.ESTABLISHED or conn.state is TcpState.CLOSED, timeout)
    return conn, ok and conn.state is TcpState.ESTABLISHED


def test_scenario_d_second_client_behind_snat_is_shut_out_for_tcp_paws_msl() -> None:
    d = _scenario_d(LinuxTwRecyclePolicy())
    _a_connects_and_the_server_closes_first(d)
    closed_at = d.net.now
    assert d.net.run_until(lambda: not d.server.connections(), 1.0)  # recycled after 3.5 RTO, not 60 s
    conn, ok = _b_connects(d, 30.0)
    assert not ok  # B's SYNs (TSval ~1e9 < A's ~3e9) are dropped silently
    assert conn.state is TcpState.SYN_SENT
    assert d.server.counters["PAWSPassive"] >= 4  # the SYN and its retransmissions
    assert d.b.counters["TCPSynRetrans"] >= 3
    # the sixth retransmission (t + 63 s) lands after TCP_PAWS_MSL: accepted
    d.net.run_until(lambda: conn.state is not TcpState.SYN_SENT, 60.0)
    assert state(conn) is TcpState.ESTABLISHED
    assert d.net.now - closed_at >= TCP_PAWS_MSL


def test_scenario_d_with_linux_6_the_second_client_connects_at_once() -> None:
    d = _scenario_d(LinuxPolicy())
    _a_connects_and_the_server_closes_first(d)
    _conn, ok = _b_connects(d, 1.0)
    assert ok
    assert d.server.counters["PAWSPassive"] == 0
