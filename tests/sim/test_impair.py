"""RandomImpairment: seeded statistics, ordering guarantees, counters, validation."""

from __future__ import annotations

import pytest

from utcp.sim.impair import Impairment, RandomImpairment

N = 20_000


def run(config: Impairment, n: int = N, gap: float = 0.001) -> list[list[tuple[float, int]]]:
    imp = RandomImpairment[int](config)
    return [imp.apply(i, i * gap) for i in range(n)]


def test_noop_delivers_everything_at_once_in_order() -> None:
    imp = RandomImpairment[str](Impairment(seed=1))
    assert Impairment().is_noop
    assert [imp.apply(p, t) for p, t in (("a", 0.0), ("b", 0.5))] == [[(0.0, "a")], [(0.5, "b")]]
    assert (imp.stats.packets, imp.stats.delivered, imp.stats.dropped, imp.stats.delayed) == (2, 2, 0, 0)


def test_loss_rate_matches_and_is_counted() -> None:
    imp = RandomImpairment[int](Impairment(loss=0.1, seed=3))
    out = [imp.apply(i, 0.0) for i in range(N)]
    dropped = sum(1 for o in out if not o)
    assert 0.09 * N < dropped < 0.11 * N
    assert imp.stats.dropped == dropped
    assert imp.stats.delivered == N - dropped


def test_duplicates_arrive_twice_after_the_original() -> None:
    imp = RandomImpairment[int](Impairment(duplicate=0.05, duplicate_delay=0.002, seed=4))
    out = [imp.apply(i, float(i)) for i in range(N)]
    doubles = [o for o in out if len(o) == 2]
    assert 0.04 * N < len(doubles) < 0.06 * N
    assert all(o[1] == (o[0][0] + 0.002, o[0][1]) for o in doubles)
    assert imp.stats.duplicated == len(doubles)
    assert imp.stats.delivered == N + len(doubles)


def test_reordered_packets_are_overtaken() -> None:
    imp = RandomImpairment[int](Impairment(reorder=0.05, reorder_delay=0.010, seed=5))
    out = [imp.apply(i, i * 0.001) for i in range(N)]
    reordered = [i for i, o in enumerate(out) if o[0][0] > i * 0.001]
    assert 0.04 * N < len(reordered) < 0.06 * N
    assert imp.stats.reordered == len(reordered)
    arrivals = sorted((at, p) for o in out for at, p in o)
    order = [p for _, p in arrivals]
    assert order != sorted(order)
    # the packets that are not reordered keep their order
    kept = [p for p in order if p not in set(reordered)]
    assert kept == sorted(kept)


def test_delay_and_jitter_keep_fifo_order_by_default() -> None:
    out = run(Impairment(delay=0.050, jitter=0.020, seed=6), n=5000, gap=0.0005)
    times = [o[0][0] for o in out]
    assert all(0.050 <= t - i * 0.0005 <= 0.0705 for i, t in enumerate(times))
    assert times == sorted(times)


def test_jitter_may_reorder_when_allowed() -> None:
    out = run(Impairment(jitter=0.020, jitter_reorders=True, seed=6), n=5000, gap=0.0005)
    times = [o[0][0] for o in out]
    assert times != sorted(times)


def test_same_seed_same_draws_and_salt_separates_streams() -> None:
    cfg = Impairment(loss=0.2, duplicate=0.1, reorder=0.1, jitter=0.01, seed=9)
    assert run(cfg, n=500) == run(cfg, n=500)
    a = RandomImpairment[int](cfg, salt="a>b")
    b = RandomImpairment[int](cfg, salt="b>a")
    assert [a.apply(i, 0.0) for i in range(500)] != [b.apply(i, 0.0) for i in range(500)]
    assert run(cfg, n=500) != run(
        Impairment(loss=0.2, duplicate=0.1, reorder=0.1, jitter=0.01, seed=10), n=500
    )


def test_combined_statistics() -> None:
    imp = RandomImpairment[int](Impairment(loss=0.02, duplicate=0.01, reorder=0.02, delay=0.001, seed=11))
    for i in range(N):
        imp.apply(i, i * 0.001)
    s = imp.stats
    assert s.packets == N
    assert 0.015 * N < s.dropped < 0.025 * N
    assert 0.007 * (N - s.dropped) < s.duplicated < 0.013 * (N - s.dropped)
    assert 0.015 * (N - s.dropped) < s.reordered < 0.025 * (N - s.dropped)
    assert s.delayed == N - s.dropped  # every delivered packet got the 1 ms delay
    assert s.delivered == N - s.dropped + s.duplicated


@pytest.mark.parametrize(
    "kwargs",
    [{"loss": -0.1}, {"loss": 1.5}, {"duplicate": 2.0}, {"reorder": -1.0}, {"delay": -1.0}, {"jitter": -0.1}],
)
def test_bad_configs_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Impairment(**kwargs)  # type: ignore[arg-type]


def test_a_keyed_impairment_gives_the_same_packet_the_same_fate_whatever_came_before() -> None:
    config = Impairment(loss=0.3, duplicate=0.2, reorder=0.2, seed=7)
    first = RandomImpairment(config, key=lambda p: p)
    second = RandomImpairment(config, key=lambda p: p)
    for other in range(50):  # the second run sends other packets in between
        second.apply(1000 + other, 0.0)
    fates = [len(first.apply(n, 0.0)) for n in range(200)]
    assert fates == [len(second.apply(n, 0.0)) for n in range(200)]
    assert {0, 1, 2} <= set(fates)
    # a retransmission of the same packet draws anew, so a lost packet is not lost forever
    retries = [len(first.apply(n, 0.0)) for n in range(200) if fates[n] == 0]
    assert any(retries)
