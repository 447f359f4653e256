"""The C word sum (utcp.wire._checksum) gives every checksum the pure-Python form gives.

`word_sum` only promises a value congruent to the RFC 1071 word sum modulo 0xFFFF that is zero
exactly for all-zero bytes; these tests hold both implementations to that, and hold the codec and
the receive fast path to the same bytes and verdicts with either one.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.wire.strategies import packets
from utcp.wire import IPv4Packet, WireError, build_ipv4, checksum, parse_ipv4
from utcp.wire.fastpath import plain_segment

_MOD = 0xFFFF

try:
    from utcp.wire import _checksum
except ImportError:  # pragma: no cover - the accelerator is optional
    _checksum = None  # type: ignore[assignment]

needs_accelerator = pytest.mark.skipif(_checksum is None, reason="utcp.wire._checksum not built")

# bytes with long runs of 0x00 and 0xFF: where carries and the +0/-0 representation matter
data_bytes = st.one_of(
    st.binary(max_size=300),
    st.lists(st.sampled_from([b"\x00", b"\xff", b"\x00\x00", b"\xff\xff", b"\x01"]), max_size=200).map(
        b"".join
    ),
)


def _reference(data: bytes) -> int:
    """The word sum written out the long way (RFC 1071 4.1 without folding)."""
    if len(data) & 1:
        data += b"\x00"
    return sum(int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2))


def _same_sum(value: int, reference: int) -> None:
    assert value >= 0
    assert value % _MOD == reference % _MOD
    assert (value == 0) == (reference == 0)


@settings(max_examples=500)
@given(data_bytes, st.integers(0, 310), st.integers(0, 310))
def test_the_python_form_is_the_word_sum(data: bytes, start: int, end: int) -> None:
    _same_sum(checksum._word_sum_python(data, start, end), _reference(data[start:end]))


@needs_accelerator
@settings(max_examples=2000)
@given(data_bytes, st.integers(0, 310), st.integers(0, 310), st.sampled_from([bytes, bytearray, memoryview]))
def test_the_c_form_is_the_word_sum(data: bytes, start: int, end: int, kind: type) -> None:
    value = _checksum.word_sum(kind(data), start, end)
    assert value <= 0xFFFF
    _same_sum(value, _reference(data[start:end]))


@needs_accelerator
def test_the_c_form_takes_defaults_and_rejects_bad_arguments() -> None:
    assert _checksum.word_sum(b"\x12\x34\x56") == 0x1234 + 0x5600
    assert _checksum.word_sum(b"\x12\x34\x56", 1) == 0x3456
    with pytest.raises(ValueError, match="negative"):
        _checksum.word_sum(b"ab", -1, 2)
    with pytest.raises(TypeError):
        _checksum.word_sum("text")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        _checksum.word_sum()  # type: ignore[call-arg]


@needs_accelerator
@settings(max_examples=300)
@given(packets(), st.integers(0, 1500), st.integers(0, 255))
def test_the_codec_and_fast_path_agree_with_either_form(packet: IPv4Packet, where: int, xor: int) -> None:
    with_c = build_ipv4(packet)
    raw = bytearray(with_c)
    raw[where % len(raw)] ^= xor  # sometimes a bad checksum, sometimes not
    corrupted = bytes(raw)
    results_c = (_outcome(corrupted), plain_segment(corrupted))
    saved = getattr(checksum, "_word_sum")  # noqa: B009 (not exported, on purpose)
    setattr(checksum, "_word_sum", checksum._word_sum_python)  # noqa: B010
    try:
        assert build_ipv4(packet) == with_c
        assert (_outcome(corrupted), plain_segment(corrupted)) == results_c
    finally:
        setattr(checksum, "_word_sum", saved)  # noqa: B010


def _outcome(raw: bytes) -> IPv4Packet | str:
    try:
        return parse_ipv4(raw)
    except WireError as exc:
        return f"{type(exc).__name__}: {exc}"


def test_the_environment_switch_selects_the_pure_python_form() -> None:
    # UTCP_PURE_PYTHON_CHECKSUM=1 is how tools/bench measures the fallback: it must really be taken
    probe = (
        "from utcp.wire import checksum, build_ipv4, parse_ipv4, IPv4Packet, TcpSegment, TcpFlags;"
        "raw = build_ipv4(IPv4Packet('198.18.0.1', '198.18.0.2', TcpSegment(1, 2, 3, 4, TcpFlags.ACK, 5,"
        " payload=b'xyz')));"
        "parse_ipv4(raw);"
        "print(checksum.ACCELERATED, checksum._word_sum is checksum._word_sum_python, raw.hex())"
    )
    runs = {}
    for switch in ("1", ""):
        env = dict(os.environ, UTCP_PURE_PYTHON_CHECKSUM=switch)
        out = subprocess.run(
            [sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True
        ).stdout.split()
        runs[switch] = out
    assert runs["1"][:2] == ["False", "True"]
    assert runs[""][:2] == [str(_checksum is not None), str(_checksum is None)]
    assert runs["1"][2] == runs[""][2]  # the same bytes either way
