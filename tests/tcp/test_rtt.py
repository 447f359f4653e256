"""RttEstimator keeps `rto` as an attribute, set wherever the base RTO or the backoff change: it must
read as the timeout worked out on demand did (RFC 6298 5.5: base << backoff, at most max_rto)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from utcp.tcp.rtt import RttEstimator

times = st.floats(0.0, 200.0) | st.integers(0, 200)
steps = st.lists(st.none() | st.floats(-1.0, 100.0), max_size=40)  # None: back off; a float: a sample


@given(times, times, times, steps)
def test_rto_reads_as_the_base_rto_shifted_by_the_backoff(
    initial: float, low: float, high: float, events: list[float | None]
) -> None:
    rtt = RttEstimator(initial, low, high)
    for event in [*events, None]:
        shifted = rtt.base_rto * (1 << rtt.backoff)  # the property it was, ties included
        worked_out = rtt.max_rto if rtt.max_rto < shifted else shifted
        assert rtt.rto == worked_out and type(rtt.rto) is type(worked_out)
        if event is None:
            rtt.back_off()
        else:
            rtt.sample(event)
