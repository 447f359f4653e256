"""Congestion window arithmetic: slow start and congestion avoidance (RFC 5681 3.1), byte counting.

Loss recovery (fast retransmit, NewReno partial ACKs, SACK-based recovery) drives this from the connection,
which knows the scoreboard; this class only holds cwnd/ssthresh and how they move.
"""

from __future__ import annotations

__all__ = ["CongestionControl"]

INFINITE_SSTHRESH = 0x7FFFFFFF


class CongestionControl:
    """NewReno-style window in bytes (RFC 5681, RFC 6582)."""

    __slots__ = ("_ca_acc", "cwnd", "mss", "ssthresh")

    def __init__(self, mss: int, initial_cwnd_segments: int) -> None:
        self.mss = mss
        self.cwnd = initial_cwnd_segments * mss  # RFC 6928 / Linux TCP_INIT_CWND
        self.ssthresh = INFINITE_SSTHRESH
        self._ca_acc = 0

    def set_mss(self, mss: int, initial_cwnd_segments: int) -> None:
        """The MSS is known after the handshake: re-derive the initial window from it."""
        self.mss = mss
        self.cwnd = initial_cwnd_segments * mss

    @property
    def in_slow_start(self) -> bool:
        return self.cwnd < self.ssthresh

    def on_ack(self, acked: int) -> None:
        """New data acknowledged outside recovery (RFC 5681 3.1: ABC with L = 1 SMSS in slow start... we
        allow up to 2*SMSS per ACK as Linux tcp_slow_start does with delayed ACKs)."""
        mss = self.mss
        if self.cwnd < self.ssthresh:
            self.cwnd += min(acked, 2 * mss)
            if self.cwnd > self.ssthresh:
                self.cwnd = max(self.ssthresh, mss)
            return
        # congestion avoidance: one SMSS per cwnd of acknowledged bytes (RFC 5681 3.1, eq. 3 alternative)
        self._ca_acc += acked
        if self._ca_acc >= self.cwnd:
            self._ca_acc -= self.cwnd
            self.cwnd += mss

    def on_loss(self, flight_size: int) -> None:
        """Entering fast recovery (RFC 5681 3.2 step 2, RFC 6675 5): ssthresh = max(FlightSize/2, 2*SMSS),
        cwnd = ssthresh."""
        self.ssthresh = max(flight_size // 2, 2 * self.mss)
        self.cwnd = self.ssthresh
        self._ca_acc = 0

    def on_rto(self, flight_size: int, first: bool) -> None:
        """Retransmission timeout (RFC 5681 3.1 eq. 4): ssthresh halves on the first timeout of an episode,
        cwnd falls to one segment (loss window)."""
        if first:
            self.ssthresh = max(flight_size // 2, 2 * self.mss)
        self.cwnd = self.mss
        self._ca_acc = 0

    def on_recovery_exit(self, flight_size: int) -> None:
        """Full ACK ends recovery (RFC 6582 3.2 step 3, option 1): cwnd = min(ssthresh, FlightSize + SMSS)."""
        self.cwnd = max(min(self.ssthresh, flight_size + self.mss), self.mss)
        self._ca_acc = 0
