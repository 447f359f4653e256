"""RFC presets, a ladder: `rfc793` (the original rules), `rfc5961` (RFC 793 plus the RFC 5961 blind-attack
mitigations), `rfc7323` (that plus RFC 7323 PAWS, RSTs exempt). `linux` then differs from `rfc7323` only
where Linux deviates from the RFCs."""

from __future__ import annotations

from utcp.policy.base import AckUnsent, Policy, RstPaws, RstRule, SynRule

__all__ = ["Rfc793Policy", "Rfc5961Policy", "Rfc7323Policy"]


class Rfc793Policy(Policy):
    """RFC 793 3.9 "SEGMENT ARRIVES" as written, before RFC 1323 and RFC 5961.

    - No PAWS (timestamps, if negotiated, only measure RTT).
    - "second check the RST bit": any RST inside the receive window resets the connection, in every state
      (request sockets and TIME-WAIT included, RFC 793 has no RFC 1337 protection).
    - "fourth, check the SYN bit": a SYN in the window resets the connection; one outside the window fails
      "first check sequence number" and draws an ACK.
    - "fifth, check the ACK field": an ACK for unsent data draws an ACK; an old one is ignored (no RFC 5961
      5.2 range check). No SYN-ACK TSecr check, no rate limit on ACKs answering bad segments.
    """

    name = "rfc793"
    paws = False
    paws_request = False
    paws_window = 0
    rst_paws_syn_sent: RstPaws = "always"
    rst_paws_request: RstPaws = "always"
    rst_paws_synchronized: RstPaws = "always"
    rst_paws_time_wait: RstPaws = "always"
    rst_rule_request: RstRule = "rfc793"
    rst_rule_synchronized: RstRule = "rfc793"
    rst_rule_time_wait: RstRule = "rfc793"
    syn_rule: SynRule = "reset"
    ack_range_check = False
    ack_unsent: AckUnsent = "dupack"
    synack_tsecr_check = False
    challenge_ack_interval = 0.0
    disordered_ack = False
    paws_old_ack_silent = False
    accept_crossing_synack = False
    rfc1337 = False


class Rfc5961Policy(Rfc793Policy):
    """RFC 793 plus RFC 5961 (blind in-window attacks), and nothing else: no PAWS, so that the difference
    with `rfc793` is exactly RFC 5961 and the difference with `rfc7323` exactly PAWS.

    - 3.2: in every state but SYN-SENT an RST resets only at exactly RCV.NXT; in the window otherwise it
      draws a challenge ACK <SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK>.
    - 4.2: any SYN on a synchronized connection draws a challenge ACK (TCPSYNChallenge).
    - 5.2: an ACK is acceptable only in SND.UNA - MAX.SND.WND <= SEG.ACK <= SND.NXT; otherwise it draws a
      challenge ACK.
    - 7: challenge ACKs are throttled; RFC 5961 leaves the limit to the implementation, this uses Linux's
      per-socket 500 ms (tcp_invalid_ratelimit).
    """

    name = "rfc5961"
    rst_rule_request: RstRule = "rfc5961"
    rst_rule_synchronized: RstRule = "rfc5961"
    rst_rule_time_wait: RstRule = "rfc5961"
    syn_rule: SynRule = "challenge"
    ack_range_check = True
    ack_unsent: AckUnsent = "challenge"
    challenge_ack_interval = 0.5


class Rfc7323Policy(Rfc5961Policy):
    """RFC 5961 plus RFC 7323 PAWS: the modern RFC rule set (the defaults of `Policy`).

    - 5.3 R1: a segment with SEG.TSval < TS.Recent (no tolerance) is not acceptable: dropped with an ACK,
      in request sockets (SYN-RECEIVED), synchronized states and TIME-WAIT alike; TS.Recent older than
      24 days is invalid (5.5).
    - 5.2: "RST segments ... should be acceptable regardless of their timestamp": in every state, the
      request socket included, an RST is never dropped by PAWS, so the health-check RST of SCENARIOS.md B
      case 4 resets the request socket and leaves nothing behind.
    """

    name = "rfc7323"
    paws = True
    paws_request = True
    paws_window = 0
    paws_window_request = 0
    paws_window_time_wait = 0
