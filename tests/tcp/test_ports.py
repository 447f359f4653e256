"""Ephemeral port allocators: Linux 6.x parity/step/perturbation model and SCENARIOS.md E facts."""

from __future__ import annotations

import collections
import hashlib
import ipaddress
import itertools
import statistics

import pytest

from utcp.tcp.ports import (
    LinuxPortAllocator,
    PortAllocator,
    RandomPortAllocator,
    SequentialPortAllocator,
)

LO = "127.0.0.1"


def nothing_in_use(port: int) -> bool:
    return False


def all_in_use(port: int) -> bool:
    return True


def some(port: int | None) -> int:
    assert port is not None
    return port


def attempts_until(alloc: LinuxPortAllocator, target: int, limit: int = 1000) -> int:
    """Scenario E: connect to LO:target until the allocator hands out `target` (a self-connect)."""
    for attempt in range(1, limit + 1):
        if alloc.connect_port(LO, LO, target, nothing_in_use) == target:
            return attempt
    raise AssertionError(f"never self-connected to {target} in {limit} attempts")


def test_allocators_satisfy_the_protocol() -> None:
    allocators: list[PortAllocator] = [
        LinuxPortAllocator(seed=1),
        SequentialPortAllocator(),
        RandomPortAllocator(seed=1),
    ]
    for alloc in allocators:
        assert 32768 <= (alloc.connect_port(LO, LO, 80, nothing_in_use) or 0) <= 60999
        assert 32768 <= (alloc.bind_port(LO, nothing_in_use) or 0) <= 60999


@pytest.mark.parametrize("bad", [(0, 10), (100, 99), (1, 65536)])
def test_invalid_range_is_refused(bad: tuple[int, int]) -> None:
    with pytest.raises(ValueError):
        LinuxPortAllocator(bad)
    with pytest.raises(ValueError):
        SequentialPortAllocator(bad)
    with pytest.raises(ValueError):
        RandomPortAllocator(bad)


# --- Linux connect(): __inet_hash_connect ------------------------------------------------------------


def test_connect_uses_the_range_start_parity_when_free() -> None:
    even = LinuxPortAllocator((32768, 60999), seed=7)
    odd = LinuxPortAllocator((32769, 60999), seed=7)
    for dport in range(1, 300):
        assert some(even.connect_port("198.18.0.1", "198.18.0.2", dport, nothing_in_use)) % 2 == 0
        assert some(odd.connect_port("198.18.0.1", "198.18.0.2", dport, nothing_in_use)) % 2 == 1


def test_connect_to_the_same_destination_advances_by_2_to_16() -> None:
    alloc = LinuxPortAllocator(seed=3)
    ports = [some(alloc.connect_port(LO, LO, 80, nothing_in_use)) for _ in range(2000)]
    steps = collections.Counter((b - a) % 28232 for a, b in itertools.pairwise(ports))
    assert set(steps) == {2, 4, 6, 8, 10, 12, 14, 16}


def test_connect_start_offset_depends_on_the_destination() -> None:
    # Fresh allocators with one secret: the first port differs across destination ports.
    firsts = {
        LinuxPortAllocator(secret=b"k" * 16).connect_port(LO, "198.18.0.9", dport, nothing_in_use)
        for dport in range(1000, 1050)
    }
    assert len(firsts) > 40


def test_connect_is_deterministic_per_seed_and_keyed_by_secret() -> None:
    def run(alloc: LinuxPortAllocator) -> list[int | None]:
        return [alloc.connect_port(LO, "198.18.0.2", 443, nothing_in_use) for _ in range(20)]

    assert run(LinuxPortAllocator(seed=5)) == run(LinuxPortAllocator(seed=5))
    assert run(LinuxPortAllocator(secret=b"a" * 16)) == run(LinuxPortAllocator(secret=b"a" * 16))
    assert run(LinuxPortAllocator(secret=b"a" * 16)) != run(LinuxPortAllocator(secret=b"b" * 16))


def test_connect_skips_a_busy_port_by_two() -> None:
    alloc = LinuxPortAllocator(seed=11)
    clone = LinuxPortAllocator(seed=11)
    first = clone.connect_port(LO, LO, 80, nothing_in_use)
    assert first is not None
    got = alloc.connect_port(LO, LO, 80, lambda p: p == first)
    assert got == first + 2


def test_connect_falls_back_to_the_other_parity() -> None:
    alloc = LinuxPortAllocator((40000, 40010), seed=2)
    got = {alloc.connect_port(LO, LO, 80, lambda p: p % 2 == 0) for _ in range(200)}
    assert got and all(p is not None and p % 2 == 1 for p in got)


def test_connect_exhaustion_returns_none_and_leaves_the_perturbation_alone() -> None:
    alloc = LinuxPortAllocator((40000, 40010), seed=2)
    clone = LinuxPortAllocator((40000, 40010), seed=2)
    assert alloc.connect_port(LO, LO, 80, all_in_use) is None
    assert alloc.connect_port(LO, LO, 80, nothing_in_use) == clone.connect_port(LO, LO, 80, nothing_in_use)
    # One free port in 40001..40009 is always found (every scan of either parity covers it).
    for free in range(40001, 40010):
        for _ in range(20):
            assert alloc.connect_port(LO, LO, 80, lambda p: p != free) == free  # noqa: B023 (used at once)


def test_connect_scan_covers_only_remaining_ports_like_linux() -> None:
    # Linux: remaining = 11 & ~1 = 10, i.e. 5 candidates per parity pass; wrapping subtracts 10, so an even
    # pass starting at 40000 stops at 40008 and one starting at 40002..40008 visits 40010 but not 40000.
    # A failed connect leaves table_perturb alone, so the same destination would retry the same pass:
    # sample many destinations instead.
    a, b = LinuxPortAllocator((40000, 40010), seed=8), LinuxPortAllocator((40000, 40010), seed=9)
    only_40000 = collections.Counter(a.connect_port(LO, LO, d, lambda p: p != 40000) for d in range(2000))
    only_40010 = collections.Counter(b.connect_port(LO, LO, d, lambda p: p != 40010) for d in range(2000))
    assert set(only_40000) == {40000, None}
    assert set(only_40010) == {40010, None}
    assert 250 < only_40000[40000] < 550  # the pass started at offset 0: ~1 in 5
    assert 1450 < only_40010[40010] < 1750  # started at offset 2..8: ~4 in 5


def test_reserved_ports_are_never_handed_out() -> None:
    alloc = LinuxPortAllocator((40000, 40010), seed=4, reserved=frozenset({40000, 40002, 40004}))
    got = {alloc.connect_port(LO, LO, 80, nothing_in_use) for _ in range(500)}
    assert got == {40006, 40008}


def test_single_port_range() -> None:
    alloc = LinuxPortAllocator((40000, 40000), seed=1)
    assert alloc.connect_port(LO, LO, 80, nothing_in_use) == 40000
    assert alloc.bind_port(LO, nothing_in_use) == 40000
    assert alloc.connect_port(LO, LO, 80, all_in_use) is None
    assert alloc.bind_port(LO, all_in_use) is None


# --- Linux bind(0): inet_csk_find_open_port ----------------------------------------------------------


def test_bind_prefers_the_other_parity() -> None:
    alloc = LinuxPortAllocator(seed=9)
    got = [alloc.bind_port(LO, nothing_in_use) for _ in range(2000)]
    assert all(p is not None and p % 2 == 1 for p in got)
    assert len(set(got)) > 1500  # a random offset each time


def test_bind_falls_back_to_the_connect_parity_and_exhausts() -> None:
    alloc = LinuxPortAllocator((40000, 40010), seed=9)
    got = {alloc.bind_port(LO, lambda p: p % 2 == 1) for _ in range(300)}
    assert got <= {40000, 40002, 40004, 40006, 40008, 40010}
    assert 40000 in got
    assert alloc.bind_port(LO, all_in_use) is None


# --- SCENARIOS.md E, measured on Linux 6.18 ----------------------------------------------------------


def test_e_self_connect_never_to_odd_port_or_40010_in_5000_tries() -> None:
    alloc = LinuxPortAllocator((40000, 40010), seed=2024)
    for target in (40006, 40000):
        seen = collections.Counter(alloc.connect_port(LO, LO, target, nothing_in_use) for _ in range(5000))
        assert set(seen) == {40000, 40002, 40004, 40006, 40008}
        # each of the five even ports is a uniform-ish draw
        assert all(800 < n < 1200 for n in seen.values()), seen
    # an odd destination port, or 40010, is never handed out, so never self-connected
    for target in (40001, 40005, 40009, 40010):
        hits = sum(alloc.connect_port(LO, LO, target, nothing_in_use) == target for _ in range(5000))
        assert hits == 0


def test_e_40010_is_reachable_only_when_earlier_candidates_are_busy() -> None:
    # remaining = (40011 - 40000) & ~1 = 10: the first candidate low + (offset % 10 & ~1) is at most
    # 40008; 40010 is only ever a later candidate, after 40002..40008.
    alloc = LinuxPortAllocator((40000, 40010), seed=1)
    busy = {40000, 40002, 40004, 40006, 40008}
    got = collections.Counter(alloc.connect_port(LO, LO, 80, lambda p: p in busy) for _ in range(500))
    assert 40010 in got
    assert set(got) <= {40010, 40001, 40003, 40005, 40007, 40009}


def test_e_attempts_until_self_connect_match_the_measurement() -> None:
    # Measured: P=40006 after 4-8 attempts, P=40000 after 1-2. The model: each attempt lands on one of
    # 5 even ports, so attempts are roughly geometric with mean ~5; both measurements are typical draws.
    trials = 200
    for target in (40006, 40000):
        counts = [attempts_until(LinuxPortAllocator((40000, 40010), seed=s), target) for s in range(trials)]
        mean = statistics.mean(counts)
        assert 3.5 < mean < 6.5, mean
        within_1_2 = sum(c <= 2 for c in counts) / trials
        within_4_8 = sum(4 <= c <= 8 for c in counts) / trials
        within_8 = sum(c <= 8 for c in counts) / trials
        assert 0.25 < within_1_2 < 0.55, within_1_2
        assert 0.2 < within_4_8 < 0.5, within_4_8
        assert within_8 > 0.7, within_8


def test_e_step_one_mimics_ip_local_port_range_and_old_kernels() -> None:
    alloc = LinuxPortAllocator((40000, 40010), seed=3, step_one=True)
    seen = collections.Counter(alloc.connect_port(LO, LO, 40005, nothing_in_use) for _ in range(5000))
    assert set(seen) == set(range(40000, 40011))  # any port, odd ones and 40010 included
    seq = [some(alloc.connect_port(LO, LO, 80, nothing_in_use)) for _ in range(2000)]
    steps = {(b - a) % 11 for a, b in itertools.pairwise(seq)}
    assert steps == set(range(1, 9))  # max(i, rand(8) * 1) + 1
    binds = {alloc.bind_port(LO, nothing_in_use) for _ in range(2000)}
    assert binds == set(range(40000, 40011))
    assert alloc.connect_port(LO, LO, 80, all_in_use) is None
    assert alloc.bind_port(LO, all_in_use) is None


# --- other allocators --------------------------------------------------------------------------------


def test_sequential_allocator_counts_up_and_wraps() -> None:
    alloc = SequentialPortAllocator((100, 104))
    got = [alloc.connect_port(LO, LO, 1, nothing_in_use) for _ in range(7)]
    assert got == [100, 101, 102, 103, 104, 100, 101]
    assert alloc.bind_port(LO, lambda p: p in (102, 103)) == 104
    assert alloc.bind_port(LO, nothing_in_use) == 100
    assert alloc.connect_port(LO, LO, 1, all_in_use) is None


def test_random_allocator_is_seeded_in_range_and_exhausts() -> None:
    a = RandomPortAllocator((1000, 1999), seed=42)
    b = RandomPortAllocator((1000, 1999), seed=42)
    seq_a = [a.connect_port(LO, LO, 1, nothing_in_use) for _ in range(100)]
    seq_b = [b.connect_port(LO, LO, 1, nothing_in_use) for _ in range(100)]
    assert seq_a == seq_b
    assert all(p is not None and 1000 <= p <= 1999 for p in seq_a)
    assert len(set(seq_a)) > 80
    assert a.bind_port(LO, lambda p: p != 1500) == 1500
    assert a.connect_port(LO, LO, 1, all_in_use) is None


def test_cached_port_offsets_are_the_keyed_hash() -> None:
    # the per-destination cache returns Linux's secure_ipv4_port_ephemeral stand-in, first time and later
    alloc = LinuxPortAllocator(secret=b"k" * 16)
    for _ in range(2):
        for dst, dport in (("198.18.0.2", 443), ("198.18.0.2", 80), ("198.18.0.9", 443)):
            data = (
                ipaddress.ip_address(LO).packed + ipaddress.ip_address(dst).packed + dport.to_bytes(2, "big")
            )
            digest = hashlib.blake2b(data, key=b"k" * 16, digest_size=8).digest()
            assert alloc.port_offset(LO, dst, dport) == int.from_bytes(digest, "little")
