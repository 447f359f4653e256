"""The policy hook API: every segment-acceptance decision of the engine goes through a `Policy`.

A policy never mutates a connection: it reads a `PolicyContext` (the connection, seen through a small
read-only protocol) and a segment, and returns a `Decision` (verdict + reason + Linux MIB counter name).
The engine carries the verdict out and bumps the counters in its host's `Counter`.

`Policy` implements the mechanisms with knobs (class attributes, overridable per instance through the
constructor); presets are small subclasses that set knobs (see `utcp.policy.linux`). A user-written policy
overrides any method; each method documents the verdicts the engine understands from it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Protocol

from utcp.tcp.seq import seq_diff
from utcp.tcp.state import TcpState
from utcp.wire.packet import TcpFlags, TcpSegment, Timestamps

__all__ = [
    "ACCEPT",
    "TCP_PAWS_24DAYS",
    "TCP_PAWS_MSL",
    "TCP_PAWS_WINDOW",
    "Decision",
    "Policy",
    "PolicyContext",
    "Verdict",
]

TCP_PAWS_WINDOW = 1  # Linux include/net/tcp.h: replay window for PAWS, in TS ticks
TCP_PAWS_24DAYS = (
    24 * 24 * 3600.0
)  # RFC 7323 5.5 / Linux TCP_PAWS_24DAYS: TS.Recent older than this is invalid
TCP_PAWS_MSL = 60.0  # Linux TCP_PAWS_MSL: an RST may pass PAWS if TS.Recent is older than this


class Verdict(enum.Enum):
    """What the engine does with a segment."""

    ACCEPT = "accept"  # go on processing
    DROP = "drop"  # discard silently
    CHALLENGE_ACK = "challenge_ack"  # discard, answer with a (rate-limited) challenge ACK (RFC 5961)
    RESET = (
        "reset"  # check_rst/check_time_wait: accept the RST; check_ack/check_synack_tsecr: answer with RST
    )
    DUPACK = "dupack"  # discard, answer with a (rate-limited) duplicate ACK (RFC 9293 3.10.7.4 first)


@dataclass(frozen=True, slots=True)
class Decision:
    """A verdict, why, and the Linux MIB counter (TcpExt/Tcp name without prefix) to bump, if any."""

    verdict: Verdict
    reason: str
    counter: str | None = None
    extra_counters: tuple[str, ...] = ()


ACCEPT = Decision(Verdict.ACCEPT, "ok")


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
        """TSval of our first SYN (Linux retrans_stamp), None if we sent none with timestamps."""
        ...

    @property
    def fin_received(self) -> bool: ...

    @property
    def sack_right_edge(self) -> int | None:
        """Right edge of the right-most SACK block we advertise, if any."""
        ...

    @property
    def rto(self) -> float: ...

    @property
    def last_oow_ack_time(self) -> float | None: ...

    @property
    def syn_retransmits(self) -> int:
        """SYN-ACK retransmissions so far (Linux req->num_timeout), for request sockets."""
        ...

    def tsval_at(self, now: float) -> int:
        """The TSval this connection would send at `now`."""
        ...


def _tsopt(seg: TcpSegment) -> Timestamps | None:
    for opt in seg.options:
        if type(opt) is Timestamps:
            return opt
    return None


class Policy:
    """Knob-driven segment validation. Defaults follow the RFCs; presets subclass and set knobs.

    Knobs (pass as keyword arguments to override on one instance):
      paws: apply PAWS at all (RFC 7323 5).
      paws_window: TS ticks of tolerance for established PAWS (Linux TCP_PAWS_WINDOW).
      rst_bypasses_paws: an RST that fails PAWS is still considered (RFC 7323 5.3 R1 note / Linux).
      paws_old_ack_silent: an old pure ACK failing PAWS is dropped without dupack (Linux >= 6.15 PAWSOldAck).
      disordered_ack: accept a pure duplicate ACK that fails PAWS inside the replay window (Linux
          tcp_disordered_ack).
      request_paws: PAWS-check segments reaching a request socket (Linux tcp_check_req).
      request_paws_window: tolerance of that check, in TS ticks.
      request_rst_msl_exemption: let an RST pass request PAWS when TS.Recent is older than TCP_PAWS_MSL
          (Linux tcp_paws_reject; the request socket's estimated stamp is never that old).
      request_rst_challenge: an in-window RST whose seq is not rcv_nxt draws a challenge ACK on a request
          socket (measured on Linux 6.18, SCENARIOS.md B case 5) instead of resetting it.
      rfc5961_rst: RFC 5961 3.2 (exact seq resets, in-window challenges); False: RFC 793 (in-window resets).
      rfc5961_syn: RFC 5961 4.2 (SYN in a synchronized state draws a challenge ACK); False: RFC 793 (RST).
      rfc5961_ack: RFC 5961 5.2 (ACK below SND.UNA - MAX.SND.WND draws a challenge ACK).
      accept_crossing_synack: SYN-RECEIVED accepts the crossing SYN-ACK of a simultaneous open
          (Linux >= 6.11).
      challenge_ack_interval: per-socket rate limit of challenge and out-of-window ACKs, seconds
          (Linux sysctl_tcp_invalid_ratelimit, 500 ms); 0 disables.
      synack_tsecr_check: SYN-SENT rejects a SYN-ACK whose TSecr was never sent (Linux PAWSActive).
      ack_unsent_challenge: an ACK for unsent data in ESTABLISHED draws a challenge ACK (RFC 5961 5.2);
          Linux drops it silently in ESTABLISHED and challenges in the other synchronized states.
      rfc1337: TIME-WAIT ignores RSTs (RFC 1337 TIME-WAIT assassination fix; Linux tcp_rfc1337=0).
    """

    paws: bool = True
    paws_window: int = TCP_PAWS_WINDOW
    rst_bypasses_paws: bool = True
    paws_old_ack_silent: bool = False
    disordered_ack: bool = False
    request_paws: bool = True
    request_paws_window: int = TCP_PAWS_WINDOW
    request_rst_msl_exemption: bool = False
    request_rst_challenge: bool = True
    rfc5961_rst: bool = True
    rfc5961_syn: bool = True
    rfc5961_ack: bool = True
    accept_crossing_synack: bool = True
    challenge_ack_interval: float = 0.5
    synack_tsecr_check: bool = True
    ack_unsent_challenge: bool = True
    rfc1337: bool = False

    name: str = "rfc"

    def __init__(self, **knobs: Any) -> None:
        for key, value in knobs.items():
            if key.startswith("_") or not hasattr(type(self), key) or callable(getattr(type(self), key)):
                raise TypeError(f"unknown policy knob {key!r}")
            setattr(self, key, value)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

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

    def check_paws(self, ctx: PolicyContext, seg: TcpSegment, now: float) -> Decision:
        """PAWS for a synchronized connection (RFC 7323 5.3; Linux tcp_validate_incoming, H1).

        Verdicts: ACCEPT, DUPACK (drop + duplicate ACK), DROP, CHALLENGE_ACK (a SYN that fails PAWS).
        """
        if not self.paws or not ctx.ts_enabled:
            return ACCEPT
        ts = _tsopt(seg)
        if ts is None or self._paws_ok(ctx, ts.tsval, self.paws_window, now):
            return ACCEPT
        flags = seg.flags
        pure_ack = bool(flags & TcpFlags.ACK) and seg.seg_len == 0
        if self.disordered_ack and pure_ack and self._disordered_ack(ctx, seg, ts):
            return Decision(Verdict.ACCEPT, "paws: disordered duplicate ACK inside the replay window")
        if flags & TcpFlags.RST and self.rst_bypasses_paws:
            # Linux: "Reset is accepted even if it did not pass PAWS."
            return Decision(Verdict.ACCEPT, "paws: RST bypasses PAWS once synchronized")
        if flags & TcpFlags.SYN:
            return Decision(Verdict.CHALLENGE_ACK, "paws: SYN with an old timestamp", "TCPSYNChallenge")
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
        """PAWS on a request socket (Linux tcp_check_req -> tcp_paws_reject).

        TS.Recent is the SYN's TSval; its stamp is only estimated (now - timeout) so the RST exemption of
        TCP_PAWS_MSL never applies: an RST older than the SYN is dropped (SCENARIOS.md B case 4).
        Verdicts: ACCEPT, DUPACK (drop; the engine acks non-RST segments).
        """
        if not self.paws or not self.request_paws or not ctx.ts_enabled:
            return ACCEPT
        ts = _tsopt(seg)
        if ts is None:
            return ACCEPT
        if seq_diff(ctx.ts_recent, ts.tsval) <= self.request_paws_window or ctx.ts_recent == 0:
            return ACCEPT
        if seg.flags & TcpFlags.RST and self.request_rst_msl_exemption:
            return Decision(Verdict.ACCEPT, "paws: RST exempt (TS.Recent older than MSL)")
        return Decision(Verdict.DUPACK, "paws: request socket, timestamp older than the SYN's", "PAWSEstab")

    def check_synack_tsecr(self, ctx: PolicyContext, seg: TcpSegment, now: float) -> Decision:
        """SYN-SENT: a SYN-ACK whose TSecr is not in [TSval of our first SYN, TSval now] did not answer our
        SYN (Linux tcp_rcv_synsent_state_process, PAWSActive): answer with RST. Verdicts: ACCEPT, RESET."""
        if not self.synack_tsecr_check:
            return ACCEPT
        ts = _tsopt(seg)
        first = ctx.syn_tsval
        if ts is None or ts.tsecr == 0 or first is None:
            return ACCEPT
        newest = ctx.tsval_at(now)
        # between(tsecr, first, newest), modular
        if ((ts.tsecr - first) & 0xFFFFFFFF) <= ((newest - first) & 0xFFFFFFFF):
            return ACCEPT
        return Decision(Verdict.RESET, "SYN-ACK echoes a timestamp we never sent", "PAWSActive")

    # --- RST, SYN, ACK --------------------------------------------------------------------------------

    def check_rst(self, ctx: PolicyContext, seg: TcpSegment, now: float) -> Decision:
        """An RST on a synchronized connection or a request socket (RFC 5961 3.2; RFC 9293 3.10.7.4 second).

        Linux tcp_validate_incoming step 2: exact rcv_nxt resets; so do rcv_nxt - 1 after the peer's FIN
        (tcp_reset_check) and the right edge of our right-most SACK block. In window otherwise: challenge
        ACK. Outside the window: dropped. Verdicts: RESET, CHALLENGE_ACK, DROP.
        """
        d = seq_diff(seg.seq, ctx.rcv_nxt)
        wnd = ctx.rcv_wnd
        if d == 0:
            return Decision(Verdict.RESET, "RST at rcv_nxt")
        if d == -1 and ctx.fin_received and ctx.state in _RESET_CHECK_STATES:
            return Decision(Verdict.RESET, "RST at rcv_nxt - 1 after FIN (tcp_reset_check)")
        right = ctx.sack_right_edge
        if right is not None and seg.seq == right:
            return Decision(Verdict.RESET, "RST at the right edge of the right-most SACK block")
        in_win = 0 <= d < max(wnd, 1)
        if not in_win:
            return Decision(Verdict.DROP, "RST outside the receive window")
        if ctx.is_request_socket:
            if self.request_rst_challenge:
                return Decision(Verdict.CHALLENGE_ACK, "RST in window but not at rcv_nxt")
            return Decision(Verdict.RESET, "RST in window (tcp_check_req embryonic reset)")
        if not self.rfc5961_rst:
            return Decision(Verdict.RESET, "RST in window (RFC 793)")
        return Decision(Verdict.CHALLENGE_ACK, "RST in window but not at rcv_nxt")

    def check_syn_synchronized(self, ctx: PolicyContext, seg: TcpSegment, now: float) -> Decision:
        """A SYN on a synchronized connection (RFC 5961 4.2; Linux tcp_validate_incoming step 4).

        The crossing SYN-ACK of a simultaneous open, met in SYN-RECEIVED, is accepted (Linux >= 6.11:
        seq + 1 == rcv_nxt, ack == snd_nxt). Verdicts: ACCEPT, CHALLENGE_ACK, RESET (RFC 793: in-window SYN).
        """
        if (
            self.accept_crossing_synack
            and ctx.state is TcpState.SYN_RECEIVED
            and not ctx.is_request_socket
            and seg.flags & TcpFlags.ACK
            and not seg.payload
            and not seg.flags & TcpFlags.FIN
            and ((seg.seq + 1) & 0xFFFFFFFF) == ctx.rcv_nxt
            and seg.ack == ctx.snd_nxt
        ):
            return Decision(Verdict.ACCEPT, "crossing SYN-ACK of a simultaneous open")
        if not self.rfc5961_syn:
            d = seq_diff(seg.seq, ctx.rcv_nxt)
            if 0 <= d < max(ctx.rcv_wnd, 1):
                return Decision(Verdict.RESET, "SYN in window (RFC 793)")
        return Decision(Verdict.CHALLENGE_ACK, "SYN on a synchronized connection", "TCPSYNChallenge")

    def check_ack(self, ctx: PolicyContext, seg: TcpSegment, now: float) -> Decision:
        """The ACK field (RFC 9293 3.10.7.4 fifth; RFC 5961 5.2; Linux tcp_ack).

        SYN-RECEIVED: SND.UNA < SEG.ACK <= SND.NXT or RESET. Otherwise acceptable if
        SND.UNA - MAX.SND.WND <= SEG.ACK <= SND.NXT (MAX.SND.WND capped by bytes acked, Linux); older:
        CHALLENGE_ACK; ahead of SND.NXT: CHALLENGE_ACK, or DROP (Linux, ESTABLISHED).
        Verdicts: ACCEPT (new, duplicate or old-but-acceptable ACK), DROP, CHALLENGE_ACK, RESET.
        """
        d_nxt = seq_diff(seg.ack, ctx.snd_nxt)
        d_una = seq_diff(seg.ack, ctx.snd_una)
        if ctx.state is TcpState.SYN_RECEIVED:
            if d_una > 0 and d_nxt <= 0:
                return ACCEPT
            return Decision(Verdict.RESET, "unacceptable ACK in SYN-RECEIVED")
        if d_nxt > 0:
            if self.ack_unsent_challenge or ctx.state is not TcpState.ESTABLISHED:
                return Decision(Verdict.CHALLENGE_ACK, "ACK for data never sent")
            return Decision(Verdict.DROP, "ACK for data never sent")
        if d_una < 0 and self.rfc5961_ack:
            max_window = min(ctx.max_snd_wnd, ctx.bytes_acked)
            if -d_una > max_window:
                return Decision(Verdict.CHALLENGE_ACK, "ACK older than SND.UNA - MAX.SND.WND")
        return ACCEPT

    # --- rate limits ----------------------------------------------------------------------------------

    def challenge_ack_allowed(self, ctx: PolicyContext, now: float) -> Decision:
        """Per-socket challenge ACK rate limit (Linux tcp_send_challenge_ack -> __tcp_oow_rate_limited).

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
        if seg.payload and not seg.flags & TcpFlags.SYN:
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

        ACCEPT: a new SYN may reopen the connection (its seq is above rcv_nxt, or its TSval is newer than
        TS.Recent: RFC 1122 4.2.2.13 / RFC 6191). RESET: an in-window RST kills TIME-WAIT (unless rfc1337).
        DUPACK: answer with an ACK (rate-limited). DROP: ignore.
        """
        flags = seg.flags
        ts = _tsopt(seg) if ctx.ts_enabled else None
        paws_reject = False
        if ts is not None and self.paws:
            paws_reject = not self._paws_ok(ctx, ts.tsval, 0, now)
            if paws_reject and flags & TcpFlags.RST:
                stamp = ctx.ts_recent_stamp
                if stamp is not None and now - stamp >= TCP_PAWS_MSL:
                    paws_reject = False  # Linux tcp_paws_reject: RST after MSL
        d = seq_diff(seg.seq, ctx.rcv_nxt)
        if not paws_reject and d == 0 and (seg.seg_len == 0 or flags & TcpFlags.RST):
            if flags & TcpFlags.RST:
                if not self.rfc1337:
                    return Decision(Verdict.RESET, "RST kills TIME-WAIT")
                return Decision(Verdict.DROP, "RST ignored in TIME-WAIT (RFC 1337)")
            return Decision(Verdict.DROP, "bare ACK in TIME-WAIT")
        if (
            flags & TcpFlags.SYN
            and not flags & (TcpFlags.RST | TcpFlags.ACK)
            and not paws_reject
            and (d > 0 or (ts is not None and seq_diff(ctx.ts_recent, ts.tsval) < 0))
        ):
            return Decision(Verdict.ACCEPT, "new SYN reopens a TIME-WAIT connection")
        if flags & TcpFlags.RST:
            return Decision(
                Verdict.DROP, "RST outside TIME-WAIT window", "PAWSEstab" if paws_reject else None
            )
        return Decision(Verdict.DUPACK, "segment in TIME-WAIT", "PAWSEstab" if paws_reject else None)

    def check_passive_syn(
        self, local: tuple[str, int], remote: tuple[str, int], seg: TcpSegment, now: float
    ) -> Decision:
        """A SYN reaching a listener. Hook for per-peer state (tw_recycle's PAWSPassive); ACCEPT by default.
        Verdicts: ACCEPT, DROP."""
        return ACCEPT

    def on_time_wait(
        self, ctx: PolicyContext, local: tuple[str, int], remote: tuple[str, int], now: float
    ) -> None:
        """Called when a connection enters TIME-WAIT (hook for per-peer timestamp caches)."""
        return None


_RESET_CHECK_STATES = frozenset({TcpState.CLOSE_WAIT, TcpState.LAST_ACK, TcpState.CLOSING})
