"""The Linux 6.x preset: what a default-sysctl Linux 6.18 kernel decides (SCENARIOS.md B measured there)."""

from __future__ import annotations

from utcp.policy.base import TCP_PAWS_WINDOW, Policy

__all__ = ["LinuxPolicy"]


class LinuxPolicy(Policy):
    """Linux 6.x, default sysctls (tcp_timestamps=1, tcp_rfc1337=0, tcp_invalid_ratelimit=500 ms).

    - PAWS with TCP_PAWS_WINDOW, RSTs bypass it once established; a reordered duplicate ACK inside the
      replay window is tolerated (tcp_disordered_ack); an old pure ACK is dropped silently (PAWSOldAck,
      Linux >= 6.15); other old segments: dropped with a duplicate ACK (PAWSEstab).
    - Request sockets (tcp_check_req): PAWS drops an RST older than the SYN by more than
      `request_paws_window` (the 60 s MSL exemption never applies there), counted PAWSEstab: SCENARIOS.md B
      case 4. Note: the source's tcp_paws_reject() calls tcp_paws_check(rx_opt, 0); SCENARIOS.md states the
      measured tolerance as TCP_PAWS_WINDOW, which is the default here (set request_paws_window=0 for 0).
    - RFC 5961: exact-RST, challenge ACKs for in-window RSTs and SYNs, rate-limited per socket (500 ms).
    - SYN-RECEIVED accepts the crossing SYN-ACK of a simultaneous open (Linux >= 6.11).
    - ACK for unsent data: dropped silently in ESTABLISHED (tcp_rcv_established), challenged elsewhere.
    """

    name = "linux"
    paws_window = TCP_PAWS_WINDOW
    disordered_ack = True
    paws_old_ack_silent = True
    request_paws_window = TCP_PAWS_WINDOW
    request_rst_challenge = True
    ack_unsent_challenge = False
    challenge_ack_interval = 0.5
    rfc1337 = False
