"""TCP timestamp clocks (RFC 7323 5.4): Linux tcp_clock_ms + secure_tcp_ts_off."""

from __future__ import annotations

import hashlib
import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from utcp.tcp.clock import OffsetMode, TimestampClock
from utcp.tcp.host import Host

A, B, C = "198.18.0.1", "198.18.0.2", "198.18.0.3"


def test_one_tick_per_millisecond() -> None:
    clock = TimestampClock(offset_mode="zero")
    assert clock.tsval(A, B, 0.0) == 0
    assert clock.tsval(A, B, 0.0009) == 0
    assert clock.tsval(A, B, 0.001) == 1
    assert clock.tsval(A, B, 0.57) == 570  # 0.57 * 1000 is 569.999... in floating point
    assert clock.tsval(A, B, 12.3456) == 12345


def test_other_rates() -> None:
    assert TimestampClock(hz=100, offset_mode="zero").tsval(A, B, 0.57) == 57
    assert TimestampClock(hz=1_000_000, offset_mode="zero").tsval(A, B, 1.5) == 1_500_000


def test_wraps_at_32_bits() -> None:
    clock = TimestampClock(offset_mode="fixed", fixed_offset=2**32 - 5)
    assert clock.tsval(A, B, 0.0) == 2**32 - 5
    assert clock.tsval(A, B, 0.010) == 5
    assert TimestampClock(offset_mode="zero").tsval(A, B, 2**32 / 1000 + 0.002) == 2


def test_per_pair_offsets_differ_and_are_stable() -> None:
    clock = TimestampClock(seed=1)
    offsets = {clock.offset(A, B), clock.offset(A, C), clock.offset(B, A), clock.offset(C, A)}
    assert len(offsets) == 4
    assert clock.tsval(A, B, 1.0) == clock.tsval(A, B, 1.0)
    # the offset is per address pair, not per port: Linux secure_tcp_ts_off(saddr, daddr)
    assert (clock.tsval(A, B, 2.0) - clock.tsval(A, B, 1.0)) % 2**32 == 1000


def test_per_pair_offsets_keyed_by_secret() -> None:
    assert TimestampClock(secret=b"s" * 16).offset(A, B) == TimestampClock(secret=b"s" * 16).offset(A, B)
    assert TimestampClock(secret=b"s" * 16).offset(A, B) != TimestampClock(secret=b"t" * 16).offset(A, B)
    assert TimestampClock(seed=7).offset(A, B) == TimestampClock(seed=7).offset(A, B)


def test_zero_mode_is_linux_tcp_timestamps_2() -> None:
    clock = TimestampClock(offset_mode="zero", secret=b"s")
    assert clock.tsval(A, B, 3.0) == clock.tsval(C, A, 3.0) == 3000


def test_fixed_mode() -> None:
    clock = TimestampClock(offset_mode="fixed", fixed_offset=1_000_000)
    assert clock.tsval(A, B, 1.0) == clock.tsval(B, C, 1.0) == 1_001_000


def test_frozen_clock_never_moves() -> None:
    clock = TimestampClock(frozen_at=12345)
    assert {clock.tsval(A, B, t) for t in (0.0, 1.0, 1e6)} == {12345}
    assert TimestampClock(frozen_at=0).tsval(A, B, 5.0) == 0


def test_skew_multiplies_the_rate() -> None:
    fast = TimestampClock(offset_mode="zero", skew=1.5)
    slow = TimestampClock(offset_mode="zero", skew=0.5)
    assert fast.tsval(A, B, 2.0) == 3000
    assert slow.tsval(A, B, 2.0) == 1000


@pytest.mark.parametrize(
    "kwargs",
    [{"hz": 0}, {"skew": 0.0}, {"offset_mode": "random"}, {"frozen_at": 2**32}, {"secret": b""}],
)
def test_bad_arguments_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        TimestampClock(**kwargs)  # type: ignore[arg-type]


def test_cached_offsets_are_the_keyed_hash() -> None:
    # the per-pair cache returns what blake2s(local + remote, key=secret) gives, first time and later
    clock = TimestampClock(secret=b"s" * 16)
    for _ in range(2):
        for x, y in ((A, B), (B, A), (A, C)):
            data = ipaddress.ip_address(x).packed + ipaddress.ip_address(y).packed
            want = int.from_bytes(hashlib.blake2s(data, key=b"s" * 16, digest_size=4).digest(), "big")
            assert clock.offset(x, y) == want


@settings(max_examples=200)
@given(
    st.floats(0.0, 1e7),
    st.sampled_from([1, 100, 250, 1000]),
    st.sampled_from([1.0, 1.01, 0.99, 3.0]),
    st.sampled_from(["per-pair", "zero", "fixed"]),
)
def test_a_connection_stamps_what_the_clock_gives(now: float, hz: int, skew: float, mode: OffsetMode) -> None:
    # Connection.tsval_at works the clock's ticks out inline: the same TSval as TimestampClock.tsval
    clock = TimestampClock(hz, offset_mode=mode, fixed_offset=12345, skew=skew, seed=3)
    host = Host(["198.18.0.1"], ts_clock=clock, seed=1)
    conn = host.connect("198.18.0.2", 80, 0.0)
    assert conn.tsval_at(now) == clock.tsval("198.18.0.1", "198.18.0.2", now)
