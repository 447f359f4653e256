"""Sequence arithmetic (RFC 9293 3.4) and the buffer structures under the engine."""

from __future__ import annotations

import tracemalloc

from hypothesis import given, settings
from hypothesis import strategies as st

from utcp.tcp.recvbuf import ReadBuffer, Reassembly
from utcp.tcp.sack import Scoreboard
from utcp.tcp.sendbuf import SendBuffer
from utcp.tcp.seq import in_window, seq_add, seq_diff, seq_ge, seq_gt, seq_le, seq_lt

U32 = st.integers(0, 2**32 - 1)


def test_comparisons_wrap_around_2_to_the_32() -> None:
    assert seq_lt(0xFFFFFFF0, 0x10)
    assert seq_gt(0x10, 0xFFFFFFF0)
    assert seq_le(5, 5) and seq_ge(5, 5)
    assert seq_add(0xFFFFFFFF, 2) == 1
    assert seq_diff(1, 0xFFFFFFFF) == 2
    assert in_window(0x5, 0xFFFFFFF0, 0x20)
    assert not in_window(0x10, 0xFFFFFFF0, 0x20)
    assert not in_window(7, 7, 0)


@settings(max_examples=200)
@given(U32, st.integers(-(2**31), 2**31 - 1))
def test_diff_inverts_add(a: int, n: int) -> None:
    assert seq_diff(seq_add(a, n), a) == n


def test_send_buffer_releases_and_peeks_by_offset() -> None:
    b = SendBuffer(1)
    b.append(b"hello world")
    assert b.peek(7, 5) == b"world"
    assert b.release(7) == 6
    assert (b.start, b.end, len(b)) == (7, 12, 5)
    assert b.peek(7, 100) == b"world"


def test_read_buffer_reads_in_order() -> None:
    r = ReadBuffer()
    r.append(b"abc")
    r.append(b"def")
    assert r.read(4) == b"abcd"
    assert r.read(10) == b"ef"
    assert len(r) == 0


@settings(max_examples=300)
@given(
    st.lists(
        st.one_of(
            st.tuples(
                st.just("append"),
                st.binary(max_size=50) | st.binary(min_size=500, max_size=700),  # tail-shared and own chunks
                st.sampled_from(["bytes", "bytearray", "view"]),
            ),
            st.tuples(st.just("read"), st.integers(1, 1500), st.just("")),
        ),
        max_size=60,
    )
)
def test_read_buffer_gives_back_exactly_what_was_appended(steps: list[tuple[str, object, str]]) -> None:
    r = ReadBuffer()
    expected = bytearray()
    for op, arg, kind in steps:
        if op == "append":
            assert isinstance(arg, bytes)
            if kind == "bytearray":
                data = bytearray(arg)
                r.append(data)
                data[:] = b"x" * len(data)  # the buffer kept its own copy
            else:
                r.append(memoryview(arg) if kind == "view" else arg)
            expected += arg
        else:
            assert isinstance(arg, int)
            assert r.read(arg) == bytes(expected[:arg])
            del expected[:arg]
        assert len(r) == len(expected)
    assert r.read(1 << 20) == bytes(expected)
    assert len(r) == 0


def test_read_buffer_tiny_appends_cost_about_their_bytes() -> None:
    # a peer sending one byte per segment must not pin an object per byte (see ReadBuffer.append)
    r = ReadBuffer()
    payload = memoryview(bytes(range(256)) * 4).toreadonly()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(100_000):
            r.append(payload[i % 1024 : i % 1024 + 1])
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(r) == 100_000
    assert held < 400_000, held  # ~100 KB of data; an object per byte would be ~20 MB
    assert r.read(1 << 20) == bytes(payload[i % 1024] for i in range(100_000))


def test_read_buffer_reads_byte_by_byte_across_hundreds_of_chunks() -> None:
    r = ReadBuffer()
    data = bytes(range(200)) * 2
    for i in range(0, len(data), 2):
        r.append(data[i : i + 2])
    assert b"".join(r.read(1) for _ in range(301)) == data[:301]  # past the chunk-list compaction
    r.append(b"tail")
    assert r.read(1000) == data[301:] + b"tail"


@settings(max_examples=100)
@given(st.lists(st.tuples(st.integers(0, 200), st.integers(1, 60)), max_size=30))
def test_reassembly_never_duplicates_or_loses_bytes(pieces: list[tuple[int, int]]) -> None:
    data = bytes(i % 251 for i in range(300))
    ra = Reassembly()
    for start, n in pieces:
        ra.insert(start + 1, data[start : start + n])
    held = ra.size
    out = b"".join(ra.pop_ready(1))
    assert data.startswith(out)  # in order, no byte twice
    assert ra.size == held - len(out) >= 0
    covered: set[int] = set()
    for start, n in pieces:
        covered.update(range(start, min(start + n, 300)))
    assert held == len(covered)  # every distinct byte stored exactly once


def test_scoreboard_merges_and_finds_holes() -> None:
    sb = Scoreboard()
    sb.add(10, 20)
    sb.add(30, 40)
    assert sb.add(20, 30) == 10  # fills the gap: one range
    assert sb.ranges() == [(10, 40)]
    assert sb.next_hole(0, 50) == (0, 10)
    assert sb.next_hole(15, 50) == (40, 50)
    assert sb.unsacked_between(0, 50) == 20
    assert sb.lost_boundary(5) == 35
    sb.advance(25)
    assert (sb.ranges(), sb.sacked) == ([(25, 40)], 15)


@settings(max_examples=200)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 200), st.integers(-5, 40)), max_size=30))
def test_scoreboard_sacked_counts_its_ranges(ops: list[tuple[bool, int, int]]) -> None:
    # the fast paths test `sacked` for "anything SACKed" (Scoreboard.__bool__ without the call): it
    # must be the bytes the ranges cover, so 0 exactly when there is none
    sb = Scoreboard()
    for add, start, n in ops:
        if add:
            sb.add(start, start + n)
        else:
            sb.advance(start)
        assert sb.sacked == sum(e - s for s, e in sb.ranges())
        assert (sb.sacked > 0) == bool(sb)


@settings(max_examples=100)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 70_000)), max_size=30))
def test_send_buffer_end_is_start_plus_what_is_queued(ops: list[tuple[bool, int]]) -> None:
    # `end` is kept, not worked out: it must stay start + queued bytes through appends, releases and
    # compactions (a release of 64 KiB or more compacts the array)
    b = SendBuffer(1)
    for append, n in ops:
        if append:
            b.append(bytes(n))
        else:
            b.release(b.start + n)
        assert b.end == b.start + len(b) == b.start + len(b._buf) - b._head
