"""The handshake's fast path changes speed, not behaviour: a SYN-ACK reaching SYN-SENT
(Connection._fast_synack) when given as bytes.

Each case runs twice on identical hosts: the packet handed over as a value (never a fast path: the
general path) and as bytes (utcp.wire.fastpath.syn_segment, then the fast path when its conditions hold).
Everything the hosts send, every event (with its connection's whole state), every counter and every
connection's state must be the same. The cases are drawn to hit the rules the fast path must leave to
the general path: unacceptable ACKs, TSecr the PAWSActive check refuses, other flags, data, odd options,
policies that decide themselves.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.tcp.helpers import (
    AK,
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


# --- the fast paths are taken -----------------------------------------------------------------------------


@pytest.mark.parametrize("wire_output", [False, True])
def test_the_plain_handshake_takes_the_fast_path(wire_output: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    # Guard against the equalities above holding only because the fast paths never run.
    taken: list[str] = []
    fast_synack = Connection._fast_synack

    def synack_spy(self: Connection, *args: Any) -> bool:
        ok: bool = fast_synack(self, *args)
        taken.append(f"synack {ok}")
        return ok

    monkeypatch.setattr(Connection, "_fast_synack", synack_spy)
    for config in ((), (("timestamps", False), ("sack", False), ("window_scale", None))):
        run_syn_sent(SynSentCase(config=config, wire_output=wire_output), as_bytes=True)
    assert taken.count("synack True") == 2
