"""The C helper utcp.io._tunio, on AF_UNIX SOCK_SEQPACKET sockets, which keep each write one message as
a TUN device keeps it one packet. Its write thread (TunWriter): packets leave in order and whole, a full
queue refuses and says when it has room, a failed write is counted and lost, close() writes what is
queued first, a fork's child cannot use its parent's, a thread that naps is never woken by a push and
does not nap on the pusher's CPU. Its read loop (read_batch): what TunDevice's Python loop reads, held
equal to it by a hypothesis test."""

from __future__ import annotations

import contextlib
import errno
import os
import random
import select
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.io.cpus import on_cpu, two_cpus
from utcp.io import tun as tun_module
from utcp.io.tun import TunDevice

tunio = pytest.importorskip("utcp.io._tunio", reason="the optional C helper is not built")
TunWriter = tunio.TunWriter


def messages(sock: socket.socket, count: int) -> list[bytes]:
    return [sock.recv(70000) for _ in range(count)]


def readable(fd: int, timeout: float) -> bool:
    return bool(select.select([fd], [], [], timeout)[0])


def test_packets_leave_in_order_and_whole() -> None:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    rng = random.Random(7)
    sent: list[bytes] = []
    writer = TunWriter(ours.fileno(), 1 << 30)
    try:
        for i in range(3000):
            data = rng.randbytes(rng.randrange(1, 1500))
            if i % 3 == 0:
                head = bytes([i % 256]) * 10
                assert writer.push_pair(head, memoryview(data))  # a vnet header and its packet
                sent.append(head + data)
            else:
                assert writer.push(bytearray(data) if i % 2 else data)
                sent.append(data)
            if i % 100 == 99:
                assert messages(theirs, 100) == sent[i - 99 : i + 1]
    finally:
        theirs.close()  # a write still blocked then fails: close() cannot hang
        writer.close()
    assert writer.written == 3000 and writer.errors == 0 and writer.queued == 0
    ours.close()


def test_close_writes_what_is_queued_first() -> None:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    got: list[bytes] = []
    theirs.settimeout(10)  # should the writer stop, the reader ends (and the test fails)
    reader = threading.Thread(target=lambda: got.extend(messages(theirs, 200)))
    reader.start()  # more than the socket buffers: close() waits for the writes, which wait for it
    writer = TunWriter(ours.fileno(), 1 << 30)
    for i in range(200):
        assert writer.push(i.to_bytes(2, "big") * 1000)
    writer.close()
    assert writer.closed and writer.written == 200
    reader.join()
    assert got == [i.to_bytes(2, "big") * 1000 for i in range(200)]
    writer.close()  # again: nothing
    with pytest.raises(ValueError, match="closed"):
        writer.push(b"late")
    with pytest.raises(ValueError, match="closed"):
        writer.push_pair(b"", b"late")
    ours.close()
    theirs.close()


def test_the_thread_writes_to_a_duplicate_of_the_fd() -> None:
    # Closing the caller's fd first (a device closed before its writer) leaves the writer's own
    # duplicate: queued packets still reach the same socket, and nothing else can get them.
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    writer = TunWriter(ours.fileno(), 1 << 20)
    ours.close()
    assert writer.push(b"after the caller closed")
    writer.close()
    assert messages(theirs, 1) == [b"after the caller closed"] and writer.errors == 0
    theirs.setblocking(False)
    assert theirs.recv(100) == b""  # the duplicate is closed too: the peer sees the end
    theirs.close()


def test_a_full_queue_refuses_then_signals_room() -> None:
    # A full pipe blocks the thread in write(2) with its first packet taken; pushes then fill the queue
    # to its limit and push() refuses, with no room signalled. Once the reader drains, the thread takes
    # the queue and makes space_fd readable; nothing was lost or reordered.
    r, w, prefill = full_pipe()
    writer = TunWriter(w, 20_000)
    sent = [(0).to_bytes(4, "big") * 250]
    try:
        assert writer.push(sent[0])
        wait_until(lambda: writer.queued == 0)  # taken: the thread now waits in write(2)
        while writer.push(packet := len(sent).to_bytes(4, "big") * 250):
            sent.append(packet)
            assert len(sent) < 10_000, "the queue never refused"
        assert writer.queued >= 20_000
        assert not readable(writer.space_fd, 0.05)  # still full: no room signalled
        expected = b"p" * prefill + b"".join(sent)
        assert read_exactly(r, len(expected)) == expected  # the reader drains
        assert readable(writer.space_fd, 5)
        assert os.read(writer.space_fd, 8) == (1).to_bytes(8, "little")
        assert writer.push(packet)
        assert read_exactly(r, len(packet)) == packet
    finally:
        os.close(r)  # a thread still blocked in write(2) gets EPIPE and ends: close() cannot hang
        writer.close()
        os.close(w)
    assert writer.errors == 0


def full_pipe() -> tuple[int, int, int]:
    """A pipe filled up (read end, blocking write end, bytes in it): a write into it waits for a read."""
    r, w = os.pipe()
    prefill = 0
    with contextlib.suppress(BlockingIOError):
        os.set_blocking(w, False)
        while True:
            prefill += os.write(w, b"p" * 4096)
    os.set_blocking(w, True)
    return r, w, prefill


def test_push_many_takes_a_run_until_the_queue_refuses() -> None:
    r, w, prefill = full_pipe()
    writer = TunWriter(w, 20_000)
    packets = [i.to_bytes(4, "big") * 250 for i in range(100)]  # 1,000 bytes each
    try:
        assert writer.push_many(packets[:1]) == 1
        wait_until(lambda: writer.queued == 0)  # taken: the thread now waits in write(2)
        assert writer.push_many(packets[1:]) == 20  # 20,000 bytes queued: the 21st is refused
        assert writer.push_many(packets[21:]) == 0
        assert read_exactly(r, prefill + 21_000) == b"p" * prefill + b"".join(packets[:21])
        assert readable(writer.space_fd, 5)
        head = b"vnet"  # each packet after the head, as push_pair does
        assert writer.push_many(packets[21:40], head) == 19  # 19,076 bytes: within the limit
        assert read_exactly(r, 19 * 1004) == b"".join(head + p for p in packets[21:40])
        with pytest.raises(TypeError):
            writer.push_many([b"ok", 42])  # not a buffer: raised, after queueing what came before it
        assert read_exactly(r, 2) == b"ok"
    finally:
        os.close(r)
        writer.close()
        os.close(w)
    assert writer.errors == 0


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.001)


def read_exactly(fd: int, n: int) -> bytes:
    chunks = []
    while n > 0:
        assert readable(fd, 5), "the writer stopped writing"
        chunk = os.read(fd, n)
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def test_a_failed_write_is_counted_and_the_packet_lost() -> None:
    r, w = os.pipe()
    writer = TunWriter(r, 1 << 20)  # the read end: every write(2) fails with EBADF
    try:
        assert writer.push(b"lost") and writer.push_pair(b"h", b"lost too")
    finally:
        writer.close()
    assert (writer.written, writer.errors, writer.last_errno) == (0, 2, errno.EBADF)
    os.close(r)
    os.close(w)


@pytest.mark.parametrize(("fd", "limit"), [(-1, 100), (0, 0)])
def test_bad_arguments_are_refused(fd: int, limit: int) -> None:
    with pytest.raises(ValueError, match="fd >= 0 and limit > 0"):
        TunWriter(fd, limit)


@pytest.mark.parametrize(
    ("nap_us", "nap_window_us"), [(-1, 1000), (1_000_000, 1000), (50, -1), (50, 10**9 + 1)]
)
def test_bad_naps_are_refused(nap_us: int, nap_window_us: int) -> None:
    with pytest.raises(ValueError, match="nap_us"):
        TunWriter(0, 100, nap_us, nap_window_us)


def test_a_napping_thread_is_never_woken() -> None:
    # The thread on one CPU, the pushes from another: having written within its window (here longer
    # than any test), the thread naps and looks again, so a push never finds it asleep and none pays for
    # a wake-up; every packet still leaves in order.
    writer_cpu, pusher_cpu = two_cpus()
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with on_cpu(writer_cpu):
        writer = TunWriter(ours.fileno(), 1 << 20, 50, 10**9)
    try:
        with on_cpu(pusher_cpu):
            assert writer.push(b"first")  # may wake the thread from its first sleep
            assert messages(theirs, 1) == [b"first"]
            woken = writer.wakeups
            for i in range(100):
                assert writer.push(i.to_bytes(2, "big"))
                assert messages(theirs, 1) == [i.to_bytes(2, "big")]
        assert writer.wakeups == woken <= 1
        assert writer.naps > 0
    finally:
        theirs.close()
        writer.close()  # the napping thread still sees close() and ends
    assert writer.written == 101 and writer.errors == 0
    ours.close()


@pytest.mark.parametrize("naps", ["off", "on the pusher's CPU"])
def test_a_sleeping_thread_is_woken_by_a_push(naps: str) -> None:
    # Without naps the thread sleeps after each batch. With naps but on the pusher's CPU (a busy
    # machine) it sleeps too: there a wake-up needs no IPI, and a nap's timer would preempt the pusher.
    pinned = on_cpu(two_cpus()[0]) if naps != "off" else contextlib.nullcontext()
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with pinned:
        writer = TunWriter(ours.fileno(), 1 << 20, 0 if naps == "off" else 50, 10**9)
        try:
            for i in range(500):  # until a push finds the thread asleep (the first one usually does)
                assert writer.push(i.to_bytes(2, "big"))
                assert messages(theirs, 1) == [i.to_bytes(2, "big")]
                if writer.wakeups:
                    break
                time.sleep(0.01)
            assert writer.wakeups >= 1
            assert writer.naps == 0
        finally:
            theirs.close()
            writer.close()
    ours.close()


def test_the_nap_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("UTCP_TUN_WRITE_NAP_US", raising=False)
    assert tun_module.write_nap_us() == tun_module.WRITE_NAP_US
    monkeypatch.setenv("UTCP_TUN_WRITE_NAP_US", "0")
    assert tun_module.write_nap_us() == 0
    for bad in ("fifty", "-1", "1000000"):
        monkeypatch.setenv("UTCP_TUN_WRITE_NAP_US", bad)
        with pytest.raises(ValueError, match=f"microseconds in 0..999999, not '{bad}'"):
            tun_module.write_nap_us()


def test_a_forks_child_cannot_push_and_closes_without_waiting() -> None:
    # The child has no copy of the thread: a push there would queue packets nobody writes, and a join
    # would wait forever. It refuses the push; close() returns.
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    writer = TunWriter(ours.fileno(), 1 << 20)
    try:
        pid = os.fork()
        if pid == 0:  # the child: report through the exit status only
            status = 1
            try:
                writer.push(b"from the child")
            except RuntimeError as exc:
                status = 0 if "before a fork" in str(exc) else 2
            writer.close()
            own = TunWriter(ours.fileno(), 1 << 20)  # a writer made in the child has its thread
            own.push(b"from the child's own writer")
            own.close()
            os._exit(status)
        _, wait_status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(wait_status) == 0
        assert messages(theirs, 1) == [b"from the child's own writer"]
        assert writer.push(b"from the parent")  # the parent's thread is untouched
        assert messages(theirs, 1) == [b"from the parent"]
    finally:
        theirs.close()
        writer.close()
        ours.close()


# -- read_batch: the C loop behind TunDevice._read_queued ----------------------------------------------
def queued(messages_: list[bytes]) -> tuple[socket.socket, socket.socket]:
    """A non-blocking SOCK_SEQPACKET reader with `messages_` queued, one read(2) each, as on a TUN."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    for message in messages_:
        ours.send(message)
    theirs.setblocking(False)
    return ours, theirs


def test_read_batch_reads_until_eagain_or_the_limit() -> None:
    ipv4 = [bytes([0x45]) + bytes([i]) * 30 for i in range(5)]
    ours, theirs = queued([ipv4[0], b"\x60ipv6", ipv4[1], b"\x00", ipv4[2], ipv4[3], ipv4[4]])
    try:
        assert tunio.read_batch(theirs.fileno(), 4, 0) == (ipv4[:2], 2, True)  # the limit counts reads
        assert tunio.read_batch(theirs.fileno(), 10, 0) == (ipv4[2:], 0, False)  # then EAGAIN
        assert tunio.read_batch(theirs.fileno(), 10, 0) == ([], 0, False)
    finally:
        ours.close()
        theirs.close()


def test_read_batch_strips_the_vnet_header() -> None:
    header = bytes(10)
    ours, theirs = queued([header + b"\x45data", header, header + b"\x60v6", b"short"])
    try:
        assert tunio.read_batch(theirs.fileno(), 10, 10) == ([b"\x45data"], 3, False)
    finally:
        ours.close()
        theirs.close()


def test_read_batch_raises_when_nothing_was_read() -> None:
    r, w = os.pipe()
    os.close(w)
    with pytest.raises(OSError) as caught:
        tunio.read_batch(w, 10, 0)  # closed: EBADF
    assert caught.value.errno == errno.EBADF
    os.close(r)
    for args in [(-1, 10, 0), (r, 10, 65), (r, -1, 0)]:
        with pytest.raises(ValueError, match="read_batch needs"):
            tunio.read_batch(*args)


@given(
    messages_=st.lists(st.binary(min_size=0, max_size=1600), max_size=40),
    max_packets=st.integers(min_value=0, max_value=50),
    gso=st.booleans(),
)
@settings(max_examples=200, deadline=None)
def test_read_batch_equals_the_python_loop(
    messages_: list[bytes], max_packets: int, gso: bool, monkeypatch_module: Any
) -> None:
    # TunDevice._read_queued with the C loop and with its pure-Python fallback: the same packets, the
    # same count of non-IPv4 frames, the same `_maybe_ready`, round after round until both are drained
    results = []
    for c_loop in (True, False):
        ours, theirs = queued([m for m in messages_ if m])  # an empty send is no message
        device = object.__new__(TunDevice)
        device._fd, device.gso, device.closed = theirs.fileno(), gso, False
        device.non_ipv4_dropped, device._maybe_ready = 0, False
        rounds = []
        with monkeypatch_module.context() as patch:
            if not c_loop:
                patch.setattr(tun_module, "read_batch", None)
            for _ in range(4):
                batch = device._read_queued(max_packets)
                rounds.append((batch, device.non_ipv4_dropped, device._maybe_ready))
        ours.close()
        theirs.close()
        results.append(rounds)
    assert results[0] == results[1]


@pytest.fixture(scope="module")
def monkeypatch_module() -> Iterator[pytest.MonkeyPatch]:
    # hypothesis runs many examples in one test call: a function-scoped fixture would be shared anyway
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def thread_signal_masks() -> dict[int, int]:
    masks = {}
    for tid in os.listdir("/proc/self/task"):
        with contextlib.suppress(OSError), open(f"/proc/self/task/{tid}/status") as status:
            for line in status:
                if line.startswith("SigBlk:"):
                    masks[int(tid)] = int(line.split()[1], 16)
    return masks


def test_the_thread_blocks_signals() -> None:
    # A signal the kernel gives the write thread would interrupt its write(2) and never reach
    # Python's handlers: the thread blocks them all (SIGINT, SIGTERM, SIGUSR1 ... are the main thread's).
    before = thread_signal_masks()
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    writer = TunWriter(ours.fileno(), 1 << 20)
    try:
        (mask,) = [m for tid, m in thread_signal_masks().items() if tid not in before]
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1, signal.SIGALRM, signal.SIGCHLD):
            assert mask & (1 << (signum - 1)), signum
        assert not thread_signal_masks()[threading.get_native_id()] & (1 << (signal.SIGINT - 1))
    finally:
        writer.close()
        ours.close()
        theirs.close()
