"""Endpoints that play a role, whatever implements them: kernel sockets in a namespace, or a utcp host.

Both give trio streams and listeners, abort with an RST, list their sockets with `ss`'s state names and
read counters under Linux's nstat names, so a scenario is written once and run with either.
"""

from __future__ import annotations

import dataclasses
import re
import socket
import struct
from dataclasses import dataclass
from typing import Literal, Protocol

import trio

from utcp.io.api import UtcpListener, UtcpStream, open_tcp_stream
from utcp.io.stack import UtcpStack
from utcp.lab.netns import Namespace
from utcp.policy import linux_counter_name
from utcp.tcp.host import Host
from utcp.tcp.ports import LinuxPortAllocator, PortAllocator
from utcp.tcp.state import TcpState as State

__all__ = ["Endpoint", "KernelEndpoint", "SocketOptions", "SocketState", "UtcpEndpoint", "parse_ss"]

IP_LOCAL_PORT_RANGE = 51  # <linux/in.h>, Linux 6.3+; Python's socket module has no name for it

# utcp's RFC 9293 state names -> the names `ss` prints (what a kernel user reads).
_SS_NAMES = {
    State.ESTABLISHED: "ESTAB",
    State.SYN_RECEIVED: "SYN-RECV",
    State.CLOSED: "CLOSE",
}


@dataclass(frozen=True)
class SocketOptions:
    """Knobs of one socket, applied the same way on both implementations where both have them.

    `linger=0` is SO_LINGER {on, 0 s}: close() sends an RST. `local_port_range` is IP_LOCAL_PORT_RANGE on
    the kernel (the scan then steps by 1) and a Linux-like allocator with `step_one` on utcp.
    """

    local_port: int | None = None
    bind_address: str | None = None
    linger: int | None = None
    reuseaddr: bool = False
    nodelay: bool = False
    local_port_range: tuple[int, int] | None = None
    connect_timeout: float | None = None


@dataclass(frozen=True)
class SocketState:
    """One line of `ss -tan`: the state as `ss` names it, local and remote (ip, port)."""

    state: str
    local: tuple[str, int]
    remote: tuple[str, int]


class Endpoint(Protocol):
    impl: Literal["kernel", "utcp"]
    namespace: Namespace
    address: str

    async def connect(
        self, host: str, port: int, *, options: SocketOptions = ...
    ) -> trio.abc.HalfCloseableStream: ...

    async def listen(
        self, port: int, *, backlog: int = 128, options: SocketOptions = ...
    ) -> trio.abc.Listener[trio.abc.HalfCloseableStream]: ...

    def abort(self, stream: trio.abc.Stream) -> None: ...

    async def sockets(self) -> list[SocketState]: ...

    async def counters(self) -> dict[str, int]: ...


_SS_LINE = re.compile(r"^(\S+)\s+\d+\s+\d+\s+(\S+):(\d+|\*)\s+(\S+):(\d+|\*)")


def _ss_address(host: str) -> str:
    # ss prints "0.0.0.0", "*", or "[::ffff:198.18.0.1]" for v4-mapped addresses.
    host = host.strip("[]")
    if host.startswith("::ffff:"):
        host = host[len("::ffff:") :]
    return "0.0.0.0" if host == "*" else host


def parse_ss(text: str) -> list[SocketState]:
    """`ss -tanH` output -> SocketStates (IPv4 only: lines ss cannot map to IPv4 are skipped)."""
    out = []
    for line in text.splitlines():
        m = _SS_LINE.match(line.strip())
        if m is None:
            continue
        state, lhost, lport, rhost, rport = m.groups()
        out.append(
            SocketState(
                state,
                (_ss_address(lhost), 0 if lport == "*" else int(lport)),
                (_ss_address(rhost), 0 if rport == "*" else int(rport)),
            )
        )
    return out


class KernelEndpoint:
    """Real Linux sockets created inside `namespace` (on a setns thread), then driven by trio."""

    impl: Literal["kernel", "utcp"] = "kernel"

    def __init__(self, namespace: Namespace, address: str) -> None:
        self.namespace = namespace
        self.address = address

    def _socket(self, options: SocketOptions, *, listening: bool) -> socket.socket:
        def make() -> socket.socket:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                if options.reuseaddr or listening:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if options.linger is not None:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, options.linger))
                if options.local_port_range is not None:
                    low, high = options.local_port_range
                    # a u32, high port in the upper half: above INT_MAX, so packed rather than an int
                    packed = struct.pack("=I", (high << 16) | low)
                    sock.setsockopt(socket.IPPROTO_IP, IP_LOCAL_PORT_RANGE, packed)
                if options.local_port is not None or options.bind_address is not None:
                    sock.bind((options.bind_address or "0.0.0.0", options.local_port or 0))
                sock.setblocking(False)
            except BaseException:
                sock.close()
                raise
            return sock

        return self.namespace.call(make)

    async def connect(
        self, host: str, port: int, *, options: SocketOptions = SocketOptions()
    ) -> trio.SocketStream:
        raw = await trio.to_thread.run_sync(lambda: self._socket(options, listening=False))
        sock = trio.socket.from_stdlib_socket(raw)
        try:
            with trio.fail_after(options.connect_timeout if options.connect_timeout is not None else 1e9):
                await sock.connect((host, port))
        except trio.TooSlowError:
            sock.close()
            raise TimeoutError(f"connect to {host}:{port} timed out") from None
        except BaseException:
            sock.close()
            raise
        stream = trio.SocketStream(sock)
        # trio.SocketStream turns Nagle off; keep the kernel default unless asked.
        stream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, options.nodelay)
        return stream

    async def listen(
        self, port: int, *, backlog: int = 128, options: SocketOptions = SocketOptions()
    ) -> trio.SocketListener:
        bound = SocketOptions(
            local_port=port,
            bind_address=options.bind_address,
            linger=options.linger,
            reuseaddr=True,
            nodelay=options.nodelay,
        )
        raw = await trio.to_thread.run_sync(lambda: self._socket(bound, listening=True))
        raw.listen(backlog)
        return trio.SocketListener(trio.socket.from_stdlib_socket(raw))

    def abort(self, stream: trio.abc.Stream) -> None:
        if not isinstance(stream, trio.SocketStream):
            raise TypeError(f"not a kernel stream: {stream!r}")
        stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        stream.socket.close()

    async def sockets(self) -> list[SocketState]:
        out = await trio.to_thread.run_sync(lambda: self.namespace.run(["ss", "-tanH"]).stdout)
        return parse_ss(out)

    async def counters(self) -> dict[str, int]:
        return await trio.to_thread.run_sync(self.namespace.nstat)


class UtcpEndpoint:
    """A utcp host on a TUN device in `namespace` (a `UtcpStack`), seen through the same interface."""

    impl: Literal["kernel", "utcp"] = "utcp"

    def __init__(self, namespace: Namespace, stack: UtcpStack) -> None:
        self.namespace = namespace
        self.stack = stack
        self.address = stack.address
        self._range_allocators: dict[tuple[int, int], PortAllocator] = {}

    @property
    def host(self) -> Host:
        return self.stack.host

    def _allocator(self, port_range: tuple[int, int] | None) -> PortAllocator | None:
        # IP_LOCAL_PORT_RANGE is per socket and makes Linux's scan step by 1
        if port_range is None:
            return None
        allocator = self._range_allocators.get(port_range)
        if allocator is None:
            allocator = self._range_allocators[port_range] = LinuxPortAllocator(port_range, step_one=True)
        return allocator

    async def connect(self, host: str, port: int, *, options: SocketOptions = SocketOptions()) -> UtcpStream:
        if options.linger not in (None, 0):
            raise ValueError("utcp streams support linger=None or linger=0 (abort)")
        if options.bind_address not in (None, "0.0.0.0", self.address):
            raise ValueError(f"{options.bind_address} is not this utcp host's address ({self.address})")
        try:
            with trio.fail_after(options.connect_timeout if options.connect_timeout is not None else 1e9):
                stream = await open_tcp_stream(
                    self.stack,
                    host,
                    port,
                    local_port=options.local_port or 0,
                    port_allocator=self._allocator(options.local_port_range),
                )
        except trio.TooSlowError:
            raise TimeoutError(f"connect to {host}:{port} timed out") from None
        if options.nodelay:
            stream.connection.config = dataclasses.replace(stream.connection.config, nodelay=True)
        return stream

    async def listen(
        self, port: int, *, backlog: int = 128, options: SocketOptions = SocketOptions()
    ) -> UtcpListener:
        listeners = await self.stack.open_tcp_listeners(
            port, host=options.bind_address or "0.0.0.0", backlog=backlog
        )
        return listeners[0]

    def abort(self, stream: trio.abc.Stream) -> None:
        if not isinstance(stream, UtcpStream):
            raise TypeError(f"not a utcp stream: {stream!r}")
        stream.abort()

    async def sockets(self) -> list[SocketState]:
        await trio.lowlevel.checkpoint()
        listening = self.host.listeners()
        out = [SocketState("LISTEN", (lst.address, lst.port), ("0.0.0.0", 0)) for lst in listening]
        for conn in self.host.connections():
            name = _SS_NAMES.get(conn.state, conn.state.value)
            out.append(SocketState(name, conn.local, conn.remote))
        return out

    async def counters(self) -> dict[str, int]:
        await trio.lowlevel.checkpoint()
        return {linux_counter_name(name): value for name, value in self.host.counters.items()}
