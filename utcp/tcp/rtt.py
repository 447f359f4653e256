"""Round-trip time estimation and the retransmission timeout (RFC 6298)."""

from __future__ import annotations

__all__ = ["RttEstimator"]

_ALPHA = 1 / 8
_BETA = 1 / 4
_K = 4
_G = 0.001  # clock granularity: 1 ms timestamps


class RttEstimator:
    """SRTT/RTTVAR per RFC 6298 2; RTO clamped to [min_rto, max_rto], doubled on backoff (5.5)."""

    __slots__ = ("backoff", "base_rto", "max_rto", "min_rto", "rto", "rttvar", "srtt")

    def __init__(self, initial_rto: float, min_rto: float, max_rto: float) -> None:
        self.srtt: float | None = None
        self.rttvar = 0.0
        self.min_rto = min_rto
        self.max_rto = max_rto
        rto = min_rto if min_rto > initial_rto else initial_rto  # RFC 6298 2.1: min(max(...)) spelled out
        self.base_rto = max_rto if max_rto < rto else rto
        self.backoff = 0
        # The current timeout, backoff included (RFC 6298 5.5), at most max_rto: read per segment sent,
        # so kept (set wherever base_rto or backoff change) rather than worked out on each read. With no
        # backoff it is base_rto itself (the same float object: no second one per connection).
        self.rto: float = self.base_rto

    def sample(self, rtt: float) -> None:
        """A new RTT measurement R (RFC 6298 2.2 / 2.3); clears the backoff (the timer is valid again)."""
        # min()/max() spelled as comparisons (the same values, ties included): a few samples per connection
        rtt = 0.0 if rtt < 0.0 else rtt
        srtt = self.srtt
        if srtt is None:
            srtt = self.srtt = rtt
            rttvar = self.rttvar = rtt / 2
        else:
            rttvar = self.rttvar = (1 - _BETA) * self.rttvar + _BETA * abs(srtt - rtt)
            srtt = self.srtt = (1 - _ALPHA) * srtt + _ALPHA * rtt
        var = _K * rttvar
        rto = srtt + (var if var > _G else _G)
        rto = self.min_rto if rto < self.min_rto else rto
        self.base_rto = self.max_rto if self.max_rto < rto else rto
        self.backoff = 0
        self.rto = self.base_rto  # min(max_rto, base_rto << 0): base_rto is at most max_rto

    def back_off(self) -> None:
        """RFC 6298 5.5: double the RTO (bounded by max_rto)."""
        if self.base_rto * (1 << self.backoff) < self.max_rto:
            self.backoff += 1
        rto = self.base_rto * (1 << self.backoff)
        self.rto = self.max_rto if self.max_rto < rto else rto
