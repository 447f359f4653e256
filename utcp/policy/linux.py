"""Linux presets: what a default-sysctl Linux 6.x kernel decides (SCENARIOS.md B, measured on 6.18), and a
Linux <= 4.11 kernel with net.ipv4.tcp_tw_recycle=1 (SCENARIOS.md D)."""

from __future__ import annotations

from utcp.policy.base import TCP_PAWS_WINDOW, AckUnsent, Policy, RstPaws, RstRule, SynRule

__all__ = ["LinuxPolicy", "LinuxTwRecyclePolicy"]


class LinuxPolicy(Policy):
    """Linux 6.x, default sysctls (tcp_timestamps=1, tcp_rfc1337=0, tcp_invalid_ratelimit=500 ms).

    Follows, state by state:
    - SYN-SENT, tcp_rcv_synsent_state_process(): a SYN-ACK (or RST-ACK) echoing a TSecr outside
      [our first SYN's TSval, now] is rejected (PAWSActive; a SYN-ACK is answered with RST).
    - request socket, tcp_check_req(): PAWS with tcp_paws_reject(), whose tcp_paws_check(rx_opt, 0) has no
      tolerance (measured on 6.18: an RST with TSval T-1 after a SYN with T is dropped, PAWSEstab) and whose
      TCP_PAWS_MSL exemption for RSTs never applies with default synack_retries, because the request
      socket's TS.Recent stamp is estimated as now minus its SYN-ACK timeout: SCENARIOS.md B case 4 (the
      dropped RST, then the late ACK leaves an ESTABLISHED socket nobody owns). An in-window RST not at
      rcv_nxt draws a challenge ACK (measured on 6.18, B case 5; 4.x sources reset the request instead).
      Since 6.15 a segment whose TSecr is none of the SYN-ACK TSvals sent is dropped with an ACK
      (TSEcrRejected): a third ACK echoing the request socket's own challenge ACK is refused (measured).
    - synchronized, tcp_validate_incoming(): PAWS with TCP_PAWS_WINDOW; RSTs bypass it ("Reset is accepted
      even if it did not pass PAWS", B case E); tcp_disordered_ack() tolerates a reordered duplicate ACK;
      an old pure ACK is dropped silently (PAWSOldAck, >= 6.15); other old segments get a duplicate ACK
      (PAWSEstab, B case E''). RFC 5961: exact RST, challenge ACK for in-window RSTs and SYNs
      (TCPSYNChallenge), rate-limited per socket by __tcp_oow_rate_limited() (B case E'); tcp_ack(): an ACK
      below SND.UNA - MAX.SND.WND draws a challenge ACK, one for unsent data is dropped silently in
      ESTABLISHED (tcp_rcv_established) and challenged in the slow-path states (tcp_rcv_state_process).
      SYN-RECEIVED accepts the crossing SYN-ACK of a simultaneous open (>= 6.11).
    - TIME-WAIT, tcp_timewait_state_process(): PAWS via tcp_paws_reject() (RST exempt after TCP_PAWS_MSL),
      counted PAWSTimewait (>= 6.15); only an RST exactly at rcv_nxt kills it (tcp_rfc1337=0).
    """

    name = "linux"
    paws_window = TCP_PAWS_WINDOW
    paws_window_request = 0
    paws_window_time_wait = 0
    request_tsecr_check = True
    rst_paws_syn_sent: RstPaws = "never"
    rst_paws_request: RstPaws = "after-msl"
    rst_paws_synchronized: RstPaws = "always"
    rst_paws_time_wait: RstPaws = "after-msl"
    rst_rule_request: RstRule = "rfc5961"
    rst_rule_synchronized: RstRule = "rfc5961"
    rst_rule_time_wait: RstRule = "exact"
    syn_rule: SynRule = "challenge"
    ack_range_check = True
    ack_unsent: AckUnsent = "drop-when-established"
    synack_tsecr_check = True
    challenge_ack_interval = 0.5
    disordered_ack = True
    paws_old_ack_silent = True
    accept_crossing_synack = True
    rfc1337 = False
    tw_recycle = False
    paws_tw_counter = "PAWSTimewait"


class LinuxTwRecyclePolicy(LinuxPolicy):
    """Linux <= 4.11 with net.ipv4.tcp_tw_recycle=1 (removed in 4.12), as in SCENARIOS.md D.

    - tcp_time_wait(): a connection that closed actively remembers the peer's TS.Recent and its stamp per
      peer address (tcp_remember_stamp(); tcp_metrics, inet_peer before 3.5) and leaves TIME-WAIT after
      3.5 RTO instead of 60 s.
    - tcp_conn_request() -> tcp_peer_is_proven(): for TCP_PAWS_MSL (`paws_msl`) after that stamp, a SYN
      from that address whose TSval is older than the cached one by more than TCP_PAWS_WINDOW, or that has
      no timestamps, is dropped silently (PAWSPassive): clients behind one NAT address with unrelated TS
      clocks cannot connect. A SYN accepted by a live TIME-WAIT socket skips the check.
    - Otherwise the Linux rules of that era: tcp_check_req() resets the request socket on any in-window
      RST (no challenge ACK there), TIME-WAIT PAWS rejects count PAWSEstab, no PAWSOldAck and no
      request-socket TSecr check (6.15), no crossing SYN-ACK acceptance (6.11).
    """

    name = "linux-tw-recycle"
    tw_recycle = True
    rst_rule_request: RstRule = "rfc793"
    paws_tw_counter = "PAWSEstab"
    paws_old_ack_silent = False
    request_tsecr_check = False
    accept_crossing_synack = False
