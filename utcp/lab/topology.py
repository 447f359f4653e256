"""`Lab`: a topology in a few lines, torn down whatever happens.

    async with Lab(record=ctx.record) as lab:
        ns = lab.namespace("server")
        kernel = lab.kernel(ns)
        utcp = await lab.utcp(ns, "198.18.0.2/24", peer="198.18.0.1", policy="linux")

Everything the lab creates is registered on one exit stack as it is created, so it is undone in reverse
order on any exit (error, cancellation, Ctrl-C): stacks and boxes close their TUN devices, tasks are
cancelled, processes started in a namespace are ended by PID, and the namespaces are deleted last.
Addresses and routes only ever go inside the lab's namespaces. See docs/lab-api.md.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar, cast

import trio

from utcp.io.boxrun import BoxRuntime, box_between_namespaces
from utcp.io.stack import UtcpStack
from utcp.lab.endpoints import KernelEndpoint, UtcpEndpoint
from utcp.lab.netns import Namespace, unique_name
from utcp.middlebox.base import Middlebox
from utcp.policy import Policy, resolve_policy
from utcp.tcp.config import TcpConfig
from utcp.wire.checksum import tcp_checksum

__all__ = ["Lab", "LabError", "Record"]

Record = Callable[[str, bytes, "float | None"], None]
T = TypeVar("T")
ETH_P_ALL = 0x0003
IPPROTO_TCP = 6
PACKET_OUTGOING = 4  # <linux/if_packet.h>: on lo every packet is seen leaving and arriving; keep one
TEST_NET = ipaddress.IPv4Network("198.18.0.0/15")  # RFC 2544: lab addresses never leave this range


class LabError(RuntimeError):
    """The topology asked for cannot be built (bad address, unknown interface, ...)."""


def _check_address(text: str) -> ipaddress.IPv4Interface:
    try:
        iface = ipaddress.IPv4Interface(text)
    except ValueError as exc:
        raise LabError(f"bad address {text!r}: {exc}") from None
    if iface.ip not in TEST_NET:
        raise LabError(f"{text}: lab addresses must be in {TEST_NET} (RFC 2544 benchmarking range)")
    return iface


class Lab:
    """Namespaces, devices, endpoints and tasks of one experiment (see the module docstring)."""

    def __init__(self, *, record: Record | None = None, name: str = "lab") -> None:
        self.record = record
        self.name = name
        self.namespaces: dict[str, Namespace] = {}
        self._stack: contextlib.AsyncExitStack | None = None
        self._nursery: trio.Nursery | None = None
        self._lifetime: contextlib.AbstractAsyncContextManager[None] | None = None
        self._veths = 0

    @contextlib.asynccontextmanager
    async def _live(self) -> AsyncIterator[None]:
        # Context managers (stacks, boxes) run in tasks of the lab's nursery, not in the caller's task,
        # so a lab opened in one task (a pytest fixture) can be used from another (the test). On exit
        # those tasks are cancelled and finish first; then the exit stack's callbacks close sockets and
        # delete namespaces (they run on every exit, cancellation included).
        async with contextlib.AsyncExitStack() as stack:
            self._stack = stack
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                try:
                    yield
                finally:
                    nursery.cancel_scope.cancel()

    async def _hold(
        self, manager: contextlib.AbstractAsyncContextManager[T], *, task_status: trio.TaskStatus[T]
    ) -> None:
        async with manager as value:
            task_status.started(value)
            await trio.sleep_forever()

    async def _enter(self, manager: contextlib.AbstractAsyncContextManager[T]) -> T:
        result: T = await self.nursery.start(self._hold, manager)
        return result

    async def __aenter__(self) -> Lab:
        self._lifetime = self._live()
        await self._lifetime.__aenter__()
        return self

    async def __aexit__(self, *exc: Any) -> bool | None:
        assert self._lifetime is not None
        body_error = exc[1]
        try:
            return await self._lifetime.__aexit__(*exc)
        except BaseExceptionGroup as group:
            # The body's own exception comes out as itself, not wrapped in the nurseries' groups.
            inner: BaseException = group
            while isinstance(inner, BaseExceptionGroup) and len(inner.exceptions) == 1:
                inner = inner.exceptions[0]
            if body_error is not None and inner is body_error:
                return False
            raise

    @property
    def stack(self) -> contextlib.AsyncExitStack:
        if self._stack is None:
            raise LabError("use the lab inside `async with Lab() as lab:`")
        return self._stack

    @property
    def nursery(self) -> trio.Nursery:
        if self._nursery is None:
            raise LabError("use the lab inside `async with Lab() as lab:`")
        return self._nursery

    # -- namespaces and wiring ------------------------------------------------------------------------
    def namespace(self, role: str, *, sysctls: dict[str, str | int] | None = None) -> Namespace:
        """A fresh namespace named after `role` (unique per lab), lo up, IPv6 off, `sysctls` set inside."""
        if role in self.namespaces:
            raise LabError(f"this lab already has a namespace for {role!r}")
        ns = Namespace(unique_name(f"utcp-{role[:6]}-"))
        ns.create()
        self.stack.callback(ns.delete)
        self.namespaces[role] = ns
        for key, value in (sysctls or {}).items():
            ns.sysctl(key, value)
        return ns

    def _role(self, ns: Namespace) -> str:
        return next((role for role, n in self.namespaces.items() if n is ns), ns.name)

    def veth(self, ns_a: Namespace, addr_a: str, ns_b: Namespace, addr_b: str) -> tuple[str, str]:
        """A veth pair between two lab namespaces, addressed and up; returns the two interface names."""
        if_a, if_b = _check_address(addr_a), _check_address(addr_b)
        self._veths += 1
        name_a, name_b = f"veth{self._veths}a", f"veth{self._veths}b"
        # Created inside ns_a with its peer moved straight into ns_b: the root namespace never sees it.
        ns_a.add_veth(name_a, name_b, ns_b)
        ns_a.add_address(name_a, str(if_a))
        ns_b.add_address(name_b, str(if_b))
        ns_a.set_up(name_a)
        ns_b.set_up(name_b)
        return name_a, name_b

    def route(self, ns: Namespace, prefix: str, *, via: str | None = None, dev: str | None = None) -> None:
        network = ipaddress.IPv4Network(prefix, strict=False)
        if not network.subnet_of(TEST_NET):
            raise LabError(f"route {prefix}: lab routes must stay in {TEST_NET}")
        gateway = str(_check_address(via).ip) if via is not None else None
        ns.add_route(str(network), via=gateway, device=dev)

    def forwarding(self, ns: Namespace) -> None:
        ns.sysctl("net.ipv4.ip_forward", 1)

    def nft(self, ns: Namespace, ruleset: str) -> None:
        """Load an nft ruleset inside `ns` (`nft -f -`); it dies with the namespace."""
        ns.run(["nft", "-f", "-"], input=ruleset)

    # -- endpoints ------------------------------------------------------------------------------------
    def kernel(self, ns: Namespace, address: str | None = None) -> KernelEndpoint:
        """Kernel sockets inside `ns`; `address` defaults to the first IPv4 address configured in it."""
        if address is None:
            configured = ns.ipv4_addresses()
            address = str(configured[0].ip) if configured else "127.0.0.1"
        return KernelEndpoint(ns, address)

    async def utcp(
        self,
        ns: Namespace,
        address: str = "198.18.0.2/24",
        peer: str = "198.18.0.1",
        *,
        policy: str | Policy | None = "linux",
        config: TcpConfig | None = None,
        host_options: dict[str, Any] | None = None,
        seed: int | None = None,
        mtu: int = 1500,
        link: str | None = None,
        **stack_options: Any,
    ) -> UtcpEndpoint:
        """A utcp host at `address` on a new TUN device in `ns`, whose kernel end is `peer`."""
        _check_address(address)
        _check_address(peer)
        resolved = resolve_policy(policy) if isinstance(policy, str) else policy
        link_name = link if link is not None else f"{self._role(ns)}-utcp"
        tap = None
        if self.record is not None:
            record = self.record

            def tap(_direction: str, raw: bytes, _now: float) -> None:
                record(link_name, raw, None)

        stack = UtcpStack(
            netns=ns.name,
            address=address,
            peer_address=peer,
            mtu=mtu,
            config=config,
            policy=resolved,
            seed=seed,
            host_options=host_options,
            tap=tap,
            **stack_options,
        )
        await self._enter(stack)
        return UtcpEndpoint(ns, stack)

    async def box(
        self,
        middlebox: Middlebox,
        ns_client: Namespace,
        ns_server: Namespace,
        client_addr: str = "198.18.1.1/24",
        server_addr: str = "198.18.2.1/24",
        *,
        link: str | None = None,
        mtu: int = 1500,
    ) -> BoxRuntime:
        """A middlebox between a TUN device in each namespace (routes to the far subnet added inside).

        With a `record`, each side's device is captured: `<link>:client` and `<link>:server` show what
        crossed each link, before and after the box's rewrite.
        """
        _check_address(client_addr)
        _check_address(server_addr)
        runtime = await self._enter(
            box_between_namespaces(middlebox, ns_client, ns_server, client_addr, server_addr, mtu=mtu)
        )
        if self.record is not None:
            name = link if link is not None else type(middlebox).__name__.lower()
            self.capture(ns_client, runtime.client_side.name, f"{name}:client")
            self.capture(ns_server, runtime.server_side.name, f"{name}:server")
        return runtime

    # -- observers and tasks ---------------------------------------------------------------------------
    def capture(self, ns: Namespace, ifname: str, link: str) -> None:
        """Record every IPv4 packet crossing `ifname` inside `ns` on `link` (AF_PACKET, from now on)."""
        if self.record is None:
            raise LabError("capture needs a lab made with record=...")

        def open_socket() -> socket.socket:
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
            try:
                sock.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
                sock.bind((ifname, 0))
                sock.setblocking(False)
            except OSError as exc:
                sock.close()
                raise LabError(f"cannot capture on {ifname} in {ns.name}: {exc}") from exc
            return sock

        sock = trio.socket.from_stdlib_socket(ns.call(open_socket))
        self.stack.callback(sock.close)
        self.nursery.start_soon(self._sniff, sock, link)

    async def _sniff(self, sock: trio.socket.SocketType, link: str) -> None:
        record = self.record
        assert record is not None
        while True:
            try:
                frame, ancillary, _flags, address = await sock.recvmsg(65535, AUXDATA_SPACE)
            except (OSError, trio.ClosedResourceError):
                return
            ifname, _protocol, packet_type, hardware_type = cast(tuple[str, int, int, int], address)[:4]
            # lo delivers every packet twice (outgoing, then incoming): keep the copy that arrived.
            if ifname == "lo" and packet_type == PACKET_OUTGOING:
                continue
            packet = _ipv4_of(frame, hardware_type)
            if packet is None:
                continue
            if _checksum_not_ready(ancillary):
                packet = complete_tcp_checksum(packet)
            record(link, packet, None)

    def start_soon(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> None:
        """Run `fn(*args)` in the lab's nursery; cancelled when the lab ends."""
        self.nursery.start_soon(fn, *args)


ARPHRD_ETHER = 1
ARPHRD_LOOPBACK = 772
SOL_PACKET = 263
PACKET_AUXDATA = 8
TP_STATUS_CSUMNOTREADY = 1 << 3  # <linux/if_packet.h>: checksum offloaded, not yet computed
AUXDATA_SPACE = socket.CMSG_SPACE(20)  # struct tpacket_auxdata


def _checksum_not_ready(ancillary: list[tuple[int, int, bytes]]) -> bool:
    for level, kind, data in ancillary:
        if level == SOL_PACKET and kind == PACKET_AUXDATA and len(data) >= 4:
            return bool(struct.unpack_from("=I", data)[0] & TP_STATUS_CSUMNOTREADY)
    return False


def complete_tcp_checksum(packet: bytes) -> bytes:
    """Fill in the TCP checksum that offload left partial (lo and veth skip it; the capture would show
    every packet as corrupt, as tcpdump does). Anything but an unfragmented TCP packet is left as is."""
    header_len = (packet[0] & 0x0F) * 4
    total = int.from_bytes(packet[2:4], "big")
    if packet[9] != IPPROTO_TCP or total > len(packet) or total < header_len + 20:
        return packet
    segment = bytearray(packet[header_len:total])
    segment[16:18] = b"\0\0"
    segment[16:18] = tcp_checksum(packet[12:16], packet[16:20], segment).to_bytes(2, "big")
    return packet[:header_len] + bytes(segment) + packet[total:]


def _ipv4_of(frame: bytes, hatype: int) -> bytes | None:
    # TUN devices (ARPHRD_NONE) hand over bare IP; lo and veth carry a 14-byte Ethernet header.
    if hatype in (ARPHRD_ETHER, ARPHRD_LOOPBACK):
        if len(frame) < 34 or frame[12:14] != b"\x08\x00":
            return None
        frame = frame[14:]
    if not frame or frame[0] >> 4 != 4:
        return None
    return frame
