"""The policy hook API: every segment-acceptance decision of the engine goes through a `Policy`.

A policy never mutates a connection: it reads a `PolicyContext` (the connection, seen through a small
read-only protocol) and a segment, and returns a `Decision` (verdict + reason + Linux MIB counter name).
The engine carries the verdict out, bumps the counters in its host's `Counter` and reports every drop and
challenge as a `SegmentDropped(reason, counter, summary)` event.

`Policy` implements the mechanisms with knobs (class attributes, overridable per instance through the
constructor); presets are small subclasses that set knobs (`utcp.policy.presets`). A user policy
overrides any method and keeps the rest; each method documents the verdicts the engine understands.

Decisions by socket state (the methods the engine calls, in the order it calls them):

  LISTEN        check_passive_syn                       (per-peer timestamp cache: tw_recycle)
  SYN-SENT      check_synack_tsecr                      (TSecr of a SYN-ACK or RST-ACK: PAWSActive)
  request       check_request_paws, check_rst,          (SYN-RECEIVED of a listener, Linux
                challenge_ack_allowed, oow_ack_allowed   TCP_NEW_SYN_RECV: tcp_check_req)
  synchronized  check_paws, check_rst,                  (ESTABLISHED, FIN-WAIT-1/2, CLOSE-WAIT, CLOSING,
                check_syn_synchronized, check_ack,       LAST-ACK, and SYN-RECEIVED of a simultaneous
                challenge_ack_allowed, oow_ack_allowed   open: tcp_validate_incoming, tcp_ack)
  TIME-WAIT     on_time_wait (entering), check_time_wait, oow_ack_allowed (tcp_timewait_state_process)
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypeAlias

from utcp.tcp.seq import seq_diff
from utcp.tcp.state import TcpState
from utcp.wire.packet import F_ACK, F_FIN, F_RST, F_SYN, TcpSegment, Timestamps

__all__ = [
    "ACCEPT",
    "KNOBS",
    "TCP_PAWS_24DAYS",
    "TCP_PAWS_MSL",
    "TCP_PAWS_WINDOW",
    "TCP_RTO_MAX",
    "AckUnsent",
    "Decision",
    "Knob",
    "KnobValue",
    "PeerStamp",
    "PeerTimestampCache",
    "Policy",
    "PolicyContext",
    "RstPaws",
    "RstRule",
    "SynRule",
    "Verdict",
    "tsecr_between",
]

TCP_PAWS_WINDOW = 1  # Linux include/net/tcp.h: replay window for PAWS, in TS ticks
TCP_PAWS_24DAYS = 24 * 24 * 3600.0  # RFC 7323 5.5 / Linux: a TS.Recent older than this is invalid
TCP_PAWS_MSL = 60.0  # Linux TCP_PAWS_MSL, seconds: RST exemption and the tw_recycle per-peer window
TCP_RTO_MAX = 120.0  # Linux TCP_RTO_MAX, seconds
TW_RECYCLE_RTO_FACTOR = 3.5  # Linux <= 4.11 tcp_time_wait(): rto = (icsk_rto << 2) - (icsk_rto >> 1)

RstPaws: TypeAlias = Literal["always", "after-msl", "never"]
RstRule: TypeAlias = Literal["rfc793", "rfc5961", "exact"]
SynRule: TypeAlias = Literal["challenge", "reset"]
AckUnsent: TypeAlias = Literal["challenge", "dupack", "drop-when-established"]
KnobValue: TypeAlias = bool | int | float | str


class Verdict(enum.Enum):
    """What the engine does with a segment."""

    ACCEPT = "accept"  # go on processing
    DROP = "drop"  # discard silently
    CHALLENGE_ACK = "challenge_ack"  # discard, answer with a (rate-limited) challenge ACK (RFC 5961)
    # check_rst/check_time_wait: accept the RST (the connection dies); check_syn_synchronized: the SYN
    # resets the connection (RFC 793); check_ack/check_synack_tsecr: answer with an RST
    RESET = "reset"
    DUPACK = "dupack"  # discard, answer with a (rate-limited) duplicate ACK (RFC 9293 3.10.7.4 first)


@dataclass(frozen=True, slots=True)
class Decision:
    """A verdict, why (naming the rule), and the Linux MIB counter (TcpExt/Tcp name without prefix) to
    bump, if any (`utcp.policy.linux_counter_name` gives the `nstat` spelling)."""

    verdict: Verdict
    reason: str
    counter: str | None = None
    extra_counters: tuple[str, ...] = ()


ACCEPT = Decision(Verdict.ACCEPT, "ok")


@dataclass(frozen=True, slots=True)
class Knob:
    """One policy knob: its name, type, allowed values (for strings), the states it applies to, and what
    it means."""

    name: str
    kind: type
    states: str
    doc: str
    choices: tuple[str, ...] = ()


_RST_PAWS = ("always", "after-msl", "never")
_RST_RULES = ("rfc793", "rfc5961", "exact")

KNOBS: tuple[Knob, ...] = (
    Knob("paws", bool, "request, synchronized, TIME-WAIT", "apply PAWS at all (RFC 7323 5)"),
    Knob(
        "paws_window",
        int,
        "synchronized",
        "TS ticks a segment may be older than TS.Recent and still pass PAWS (Linux tcp_validate_incoming: "
        "tcp_paws_check(TCP_PAWS_WINDOW=1); RFC 7323 R1: 0)",
    ),
    Knob(
        "paws_request",
        bool,
        "request",
        "PAWS-check segments reaching a request socket against the SYN's TSval (Linux tcp_check_req)",
    ),
    Knob(
        "paws_window_request",
        int,
        "request",
        "tolerance of the request-socket PAWS check (Linux tcp_paws_reject -> tcp_paws_check(rx_opt, 0))",
    ),
    Knob(
        "paws_window_time_wait",
        int,
        "TIME-WAIT",
        "tolerance of the TIME-WAIT PAWS check (Linux tcp_timewait_state_process -> tcp_paws_reject: 0)",
    ),
    Knob(
        "request_tsecr_check",
        bool,
        "request",
        "a request socket rejects a segment whose TSecr is not one of its SYN-ACK TSvals: ACK (unless an "
        "RST) and drop, TSEcrRejected (Linux >= 6.15 tcp_check_req)",
    ),
    Knob(
        "paws_msl",
        float,
        "request, TIME-WAIT, LISTEN",
        "TCP_PAWS_MSL, seconds: an RST passes PAWS once TS.Recent is this old ('after-msl'), and the "
        "tw_recycle per-peer timestamp is trusted this long",
    ),
    Knob(
        "rst_paws_syn_sent",
        str,
        "SYN-SENT",
        "does an RST-ACK escape the SYN-ACK TSecr check (Linux checks it: never); 'after-msl' is "
        "meaningless without a TS.Recent and refused",
        ("always", "never"),
    ),
    Knob(
        "rst_paws_request",
        str,
        "request",
        "does an RST failing PAWS still count on a request socket: always (RFC 7323 5.2), after-msl "
        "(Linux tcp_paws_reject; the request socket's TS.Recent age is estimated as its SYN-ACK timeout, so "
        "the exemption needs a 64 s timeout: never with default sysctls), never",
        _RST_PAWS,
    ),
    Knob(
        "rst_paws_synchronized",
        str,
        "synchronized",
        "does an RST failing PAWS still count once synchronized (Linux tcp_validate_incoming: always)",
        _RST_PAWS,
    ),
    Knob(
        "rst_paws_time_wait",
        str,
        "TIME-WAIT",
        "does an RST failing PAWS still count in TIME-WAIT (Linux tcp_paws_reject: after-msl)",
        _RST_PAWS,
    ),
    Knob(
        "rst_rule_request",
        str,
        "request",
        "RST sequence rule on a request socket: rfc793 (in window resets), rfc5961 (exact resets, in window "
        "draws a challenge ACK), exact (exact resets, the rest is dropped silently)",
        _RST_RULES,
    ),
    Knob(
        "rst_rule_synchronized",
        str,
        "synchronized",
        "RST sequence rule once synchronized (RFC 793 3.9 / RFC 5961 3.2)",
        _RST_RULES,
    ),
    Knob(
        "rst_rule_time_wait",
        str,
        "TIME-WAIT",
        "RST sequence rule in TIME-WAIT (Linux tcp_timewait_state_process: exact)",
        _RST_RULES,
    ),
    Knob(
        "syn_rule",
        str,
        "synchronized",
        "a SYN on a synchronized connection: challenge (RFC 5961 4.2, TCPSYNChallenge) or reset (RFC 793: "
        "an in-window SYN resets the connection, one outside the window draws an ACK)",
        ("challenge", "reset"),
    ),
    Knob(
        "ack_range_check",
        bool,
        "synchronized",
        "RFC 5961 5.2: an ACK below SND.UNA - MAX.SND.WND draws a challenge ACK (off: RFC 793 ignores it)",
    ),
    Knob(
        "ack_unsent",
        str,
        "synchronized",
        "an ACK for data never sent: challenge (RFC 5961 5.2), dupack (RFC 793: ACK and drop) or "
        "drop-when-established (Linux: silently in ESTABLISHED, challenge ACK in the other states)",
        ("challenge", "dupack", "drop-when-established"),
    ),
    Knob(
        "synack_tsecr_check",
        bool,
        "SYN-SENT",
        "reject a SYN-ACK whose TSecr we never sent (Linux tcp_rcv_synsent_state_process, PAWSActive)",
    ),
    Knob(
        "challenge_ack_interval",
        float,
        "request, synchronized, TIME-WAIT",
        "per-socket rate limit of challenge and out-of-window ACKs, seconds (Linux tcp_invalid_ratelimit, "
        "500 ms); 0: no limit",
    ),
    Knob(
        "disordered_ack",
        bool,
        "synchronized",
        "accept a pure duplicate ACK failing PAWS within about one RTO of TS.Recent (Linux "
        "tcp_disordered_ack)",
    ),
    Knob(
        "paws_old_ack_silent",
        bool,
        "synchronized",
        "an old pure ACK (seq below rcv_nxt) failing PAWS is dropped without a dupack (Linux >= 6.15, "
        "PAWSOldAck)",
    ),
    Knob(
        "accept_crossing_synack",
        bool,
        "synchronized",
        "SYN-RECEIVED of a simultaneous open accepts the crossing SYN-ACK (Linux >= 6.11)",
    ),
    Knob(
        "rfc1337",
        bool,
        "TIME-WAIT",
        "ignore RSTs in TIME-WAIT (RFC 1337 TIME-WAIT assassination fix; Linux tcp_rfc1337, default 0)",
    ),
    Knob(
        "tw_recycle",
        bool,
        "TIME-WAIT, LISTEN",
        "Linux <= 4.11 tcp_tw_recycle: an actively closed connection remembers the peer's last TSval per "
        "peer address and leaves TIME-WAIT after 3.5 RTO; for paws_msl after that, a SYN from that address "
        "older by more than paws_window (or without timestamps) is dropped (PAWSPassive)",
    ),
    Knob(
        "paws_tw_counter",
        str,
        "TIME-WAIT",
        "the counter of a TIME-WAIT PAWS reject: PAWSTimewait (Linux >= 6.15) or PAWSEstab (older)",
        ("PAWSTimewait", "PAWSEstab"),
    ),
)
_KNOB_BY_NAME = {k.name: k for k in KNOBS}


class PolicyContext(Protocol):
    """What a policy may read about a connection. Sequence numbers are 32-bit wire values."""

    @property
    def state(self) -> TcpState: ...

    @property
    def is_request_socket(self) -> bool:
        """SYN-RECEIVED created by a listener (Linux TCP_NEW_SYN_RECV request socket)."""
        ...

    @property
    def rcv_nxt(self) -> int: ...

    @property
    def rcv_wnd(self) -> int:
        """Receive window currently offered, in bytes from rcv_nxt (Linux tcp_receive_window)."""
        ...

    @property
    def snd_una(self) -> int: ...

    @property
    def snd_nxt(self) -> int: ...

    @property
    def snd_wnd(self) -> int: ...

    @property
    def snd_wl1(self) -> int: ...

    @property
    def snd_wscale(self) -> int: ...

    @property
    def max_snd_wnd(self) -> int:
        """Largest window the peer ever offered (MAX.SND.WND, RFC 5961 5.2)."""
        ...

    @property
    def bytes_acked(self) -> int: ...

    @property
    def ts_enabled(self) -> bool: ...

    @property
    def ts_recent(self) -> int: ...

    @property
    def ts_recent_stamp(self) -> float | None:
        """When TS.Recent was last stored (`now` seconds), None if never."""
        ...

    @property
    def syn_tsval(self) -> int | None:
        """TSval of our first SYN or SYN-ACK (Linux retrans_stamp, snt_tsval_first), None if we sent none
        with timestamps."""
        ...

    @property
    def syn_tsval_last(self) -> int | None:
        """TSval of our latest SYN or SYN-ACK (Linux snt_tsval_last)."""
        ...

    @property
    def fin_received(self) -> bool: ...

    @property
    def sack_right_edge(self) -> int | None:
        """Right edge of the right-most SACK block we advertise, if any."""
        ...

    @property
    def rto(self) -> float:
        """Current retransmission timeout, backed off (a request socket's: its SYN-ACK timeout)."""
        ...

    @property
    def last_oow_ack_time(self) -> float | None: ...

    @property
    def syn_retransmits(self) -> int:
        """SYN-ACK retransmissions so far (Linux req->num_timeout), for request sockets."""
        ...

    def tsval_at(self, now: float) -> int:
        """The TSval this connection would send at `now`."""
        ...


def tsecr_between(tsecr: int, first: int, last: int) -> bool:
    """`tsecr` lies in [first, last] modulo 2**32: it echoes one of the TSvals we sent from `first` to
    `last` (Linux between(): tcp_rcv_synsent_state_process for a SYN-ACK, tcp_check_req for a request
    socket's ACK)."""
    return ((tsecr - first) & 0xFFFFFFFF) <= ((last - first) & 0xFFFFFFFF)


def _tsopt(seg: TcpSegment) -> Timestamps | None:
    for opt in seg.options:
        if type(opt) is Timestamps:
            return opt
    return None


@dataclass(frozen=True, slots=True)
class PeerStamp:
    """The last TSval seen from a peer address and when it was recorded (Linux tcp_metrics tcpm_ts,
    tcpm_ts_stamp; inet_peer tcp_ts / tcp_ts_stamp before 3.5)."""

    tsval: int
    stamp: float


class PeerTimestampCache:
    """Per-peer-address timestamps remembered by connections leaving through TIME-WAIT (tw_recycle).

    Linux keeps one per network namespace; here it belongs to the policy instance, so a host and its
    listeners share it through their common (inherited) policy. Give several policies one cache to share it
    (`Policy(peer_cache=...)`)."""

    def __init__(self) -> None:
        self._peers: dict[str, PeerStamp] = {}

    def __len__(self) -> int:
        return len(self._peers)

    def get(self, address: str) -> PeerStamp | None:
        return self._peers.get(address)

    def items(self) -> list[tuple[str, PeerStamp]]:
        return list(self._peers.items())

    def remember(self, address: str, tsval: int, stamp: float, now: float, msl: float) -> None:
        """Linux tcp_remember_stamp(): keep the newer TSval; replace an older-looking one only when the
        cached entry is more than `msl` old and not younger than the new stamp."""
        old = self._peers.get(address)
        if old is None or seq_diff(old.tsval, tsval) <= 0 or (now - old.stamp > msl and old.stamp <= stamp):
            self._peers[address] = PeerStamp(tsval, stamp)

    def forget(self, address: str) -> None:
        self._peers.pop(address, None)

    def clear(self) -> None:
        self._peers.clear()


class Policy:
    """Knob-driven segment validation. The defaults are the modern RFC set (RFC 9293 with the RFC 5961
    mitigations and RFC 7323 PAWS, RSTs exempt from PAWS); presets subclass and set knobs.

    Knobs are class attributes; `Policy(**knobs)` overrides them on one instance (TypeError for an unknown
    knob, ValueError for a bad value). `KNOBS` documents each one and the states it applies to. A policy
    owns a `PeerTimestampCache` (`peer_cache`) for tw_recycle; pass `peer_cache=` to share one.
    """

    paws: bool = True
    paws_window: int = 0
    paws_request: bool = True
    paws_window_request: int = 0
    paws_window_time_wait: int = 0
    request_tsecr_check: bool = False
    paws_msl: float = TCP_PAWS_MSL
    rst_paws_syn_sent: RstPaws = "always"
    rst_paws_request: RstPaws = "always"
    rst_paws_synchronized: RstPaws = "always"
    rst_paws_time_wait: RstPaws = "always"
    rst_rule_request: RstRule = "rfc5961"
    rst_rule_synchronized: RstRule = "rfc5961"
    rst_rule_time_wait: RstRule = "rfc5961"
    syn_rule: SynRule = "challenge"
    ack_range_check: bool = True
    ack_unsent: AckUnsent = "challenge"
    synack_tsecr_check: bool = False
    challenge_ack_interval: float = 0.5
    disordered_ack: bool = False
    paws_old_ack_silent: bool = False
    accept_crossing_synack: bool = False
    rfc1337: bool = False
    tw_recycle: bool = False
    paws_tw_counter: str = "PAWSTimewait"

    name: str = "policy"

    def __init__(self, *, peer_cache: PeerTimestampCache | None = None, **knobs: Any) -> None:
        for key, value in knobs.items():
            if key not in _KNOB_BY_NAME:
                known = ", ".join(sorted(_KNOB_BY_NAME))
                raise TypeError(f"unknown policy knob {key!r} (known: {known})")
            setattr(self, key, value)
        for knob in KNOBS:
            _check_knob(knob, getattr(self, knob.name))
        self.peer_cache = peer_cache if peer_cache is not None else PeerTimestampCache()

    def knobs(self) -> dict[str, KnobValue]:
        """Every knob and its value on this instance."""
        return {k.name: getattr(self, k.name) for k in KNOBS}

    def __repr__(self) -> str:
        cls = type(self)
        changed = [f"{k}={v!r}" for k, v in self.knobs().items() if getattr(cls, k) != v]
        return f"{cls.__name__}({', '.join(changed)})"

    # --- timestamps -----------------------------------------------------------------------------------

    def _paws_ok(self, ctx: PolicyContext, tsval: int, window: int, now: float) -> bool:
        """Linux tcp_paws_check(): TSval not older than TS.Recent by more than `window`, or TS.Recent
        invalid (older than 24 days, RFC 7323 5.5), or zero (some stacks send TSval 0 on SYNs)."""
        if seq_diff(ctx.ts_recent, tsval) <= window:
            return True
        stamp = ctx.ts_recent_stamp
        if stamp is None or now - stamp >= TCP_PAWS_24DAYS:
            return True
        return ctx.ts_recent == 0

    def _rst_passes_paws(self, rule: RstPaws, ts_recent_age: float | None) -> bool:
        """An RST that failed PAWS: always (RFC 7323 5.2), after-msl (Linux tcp_paws_reject: TS.Recent at
        least TCP_PAWS_MSL old), never."""
        if rule == "always":
            return True
        if rule == "after-msl":
            return ts_recent_age is not None and ts_recent_age >= self.paws_msl
        return False

    def check_paws(self, ctx: PolicyContext, seg: TcpSegment, now: float) -> Decision:
        """PAWS for a synchronized connection (RFC 7323 5.3 R1; Linux tcp_validate_incoming, H1).

        Verdicts: ACCEPT, DUPACK (drop + duplicate ACK), DROP, CHALLENGE_ACK (a SYN that fails PAWS).
        """
        if not self.paws or not ctx.ts_enabled:
            return ACCEPT
        ts = _tsopt(seg)
        if ts is None or self._paws_ok(ctx, ts.tsval, self.paws_window, now):
            return ACCEPT
        flags = int(seg.flags)  # plain int: IntFlag operators are ~10x slower
        pure_ack = bool(flags & F_ACK) and seg.seg_len == 0
        if self.disordered_ack and pure_ack and not flags & F_RST and self._disordered_ack(ctx, seg, ts):
            return Decision(Verdict.ACCEPT, "paws: disordered duplicate ACK inside the replay window")
        if flags & F_RST:
            stamp = ctx.ts_recent_stamp
            if self._rst_passes_paws(self.rst_paws_synchronized, None if stamp is None else now - stamp):
                # Linux: "Reset is accepted even if it did not pass PAWS."
                return Decision(Verdict.ACCEPT, f"paws: RST exempt ({self.rst_paws_synchronized})")
            return Decision(Verdict.DROP, "paws: RST with a timestamp older than TS.Recent", "PAWSEstab")
        if flags & F_SYN:
            if self.syn_rule == "challenge":
                return Decision(Verdict.CHALLENGE_ACK, "paws: SYN with an old timestamp", "TCPSYNChallenge")
            return Decision(Verdict.DUPACK, "paws: SYN with an old timestamp (RFC 7323 R1)", "PAWSEstab")
        if self.paws_old_ack_silent and pure_ack and seq_diff(seg.seq, ctx.rcv_nxt) < 0:
            return Decision(Verdict.DROP, "paws: old ACK", "PAWSOldAck")
        return Decision(Verdict.DUPACK, "paws: timestamp older than TS.Recent", "PAWSEstab")

    @staticmethod
    def _disordered_ack(ctx: PolicyContext, seg: TcpSegment, ts: Timestamps) -> bool:
        """Linux tcp_disordered_ack(): a pure duplicate ACK that does not update the window, whose TSval is
        within about one RTO of TS.Recent, is just reordered, not a replay."""
        if seg.seq != ctx.rcv_nxt or seg.ack != ctx.snd_una:
            return False
        nwin = seg.window << ctx.snd_wscale
        d = seq_diff(seg.seq, ctx.snd_wl1)
        if d > 0 or (d == 0 and (nwin > ctx.snd_wnd or nwin == 0)):
            return False  # tcp_may_update_window()
        return seq_diff(ctx.ts_recent, ts.tsval) <= int(ctx.rto * 1024)

    def check_request_paws(self, ctx: PolicyContext, seg: TcpSegment, now: float) -> Decision:
        """PAWS and the TSecr check on a request socket (Linux tcp_check_req: tcp_paws_reject, and since
        6.15 `between(tsecr, snt_tsval_first, snt_tsval_last)`).

        PAWS compares with the SYN's TSval. Linux does not store when the SYN arrived: it estimates
        TS.Recent's age as the SYN-ACK timeout (reqsk_timeout: 1 s doubled per retransmission, capped at
        TCP_RTO_MAX), here `ctx.rto`. So the 'after-msl' RST exemption needs a 64 s timeout, which default
        synack_retries (5) never reach: an RST older than the SYN is dropped (SCENARIOS.md B case 4).
        Verdicts: ACCEPT, DUPACK (drop; the engine acks non-RST segments), DROP (an RST).
        """
        if not ctx.ts_enabled:
            return ACCEPT
        ts = _tsopt(seg)
        if ts is None:
            return ACCEPT
        rst = bool(int(seg.flags) & F_RST)
        verdict = Verdict.DROP if rst else Verdict.DUPACK
        passed = ACCEPT
        if (
            self.paws
            and self.paws_request
            and seq_diff(ctx.ts_recent, ts.tsval) > self.paws_window_request
            and ctx.ts_recent != 0
        ):
            if not rst or not self._rst_passes_paws(self.rst_paws_request, min(ctx.rto, TCP_RTO_MAX)):
                what = "RST timestamp" if rst else "timestamp"
                return Decision(verdict, f"paws: request socket, {what} older than the SYN's", "PAWSEstab")
            passed = Decision(
                Verdict.ACCEPT, f"paws: RST exempt on a request socket ({self.rst_paws_request})"
            )
        first, last = ctx.syn_tsval, ctx.syn_tsval_last
        if (
            self.request_tsecr_check
            and ts.tsecr != 0
            and first is not None
            and last is not None
            and not tsecr_between(ts.tsecr, first, last)
        ):
            return Decision(verdict, "request socket: TSecr is none of our SYN-ACK TSvals", "TSEcrRejected")
        return passed

    def check_synack_tsecr(self, ctx: PolicyContext, seg: TcpSegment, now: float) -> Decision:
        """SYN-SENT: an ACK-bearing segment (SYN-ACK, or RST-ACK unless `rst_paws_syn_sent` is "always")
        whose TSecr is not in [TSval of our first SYN, TSval now] did not answer our SYN (Linux
        tcp_rcv_synsent_state_process, PAWSActive). Verdicts: ACCEPT, RESET (answer with RST), DROP (an RST
        is never answered)."""
        if not self.synack_tsecr_check:
            return ACCEPT
        rst = bool(int(seg.flags) & F_RST)
        if rst and self.rst_paws_syn_sent == "always":
            return ACCEPT
        ts = _tsopt(seg)
        first = ctx.syn_tsval
        if ts is None or ts.tsecr == 0 or first is None:
            return ACCEPT
        if tsecr_between(ts.tsecr, first, ctx.tsval_at(now)):
            return ACCEPT
        if rst:
            return Decision(Verdict.DROP, "RST-ACK echoes a timestamp we never sent", "PAWSActive")
        return Decision(Verdict.RESET, "SYN-ACK echoes a timestamp we never sent", "PAWSActive")

    # --- RST, SYN, ACK --------------------------------------------------------------------------------

    def check_rst(self, ctx: PolicyContext, seg: TcpSegment, now: float) -> Decision:
        """An RST on a synchronized connection or a request socket (RFC 9293 3.10.7.4 second; RFC 5961 3.2).

        The rule is `rst_rule_request` on a request socket, `rst_rule_synchronized` otherwise.
        Exact rcv_nxt always resets; so do rcv_nxt - 1 after the peer's FIN (Linux tcp_reset_check) and the
        right edge of our right-most SACK block (RFC 5961 3.2 allows it, Linux does it). In window otherwise:
        RESET (rfc793), CHALLENGE_ACK (rfc5961) or DROP (exact). Outside the window: DROP.
        """
        rule = self.rst_rule_request if ctx.is_request_socket else self.rst_rule_synchronized
        d = seq_diff(seg.seq, ctx.rcv_nxt)
        if d == 0:
            return Decision(Verdict.RESET, "RST at rcv_nxt")
        if d == -1 and ctx.fin_received and ctx.state in _RESET_CHECK_STATES:
            return Decision(Verdict.RESET, "RST at rcv_nxt - 1 after FIN (tcp_reset_check)")
        right = ctx.sack_right_edge
        if right is not None and seg.seq == right:
            return Decision(Verdict.RESET, "RST at the right edge of the right-most SACK block")
        if not 0 <= d < max(ctx.rcv_wnd, 1):
            return Decision(Verdict.DROP, "RST outside the receive window")
        if rule == "rfc793":
            return Decision(Verdict.RESET, "RST in window (RFC 793 3.9)")
        if rule == "rfc5961":
            return Decision(Verdict.CHALLENGE_ACK, "RST in window but not at rcv_nxt (RFC 5961 3.2)")
        return Decision(Verdict.DROP, "RST in window but not at rcv_nxt (exact rule)")

    def check_syn_synchronized(self, ctx: PolicyContext, seg: TcpSegment, now: float) -> Decision:
        """A SYN on a synchronized connection (RFC 5961 4.2; Linux tcp_validate_incoming step 4).

        The crossing SYN-ACK of a simultaneous open, met in SYN-RECEIVED, may be accepted (Linux >= 6.11:
        seq + 1 == rcv_nxt, ack == snd_nxt). Verdicts: ACCEPT, CHALLENGE_ACK (RFC 5961), RESET (RFC 793: a
        SYN in the window), DUPACK (RFC 793: a SYN outside the window is not acceptable, answer with ACK).
        """
        if (
            self.accept_crossing_synack
            and ctx.state is TcpState.SYN_RECEIVED
            and not ctx.is_request_socket
            and int(seg.flags) & F_ACK
            and not seg.payload
            and not int(seg.flags) & F_FIN
            and ((seg.seq + 1) & 0xFFFFFFFF) == ctx.rcv_nxt
            and seg.ack == ctx.snd_nxt
        ):
            return Decision(Verdict.ACCEPT, "crossing SYN-ACK of a simultaneous open")
        if self.syn_rule == "reset":
            d = seq_diff(seg.seq, ctx.rcv_nxt)
            if 0 <= d < max(ctx.rcv_wnd, 1):
                return Decision(Verdict.RESET, "SYN in window (RFC 793 3.9)")
            return Decision(Verdict.DUPACK, "SYN outside the window (RFC 793 3.9)")
        return Decision(
            Verdict.CHALLENGE_ACK, "SYN on a synchronized connection (RFC 5961 4.2)", "TCPSYNChallenge"
        )

    def check_ack(self, ctx: PolicyContext, seg: TcpSegment, now: float) -> Decision:
        """The ACK field (RFC 9293 3.10.7.4 fifth; RFC 5961 5.2; Linux tcp_ack).

        SYN-RECEIVED: SND.UNA < SEG.ACK <= SND.NXT or RESET. Otherwise acceptable if
        SND.UNA - MAX.SND.WND <= SEG.ACK <= SND.NXT (`ack_range_check`; MAX.SND.WND capped by bytes acked,
        Linux); older: CHALLENGE_ACK; ahead of SND.NXT: per `ack_unsent`.
        Verdicts: ACCEPT (new, duplicate or old-but-acceptable ACK), DROP, CHALLENGE_ACK, DUPACK, RESET.
        """
        d_nxt = seq_diff(seg.ack, ctx.snd_nxt)
        d_una = seq_diff(seg.ack, ctx.snd_una)
        if ctx.state is TcpState.SYN_RECEIVED:
            if d_una > 0 and d_nxt <= 0:
                return ACCEPT
            return Decision(Verdict.RESET, "unacceptable ACK in SYN-RECEIVED")
        if d_nxt > 0:
            mode = self.ack_unsent
            if mode == "dupack":
                return Decision(Verdict.DUPACK, "ACK for data never sent (RFC 793 3.9)")
            if mode == "challenge" or ctx.state is not TcpState.ESTABLISHED:
                return Decision(Verdict.CHALLENGE_ACK, "ACK for data never sent (RFC 5961 5.2)")
            return Decision(Verdict.DROP, "ACK for data never sent (tcp_ack, ESTABLISHED)")
        if d_una < 0 and self.ack_range_check:
            max_window = min(ctx.max_snd_wnd, ctx.bytes_acked)
            if -d_una > max_window:
                return Decision(Verdict.CHALLENGE_ACK, "ACK older than SND.UNA - MAX.SND.WND (RFC 5961 5.2)")
        return ACCEPT

    # --- rate limits ----------------------------------------------------------------------------------

    def challenge_ack_allowed(self, ctx: PolicyContext, now: float) -> Decision:
        """Per-socket challenge ACK rate limit (Linux tcp_send_challenge_ack -> __tcp_oow_rate_limited;
        the global tcp_challenge_ack_limit is off by default since Linux 6.0).

        ACCEPT carries the counter of a sent challenge ACK; DROP the counter of a skipped one. The engine
        records `now` as the last out-of-window ACK time when it sends."""
        if self._rate_limited(ctx, now):
            return Decision(Verdict.DROP, "challenge ACK rate-limited", "TCPACKSkippedChallenge")
        return Decision(Verdict.ACCEPT, "challenge ACK", "TCPChallengeACK")

    def oow_ack_allowed(
        self, ctx: PolicyContext, seg: TcpSegment, now: float, skipped_counter: str
    ) -> Decision:
        """Rate limit of duplicate ACKs answering invalid segments (Linux tcp_oow_rate_limited): data
        without SYN is never limited (it cannot be an ACK loop). Verdicts: ACCEPT, DROP(skipped_counter)."""
        if seg.payload and not int(seg.flags) & F_SYN:
            return ACCEPT
        if self._rate_limited(ctx, now):
            return Decision(Verdict.DROP, "out-of-window ACK rate-limited", skipped_counter)
        return ACCEPT

    def _rate_limited(self, ctx: PolicyContext, now: float) -> bool:
        last = ctx.last_oow_ack_time
        return (
            self.challenge_ack_interval > 0 and last is not None and now - last < self.challenge_ack_interval
        )

    # --- TIME-WAIT and listeners ----------------------------------------------------------------------

    def check_time_wait(self, ctx: PolicyContext, seg: TcpSegment, now: float) -> Decision:
        """A segment reaching TIME-WAIT (Linux tcp_timewait_state_process, real TIME-WAIT substate).

        PAWS first (tolerance `paws_window_time_wait`; an RST may pass per `rst_paws_time_wait`). Then:
        RESET: an acceptable RST (`rst_rule_time_wait`) kills TIME-WAIT, unless rfc1337. CHALLENGE_ACK: an
        in-window inexact RST under rfc5961. ACCEPT: a new SYN may reopen the connection (its seq is above
        rcv_nxt, or its TSval is newer than TS.Recent: RFC 1122 4.2.2.13 / RFC 6191). DUPACK: answer with an
        ACK (rate-limited). DROP: ignore (a bare in-window ACK re-arms the timer).
        """
        flags = int(seg.flags)  # plain int: IntFlag operators are ~10x slower
        rst = bool(flags & F_RST)
        ts = _tsopt(seg) if ctx.ts_enabled else None
        paws_reject = False
        if ts is not None and self.paws:
            paws_reject = not self._paws_ok(ctx, ts.tsval, self.paws_window_time_wait, now)
            if paws_reject and rst:
                stamp = ctx.ts_recent_stamp
                paws_reject = not self._rst_passes_paws(
                    self.rst_paws_time_wait, None if stamp is None else now - stamp
                )
        counter = self.paws_tw_counter if paws_reject else None
        d = seq_diff(seg.seq, ctx.rcv_nxt)
        if rst:
            if paws_reject:
                return Decision(Verdict.DROP, "TIME-WAIT: RST with an old timestamp", counter)
            rule = self.rst_rule_time_wait
            acceptable = d == 0 or (rule == "rfc793" and 0 <= d < max(ctx.rcv_wnd, 1))
            if acceptable:
                if self.rfc1337:
                    return Decision(Verdict.DROP, "RST ignored in TIME-WAIT (RFC 1337)")
                return Decision(Verdict.RESET, "RST kills TIME-WAIT")
            if rule == "rfc5961" and 0 <= d < max(ctx.rcv_wnd, 1):
                return Decision(Verdict.CHALLENGE_ACK, "TIME-WAIT: RST in window but not at rcv_nxt")
            return Decision(Verdict.DROP, "TIME-WAIT: RST not at rcv_nxt")
        if not paws_reject and d == 0 and seg.seg_len == 0:
            return Decision(Verdict.DROP, "bare ACK in TIME-WAIT")
        if (
            flags & F_SYN
            and not flags & F_ACK
            and not paws_reject
            and (d > 0 or (ts is not None and seq_diff(ctx.ts_recent, ts.tsval) < 0))
        ):
            return Decision(Verdict.ACCEPT, "new SYN reopens a TIME-WAIT connection")
        return Decision(Verdict.DUPACK, "segment in TIME-WAIT", counter)

    def check_passive_syn(
        self,
        local: tuple[str, int],
        remote: tuple[str, int],
        seg: TcpSegment,
        now: float,
        *,
        via_time_wait: bool = False,
    ) -> Decision:
        """A SYN reaching a listener (Linux tcp_conn_request). With tw_recycle: tcp_peer_is_proven() against
        the per-peer timestamp cache; skipped for a SYN a TIME-WAIT connection accepted (`via_time_wait`:
        Linux passes its ISN and checks nothing more). Verdicts: ACCEPT, DROP (PAWSPassive)."""
        if not self.tw_recycle or via_time_wait:
            return ACCEPT
        entry = self.peer_cache.get(remote[0])
        if entry is None or now - entry.stamp >= self.paws_msl:
            return ACCEPT
        ts = _tsopt(seg)
        if ts is None:
            return Decision(
                Verdict.DROP, "tw_recycle: SYN without timestamps from a recently seen peer", "PAWSPassive"
            )
        if seq_diff(entry.tsval, ts.tsval) > self.paws_window:
            return Decision(
                Verdict.DROP, "tw_recycle: SYN timestamp older than the peer's cached one", "PAWSPassive"
            )
        return ACCEPT

    def on_time_wait(
        self, ctx: PolicyContext, local: tuple[str, int], remote: tuple[str, int], now: float
    ) -> float | None:
        """A connection enters TIME-WAIT (it closed actively). Returns the TIME-WAIT length to use, or None
        for the connection's config.time_wait.

        With tw_recycle (Linux <= 4.11 tcp_time_wait -> tcp_remember_stamp): remember the peer's TS.Recent
        per peer address and recycle after 3.5 RTO."""
        if not self.tw_recycle or not ctx.ts_enabled or ctx.ts_recent_stamp is None:
            return None
        self.peer_cache.remember(remote[0], ctx.ts_recent, ctx.ts_recent_stamp, now, self.paws_msl)
        return TW_RECYCLE_RTO_FACTOR * ctx.rto


def _check_knob(knob: Knob, value: object) -> None:
    kind = knob.kind
    if kind is bool:
        ok = isinstance(value, bool)
    elif kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool) and value >= 0
    elif kind is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool) and value >= 0
    else:
        ok = isinstance(value, str) and (not knob.choices or value in knob.choices)
    if not ok:
        expected = " | ".join(repr(c) for c in knob.choices) if knob.choices else f"a {kind.__name__} >= 0"
        if kind is bool:
            expected = "True or False"
        raise ValueError(f"policy knob {knob.name}={value!r}: expected {expected}")


_RESET_CHECK_STATES = frozenset({TcpState.CLOSE_WAIT, TcpState.LAST_ACK, TcpState.CLOSING})
