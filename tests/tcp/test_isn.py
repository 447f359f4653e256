"""RFC 6528 ISN generator: M (64 ns timer, Linux seq_scale) + F (keyed hash of the 4-tuple)."""

from __future__ import annotations

import hashlib
import ipaddress
import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from utcp.tcp.isn import IsnGenerator

T = ("198.18.0.1", 40000, "198.18.0.2", 80)


def test_isn_grows_with_time_at_64_ns_per_tick() -> None:
    gen = IsnGenerator(rng_seed=1)
    base = gen.isn(*T, now=10.0)
    assert (gen.isn(*T, now=10.0 + 64e-9 * 1000) - base) % 2**32 == 1000
    # one second later: 1e9 / 64 = 15_625_000 ticks
    assert (gen.isn(*T, now=11.0) - base) % 2**32 == 15_625_000
    # monotonic over a short run of increasing times (modulo 2**32)
    values = [gen.isn(*T, now=10.0 + k * 0.001) for k in range(200)]
    assert all(0 < (b - a) % 2**32 < 2**31 for a, b in itertools.pairwise(values))


def test_isn_wraps_at_32_bits() -> None:
    gen = IsnGenerator(rng_seed=1)
    for now in (0.0, 274.877906944, 1e6, 3e7):  # 2**32 * 64 ns = 274.88 s
        assert 0 <= gen.isn(*T, now=now) < 2**32
    assert gen.isn(*T, now=0.0) == gen.isn(*T, now=274.877906944)


def test_isn_differs_per_tuple() -> None:
    gen = IsnGenerator(rng_seed=2)
    tuples = [
        T,
        ("198.18.0.1", 40001, "198.18.0.2", 80),
        ("198.18.0.1", 40000, "198.18.0.2", 81),
        ("198.18.0.3", 40000, "198.18.0.2", 80),
        ("198.18.0.2", 80, "198.18.0.1", 40000),  # the reverse direction
    ]
    assert len({gen.isn(*t, now=5.0) for t in tuples}) == len(tuples)


def test_isn_is_keyed_by_the_secret_and_deterministic_per_seed() -> None:
    assert IsnGenerator(secret=b"x" * 16).isn(*T, now=1.0) == IsnGenerator(secret=b"x" * 16).isn(*T, now=1.0)
    assert IsnGenerator(secret=b"x" * 16).isn(*T, now=1.0) != IsnGenerator(secret=b"y" * 16).isn(*T, now=1.0)
    assert IsnGenerator(rng_seed=3).isn(*T, now=1.0) == IsnGenerator(rng_seed=3).isn(*T, now=1.0)
    assert IsnGenerator(rng_seed=3).isn(*T, now=1.0) != IsnGenerator(rng_seed=4).isn(*T, now=1.0)
    # without secret or seed: a fresh random key each time
    assert IsnGenerator().offset(*T) != IsnGenerator().offset(*T)


def test_fixed_isn_ignores_tuple_and_time() -> None:
    gen = IsnGenerator(fixed=0xDEADBEEF)
    assert gen.isn(*T, now=0.0) == gen.isn("10.0.0.1", 1, "10.0.0.2", 2, now=99.0) == 0xDEADBEEF


def test_tick_shift_sets_the_timer_rate() -> None:
    gen = IsnGenerator(secret=b"k", tick_shift=12)  # 4.096 us, RFC 6528's "4 microseconds" near enough
    assert (gen.isn(*T, now=1.0) - gen.isn(*T, now=0.0)) % 2**32 == 1_000_000_000 >> 12


@pytest.mark.parametrize("kwargs", [{"fixed": -1}, {"fixed": 2**32}, {"secret": b""}, {"tick_shift": -1}])
def test_bad_arguments_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        IsnGenerator(**kwargs)  # type: ignore[arg-type]


@settings(max_examples=200)
@given(
    st.binary(min_size=1, max_size=32),
    st.sampled_from(["198.18.0.1", "10.0.0.7", "255.255.255.255", "::1", "2001:db8::5"]),
    st.integers(0, 65535),
    st.sampled_from(["198.18.0.2", "0.0.0.0", "fe80::1"]),
    st.integers(0, 65535),
)
def test_offset_is_the_keyed_blake2s_of_the_4_tuple(
    secret: bytes, laddr: str, lport: int, raddr: str, rport: int
) -> None:
    # F as first written: one keyed hash per call (the generator keeps a keyed state and copies it)
    data = (
        ipaddress.ip_address(laddr).packed
        + ipaddress.ip_address(raddr).packed
        + lport.to_bytes(2, "big")
        + rport.to_bytes(2, "big")
    )
    expected = int.from_bytes(hashlib.blake2s(data, key=secret, digest_size=4).digest(), "big")
    gen = IsnGenerator(secret=secret)
    assert gen.offset(laddr, lport, raddr, rport) == expected
    assert gen.offset(laddr, lport, raddr, rport) == expected  # the keyed state is copied, not used up


@settings(max_examples=200)
@given(st.integers(0, 65535), st.integers(0, 65535), st.floats(0, 1e7), st.integers(0, 12))
def test_isn_is_timer_plus_offset(lport: int, rport: int, now: float, shift: int) -> None:
    gen = IsnGenerator(rng_seed=5, tick_shift=shift)
    for laddr in ("198.18.0.1", "198.18.0.3"):
        t = (laddr, lport, "198.18.0.2", rport)
        assert gen.isn(*t, now=now) == (gen.timer(now) + gen.offset(*t)) % 2**32


def test_the_pair_cache_is_bounded() -> None:
    gen = IsnGenerator(rng_seed=6)
    first = gen.offset("10.0.0.1", 1, "10.9.0.0", 2)
    for i in range(5000):
        gen.isn("10.0.0.1", 1, f"10.1.{i >> 8}.{i & 255}", 2, now=1.0)
    assert len(gen._pairs) <= 4096
    assert gen.offset("10.0.0.1", 1, "10.9.0.0", 2) == first
