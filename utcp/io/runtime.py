"""The trio task that drives a sans-IO `Host` over a link (a TUN device or an in-memory link).

Per docs/engine-api.md the runtime only ever calls `receive`, `packets_to_send` (or its encoded twin
`datagrams_to_send`), `next_deadline`, `on_timer` and `events` (plus what the user API asks of
connections). It:
  - reads packet batches from the link and feeds `host.receive(bytes, now)` with `now = trio.current_time()`;
  - after every batch, timer and API call, drains `host.datagrams_to_send(now)` (with `wire_output`;
    `packets_to_send` on a GSO link) and writes them;
  - sleeps until the host's next deadline or new input; a user-API call (`kick()`) pumps at once, in
    the caller's task, so a connection's handshake and close cost no extra task switch;
  - hands events to the streams/listeners waiting on them and logs them with structlog, bound to the
    connection's 4-tuple (the library never configures structlog);
  - optionally writes a pcap of what the host receives and sends, and applies an in-process
    impairment (loss, reordering, duplication, delay) to either direction.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import logging
import math
import os
import time
from collections import Counter
from collections.abc import Callable
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any, Protocol, cast

import structlog
import trio

from utcp.io.gso import coalesce_wire
from utcp.tcp.events import (
    Closed,
    Connected,
    DataReceived,
    EofReceived,
    Event,
    Reset,
    SegmentDropped,
    SendSpace,
)
from utcp.tcp.state import TcpState
from utcp.wire import codec
from utcp.wire.packet import IPv4Packet
from utcp.wire.pcap import PcapWriter

if TYPE_CHECKING:
    from utcp.tcp.connection import Connection
    from utcp.tcp.host import Host, Listener

TX_BACKLOG_LIMIT = 10_000  # packets held while the link would block; beyond it, tail drop
LINGER = 2.0  # seconds __aexit__ lets orphaned connections finish their FIN exchange
# States in which a connection still has something to exchange with its peer (not TIME_WAIT/CLOSED).
_ACTIVE_STATES = frozenset(
    {
        TcpState.SYN_SENT,
        TcpState.SYN_RECEIVED,
        TcpState.ESTABLISHED,
        TcpState.FIN_WAIT_1,
        TcpState.FIN_WAIT_2,
        TcpState.CLOSE_WAIT,
        TcpState.CLOSING,
        TcpState.LAST_ACK,
    }
)


class Link(Protocol):
    """What the runtime needs from a device: batches in, packets out without blocking."""

    mtu: int

    async def receive_batch(self) -> list[bytes]: ...

    def try_send(self, data: bytes) -> bool: ...

    async def wait_writable(self) -> None: ...

    def close(self) -> None: ...


class PacketImpairment(Protocol):
    """utcp.sim.impair.RandomImpairment's shape: a packet in, (delivery time, packet) pairs out."""

    def apply(self, packet: Any, now: float, /) -> list[tuple[float, Any]]: ...


class PacketSink(Protocol):
    def write(self, data: bytes, timestamp: float) -> None: ...


def four_tuple(conn: Connection) -> dict[str, str]:
    (laddr, lport), (raddr, rport) = conn.local, conn.remote
    return {"local": f"{laddr}:{lport}", "remote": f"{raddr}:{rport}"}


class ConnectionWatch:
    """What the runtime knows about a connection someone is waiting on, plus who waits.

    The waiters are a plain list (a stream has at most a sender, a receiver and an aclose at once):
    a trio ParkingLot per connection costs more to build, to park in and to empty than the
    handshake's option parsing."""

    __slots__ = ("_waiters", "closed", "conn", "connected", "log", "reset_reason")

    def __init__(self, conn: Connection, log: Any = None) -> None:
        self.conn = conn
        self._waiters: list[trio.lowlevel.Task] = []
        self.connected = conn.state not in (TcpState.SYN_SENT, TcpState.SYN_RECEIVED, TcpState.CLOSED)
        self.reset_reason: str | None = None
        self.closed = False
        # The logger bound to the 4-tuple, made on the first event a logger would emit (binding costs
        # as much as a handshake's option parsing: not worth paying when info is filtered out).
        self.log = log

    async def wait(self) -> None:
        """Block until `wake()` (a cancel point: a cancelled waiter leaves the list)."""
        task = trio.lowlevel.current_task()
        waiters = self._waiters
        waiters.append(task)

        def abort(_: Any) -> trio.lowlevel.Abort:
            waiters.remove(task)
            return trio.lowlevel.Abort.SUCCEEDED

        await trio.lowlevel.wait_task_rescheduled(abort)

    def wake(self) -> None:
        """Reschedule every task blocked in `wait()`."""
        waiters = self._waiters
        if waiters:
            self._waiters = []
            reschedule = trio.lowlevel.reschedule
            for task in waiters:
                reschedule(task)


class HostRuntime:
    """Drives a `Host` on a link; an async context manager that owns the driving tasks.

    `tap(direction, raw, now)`, if given, sees every packet the host receives ("in") or sends ("out").
    `async with HostRuntime(host, link) as rt:` then use `utcp.io.open_tcp_stream(rt, ...)` and
    `utcp.io.open_tcp_listeners(rt, ...)`. On exit, orphaned connections get `linger` seconds to finish
    their close, the rest are aborted (RST), the link is closed (if `close_link`) and the pcap flushed.
    """

    # Slots: with more than 30 attributes an instance dict stops sharing its keys (CPython 3.11) and
    # every attribute access in the pump gets slower.
    __slots__ = (
        "_batches_in",
        "_bytes_in",
        "_bytes_out",
        "_close_link",
        "_delayed_in",
        "_delayed_out",
        "_driver_scope",
        "_gso",
        "_impair_in",
        "_impair_out",
        "_lazy_log",
        "_listener_lots",
        "_log",
        "_now",
        "_nursery",
        "_packets_in",
        "_packets_out",
        "_pcap",
        "_pcap_file",
        "_pcap_spec",
        "_pumping",
        "_receive_batch",
        "_running",
        "_send_many",
        "_sleep_until",
        "_stack",
        "_stats",
        "_tiebreak",
        "_tx_backlog",
        "_tx_lot",
        "_wakeup",
        "_wall_offset",
        "_watches",
        "_wire_output",
        "host",
        "linger",
        "link",
        "tap",
    )

    def __init__(
        self,
        host: Host,
        link: Link,
        *,
        pcap: str | os.PathLike[str] | IO[bytes] | None = None,
        impair_inbound: PacketImpairment | None = None,
        impair_outbound: PacketImpairment | None = None,
        close_link: bool = True,
        linger: float = LINGER,
        logger: Any = None,
        tap: Callable[[str, bytes, float], None] | None = None,
    ) -> None:
        self.host = host
        # We feed every packet of a read batch before draining packets_to_send(), so the host can
        # answer a batch with one cumulative ACK (and one burst of data) instead of one per segment.
        host.ack_per_batch = True
        self.tap = tap
        self.link = link
        self.linger = linger
        self._stats: Counter[str] = Counter()
        # The counters bumped per batch, as ints (a Counter item costs ~5x as much to bump, several
        # times per connection); the `stats` property folds them in.
        self._batches_in = self._packets_in = self._bytes_in = 0
        self._packets_out = self._bytes_out = 0
        self._pcap_spec = pcap
        self._pcap: PacketSink | None = None
        self._pcap_file: IO[bytes] | None = None
        self._impair_in = impair_inbound
        self._impair_out = impair_outbound
        self._close_link = close_link
        self._log = logger if logger is not None else structlog.get_logger("utcp.io")
        self._lazy_log = logger is None  # structlog's lazy proxy: resolved when the runtime starts
        self._watches: dict[int, ConnectionWatch] = {}
        self._listener_lots: dict[int, trio.lowlevel.ParkingLot] = {}
        self._wakeup = trio.lowlevel.ParkingLot()
        self._sleep_until = math.inf
        self._driver_scope: trio.CancelScope | None = None  # the driver's sleep, while it sleeps
        self._pumping = False
        self._delayed_in: list[tuple[float, int, Any]] = []
        self._delayed_out: list[tuple[float, int, Any]] = []
        self._tiebreak = itertools.count()
        self._tx_backlog: list[bytes | tuple[bytes, int, int]] = []
        self._tx_lot = trio.lowlevel.ParkingLot()
        self._wall_offset = 0.0
        self._stack: contextlib.AsyncExitStack | None = None
        self._running = False
        self._wire_output = False
        self._gso = False
        self._receive_batch: Callable[[list[bytes], float], None] | None = None
        self._send_many: Callable[[list[bytes]], int] | None = None
        self._now: Callable[[], float] = trio.current_time  # the run's clock, bound in __aenter__

    # -- lifecycle ----------------------------------------------------------------------------------
    async def __aenter__(self) -> HostRuntime:
        # trio.current_time() is three calls deep; the clock's own method is one (asked ~6 times per
        # short connection)
        self._now = trio.lowlevel.current_clock().current_time
        self._wall_offset = time.time() - self._now()
        self._resolve_logger()
        # Plain segments come out of the host already encoded (Host.wire_output, drained with
        # datagrams_to_send); a GSO link coalesces them as bytes (utcp.io.gso.coalesce_wire).
        self._gso = bool(getattr(self.link, "gso", False))
        self._wire_output = hasattr(self.host, "datagrams_to_send")
        if self._wire_output:
            self.host.wire_output = True
        # a Host takes a read's batch in one call (runs of data segments: Host.receive_batch)
        self._receive_batch = getattr(self.host, "receive_batch", None)
        # a link takes a pump's packets in one call (TunDevice.try_send_many: the write thread's queue)
        self._send_many = getattr(self.link, "try_send_many", None)
        stack = contextlib.AsyncExitStack()
        await stack.__aenter__()
        try:
            stack.callback(self._close_resources)
            self._open_pcap()
            nursery = await stack.enter_async_context(trio.open_nursery())
            self._nursery = nursery
            nursery.start_soon(self._reader_task, name=f"utcp-reader-{id(self):x}")
            nursery.start_soon(self._driver_task, name=f"utcp-driver-{id(self):x}")
            nursery.start_soon(self._writer_task, name=f"utcp-writer-{id(self):x}")
        except BaseException:
            await stack.__aexit__(None, None, None)
            raise
        self._stack = stack
        self._running = True
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool | None:
        stack, self._stack = self._stack, None
        assert stack is not None
        try:
            if exc is None:
                await self._linger()
        except BaseException as linger_exc:
            self._shutdown()
            if await self._close_stack(stack, linger_exc):
                return None
            raise
        self._shutdown()
        return await self._close_stack(stack, exc)

    @staticmethod
    async def _close_stack(stack: contextlib.AsyncExitStack, exc: BaseException | None) -> bool:
        """Unwind the nursery; the body's own exception comes out as itself, not in an ExceptionGroup."""
        try:
            return bool(
                await stack.__aexit__(type(exc) if exc else None, exc, exc.__traceback__ if exc else None)
            )
        except BaseExceptionGroup as group:
            if exc is not None and len(group.exceptions) == 1 and group.exceptions[0] is exc:
                return False  # re-raised by the `async with` statement unchanged
            raise

    def _shutdown(self) -> None:
        self._abort_all()
        self._running = False
        self._nursery.cancel_scope.cancel()

    async def _linger(self) -> None:
        # Give orphaned connections a moment to deliver queued data and finish the FIN exchange.
        with trio.move_on_after(self.linger):
            while any(c.state in _ACTIVE_STATES for c in self.host.connections()):
                self.kick()
                await trio.sleep(0.01)

    def _abort_all(self) -> None:
        for conn in self.host.connections():
            if conn.state in _ACTIVE_STATES:
                with contextlib.suppress(Exception):
                    conn.abort()
        with contextlib.suppress(Exception):
            self._pump(trio.current_time())

    def _open_pcap(self) -> None:
        spec = self._pcap_spec
        if spec is None:
            return
        if isinstance(spec, str | os.PathLike):
            self._pcap_file = open(spec, "wb")  # noqa: SIM115 (closed in _close_resources)
            self._pcap = PcapWriter(self._pcap_file)
        else:
            self._pcap = PcapWriter(spec)

    def _close_resources(self) -> None:
        try:
            if self._close_link:
                self.link.close()
        finally:
            if self._pcap_file is not None:
                self._pcap_file.close()
                self._pcap_file = None
            elif self._pcap_spec is not None and hasattr(self._pcap_spec, "flush"):
                self._pcap_spec.flush()

    def _resolve_logger(self) -> None:
        # structlog.get_logger() is a lazy proxy that rebuilds a logger on every bind() and method call;
        # resolving it once when the runtime starts (as cache_logger_on_first_use does) makes the
        # per-connection "would info be emitted?" check cheap. Configure structlog before starting.
        if self._lazy_log:
            self._log = self._log.bind()
            self._lazy_log = False

    def _logs_info(self) -> bool:
        """Whether connection events (info) would be emitted; loggers without the query always log."""
        check = getattr(self._log, "is_enabled_for", None)
        if check is None:
            return True
        try:
            return bool(check(logging.INFO))
        except Exception:  # a logger with its own idea of that method: log, as before
            return True

    # -- what the user API uses ---------------------------------------------------------------------
    def kick(self) -> None:
        """Something changed (an API call): drain packets, dispatch events and re-arm the timers now.

        Runs the pump in the caller's task (no wakeup of the driver task, whose sleep only moves
        earlier when a deadline did). Before the runtime runs, or from inside the pump, it only wakes
        the driver."""
        if not self._running or self._pumping:
            self._wakeup.unpark_all()
            return
        self._maybe_wake_driver(self._pump(self._now()))

    def watch(self, conn: Connection) -> ConnectionWatch:
        """Start routing `conn`'s events to the tasks its stream waits in."""
        key = id(conn)
        watch = self._watches.get(key)
        if watch is None:
            watch = ConnectionWatch(conn)
            self._watches[key] = watch
        return watch

    def listener_lot(self, listener: Listener) -> trio.lowlevel.ParkingLot:
        return self._listener_lots.setdefault(id(listener), trio.lowlevel.ParkingLot())

    def forget_listener(self, listener: Listener) -> None:
        lot = self._listener_lots.pop(id(listener), None)
        if lot is not None:
            lot.unpark_all()

    def wall_time(self, now: float) -> float:
        """Map trio time to wall-clock seconds (pcap timestamps, printed lines)."""
        return now + self._wall_offset

    @property
    def stats(self) -> Counter[str]:
        """The runtime's counters (batches, packets and bytes in and out, errors, drops): a live Counter,
        brought up to date by each read of this property."""
        stats = self._stats
        counts = {
            "batches_in": self._batches_in,
            "packets_in": self._packets_in,
            "bytes_in": self._bytes_in,
            "packets_out": self._packets_out,
            "bytes_out": self._bytes_out,
        }
        stats.update({name: count for name, count in counts.items() if count})  # absent while 0, as before
        # packets a TUN device's write thread could not write (utcp.io.tun): the device's own count
        write_errors = getattr(self.link, "write_errors", 0)
        if write_errors:
            stats["link_write_errors"] = write_errors
        self._batches_in = self._packets_in = self._bytes_in = 0
        self._packets_out = self._bytes_out = 0
        return stats

    @property
    def running(self) -> bool:
        return self._running

    # -- tasks --------------------------------------------------------------------------------------
    async def _reader_task(self) -> None:
        link = self.link
        while True:
            try:
                batch = await link.receive_batch()
            except (trio.ClosedResourceError, trio.EndOfChannel):
                return
            now = self._now()
            self._batches_in += 1
            self._packets_in += len(batch)
            self._bytes_in += sum(map(len, batch))
            impair = self._impair_in
            if impair is None and self._pcap is None and self.tap is None:
                self._deliver_batch(batch, now)
            else:
                for data in batch:
                    if impair is None:
                        self._deliver(data, now)
                    else:
                        self._schedule(self._delayed_in, impair.apply(data, now), now, self._deliver)
            self._maybe_wake_driver(self._pump(now))

    async def _driver_task(self) -> None:
        while True:
            now = self._now()
            wake_at = self._pump(now)
            if wake_at is not None and wake_at <= now:
                # A deadline that is already due after on_timer ran: do not spin (engine bug guard).
                self._stats["timer_spins"] += 1
                wake_at = now + 0.001
            self._sleep_until = math.inf if wake_at is None else wake_at
            # Others move this scope's deadline earlier (_maybe_wake_driver) instead of waking us.
            with trio.CancelScope(deadline=self._sleep_until) as scope:
                self._driver_scope = scope
                await self._wakeup.park()
            self._driver_scope = None
            self._sleep_until = -math.inf

    async def _writer_task(self) -> None:
        # Only runs when the link pushed back (EAGAIN): drains the backlog in order.
        while True:
            while not self._tx_backlog:
                await self._tx_lot.park()
            try:
                await self.link.wait_writable()
            except trio.ClosedResourceError:
                return
            backlog = self._tx_backlog
            sent = 0
            while sent < len(backlog) and self._try_write(backlog[sent]):
                sent += 1
            del backlog[:sent]

    # -- the pump -----------------------------------------------------------------------------------
    def _maybe_wake_driver(self, wake_at: float | None) -> None:
        """After a pump outside the driver: move the driver's sleep earlier if `wake_at` is earlier."""
        if wake_at is not None and wake_at < self._sleep_until:
            scope = self._driver_scope
            if scope is None:
                self._wakeup.unpark_all()
            else:
                # Re-arm the sleeping driver: cheaper than waking it to compute what we know here.
                scope.deadline = wake_at
                self._sleep_until = wake_at

    def _pump(self, now: float) -> float | None:
        """Deliver due delayed input, fire due timers, send what is ready, dispatch events; returns when
        the next pump is due (the host's next deadline or a delayed packet's), None: not before input."""
        self._pumping = True
        try:
            host = self.host
            delayed_in = self._delayed_in
            while delayed_in and delayed_in[0][0] <= now:
                self._deliver(heapq.heappop(delayed_in)[2], now)
            deadline = host.next_deadline()
            if deadline is not None and deadline <= now:
                host.on_timer(now)
            packets: list[IPv4Packet] | list[bytes]
            packets = host.datagrams_to_send(now) if self._wire_output else host.packets_to_send(now)
            if packets:
                self._transmit(packets, now)
            delayed_out = self._delayed_out
            while delayed_out and delayed_out[0][0] <= now:
                self._link_send(heapq.heappop(delayed_out)[2])
            events = host.events()
            if events:
                self._dispatch(events)
            wake = host.next_deadline()
            if delayed_in or delayed_out:  # impairment delay queues (impair_inbound/outbound)
                for queue in (delayed_in, delayed_out):
                    if queue and (wake is None or queue[0][0] < wake):
                        wake = queue[0][0]
            return wake
        finally:
            self._pumping = False

    def _deliver_batch(self, batch: list[bytes], now: float) -> None:
        # The common case without pcap, tap or impairment: no per-packet checks beyond the engine's.
        receive_batch = self._receive_batch
        if receive_batch is not None:
            try:
                receive_batch(batch, now)
            except Exception:
                # An engine bug (bad input is counted and dropped by the engine): what was left of the
                # batch is lost, as packets on a wire are; TCP resends them. The host lives on.
                self._stats["receive_errors"] += 1
                self._log.exception("engine raised on a batch", packets=len(batch))
            return
        receive = self.host.receive
        for raw in batch:
            try:
                receive(raw, now)
            except Exception:
                self._stats["receive_errors"] += 1
                self._log.exception("engine raised on receive", packet=raw[:64].hex())

    def _deliver(self, data: Any, now: float) -> None:
        raw = data if isinstance(data, bytes | bytearray) else codec.build_ipv4(data)
        raw = bytes(raw)
        if self._pcap is not None:
            self._pcap.write(raw, self.wall_time(now))
        if self.tap is not None:
            self.tap("in", raw, now)
        try:
            self.host.receive(raw, now)
        except Exception:
            # The engine must count and drop bad input itself; if it raises, one packet is lost, not
            # the whole host. Counted so tests notice.
            self._stats["receive_errors"] += 1
            self._log.exception("engine raised on receive", packet=raw[:64].hex())

    def _transmit(self, packets: list[IPv4Packet] | list[bytes], now: float) -> None:
        build = codec.build_ipv4
        pcap = self._pcap
        impair = self._impair_out
        if pcap is None and self.tap is None and impair is None:
            # nothing looks at single packets: count them once, write them in one call (wire output:
            # datagrams_to_send gave bytes already)
            raws = (
                cast("list[bytes]", packets)
                if self._wire_output
                else [build(p) if isinstance(p, IPv4Packet) else p for p in packets]
            )
            if self._gso:
                self._transmit_gso(raws)
                return
            self._packets_out += len(raws)
            self._bytes_out += sum(map(len, raws))
            self._link_send_many(raws)
            return
        for pkt in packets:
            raw = build(pkt) if isinstance(pkt, IPv4Packet) else pkt
            self._packets_out += 1
            self._bytes_out += len(raw)
            if pcap is not None:
                pcap.write(raw, self.wall_time(now))
            if self.tap is not None:
                self.tap("out", raw, now)
            if impair is None:
                self._link_send(raw)
            else:
                self._schedule(self._delayed_out, impair.apply(raw, now), now, self._link_send_at)

    def _transmit_gso(self, raws: list[bytes]) -> None:
        # TUN with IFF_VNET_HDR: runs of segments go out as one write (utcp.io.gso); captures and
        # impairments see single packets, so they take the plain path instead.
        for raw, gso_size in coalesce_wire(raws):
            self._packets_out += 1
            self._bytes_out += len(raw)
            if not gso_size:
                self._link_send(raw)
                continue
            self._stats["gso_out"] += 1
            self._link_send((raw, 20 + (raw[32] >> 4) * 4, gso_size))  # IPv4 (no options) + TCP header

    def _link_send_at(self, raw: Any, now: float) -> None:
        self._link_send(raw)

    def _schedule(
        self, heap: list[tuple[float, int, Any]], plan: list[tuple[float, Any]], now: float, act: Any
    ) -> None:
        if not plan:
            self._stats["impair_dropped"] += 1
        for at, pkt in plan:
            if at <= now:
                act(pkt, now)
            else:
                heapq.heappush(heap, (at, next(self._tiebreak), pkt))

    def _link_send(self, item: Any) -> None:
        """Write a packet (bytes, or a value to build) or a GSO super-segment (raw, header_len,
        gso_size); behind a backlog, or when the link pushes back, it queues in order."""
        if not isinstance(item, bytes | tuple):
            item = bytes(item) if isinstance(item, bytearray) else codec.build_ipv4(item)
        if self.link_closed():
            return
        if self._tx_backlog:
            self._queue_backlog(item)
            return
        try:
            ok = self._try_write(item)
        except trio.ClosedResourceError:
            return
        if not ok:
            self._queue_backlog(item)

    def _link_send_many(self, raws: list[bytes]) -> None:
        """`_link_send` for a run of encoded packets, with its checks made once for the run."""
        if self.link_closed():
            return
        sent = 0
        if not self._tx_backlog:
            send_many = self._send_many
            try:
                if send_many is not None:
                    sent = send_many(raws)
                else:
                    try_send = self.link.try_send
                    for raw in raws:
                        if not try_send(raw):
                            break
                        sent += 1
            except trio.ClosedResourceError:
                return
        for raw in raws[sent:]:
            self._queue_backlog(raw)  # behind a backlog, or the link pushed back: in order

    def _try_write(self, item: bytes | tuple[bytes, int, int]) -> bool:
        if isinstance(item, tuple):  # only queued on a link with `gso` (see _transmit)
            return bool(self.link.try_send_gso(*item))  # type: ignore[attr-defined]
        return self.link.try_send(item)

    def link_closed(self) -> bool:
        return bool(getattr(self.link, "closed", False))

    def _queue_backlog(self, raw: bytes | tuple[bytes, int, int]) -> None:
        if len(self._tx_backlog) >= TX_BACKLOG_LIMIT:
            self._stats["tx_backlog_dropped"] += 1
            return
        self._tx_backlog.append(raw)
        self._tx_lot.unpark_all()

    def _dispatch(self, events: list[Event]) -> None:
        watches = self._watches
        logs_info: bool | None = None  # asked once per call, on the first event that would log
        for event in events:
            if isinstance(event, DataReceived) or isinstance(event, SendSpace):  # noqa: SIM101 (faster)
                watch = watches.get(id(event.connection))
                if watch is not None:
                    watch.wake()
                continue
            if isinstance(event, SegmentDropped):
                self._log.debug(
                    "segment dropped", reason=event.reason, counter=event.counter, summary=event.summary
                )
                continue
            conn = event.connection
            watch = watches.get(id(conn))
            if logs_info is None:
                logs_info = self._logs_info()
            # None when info is filtered out: no call per event into a logger that drops it
            log: Any = self._conn_log(conn, watch) if logs_info else None
            if isinstance(event, Connected):
                if log is not None:
                    log.info("connected", passive=event.listener is not None)
                listener = event.listener if event.listener is not None else conn.listener
                if listener is not None:
                    lot = self._listener_lots.get(id(listener))
                    if lot:
                        lot.unpark_all()
                if watch is not None:
                    watch.connected = True
            elif isinstance(event, EofReceived):
                if log is not None:
                    log.info("eof received")
            elif isinstance(event, Reset):
                if log is not None:
                    log.info("reset", reason=event.reason)
                if watch is not None:
                    watch.reset_reason = event.reason
            elif isinstance(event, Closed):
                if log is not None:
                    log.info("closed")
                if watch is not None:
                    watch.closed = True
                    del watches[id(conn)]
            if watch is not None:
                watch.wake()

    def _conn_log(self, conn: Connection, watch: ConnectionWatch | None) -> Any:
        """The logger bound to `conn`'s 4-tuple (kept on its watch: bound once per connection)."""
        if watch is None:
            return self._log.bind(**four_tuple(conn))
        if watch.log is None:
            watch.log = self._log.bind(**four_tuple(conn))
        return watch.log
