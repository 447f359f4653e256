"""Internet checksum (RFC 1071), the TCP pseudo-header (RFC 9293 section 3.1) and the
incremental update of RFC 1624 that NAT boxes use to rewrite fields without a full pass.

The sum is computed with one big integer: the bytes read big-endian form an integer whose
value modulo 0xFFFF equals the one's-complement sum of its 16-bit words, because
2**16 == 1 (mod 0xFFFF). CPython does both the conversion and the single-digit modulo in C,
so 1480 bytes take a few microseconds instead of a Python loop over 740 words.

Representation of zero: a one's-complement sum of words that are not all zero is never
+0 (0x0000) but -0 (0xFFFF), so `_fold` maps a zero residue of a non-zero total to 0xFFFF.
This is what the classic carry-folding loop (and Linux csum_fold) computes, so a checksum
computed here is 0x0000..0xFFFE for any data with a non-zero word, and 0xFFFF only for
all-zero data.

`word_sum` is the one entry for hot paths: the optional C accelerator `utcp.wire._checksum` (built
from `_checksum.c` when a compiler is there, ~30x faster on 1500 bytes) or the big-integer form.
Both return a value congruent to the word sum modulo 0xFFFF that is zero only for all-zero data, so
every checksum built or verified is the same either way (tests/wire/test_checksum_accel.py).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable

from utcp.wire.packet import IPPROTO_TCP

Buffer = bytes | bytearray | memoryview

_MOD = 0xFFFF


def _fold(total: int) -> int:
    """One's-complement sum (0..0xFFFF) of the 16-bit words whose plain sum is congruent to `total`.

    `total` is a non-negative integer built from non-negative terms; it is zero exactly when
    every term (every word) was zero, and only then is the result +0.
    """
    residue = total % _MOD
    if residue == 0 and total:
        return _MOD
    return residue


def checksum_of(total: int) -> int:
    """The checksum field for data whose word sum is congruent to `total` (RFC 1071: the complement of
    the one's-complement sum): for builders that sum their words themselves."""
    residue = total % _MOD
    return 0 if residue == 0 and total else _MOD - residue  # _MOD - _fold(total), inlined


def _words_value(data: Buffer) -> int:
    """An integer congruent (mod 0xFFFF) to the sum of `data`'s 16-bit words; odd length pads a zero."""
    value = int.from_bytes(data, "big")
    if len(data) & 1:
        value <<= 8
    return value


def _word_sum_python(data: Buffer, start: int = 0, end: int | None = None) -> int:
    """`_words_value(data[start:end])` without the C accelerator (non-negative indices)."""
    return _words_value(data[start:end])


def _load_accelerator() -> Callable[[Buffer, int, int], int]:
    if os.environ.get("UTCP_PURE_PYTHON_CHECKSUM"):  # to measure or test the fallback on purpose
        return _word_sum_python
    try:
        from utcp.wire._checksum import word_sum  # noqa: PLC0415 (optional)
    except ImportError:  # not built (no compiler at install time): same values, slower
        return _word_sum_python
    return word_sum


# Looked up at each call (tests swap it for the Python form).
_word_sum = _load_accelerator()

ACCELERATED = _word_sum is not _word_sum_python


def word_sum(data: Buffer, start: int = 0, end: int | None = None) -> int:
    """A value congruent (mod 0xFFFF) to the sum of the 16-bit words of data[start:end] (odd length
    pads a zero), zero only when those bytes are all zero; `start`, `end` >= 0 as in a slice."""
    return _word_sum(data, start, len(data) if end is None else end)


def internet_checksum(data: Buffer) -> int:
    """RFC 1071 checksum of `data`: the one's complement of the one's-complement word sum.

    Over bytes that include a correct checksum field the result is 0.
    """
    return _MOD - _fold(_word_sum(data, 0, len(data)))


def _address_bytes(address: str | bytes) -> bytes:
    if isinstance(address, bytes):
        if len(address) != 4:
            raise ValueError(f"IPv4 address must be 4 bytes, got {len(address)}")
        return address
    return socket.inet_pton(socket.AF_INET, address)


def pseudo_header_value(src4: bytes, dst4: bytes, length: int, protocol: int = IPPROTO_TCP) -> int:
    """Word-sum value of the IPv4 pseudo-header (src, dst, zero, protocol, length; RFC 9293 3.1)."""
    return int.from_bytes(src4 + dst4, "big") + protocol + length


def tcp_checksum(src: str | bytes, dst: str | bytes, segment: Buffer) -> int:
    """TCP checksum of `segment` (header with its checksum field, options, payload) under the
    pseudo-header for `src` -> `dst` (dotted quads or 4 raw bytes).

    With the checksum field zeroed this is the value to store; over a received segment it is 0
    when the stored checksum verifies.
    """
    length = len(segment)
    total = pseudo_header_value(_address_bytes(src), _address_bytes(dst), length) + _word_sum(
        segment, 0, length
    )
    return _MOD - _fold(total)


def tcp_segment_verifies(data: bytes, start: int, end: int, addresses: bytes) -> bool:
    """The TCP checksum of data[start:end] verifies under the pseudo-header of `addresses` (the 8 bytes
    source + destination of its IPv4 header): the hot-path form of `tcp_checksum(...) == 0`, with no
    slices of the segment (RFC 9293 3.1; Linux tcp_v4_checksum_init)."""
    seglen = end - start
    value = _word_sum(data, start, end)
    return (value + int.from_bytes(addresses, "big") + IPPROTO_TCP + seglen) % _MOD == 0


def ipv4_tcp_verifies(data: Buffer, n: int) -> bool:
    """Both checksums of data[:n], an IPv4 packet with a 20-byte header carrying a TCP segment, verify
    (Linux ip_fast_csum, then tcp_v4_checksum_init). The pseudo-header's addresses are bytes 12..19 of
    the IPv4 header, right before the segment, so one sum over data[12:n] covers them and the segment;
    a version-4 header never sums to zero, so its residue 0 means -0: it verifies."""
    ws = _word_sum
    # `not residue`, not `residue == 0`: a comparison that feeds no jump is a generic one on Python 3.11
    return not ws(data, 0, 20) % _MOD and not (ws(data, 12, n) + IPPROTO_TCP + n - 20) % _MOD


def _check_range(name: str, value: int, bits: int) -> None:
    if not 0 <= value < (1 << bits):
        raise ValueError(f"{name} {value} does not fit in {bits} bits")


def checksum_update16(old_checksum: int, old_word: int, new_word: int) -> int:
    """RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m') after one 16-bit word changes from m to m'.

    Eqn. 3 (unlike eqn. 2 of RFC 1141) gives the same +0/-0 as a full recomputation.
    """
    _check_range("old_checksum", old_checksum, 16)
    _check_range("old_word", old_word, 16)
    _check_range("new_word", new_word, 16)
    return _MOD - _fold((old_checksum ^ _MOD) + (old_word ^ _MOD) + new_word)


def checksum_update32(old_checksum: int, old_value: int, new_value: int) -> int:
    """RFC 1624 eqn. 3 for a 32-bit field at an even offset (IPv4 address, sequence number)."""
    _check_range("old_checksum", old_checksum, 16)
    _check_range("old_value", old_value, 32)
    _check_range("new_value", new_value, 32)
    return _MOD - _fold((old_checksum ^ _MOD) + (old_value ^ 0xFFFFFFFF) + new_value)


def checksum_update_bytes(old_checksum: int, old: Buffer, new: Buffer, *, offset: int = 0) -> int:
    """RFC 1624 eqn. 3 for a byte range rewritten in place: `old` becomes `new` (same length)
    at `offset` within the checksummed data (only its parity matters: a range that starts at
    an odd offset contributes the low byte of its first word).
    """
    _check_range("old_checksum", old_checksum, 16)
    if len(old) != len(new):
        raise ValueError(f"replacement changes length: {len(old)} -> {len(new)} bytes")
    if offset < 0:
        raise ValueError(f"offset {offset} < 0")
    if not old:
        return old_checksum
    # Pad both ranges to whole words as they sit in the data: a leading zero byte when the
    # range starts mid-word (that does not change the integer) and a trailing one when it ends
    # mid-word. Complementing every word of `old` is XOR with all ones over the padded width.
    width = len(old) + (offset & 1)
    old_value = int.from_bytes(old, "big")
    new_value = int.from_bytes(new, "big")
    if width & 1:
        old_value <<= 8
        new_value <<= 8
        width += 1
    all_ones = (1 << (8 * width)) - 1
    return _MOD - _fold((old_checksum ^ _MOD) + (old_value ^ all_ones) + new_value)
