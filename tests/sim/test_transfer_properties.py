"""Whole transfers between two utcp hosts on virtual time, through lossy, reordering, duplicating links.

Exact delivery must survive any impairment; both sides must close cleanly and leave nothing behind.
"""

from __future__ import annotations

import dataclasses
import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from utcp.sim import Impairment, SimPair, pair
from utcp.tcp.config import TcpConfig
from utcp.tcp.events import Reset
from utcp.tcp.state import TcpState

CLOSED_OR_TIME_WAIT = {TcpState.CLOSED, TcpState.TIME_WAIT}


def payloads(seed: int, c2s: int, s2c: int) -> tuple[bytes, bytes]:
    rnd = random.Random(seed)
    return rnd.randbytes(c2s), rnd.randbytes(s2c)


def assert_clean_finish(p: SimPair, timeout: float = 900.0) -> None:
    """Both connections reach CLOSED/TIME_WAIT, then nothing is left once TIME_WAIT expires."""
    conns = p.app_connections()
    assert len(conns) == 2
    assert p.net.run_until(lambda: all(c.state in CLOSED_OR_TIME_WAIT for c in conns), timeout=timeout), [
        c.state for c in conns
    ]
    assert p.net.run_until_idle(timeout=timeout)
    assert p.client.connections() == []
    assert p.server.connections() == []
    assert all(c.state is TcpState.CLOSED for c in conns)
    assert not [e for e in p.client_log.events + p.server_log.events if isinstance(e, Reset)]


@dataclasses.dataclass(frozen=True)
class Scenario:
    seed: int
    c2s: int
    s2c: int
    impairment: Impairment
    latency: float
    config: TcpConfig


# hypothesis favours small integers: make half the transfers large on purpose
SIZES = st.one_of(st.integers(0, 3000), st.integers(50_000, 200_000))


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    seed = draw(st.integers(0, 2**32 - 1))
    impairment = Impairment(
        loss=draw(st.floats(0.0, 0.10)),
        duplicate=draw(st.floats(0.0, 0.05)),
        reorder=draw(st.floats(0.0, 0.10)),
        reorder_delay=draw(st.floats(0.0, 0.030)),
        jitter=draw(st.floats(0.0, 0.005)),
        seed=seed,
    )
    config = TcpConfig(sack=draw(st.booleans()), timestamps=draw(st.booleans()))
    return Scenario(
        seed=seed,
        c2s=draw(SIZES),
        s2c=draw(SIZES),
        impairment=impairment,
        latency=draw(st.floats(0.0001, 0.050)),
        config=config,
    )


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenario=scenarios())
def test_impairments_never_break_exact_delivery(scenario: Scenario) -> None:
    s = scenario
    p = pair(s.config, s.config, s.impairment, latency=s.latency, seed=s.seed % 1000)
    data_c2s, data_s2c = payloads(s.seed, s.c2s, s.s2c)
    result = p.exchange(data_c2s, data_s2c, timeout=900.0)
    assert result.completed
    assert result.server is not None
    assert result.server.received == data_c2s
    assert result.client.received == data_s2c
    assert_clean_finish(p)


def test_clean_transfer_without_impairment_and_through_the_wire_codec() -> None:
    data_c2s, data_s2c = payloads(1, 150_000, 70_000)
    p = pair(seed=3, wire_roundtrip=True)
    result = p.exchange(data_c2s, data_s2c)
    assert result.completed
    assert result.server is not None and result.server.received == data_c2s
    assert result.client.received == data_s2c
    assert result.client.conn.stats.retransmitted_segments == 0
    assert p.net.counters["dropped_wire_error"] == 0
    assert_clean_finish(p)


# --- 2 MB through 2% loss, 2% reordering, 1% duplication ---------------------------------------------

LOSSY = Impairment(loss=0.02, reorder=0.02, duplicate=0.01)
BIG = 2_000_000


def big_run(sack: bool, seed: int) -> SimPair:
    config = TcpConfig(sack=sack)
    p = pair(config, config, dataclasses.replace(LOSSY, seed=seed), seed=1)
    data, _ = payloads(5, BIG, 0)
    result = p.exchange(data, b"", timeout=900.0)
    assert result.completed
    assert result.server is not None and result.server.received == data
    assert result.client.conn.negotiated.sack is sack
    return p


def client_stats(p: SimPair) -> tuple[int, int, float]:
    conn = p.app_connections()[0]
    return conn.stats.retransmitted_bytes, conn.stats.timeouts, p.net.now


def test_2mb_over_a_lossy_link_is_byte_exact_with_and_without_sack() -> None:
    for sack in (True, False):
        p = big_run(sack, seed=3)
        assert p.client.counters["RetransSegs"] > 0
        assert p.client.counters["TCPSackRecovery" if sack else "TCPRenoRecovery"] > 0
        assert_clean_finish(p)


SEEDS = range(4)


def test_sack_recovers_with_fewer_timeouts_and_finishes_sooner() -> None:
    with_sack = [client_stats(big_run(True, s)) for s in SEEDS]
    without = [client_stats(big_run(False, s)) for s in SEEDS]
    assert sum(t for _, t, _ in with_sack) < sum(t for _, t, _ in without)
    assert sum(d for _, _, d in with_sack) < sum(d for _, _, d in without)


# ENGINE BUG (see tests/sim/test_reordering.py): during SACK recovery every partial ACK retransmits the
# segment at snd_una although nothing marks it lost, so reordering makes the SACK sender retransmit MORE
# than NewReno. Remove the marker once Connection._lost_end no longer falls back to snd_una + mss.
def test_sack_reduces_retransmitted_bytes() -> None:
    with_sack = sum(client_stats(big_run(True, s))[0] for s in SEEDS)
    without = sum(client_stats(big_run(False, s))[0] for s in SEEDS)
    assert with_sack < without
