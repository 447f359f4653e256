"""The trio runtime for pure middleboxes: a box between two TUN devices, timers on trio's clock.

`BoxRuntime(box, client_side, server_side)` reads packet batches from both devices and hands each packet
(as bytes: the box parses and counts what does not) to `box.process` with its direction: what the
client-side device yields travels TO_SERVER, what the server-side device yields travels TO_CLIENT. Every
`Emit` is encoded and written to the device its direction points at. Box timers fire at
`box.next_deadline()`; new input re-arms the sleep. Optional pcaps record what the box received and what
it forwarded, in order. A box with a `process_bytes` method (FullNat) is driven through it: packets are
rewritten in place with incremental checksums instead of parsed and rebuilt (`bytes_path=False` turns
that off). Packets the box drops as malformed are counted (`malformed_dropped`) and logged at debug on the
logger passed in (the library never configures logging). `status()` is a JSON-ready snapshot: runtime
and box counters, and the box's conntrack entries when it has a table.

`box_between_namespaces(box, ns_client, ns_server)` builds the usual lab: a TUN device in each namespace,
the kernel client's subnet on one, the kernel server's on the other, and a route to the far subnet through
the local device, so kernel peers in two namespaces talk through the box. The root namespace is untouched.
"""

from __future__ import annotations

import contextlib
import ipaddress
import math
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from types import TracebackType
from typing import IO, Any

import structlog
import trio

from utcp.io.tun import TunDevice
from utcp.lab.netns import Namespace
from utcp.middlebox.base import (
    DROPPED_BAD_CHECKSUM,
    DROPPED_UNPARSEABLE,
    Direction,
    Emit,
    FlowTuple,
    Middlebox,
    RawEmit,
)
from utcp.middlebox.conntrack import ConnEntry, format_entry
from utcp.middlebox.fullnat import FullNatConn
from utcp.middlebox.snat import SnatMapping
from utcp.middlebox.toa import ToaMapping
from utcp.wire.codec import build_ipv4
from utcp.wire.errors import WireError
from utcp.wire.packet import IPv4Packet
from utcp.wire.pcap import PcapWriter

__all__ = ["TX_BACKLOG_LIMIT", "BoxRuntime", "box_between_namespaces", "conntrack_entry_status"]

TX_BACKLOG_LIMIT = 10_000  # packets held per device while it would block; beyond it, tail drop
_TIMER_SPIN_GUARD = 0.001  # a deadline still due after on_timer: retry a bit later, do not spin
_BytesProcess = Callable[[bytes, Direction, float], list[RawEmit]]


class _Port:
    """One side of the box: a device, the direction its input travels, its write backlog."""

    def __init__(self, device: TunDevice, inbound: Direction) -> None:
        self.device = device
        self.inbound = inbound
        self.backlog: list[bytes] = []
        self.lot = trio.lowlevel.ParkingLot()


class BoxRuntime:
    """Drives a `Middlebox` between two TUN devices; an async context manager owning the tasks.

    `stats` counts batches/packets in per side, packets out per direction, malformed packets the box
    dropped, encode errors, box errors, write errors and backlog drops. On exit the devices are closed
    (if `close_devices`) and pcaps flushed. `logger` is a structlog-style logger (default: structlog's
    "utcp.io.box"); `bytes_path` uses the box's `process_bytes` when it has one.
    """

    def __init__(
        self,
        box: Middlebox,
        client_side: TunDevice,
        server_side: TunDevice,
        *,
        pcap: IO[bytes] | None = None,
        pcap_received: IO[bytes] | None = None,
        close_devices: bool = True,
        logger: Any = None,
        bytes_path: bool = True,
    ) -> None:
        self.box = box
        self.client_side = client_side
        self.server_side = server_side
        self.stats: Counter[str] = Counter()
        self._ports = {
            Direction.TO_SERVER: _Port(client_side, Direction.TO_SERVER),
            Direction.TO_CLIENT: _Port(server_side, Direction.TO_CLIENT),
        }
        self._pcap_files = [f for f in (pcap, pcap_received) if f is not None]
        self._pcap_out = PcapWriter(pcap) if pcap is not None else None
        self._pcap_in = PcapWriter(pcap_received) if pcap_received is not None else None
        self._close_devices = close_devices
        self._log = logger if logger is not None else structlog.get_logger("utcp.io.box")
        process_bytes = getattr(box, "process_bytes", None) if bytes_path else None
        self._process_bytes: _BytesProcess | None = process_bytes if callable(process_bytes) else None
        self._wakeup = trio.lowlevel.ParkingLot()
        self._sleep_until = math.inf
        self._wall_offset = 0.0
        self._nursery_cm: contextlib.AbstractAsyncContextManager[trio.Nursery] | None = None
        self._nursery: trio.Nursery | None = None

    # -- lifecycle ----------------------------------------------------------------------------------
    async def __aenter__(self) -> BoxRuntime:
        self._wall_offset = time.time() - trio.current_time()
        self._nursery_cm = trio.open_nursery()
        nursery = await self._nursery_cm.__aenter__()
        self._nursery = nursery
        for port in self._ports.values():
            nursery.start_soon(self._reader_task, port, name=f"box-reader-{port.device.name}")
            nursery.start_soon(self._writer_task, port, name=f"box-writer-{port.device.name}")
        nursery.start_soon(self._timer_task, name="box-timer")
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool | None:
        assert self._nursery is not None and self._nursery_cm is not None
        self._nursery.cancel_scope.cancel()
        try:
            # The tasks were cancelled; the body's own exception (if any) propagates as itself, not
            # wrapped in an ExceptionGroup with the nursery's.
            await self._nursery_cm.__aexit__(None, None, None)
        finally:
            self._close()
        return None

    def _close(self) -> None:
        if self._close_devices:
            self.client_side.close()
            self.server_side.close()
        for f in self._pcap_files:
            with contextlib.suppress(Exception):
                f.flush()

    def wall_time(self, now: float) -> float:
        """Map trio time to wall-clock seconds (pcap timestamps)."""
        return now + self._wall_offset

    def status(self, now: float | None = None) -> dict[str, Any]:
        """A JSON-ready snapshot: devices, runtime counters, box counters, conntrack entries (if any)."""
        if now is None:
            now = trio.current_time()
        status: dict[str, Any] = {
            "box": type(self.box).__name__,
            "devices": {"client": self.client_side.name, "server": self.server_side.name},
            "runtime": dict(sorted(self.stats.items())),
            "stats": dict(sorted(self.box.stats.items())),
        }
        rule_stats = getattr(self.box, "rule_stats", None)
        if isinstance(rule_stats, dict):  # ImpairBox: counters per rule
            status["rules"] = {name: dict(sorted(c.items())) for name, c in rule_stats.items()}
        entries = getattr(self.box, "entries", None)
        if callable(entries):
            listed = [conntrack_entry_status(entry, now) for entry in entries()]
            status["conntrack"] = {"count": len(listed), "entries": listed}
        return status

    # -- tasks --------------------------------------------------------------------------------------
    async def _reader_task(self, port: _Port) -> None:
        side = "client" if port.inbound is Direction.TO_SERVER else "server"
        while True:
            try:
                batch = await port.device.receive_batch()
            except trio.ClosedResourceError:
                return
            now = trio.current_time()
            self.stats[f"batches_in_{side}"] += 1
            self.stats[f"packets_in_{side}"] += len(batch)
            box_stats = self.box.stats
            for data in batch:
                if self._pcap_in is not None:
                    self._pcap_in.write(data, self.wall_time(now))
                # The box counts what it cannot parse; a change in those counters means this one.
                malformed = box_stats[DROPPED_UNPARSEABLE] + box_stats[DROPPED_BAD_CHECKSUM]
                try:
                    if self._process_bytes is not None:
                        emits: list[Emit] | list[RawEmit] = self._process_bytes(data, port.inbound, now)
                    else:
                        emits = self.box.process(data, port.inbound, now)
                except Exception:
                    # The box contract says it counts and drops bad input; if it raises anyway, one
                    # packet is lost, not the box. Counted so tests notice.
                    self.stats["box_errors"] += 1
                    self._log.debug(
                        "box raised", side=side, length=len(data), head=data[:40].hex(), exc_info=True
                    )
                    continue
                if box_stats[DROPPED_UNPARSEABLE] + box_stats[DROPPED_BAD_CHECKSUM] != malformed:
                    self._malformed(data, side)
                self._emit(emits, now)
            self._maybe_wake_timer()

    def _malformed(self, data: bytes, side: str) -> None:
        self.stats["malformed_dropped"] += 1
        self._log.debug("malformed packet dropped", side=side, length=len(data), head=data[:40].hex())

    async def _timer_task(self) -> None:
        while True:
            now = trio.current_time()
            deadline = self.box.next_deadline()
            if deadline is not None and deadline <= now:
                try:
                    emits = self.box.on_timer(now)
                except Exception:
                    self.stats["box_errors"] += 1
                    emits = []
                self._emit(emits, now)
                deadline = self.box.next_deadline()
                if deadline is not None and deadline <= now:
                    self.stats["timer_spins"] += 1
                    deadline = now + _TIMER_SPIN_GUARD
            self._sleep_until = math.inf if deadline is None else deadline
            with trio.move_on_at(self._sleep_until):
                await self._wakeup.park()
            self._sleep_until = -math.inf  # awake: readers need not unpark us

    async def _writer_task(self, port: _Port) -> None:
        # Only has work when the device pushed back (EAGAIN): drains the backlog in order.
        while True:
            while not port.backlog:
                await port.lot.park()
            try:
                await port.device.wait_writable()
            except trio.ClosedResourceError:
                return
            sent = 0
            while sent < len(port.backlog) and self._try_send(port, port.backlog[sent]):
                sent += 1
            del port.backlog[:sent]

    # -- forwarding ---------------------------------------------------------------------------------
    def _maybe_wake_timer(self) -> None:
        deadline = self.box.next_deadline()
        if deadline is not None and deadline < self._sleep_until:
            self._wakeup.unpark_all()

    def _emit(self, emits: list[Emit] | list[RawEmit], now: float) -> None:
        for emit in emits:
            raw = emit.data if isinstance(emit, RawEmit) else self._encode(emit.packet)
            if raw is None:
                continue
            self.stats[f"packets_out_{emit.direction.value}"] += 1
            if self._pcap_out is not None:
                self._pcap_out.write(raw, self.wall_time(now))
            # TO_SERVER leaves through the server-side device, TO_CLIENT through the client-side one.
            self._send(self._ports[emit.direction.reverse], raw)

    def _encode(self, packet: IPv4Packet | bytes) -> bytes | None:
        if isinstance(packet, bytes | bytearray):
            return bytes(packet)
        try:
            return build_ipv4(packet)
        except (WireError, ValueError):
            self.stats["encode_errors"] += 1
            return None

    def _send(self, port: _Port, raw: bytes) -> None:
        if port.device.closed:
            return
        # Keep order: once anything waits in the backlog, everything after it queues too.
        if port.backlog or not self._try_send(port, raw):
            self._queue(port, raw)

    def _try_send(self, port: _Port, raw: bytes) -> bool:
        """True when written or given up on (counted); False only when the device would block."""
        try:
            return port.device.try_send(raw)
        except trio.ClosedResourceError:
            return True
        except OSError:
            # e.g. EINVAL for a packet the kernel refuses: drop it, keep forwarding.
            self.stats["write_errors"] += 1
            return True

    def _queue(self, port: _Port, raw: bytes) -> None:
        if len(port.backlog) >= TX_BACKLOG_LIMIT:
            self.stats["tx_backlog_dropped"] += 1
            return
        port.backlog.append(raw)
        port.lot.unpark_all()


def _endpoint(address: tuple[str, int]) -> str:
    return f"{address[0]}:{address[1]}"


def _flow(flow: FlowTuple) -> dict[str, Any]:
    return {"src": flow.src, "sport": flow.sport, "dst": flow.dst, "dport": flow.dport}


def conntrack_entry_status(entry: ConnEntry[Any], now: float) -> dict[str, Any]:
    """One conntrack entry as JSON-ready data, with the `conntrack -L` line it prints as."""
    data: dict[str, Any] = {
        "state": entry.state.value,
        "timeout": max(0, int(entry.deadline - now)),
        "original": _flow(entry.original),
        "reply": _flow(entry.reply),
        "seen_reply": entry.seen_reply,
        "assured": entry.assured,
        "packets": {direction.value: count for direction, count in entry.packets.items()},
        "line": format_entry(entry, now),
    }
    ext = entry.ext
    if isinstance(ext, FullNatConn):
        data["nat"] = {
            "vip": _endpoint((ext.service.vip, ext.service.vport)),
            "client": _endpoint(ext.client),
            "real_server": _endpoint((ext.real_server.address, ext.real_server.port)),
            "local": _endpoint(ext.local),
        }
    elif isinstance(ext, SnatMapping):
        data["nat"] = {"inside": _endpoint(ext.inside), "outside": _endpoint(ext.outside)}
    elif isinstance(ext, ToaMapping):
        data["nat"] = {"client": _endpoint(ext.client), "lvs": _endpoint(ext.lvs)}
    return data


def _add_route(ns: Namespace, network: ipaddress.IPv4Network, device: str) -> None:
    ns.add_route(str(network), device=device)


@contextlib.asynccontextmanager
async def box_between_namespaces(
    box: Middlebox,
    ns_client: Namespace,
    ns_server: Namespace,
    client_addr: str = "198.18.1.1/24",
    server_addr: str = "198.18.2.1/24",
    *,
    mtu: int = 1500,
    pcap: IO[bytes] | None = None,
    pcap_received: IO[bytes] | None = None,
    logger: Any = None,
    bytes_path: bool = True,
    client_name: str = "boxc%d",
    server_name: str = "boxs%d",
) -> AsyncIterator[BoxRuntime]:
    """A TUN device in each namespace, a route to the far subnet through it, and the box between them.

    `client_addr` is the kernel client's address on its device (in `ns_client`), `server_addr` the kernel
    server's (in `ns_server`). Point-to-point TUN devices need no ARP. Devices vanish when this exits.
    `logger` and `bytes_path` go to `BoxRuntime`; `client_name`/`server_name` name the devices (%d: the
    kernel picks a number).
    """
    client_if = ipaddress.IPv4Interface(client_addr)
    server_if = ipaddress.IPv4Interface(server_addr)
    if client_if.network.overlaps(server_if.network):
        raise ValueError(f"{client_addr} and {server_addr} must be on different subnets")
    client_dev = TunDevice.open(address=client_addr, netns=ns_client.name, name=client_name, mtu=mtu)
    try:
        server_dev = TunDevice.open(address=server_addr, netns=ns_server.name, name=server_name, mtu=mtu)
    except BaseException:
        client_dev.close()
        raise
    try:
        _add_route(ns_client, server_if.network, client_dev.name)
        _add_route(ns_server, client_if.network, server_dev.name)
    except BaseException:
        client_dev.close()
        server_dev.close()
        raise
    async with BoxRuntime(
        box,
        client_dev,
        server_dev,
        pcap=pcap,
        pcap_received=pcap_received,
        logger=logger,
        bytes_path=bytes_path,
    ) as rt:
        yield rt
