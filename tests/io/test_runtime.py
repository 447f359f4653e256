"""HostRuntime mechanics with a scripted stand-in for Host: input batches are fed with trio time,
output is built and written, timers fire on time, kick() re-arms, impairment and pcap apply."""

from __future__ import annotations

import io
from typing import Any

import pytest
import trio
import trio.testing

from utcp.io.memory import memory_link_pair
from utcp.io.runtime import ConnectionWatch, HostRuntime
from utcp.sim.impair import Impairment, RandomImpairment
from utcp.tcp.host import Host
from utcp.wire.codec import build_ipv4, parse_ipv4
from utcp.wire.packet import IPv4Packet, TcpFlags, TcpSegment
from utcp.wire.pcap import read_pcap


def _packet(seq: int) -> IPv4Packet:
    seg = TcpSegment(src_port=1000, dst_port=2000, seq=seq, ack=0, flags=TcpFlags.ACK, window=100)
    return IPv4Packet(src="198.18.0.2", dst="198.18.0.1", payload=seg)


class ScriptedHost:
    """Answers every received packet with one packet; fires a settable timer."""

    def __init__(self) -> None:
        self.received: list[tuple[bytes, float]] = []
        self.outbox: list[IPv4Packet] = []
        self.deadline: float | None = None
        self.fired: list[float] = []
        self.counters: dict[str, int] = {}

    def receive(self, data: bytes, now: float) -> None:
        self.received.append((data, now))
        self.outbox.append(_packet(len(self.received)))

    def packets_to_send(self, now: float) -> list[IPv4Packet]:
        out, self.outbox = self.outbox, []
        return out

    def next_deadline(self) -> float | None:
        return self.deadline

    def on_timer(self, now: float) -> None:
        self.fired.append(now)
        self.deadline = None
        self.outbox.append(_packet(1000 + len(self.fired)))

    def events(self) -> list[Any]:
        return []

    def connections(self) -> list[Any]:
        return []


async def test_input_is_fed_and_answers_are_written_and_captured() -> None:
    host = ScriptedHost()
    ours, theirs = memory_link_pair()
    capture = io.BytesIO()
    tapped: list[str] = []
    runtime = HostRuntime(host, ours, pcap=capture, tap=lambda d, raw, now: tapped.append(d))  # type: ignore[arg-type]
    async with runtime:
        incoming = build_ipv4(_packet(7))
        theirs.try_send(incoming)
        with trio.fail_after(1):
            (reply,) = await theirs.receive_batch()
    assert host.received[0][0] == incoming
    assert parse_ipv4(reply).tcp.seq == 1
    assert tapped == ["in", "out"]
    capture.seek(0)
    assert [raw for _, raw in read_pcap(capture)] == [incoming, reply]


async def test_timer_fires_at_its_deadline(autojump_clock: trio.testing.MockClock) -> None:
    host = ScriptedHost()
    ours, theirs = memory_link_pair()
    async with HostRuntime(host, ours) as runtime:  # type: ignore[arg-type]
        due = trio.current_time() + 5.0
        host.deadline = due
        runtime.kick()  # the deadline changed outside the runtime's view: re-arm
        with trio.fail_after(10):
            (packet,) = await theirs.receive_batch()
        assert parse_ipv4(packet).tcp.seq == 1001
        assert host.fired == [due]  # autojump: the driver woke exactly at the deadline


async def test_timer_does_not_fire_early(autojump_clock: trio.testing.MockClock) -> None:
    host = ScriptedHost()
    ours, _theirs = memory_link_pair()
    async with HostRuntime(host, ours) as runtime:  # type: ignore[arg-type]
        due = trio.current_time() + 3.0
        host.deadline = due
        runtime.kick()
        await trio.sleep(2.9)
        assert host.fired == []
        await trio.sleep(0.2)
        assert len(host.fired) == 1 and host.fired[0] >= due


async def test_kick_sends_at_once_in_the_callers_task() -> None:
    # An API call's packets leave inside the call (as connect()/send() do on a socket): no wakeup of
    # the driver task, no checkpoint needed.
    host = ScriptedHost()
    ours, theirs = memory_link_pair()
    async with HostRuntime(host, ours) as runtime:  # type: ignore[arg-type]
        host.outbox = [_packet(7)]
        with trio.testing.assert_no_checkpoints():
            runtime.kick()
        assert runtime.stats["packets_out"] == 1
        with trio.fail_after(1):
            (raw,) = await theirs.receive_batch()
        assert parse_ipv4(raw).tcp.seq == 7


async def test_the_links_write_errors_are_in_the_stats() -> None:
    # a TunDevice's write thread counts the packets its write(2) refused; the runtime reports them
    host = ScriptedHost()
    ours, _theirs = memory_link_pair()
    async with HostRuntime(host, ours) as runtime:  # type: ignore[arg-type]
        assert "link_write_errors" not in runtime.stats
        ours.write_errors = 3  # type: ignore[attr-defined]
        assert runtime.stats["link_write_errors"] == 3


async def test_a_kick_that_moves_the_deadline_earlier_re_arms_the_sleeping_driver(
    autojump_clock: trio.testing.MockClock,
) -> None:
    host = ScriptedHost()
    ours, theirs = memory_link_pair()
    async with HostRuntime(host, ours) as runtime:  # type: ignore[arg-type]
        start = trio.current_time()
        host.deadline = start + 10.0
        runtime.kick()
        await trio.sleep(1.0)  # the driver now sleeps until start + 10
        host.deadline = start + 2.0
        runtime.kick()
        with trio.fail_after(5):
            await theirs.receive_batch()
        assert host.fired == [start + 2.0]


async def test_inbound_impairment_delays_reordered_packets(autojump_clock: trio.testing.MockClock) -> None:
    host = ScriptedHost()
    ours, theirs = memory_link_pair()
    impair: RandomImpairment[bytes] = RandomImpairment(Impairment(reorder=1.0, reorder_delay=0.5, seed=1))
    async with HostRuntime(host, ours, impair_inbound=impair):  # type: ignore[arg-type]
        sent_at = trio.current_time()
        theirs.try_send(build_ipv4(_packet(1)))
        await trio.sleep(0.4)
        assert host.received == []
        await trio.sleep(0.2)
        assert len(host.received) == 1
        assert host.received[0][1] - sent_at >= 0.5


async def test_outbound_loss_drops_everything_sent() -> None:
    host = ScriptedHost()
    ours, theirs = memory_link_pair()
    impair: RandomImpairment[bytes] = RandomImpairment(Impairment(loss=1.0, seed=1))
    async with HostRuntime(host, ours, impair_outbound=impair) as runtime:  # type: ignore[arg-type]
        theirs.try_send(build_ipv4(_packet(1)))
        await trio.sleep(0.05)
        assert len(host.received) == 1
        assert runtime.stats["impair_dropped"] == 1
        with trio.move_on_after(0.05) as scope:
            await theirs.receive_batch()
        assert scope.cancelled_caught


async def test_backpressure_from_the_link_keeps_order() -> None:
    host = ScriptedHost()
    ours, theirs = memory_link_pair(capacity=2)
    async with HostRuntime(host, ours) as runtime:  # type: ignore[arg-type]
        host.outbox = [_packet(i) for i in range(10)]
        runtime.kick()
        got: list[int] = []
        with trio.fail_after(1):
            while len(got) < 10:
                got += [parse_ipv4(raw).tcp.seq for raw in await theirs.receive_batch()]
        assert got == list(range(10))


async def test_an_error_in_the_body_comes_out_unwrapped() -> None:
    ours, _theirs = memory_link_pair()
    with pytest.raises(KeyError):
        async with HostRuntime(ScriptedHost(), ours):  # type: ignore[arg-type]
            raise KeyError("from the body")
    assert ours.closed  # the runtime closed its link on the way out


async def test_an_engine_error_on_one_packet_is_counted_not_fatal() -> None:
    class Fragile(ScriptedHost):
        def receive(self, data: bytes, now: float) -> None:
            if data == b"\x45boom":
                raise ValueError("engine bug")
            super().receive(data, now)

    host = Fragile()
    ours, theirs = memory_link_pair()
    async with HostRuntime(host, ours) as runtime:  # type: ignore[arg-type]
        theirs.try_send(b"\x45boom")
        theirs.try_send(build_ipv4(_packet(1)))
        with trio.fail_after(1):
            await theirs.receive_batch()
        assert runtime.stats["receive_errors"] == 1
        assert len(host.received) == 1


async def test_an_engine_error_on_a_batch_is_counted_not_fatal() -> None:
    # A Host takes each read's batch in one receive_batch call: if it raises (an engine bug), the rest
    # of that batch is lost as on a wire, and the next batch is taken as usual.
    class Fragile(Host):
        batches: list[list[bytes]] = []  # noqa: RUF012 (one test's record)

        def receive_batch(self, batch: list[bytes], now: float) -> None:
            self.batches.append(batch)
            if b"\x45boom" in batch:
                raise ValueError("engine bug")
            super().receive_batch(batch, now)

    host = Fragile(addresses=["198.18.0.1"], seed=1)
    ours, theirs = memory_link_pair()
    async with HostRuntime(host, ours) as runtime:
        theirs.try_send(b"\x45boom")
        with trio.fail_after(1):
            while not host.batches:
                await trio.sleep(0.001)
        assert runtime.stats["receive_errors"] == 1
        theirs.try_send(build_ipv4(_packet(1)))  # to a closed port: the host answers with an RST
        with trio.fail_after(1):
            reply = parse_ipv4((await theirs.receive_batch())[0])
        assert reply.tcp.flags & TcpFlags.RST
        assert runtime.stats["receive_errors"] == 1


async def test_connection_watch_wakes_its_waiters_and_forgets_cancelled_ones() -> None:
    host = Host(addresses=["198.18.0.1"], seed=1)
    watch = ConnectionWatch(host.connect("198.18.0.2", 80, 0.0))
    woken: list[str] = []

    async def waiter(name: str) -> None:
        await watch.wait()
        woken.append(name)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(waiter, "a")
        cancelled = trio.CancelScope()

        async def cancelled_waiter() -> None:
            with cancelled:
                await waiter("cancelled")

        nursery.start_soon(cancelled_waiter)
        await trio.testing.wait_all_tasks_blocked()
        cancelled.cancel()
        await trio.testing.wait_all_tasks_blocked()
        watch.wake()
        watch.wake()  # nobody left: nothing to do
    assert woken == ["a"]
    assert cancelled.cancelled_caught
