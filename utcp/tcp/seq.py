"""Modular 32-bit sequence arithmetic (RFC 9293 section 3.4, RFC 1982 serial numbers).

Sequence numbers live in a 2**32 space; "a < b" means b lies less than 2**31 ahead of a. Inside the engine,
connections unwrap sequence numbers into unbounded integers (offsets from the ISN) with `seq_diff`, so most
comparisons there are plain integer comparisons; these helpers are for the edges and for the policy layer.
"""

from __future__ import annotations

__all__ = [
    "SEQ_MASK",
    "in_window",
    "seq_add",
    "seq_diff",
    "seq_ge",
    "seq_gt",
    "seq_le",
    "seq_lt",
    "seq_max",
    "seq_min",
]

SEQ_MASK = 0xFFFFFFFF
_HALF = 0x80000000
_MOD = 0x100000000


def seq_diff(a: int, b: int) -> int:
    """a - b as a signed distance in [-2**31, 2**31): positive when a is after b."""
    return ((a - b + _HALF) & SEQ_MASK) - _HALF


def seq_add(a: int, n: int) -> int:
    """a + n modulo 2**32 (n may be negative)."""
    return (a + n) % _MOD


def seq_lt(a: int, b: int) -> bool:
    """a < b in sequence space (Linux before())."""
    return seq_diff(a, b) < 0


def seq_le(a: int, b: int) -> bool:
    """a <= b in sequence space (Linux !after())."""
    return seq_diff(a, b) <= 0


def seq_gt(a: int, b: int) -> bool:
    """a > b in sequence space (Linux after())."""
    return seq_diff(a, b) > 0


def seq_ge(a: int, b: int) -> bool:
    """a >= b in sequence space (Linux !before())."""
    return seq_diff(a, b) >= 0


def seq_max(a: int, b: int) -> int:
    """The later of two sequence numbers."""
    return a if seq_diff(a, b) >= 0 else b


def seq_min(a: int, b: int) -> int:
    """The earlier of two sequence numbers."""
    return a if seq_diff(a, b) <= 0 else b


def in_window(seq: int, start: int, size: int) -> bool:
    """start <= seq < start + size in sequence space (RFC 9293 3.4 acceptability test); False if size <= 0."""
    if size <= 0:
        return False
    return 0 <= ((seq - start) & SEQ_MASK) < size
