"""TUN writes through the C helper's thread (utcp.io._tunio), against the kernel: on by default where
it is built, off on request; it naps between writes unless told not to; the kernel answers what the
thread writes, one packet or a run of them, in order; a full queue holds the stack's packets in its
backlog until the thread has room, and a transfer through a tiny queue is byte-exact; closing with a
task waiting for room wakes it; an answer already queued is read without an epoll wait; a packet the
kernel refuses is counted, not raised."""

from __future__ import annotations

import errno
import time

import pytest
import trio
import trio.testing

from tests.io.cpus import on_cpu, two_cpus
from tests.kernel.helpers import KERNEL, CallCount, closed_port_syn
from tests.kernel.transfers import utcp_client_to_kernel_echo
from utcp.io import tun as tun_module
from utcp.io.tun import TunDevice, write_thread_default
from utcp.lab.netns import Namespace
from utcp.wire.codec import parse_ipv4

pytest.importorskip("utcp.io._tunio", reason="the optional C helper is not built")


def wait_for_writes(tun: TunDevice, count: int) -> None:
    """Until the write thread has handled `count` packets (written or refused)."""
    assert tun._writer is not None
    deadline = time.monotonic() + 5
    while tun._writer.written + tun._writer.errors < count:
        assert time.monotonic() < deadline
        time.sleep(0.001)


def test_on_by_default_off_on_request(namespace: Namespace, monkeypatch: pytest.MonkeyPatch) -> None:
    assert write_thread_default()
    with TunDevice.open(address=f"{KERNEL}/24", netns=namespace.name) as tun:
        assert tun.write_thread
    with TunDevice.open(address=f"{KERNEL}/24", netns=namespace.name, write_thread=False) as tun:
        assert not tun.write_thread
    monkeypatch.setenv("UTCP_TUN_WRITE_THREAD", "0")
    assert not write_thread_default()
    with TunDevice.open(address=f"{KERNEL}/24", netns=namespace.name) as tun:
        assert not tun.write_thread
    monkeypatch.setattr(tun_module, "TunWriter", None)
    with pytest.raises(ValueError, match="not built"):
        TunDevice.open(address=f"{KERNEL}/24", netns=namespace.name, write_thread=True)


@pytest.mark.parametrize("nap_us", [None, "0"])
async def test_the_thread_naps_between_the_stacks_writes(
    namespace: Namespace, monkeypatch: pytest.MonkeyPatch, nap_us: str | None
) -> None:
    # By default the thread, on another CPU than the stack's, naps while it has written lately, so that
    # the stack's pushes need not wake it (the window made longer than the test here);
    # UTCP_TUN_WRITE_NAP_US=0 puts it to sleep instead.
    if nap_us is not None:
        monkeypatch.setenv("UTCP_TUN_WRITE_NAP_US", nap_us)
    monkeypatch.setattr(tun_module, "WRITE_NAP_WINDOW_US", 10**9)
    writer_cpu, stack_cpu = two_cpus()
    with on_cpu(writer_cpu):
        tun = TunDevice.open(address=f"{KERNEL}/24", netns=namespace.name)  # its thread stays there
    with tun, on_cpu(stack_cpu):
        writer = tun._writer
        assert writer is not None
        for port in range(40100, 40150):  # each SYN after the kernel's RST for the one before
            assert tun.try_send(closed_port_syn(port))
            with trio.fail_after(5):
                (answer,) = await tun.receive_batch()
            assert parse_ipv4(answer).tcp.dst_port == port
        if nap_us is None:
            assert writer.wakeups <= 1 and writer.naps > 0  # at most the first SYN woke it
        else:
            assert writer.naps == 0 and writer.wakeups >= 1


async def test_the_kernel_answers_what_the_thread_writes(namespace: Namespace) -> None:
    # SYNs to a closed port: the kernel answers each with an RST, in the order written
    with TunDevice.open(address=f"{KERNEL}/24", netns=namespace.name) as tun:
        ports = list(range(40000, 40050))
        for port in ports:
            assert tun.try_send(closed_port_syn(port))
        answered: list[int] = []
        with trio.fail_after(5):
            while len(answered) < len(ports):
                answered += [parse_ipv4(raw).tcp.dst_port for raw in await tun.receive_batch()]
        assert answered == ports
        assert tun.write_errors == 0


@pytest.mark.parametrize("write_thread", [True, False])
async def test_a_run_of_packets_goes_out_in_one_call(namespace: Namespace, write_thread: bool) -> None:
    # try_send_many, what the runtime uses for a pump's packets: one push_many through the thread,
    # try_send after try_send in place; the kernel answers each, in order
    with TunDevice.open(address=f"{KERNEL}/24", netns=namespace.name, write_thread=write_thread) as tun:
        ports = list(range(44000, 44030))
        assert tun.try_send_many([closed_port_syn(port) for port in ports]) == len(ports)
        answered: list[int] = []
        with trio.fail_after(5):
            while len(answered) < len(ports):
                answered += [parse_ipv4(raw).tcp.dst_port for raw in await tun.receive_batch()]
        assert answered == ports
    with pytest.raises(trio.ClosedResourceError):
        tun.try_send_many([closed_port_syn(44100)])


async def test_a_full_queue_refuses_and_wait_writable_says_when_there_is_room(
    namespace: Namespace, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tun_module, "WRITE_QUEUE_LIMIT", 1)  # one packet queued refuses the next
    with TunDevice.open(address=f"{KERNEL}/24", netns=namespace.name) as tun:
        refused = 0
        sent = 0
        with trio.fail_after(10):
            for port in range(41000, 41200):
                while not tun.try_send(closed_port_syn(port)):
                    refused += 1
                    await tun.wait_writable()
                sent += 1
            answered = 0
            while answered < sent:
                answered += len(await tun.receive_batch())
        assert refused > 0 and answered == 200


async def test_close_wakes_a_task_waiting_for_room(
    namespace: Namespace, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tun_module, "WRITE_QUEUE_LIMIT", 1)
    tun = TunDevice.open(address=f"{KERNEL}/24", netns=namespace.name)
    try:
        port = 42000
        while tun.try_send(closed_port_syn(port)):
            port += 1
        async with trio.open_nursery() as nursery:

            async def waiter() -> None:
                # room may come before close does; then the next refused packet waits again
                with pytest.raises(trio.ClosedResourceError):
                    while True:
                        await tun.wait_writable()
                        tun.try_send(closed_port_syn(port))

            nursery.start_soon(waiter)
            await trio.sleep(0.05)
            tun.close()
    finally:
        tun.close()


async def test_a_transfer_through_a_tiny_queue_is_byte_exact(
    namespace: Namespace, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 3,000 bytes of queue: about two packets, so most of the stack's packets wait in its backlog for
    # the thread's room (HostRuntime._writer_task), and nothing is lost or reordered
    monkeypatch.setattr(tun_module, "WRITE_QUEUE_LIMIT", 3000)
    waits = CallCount(monkeypatch, TunDevice, "wait_writable")
    result = await utcp_client_to_kernel_echo(namespace, 4 << 20, timeout=60)
    assert result.received == 4 << 20 and result.sha256_ok
    assert waits.count > 10


async def test_an_answer_already_queued_is_read_without_epoll(
    namespace: Namespace, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Through the thread receive_batch lets the other tasks run once, then reads, and registers with
    # epoll only if nothing came; it is a cancel point and a schedule point either way, and with nothing
    # queued it waits and can be cancelled.
    waits = CallCount(monkeypatch, trio.lowlevel, "wait_readable")
    with TunDevice.open(address=f"{KERNEL}/24", netns=namespace.name) as tun:
        for port in (43000, 43001, 43002):
            assert tun.try_send(closed_port_syn(port))
            wait_for_writes(tun, port - 42999)  # written: the kernel's RST is queued
            with trio.testing.assert_checkpoints(), trio.fail_after(5):
                batch = await tun.receive_batch()
            assert [parse_ipv4(raw).tcp.dst_port for raw in batch] == [port]
        assert waits.count == 0
        with trio.move_on_after(0.05) as scope:
            await tun.receive_batch()
        assert scope.cancelled_caught and waits.count == 1


def test_a_packet_the_kernel_refuses_is_counted_and_the_device_goes_on(namespace: Namespace) -> None:
    # tun_get_user refuses what is not an IP packet (EINVAL), and everything while the device is down
    # (EIO): in place that is an OSError for the caller; through the thread a count, the packet lost
    with TunDevice.open(address=f"{KERNEL}/24", netns=namespace.name) as tun:
        writer = tun._writer
        assert writer is not None
        assert tun.try_send(bytes(20))  # version 0
        wait_for_writes(tun, 1)
        assert (tun.write_errors, writer.last_errno) == (1, errno.EINVAL)
        assert tun.try_send(closed_port_syn(45000))
        wait_for_writes(tun, 2)
        assert tun.write_errors == 1  # the next packet went out
        namespace.ip("link", "set", tun.name, "down")
        assert tun.try_send(closed_port_syn(45001))
        wait_for_writes(tun, 3)
        assert (tun.write_errors, writer.last_errno) == (2, errno.EIO)
    with TunDevice.open(address=f"{KERNEL}/24", netns=namespace.name, write_thread=False) as tun:
        with pytest.raises(OSError) as caught:
            tun.try_send(bytes(20))
        assert caught.value.errno == errno.EINVAL and tun.write_errors == 0
