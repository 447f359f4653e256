"""The handshake's fast paths change speed, not behaviour: a SYN-ACK reaching SYN-SENT
(Connection._fast_synack) and a SYN reaching a listener (Host._fast_passive_open) when given as bytes.

Each case runs twice on identical hosts: the packet handed over as a value (never a fast path: the
general path) and as bytes (utcp.wire.fastpath.syn_segment, then the fast path when its conditions hold).
Everything the hosts send, every event (with its connection's whole state), every counter and every
connection's state must be the same. The cases are drawn to hit the rules the fast paths must leave to
the general path: unacceptable ACKs, TSecr the PAWSActive check refuses, other flags, data, odd options,
policies that decide themselves, full SYN and accept queues (drop or SYN cookie), the connection limit,
TIME-WAIT reuse and SYN-RECEIVED retransmissions, a wildcard listener, closed ports, TOA.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.tcp.helpers import (
    AK,
    FA,
    ISS,
    PEER_ISS,
    SA,
    A,
    B,
    R,
    S,
    cfg,
    make_host,
    pkt,
    syn_opts,
    ts,
)
from tests.tcp.test_fast_path_churn import state_of
from utcp.policy.base import ACCEPT, Decision, Policy, Verdict
from utcp.policy.linux import LinuxPolicy
from utcp.tcp.connection import Connection
from utcp.tcp.host import Host
from utcp.tcp.state import TcpState
from utcp.wire import IPv4Packet, TcpFlags, TcpOption, TcpSegment, build_ipv4
from utcp.wire.packet import Mss, Nop, SackPermitted, Timestamps, WindowScale

Outcome = tuple[list[IPv4Packet], list[tuple[object, ...]], dict[str, int], list[dict[str, object]]]


class OwnSynAckCheck(LinuxPolicy):
    """A user policy deciding the SYN-ACK's TSecr itself (here: every SYN-ACK with TS is refused)."""

    def check_synack_tsecr(self, ctx: Any, seg: TcpSegment, now: float) -> Decision:
        if seg.option(Timestamps) is not None and not int(seg.flags) & 0x04:
            return Decision(Verdict.RESET, "user policy", "PAWSActive")
        return ACCEPT


class OwnPassiveCheck(LinuxPolicy):
    """A user policy deciding SYNs at the listener itself (here: odd source ports are dropped)."""

    def check_passive_syn(
        self, local: Any, remote: tuple[str, int], seg: TcpSegment, now: float, *, via_time_wait: bool = False
    ) -> Decision:
        if remote[1] % 2:
            return Decision(Verdict.DROP, "user policy", "PAWSPassive")
        return ACCEPT


def outcome(host: Host, now: float) -> Outcome:
    out = host.packets_to_send(now)
    events: list[tuple[object, ...]] = []
    for ev in host.events():
        conn = getattr(ev, "connection", None)
        fields = tuple(getattr(ev, f) for f in ("reason", "counter", "summary") if hasattr(ev, f))
        events.append((type(ev).__name__, fields, state_of(conn) if conn is not None else None))
    conns = [state_of(c) for c in sorted(host.connections(), key=lambda c: c._key)]
    return out, events, dict(host.counters), conns


def deliver(host: Host, packet: IPv4Packet, as_bytes: bool, now: float) -> None:
    host.receive(build_ipv4(packet) if as_bytes else packet, now)


# --- SYN-SENT ---------------------------------------------------------------------------------------------

OUR_SYN_TIME = 1.0  # TSval 1000 (make_host: a clock without offset); a retransmitted SYN has 2000
OTHER = "198.18.0.9"  # not an address of the host
PA_ = TcpFlags.PSH | TcpFlags.ACK
ODD_OPTIONS: tuple[tuple[TcpOption, ...], ...] = (  # layouts syn_segment declines
    (Mss(1400), WindowScale(7)),
    (Nop(), Mss(1400)),
    (Mss(1400), Nop(), Nop(), Timestamps(5, 1000), Nop(), Nop(), SackPermitted()),
    (Mss(1460), Mss(536)),
)


@dataclass(frozen=True)
class Offer:
    """The options of the SYN or SYN-ACK the test sends: `odd` >= 0 picks one of ODD_OPTIONS."""

    none: bool = False
    odd: int = -1
    mss: int = 1460
    sack: bool = True
    tsval: int | None = 5
    tsecr: int = 0
    ws: int | None = 7

    def options(self) -> tuple[TcpOption, ...]:
        if self.none:
            return ()
        if self.odd >= 0:
            return ODD_OPTIONS[self.odd]
        return syn_opts(self.mss, self.sack, self.tsval, self.tsecr, self.ws)


# Each case is the plain one (the fast path's) with up to three of these changes: every rule the fast
# paths leave to the general path, alone or together.
OFFER_CHANGES: list[dict[str, Any]] = [
    {"none": True},
    *({"odd": i} for i in range(len(ODD_OPTIONS))),
    {"mss": 0},
    {"mss": 88},
    {"mss": 65535},
    {"sack": False},
    {"tsval": None},
    {"tsval": 0},
    {"tsval": 0xFFFFFFF0},
    {"tsval": 5000},  # newer than the TS.Recent a TIME-WAIT case leaves (102): the SYN may reopen it
    {"ws": None},
    {"ws": 0},
    {"ws": 14},
    {"ws": 15},
    {"ws": 255},
]


def _offer(draw: st.DrawFn, **base: Any) -> Offer:
    offer = Offer(**base)
    for change in draw(st.lists(st.sampled_from(OFFER_CHANGES), max_size=2)):
        offer = replace(offer, **change)
    return offer


@dataclass(frozen=True)
class SynSentCase:
    config: tuple[tuple[str, Any], ...] = ()
    policy: str = "linux"
    wire_output: bool = False
    hold_third_ack: bool = False
    shutdown_first: bool = False
    syn_retransmitted: bool = False
    flags: int = SA
    ack_delta: int = 0
    window: int = 65535
    offer: Offer = Offer(tsecr=1000)
    payload: bytes = b""


SYN_SENT_CHANGES: list[dict[str, Any]] = [
    {"config": (("timestamps", False),)},
    {"config": (("sack", False),)},
    {"config": (("window_scale", None),)},
    {"config": (("timestamps", False), ("sack", False), ("window_scale", None))},
    {"policy": "no-tsecr-check"},
    {"policy": "own"},
    {"hold_third_ack": True},
    {"shutdown_first": True},
    {"syn_retransmitted": True},
    *({"flags": f} for f in (S, SA | TcpFlags.PSH, SA | TcpFlags.FIN, SA | R, AK, R | AK, SA | 0x40)),
    *({"ack_delta": d} for d in (1, -1, 0x80000000)),
    {"window": 0},
    {"payload": b"x"},
]
SYNACK_TSECRS = [0, 999, 1000, 1049, 1051, 1500, 2000, 10_000_000]  # the SYN-ACK arrives at TSval 1050


@st.composite
def syn_sent_cases(draw: st.DrawFn) -> SynSentCase:
    case = SynSentCase(
        wire_output=draw(st.booleans()), offer=_offer(draw, tsecr=draw(st.sampled_from(SYNACK_TSECRS)))
    )
    for change in draw(st.lists(st.sampled_from(SYN_SENT_CHANGES), max_size=3)):
        case = _changed(case, change)
    return case


def _changed(case: Any, change: dict[str, Any]) -> Any:
    if "config" in change:  # config changes add up
        change = {**change, "config": case.config + change["config"]}
    return replace(case, **change)


def _policy(name: str) -> Policy:
    if name == "no-tsecr-check":
        return LinuxPolicy(synack_tsecr_check=False)
    if name == "own":
        return OwnSynAckCheck()
    if name == "own-passive":
        return OwnPassiveCheck()
    if name == "tw-recycle":
        # the peer was seen with TSval 1000 (SYNs with an older one are dropped: PAWSPassive)
        policy = LinuxPolicy(tw_recycle=True)
        policy.peer_cache.remember(B, 1000, 0.9, 0.9, policy.paws_msl)
        return policy
    return LinuxPolicy()


def run_syn_sent(case: SynSentCase, as_bytes: bool) -> list[Outcome]:
    host = make_host(A, config=cfg(**dict(case.config)), wire_output=case.wire_output)
    conn = host.connect(B, 80, OUR_SYN_TIME, policy=_policy(case.policy), hold_third_ack=case.hold_third_ack)
    results = [outcome(host, OUR_SYN_TIME)]
    now = OUR_SYN_TIME
    if case.syn_retransmitted:
        now = host.next_deadline() or now  # the SYN again, TSval 2000
        host.on_timer(now)
        results.append(outcome(host, now))
    if case.shutdown_first:
        conn.shutdown()
    now += 0.05
    synack = pkt(
        TcpFlags(case.flags),
        PEER_ISS,
        ISS + 1 + case.ack_delta,
        window=case.window,
        options=case.offer.options(),
        payload=case.payload,
        sport=80,
        dport=conn.local[1],
    )
    deliver(host, synack, as_bytes, now)
    results.append(outcome(host, now))
    # the same again (a duplicate SYN-ACK), then the peer's first data segment
    now += 0.01
    deliver(host, synack, as_bytes, now)
    results.append(outcome(host, now))
    now += 0.01
    data = pkt(PA_, PEER_ISS + 1, ISS + 1, options=ts(7, 1000), payload=b"hi", sport=80, dport=conn.local[1])
    deliver(host, data, as_bytes, now)
    results.append(outcome(host, now))
    return results


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(syn_sent_cases())
def test_a_synack_as_bytes_does_what_the_general_path_does(case: SynSentCase) -> None:
    assert run_syn_sent(case, as_bytes=True) == run_syn_sent(case, as_bytes=False)


@pytest.mark.parametrize("tsecr", SYNACK_TSECRS)
@pytest.mark.parametrize("change", [{}, *SYN_SENT_CHANGES])
def test_each_rule_at_syn_sent_alone(change: dict[str, Any], tsecr: int) -> None:
    case = replace(SynSentCase(offer=Offer(tsecr=tsecr), wire_output=tsecr % 2 == 0), **change)
    assert run_syn_sent(case, as_bytes=True) == run_syn_sent(case, as_bytes=False)


# --- LISTEN -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ListenCase:
    config: tuple[tuple[str, Any], ...] = ()
    policy: str = "linux"
    wire_output: bool = False
    listen_any: bool = False
    backlog: int = 1  # both queues hold up to 2
    syn_pending: int = 0
    accept_pending: int = 0
    max_connections: int | None = None
    toa: bool = False
    existing: str = "none"  # "syn-received" (the same SYN again or another one), "time-wait"
    flags: int = S
    seq_delta: int = 0
    dst: str = A
    dport: int = 80
    offer: Offer = Offer()
    payload: bytes = b""
    sport: int = 50000


LISTEN_CHANGES: list[dict[str, Any]] = [
    {"config": (("timestamps", False),)},
    {"config": (("sack", False),)},
    {"config": (("window_scale", None),)},
    {"config": (("syn_cookies", False),)},
    {"policy": "tw-recycle"},
    {"policy": "own-passive"},
    {"listen_any": True},
    {"backlog": 0},
    {"backlog": 4},
    {"syn_pending": 1},
    {"syn_pending": 2},  # the SYN queue is full
    {"accept_pending": 1},
    {"accept_pending": 2},  # the accept queue is full
    {"max_connections": 1},
    {"max_connections": 2, "syn_pending": 1, "accept_pending": 1},  # at the limit
    {"max_connections": 3, "syn_pending": 1, "accept_pending": 1},  # one short of it
    {"toa": True},
    {"existing": "syn-received"},
    {"existing": "time-wait"},
    *({"flags": f} for f in (SA, S | TcpFlags.FIN, S | R, S | TcpFlags.PSH, AK, R, S | 0x40)),
    {"seq_delta": 1},
    {"seq_delta": -100_000},
    {"dst": OTHER},
    {"dport": 81},
    {"payload": b"x"},
    {"sport": 50001},
]


@st.composite
def listen_cases(draw: st.DrawFn) -> ListenCase:
    case = ListenCase(
        wire_output=draw(st.booleans()), offer=_offer(draw, tsecr=draw(st.sampled_from([0, 7])))
    )
    for change in draw(st.lists(st.sampled_from(LISTEN_CHANGES), max_size=3)):
        case = _changed(case, change)
    return case


def _handshake(host: Host, sport: int, now: float, complete: bool) -> None:
    """As peer B:sport, a SYN to A:80 (values), and the third ACK when `complete`."""
    host.receive(pkt(S, PEER_ISS, options=syn_opts(tsval=100), sport=sport), now)
    synack = [p.tcp for p in host.packets_to_send(now) if p.tcp.dst_port == sport]
    if complete and synack and synack[0].flags == SA:
        third = pkt(AK, PEER_ISS + 1, synack[0].seq + 1, options=ts(101, 0), sport=sport)
        host.receive(third, now)
        host.packets_to_send(now)


def run_listen(case: ListenCase, as_bytes: bool) -> list[Outcome]:
    host = make_host(
        A,
        iss=None,
        config=cfg(**dict(case.config)),
        wire_output=case.wire_output,
        max_connections=case.max_connections,
        toa="getpeername" if case.toa else None,
    )
    host.listen("0.0.0.0" if case.listen_any else A, 80, backlog=case.backlog, policy=_policy(case.policy))
    now = 1.0
    for i in range(case.accept_pending):
        _handshake(host, 40000 + i, now, complete=True)
    for i in range(case.syn_pending):
        _handshake(host, 41000 + i, now, complete=False)
    seq = PEER_ISS
    if case.existing == "syn-received":
        _handshake(host, case.sport, now, complete=False)
    elif case.existing == "time-wait":
        # the host closes first: FIN, the peer's ACK and FIN, TIME-WAIT on the host's side
        _handshake(host, case.sport, now, complete=True)
        conns = [c for c in host.connections() if c.remote[1] == case.sport]
        if conns and conns[0].state is TcpState.ESTABLISHED:
            conns[0].close()
            fin = [p.tcp for p in host.packets_to_send(now) if p.tcp.dst_port == case.sport]
            if fin:
                now += 0.01
                host.receive(
                    pkt(FA, PEER_ISS + 1, fin[-1].seq + 1, options=ts(102, 0), sport=case.sport), now
                )
                host.packets_to_send(now)
        seq = PEER_ISS + 1000
    results = [outcome(host, now)]
    now += 0.1
    syn = pkt(
        TcpFlags(case.flags),
        seq + case.seq_delta,
        7 if case.flags & AK else 0,
        options=case.offer.options(),
        payload=case.payload,
        sport=case.sport,
        dport=case.dport,
        dst=case.dst,
    )
    deliver(host, syn, as_bytes, now)
    results.append(outcome(host, now))
    # the same SYN again (a retransmission), then a third ACK for whatever SYN-ACK went out
    now += 0.01
    deliver(host, syn, as_bytes, now)
    again = outcome(host, now)
    results.append(again)
    synacks = [p.tcp for p in again[0] if p.tcp.flags == SA and p.tcp.dst_port == case.sport]
    if synacks:
        now += 0.01
        third = pkt(AK, syn.tcp.seq + 1, synacks[0].seq + 1, options=ts(200, 0), sport=case.sport)
        deliver(host, third, as_bytes, now)
        results.append(outcome(host, now))
    return results


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(listen_cases())
def test_a_syn_as_bytes_does_what_the_general_path_does(case: ListenCase) -> None:
    assert run_listen(case, as_bytes=True) == run_listen(case, as_bytes=False)


@pytest.mark.parametrize(
    "base", [{}, {"listen_any": True}, {"wire_output": True, "offer": Offer(tsval=2000)}]
)
@pytest.mark.parametrize("change", [{}, *LISTEN_CHANGES])
def test_each_rule_at_a_listener_alone(base: dict[str, Any], change: dict[str, Any]) -> None:
    case = replace(ListenCase(**base), **change)
    assert run_listen(case, as_bytes=True) == run_listen(case, as_bytes=False)


# --- the fast paths are taken -----------------------------------------------------------------------------


@pytest.mark.parametrize("wire_output", [False, True])
def test_the_plain_handshake_takes_the_fast_paths(wire_output: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    # Guard against the equalities above holding only because the fast paths never run.
    taken: list[str] = []
    fast_synack = Connection._fast_synack
    fast_passive_open = Host._fast_passive_open

    def synack_spy(self: Connection, *args: Any) -> bool:
        ok: bool = fast_synack(self, *args)
        taken.append(f"synack {ok}")
        return ok

    def passive_spy(self: Host, *args: Any) -> bool:
        ok: bool = fast_passive_open(self, *args)
        taken.append(f"passive {ok}")
        return ok

    monkeypatch.setattr(Connection, "_fast_synack", synack_spy)
    monkeypatch.setattr(Host, "_fast_passive_open", passive_spy)
    for listen_case in (
        ListenCase(wire_output=wire_output),
        ListenCase(wire_output=wire_output, listen_any=True, offer=Offer(none=True), max_connections=4),
    ):
        run_listen(listen_case, as_bytes=True)
    for config in ((), (("timestamps", False), ("sack", False), ("window_scale", None))):
        run_syn_sent(SynSentCase(config=config, wire_output=wire_output), as_bytes=True)
    assert taken.count("passive True") == 2
    assert taken.count("synack True") == 2


@pytest.mark.parametrize(
    "case",
    [
        # without timestamps a higher sequence number reopens it (RFC 1122 4.2.2.13)
        ListenCase(existing="time-wait", offer=Offer(tsval=None)),
        # with them a newer TSval does, whatever the sequence number (RFC 6191, Linux)
        ListenCase(existing="time-wait", seq_delta=-2000, offer=Offer(tsval=5000)),
        # the TIME-WAIT connection leaves room under the limit it held
        ListenCase(
            existing="time-wait",
            wire_output=True,
            listen_any=True,
            max_connections=1,
            offer=Offer(tsval=5000),
        ),
    ],
)
def test_a_syn_reusing_a_time_wait_port_takes_the_fast_path(
    case: ListenCase, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Guard against the equalities above holding only because the TIME-WAIT fast path never runs: a
    # client reusing its port while we hold TIME-WAIT is every SYN of a long run of short connections.
    taken: list[bool] = []
    reuse = Host._fast_time_wait_reuse

    def spy(self: Host, *args: Any) -> bool:
        ok: bool = reuse(self, *args)
        taken.append(ok)
        return ok

    monkeypatch.setattr(Host, "_fast_time_wait_reuse", spy)
    results = run_listen(case, as_bytes=True)
    assert taken[:1] == [True]
    assert any(p.tcp.flags == SA for p in results[1][0])  # the reopened connection's SYN-ACK
    monkeypatch.undo()
    assert results == run_listen(case, as_bytes=False)
