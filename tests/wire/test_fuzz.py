"""Wire fuzzing (issue 7, must-show 1): arbitrary bytes and mutated valid packets only ever give a parsed
packet or WireError, from parse_ipv4, parse_tcp and the construct reference parser, whatever the buffer
type. Mutations keep (or repair) the checksums so they reach the deep checks: option walking, data offset,
total length, fragment bits. The atheris harness tools/fuzz_wire.py runs the same checks (loop mode here).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.wire.strategies import any_options, fix_checksums, packets, segments
from utcp.wire import (
    IPv4Packet,
    TcpFlags,
    TcpSegment,
    WireError,
    build_ipv4,
    build_tcp,
    parse_ipv4,
    parse_ipv4_reference,
    parse_tcp,
)

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = int(os.environ.get("UTCP_FUZZ_EXAMPLES", "200"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def parse_all(data: bytes) -> list[object]:
    """Every parser on every buffer type; any exception but WireError escapes and fails the test."""
    results: list[object] = []
    for buf in (data, bytearray(data), memoryview(data)):
        for verify in (True, False):
            for parse in (parse_ipv4, parse_ipv4_reference):
                try:
                    results.append(parse(buf, verify_checksums=verify))
                except WireError as exc:
                    assert str(exc), "a WireError must say what is wrong"
                    results.append(type(exc))
    for verify in (True, False):
        try:
            seg = parse_tcp(data, "198.18.0.2", "198.18.0.1", verify_checksum=verify)
            assert isinstance(seg, TcpSegment)
        except WireError:
            pass
    return results


def check(data: bytes) -> None:
    results = parse_all(data)
    for r in results:
        assert isinstance(r, IPv4Packet) or (isinstance(r, type) and issubclass(r, WireError)), r
    # the fast parser and the reference agree on the outcome for each checksum mode
    for i in range(0, len(results), 2):
        fast, ref = results[i], results[i + 1]
        assert type(fast) is type(ref) or fast == ref


Mutation = tuple[str, int, int]
mutations = st.lists(
    st.tuples(
        st.sampled_from(["flip", "set", "insert", "delete", "truncate", "extend"]),
        st.integers(0, 200),
        st.integers(0, 255),
    ),
    min_size=1,
    max_size=6,
)


def mutate(data: bytes, ops: list[Mutation]) -> bytes:
    buf = bytearray(data)
    for op, pos, value in ops:
        at = pos % (len(buf) + 1)
        if op == "flip" and buf:
            buf[at % len(buf)] ^= 1 << (value % 8)
        elif op == "set" and buf:
            buf[at % len(buf)] = value
        elif op == "insert":
            buf[at:at] = bytes([value])
        elif op == "delete" and buf:
            del buf[at % len(buf)]
        elif op == "truncate":
            del buf[at:]
        elif op == "extend":
            buf += bytes([value]) * (value % 17)
    return bytes(buf)


@FUZZ
@given(st.binary(max_size=200))
def test_arbitrary_bytes_parse_or_raise_wire_error(data: bytes) -> None:
    check(data)


@FUZZ
@given(packets(), mutations, st.booleans())
def test_mutated_valid_packets_parse_or_raise_wire_error(
    packet: IPv4Packet, ops: list[Mutation], repair: bool
) -> None:
    raw = mutate(build_ipv4(packet), ops)
    check(fix_checksums(raw) if repair else raw)


@FUZZ
@given(segments(any_options), mutations)
def test_mutated_option_areas_parse_or_raise_wire_error(seg: TcpSegment, ops: list[Mutation]) -> None:
    """Option bytes are where parsers go wrong: mutate only inside the TCP header's option area."""
    try:
        raw = build_ipv4(IPv4Packet("198.18.0.2", "198.18.0.1", seg))
    except WireError:
        return  # the builder refuses this option list (over 40 bytes, ...)
    data_offset = (raw[32] >> 4) * 4
    area = raw[40 : 20 + data_offset]
    mutated = mutate(area, ops)[: len(area)].ljust(len(area), b"\x01")
    check(fix_checksums(raw[:40] + mutated + raw[20 + data_offset :]))


@FUZZ
@given(segments(any_options), mutations)
def test_mutated_bare_segments_parse_tcp_or_raise_wire_error(seg: TcpSegment, ops: list[Mutation]) -> None:
    try:
        raw = build_tcp(seg, "198.18.0.2", "198.18.0.1")
    except WireError:
        return
    data = mutate(raw, ops)
    for verify in (True, False):
        with contextlib.suppress(WireError):
            parse_tcp(data, "198.18.0.2", "198.18.0.1", verify_checksum=verify)


def test_a_parse_failure_is_a_wire_error_not_a_crash() -> None:
    """The checks above can fail: a truncated header, a bad data offset and an option running past the
    header are each rejected with WireError, never IndexError/struct.error."""
    raw = build_ipv4(IPv4Packet("198.18.0.2", "198.18.0.1", TcpSegment(1, 2, 3, 4, TcpFlags.ACK, 5)))
    bad_offset = bytearray(raw)
    bad_offset[32] = 0xF0  # data offset 60 bytes > segment
    bad_option = bytearray(raw[:20]) + bytearray(raw[20:40]) + bytes([2, 40, 0, 0])
    bad_option[32] = 0x60
    bad_option[2:4] = len(bad_option).to_bytes(2, "big")
    for data in (raw[:19], fix_checksums(bytes(bad_offset)), fix_checksums(bytes(bad_option))):
        for parse in (parse_ipv4, parse_ipv4_reference):
            try:
                parse(data)
            except WireError:
                continue
            raise AssertionError(f"{parse.__name__} accepted {data.hex()}")


def test_atheris_harness_runs_its_corpus_in_loop_mode() -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "fuzz_wire.py"), "--loop", "300", "--seed", "7"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "inputs ok" in proc.stdout


def test_atheris_harness_runs_coverage_guided() -> None:
    """The harness under libFuzzer for real: any exception but WireError from a parser, or any exception
    from the host, is a crash and a non-zero exit."""
    if importlib.util.find_spec("atheris") is None:
        pytest.skip("atheris is not installed (pip install -e '.[test]' installs it)")
    runs = 20_000
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "fuzz_wire.py"), f"-atheris_runs={runs}", "-seed=7"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"Done {runs} in " in proc.stderr, proc.stderr[-3000:]
