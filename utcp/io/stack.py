"""`UtcpStack`: a utcp host on a TUN device inside a network namespace, ready to use from trio.

    async with UtcpStack(netns="utcp-1234-abcdef", address="198.18.0.2/24",
                         peer_address="198.18.0.1") as stack:
        stream = await stack.open_tcp_stream("198.18.0.1", 8080)

The TUN device is created in `netns` with the kernel's address `peer_address` (same prefix as
`address`); the utcp host answers for `address`. `mtu` is the host's (its MSS is mtu - 40);
`tun_mtu` (default: the same) is the device's, which sets the MSS the kernel advertises. Without a
`config`, connections get `stack_config()`: TcpConfig's defaults with a 4 MiB receive buffer. `offload`
opens the device with IFF_VNET_HDR and TSO both ways (utcp.io.gso; checksums are then trusted). Leaving
the block aborts what is left, closes the device (which removes it) and flushes the pcap.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any

import trio

from utcp.io.api import UtcpListener, UtcpStream, open_tcp_listeners, open_tcp_stream
from utcp.io.runtime import LINGER, HostRuntime, PacketImpairment
from utcp.io.tun import TunDevice
from utcp.tcp.config import TcpConfig
from utcp.tcp.host import Host

if TYPE_CHECKING:
    from utcp.policy import Policy


def split_addresses(address: str, peer_address: str) -> tuple[ipaddress.IPv4Interface, str]:
    """Validate "198.18.0.2/24" + "198.18.0.1": the kernel end's interface (198.18.0.1/24), our IP."""
    ours = ipaddress.IPv4Interface(address if "/" in address else f"{address}/24")
    peer = ipaddress.IPv4Address(peer_address)
    if peer not in ours.network:
        raise ValueError(f"peer address {peer} is not in {ours.network}")
    if peer == ours.ip:
        raise ValueError(f"peer address and utcp address are both {peer}")
    if ours.network.prefixlen > 30:
        raise ValueError(f"{address}: prefix too long for a link with two addresses")
    return ipaddress.IPv4Interface(f"{peer}/{ours.network.prefixlen}"), str(ours.ip)


# The receive buffer (and so the largest window) a TUN stack's connections get unless `config` says
# otherwise: where Linux's receive autotuning takes a bulk socket (tcp_rmem max, 6 MB; 4 MiB here).
# With TcpConfig's 256 KiB a 9000-byte MTU or 64 KB TSO reads leave only a few segments in flight, and
# the transfer waits on every application read (tools/bench: rx_jumbo, rx_offload).
STACK_RECV_BUFFER = 4 * 1024 * 1024


def stack_config() -> TcpConfig:
    """`TcpConfig()` with the stack's receive buffer (STACK_RECV_BUFFER)."""
    return TcpConfig(recv_buffer=STACK_RECV_BUFFER)


class UtcpStack(HostRuntime):
    """A `HostRuntime` that also owns its `Host` and its TUN device."""

    def __init__(
        self,
        *,
        netns: str | os.PathLike[str] | None,
        address: str = "198.18.0.2/24",
        peer_address: str = "198.18.0.1",
        mtu: int = 1500,
        tun_mtu: int | None = None,
        config: TcpConfig | None = None,
        policy: Policy | None = None,
        seed: int | None = None,
        tun_name: str = "utcp%d",
        pcap: str | os.PathLike[str] | IO[bytes] | None = None,
        impair_inbound: PacketImpairment | None = None,
        impair_outbound: PacketImpairment | None = None,
        linger: float = LINGER,
        host_options: dict[str, Any] | None = None,
        logger: Any = None,
        tap: Callable[[str, bytes, float], None] | None = None,
        offload: bool = False,
    ) -> None:
        self.kernel_interface, self.address = split_addresses(address, peer_address)
        self.peer_address = str(peer_address)
        self.netns = netns
        self.mtu = mtu
        self.tun_mtu = mtu if tun_mtu is None else tun_mtu
        self.tun_name = tun_name
        host = Host(
            addresses=[self.address],
            config=config if config is not None else stack_config(),
            policy=policy,
            mtu=mtu,
            seed=seed,
            **(host_options or {}),
        )
        self.offload = offload
        if offload:
            # TSO reads carry partial checksums (utcp.io.gso): the kernel checked nothing to check.
            host.verify_checksums = False
        self.tun: TunDevice | None = None
        super().__init__(
            host,
            _PendingLink(mtu),
            pcap=pcap,
            impair_inbound=impair_inbound,
            impair_outbound=impair_outbound,
            linger=linger,
            logger=logger,
            tap=tap,
        )

    async def __aenter__(self) -> UtcpStack:
        # A fresh thread per open does the setns; trio's worker thread only waits for it.
        self.tun = await trio.to_thread.run_sync(
            lambda: TunDevice.open(
                address=str(self.kernel_interface),
                netns=self.netns,
                name=self.tun_name,
                mtu=self.tun_mtu,
                offload=self.offload,
            )
        )
        self.link = self.tun
        try:
            await super().__aenter__()
        except BaseException:
            self.tun.close()
            raise
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool | None:
        return await super().__aexit__(exc_type, exc, tb)

    async def open_tcp_stream(
        self, address: str, port: int, *, local_port: int = 0, config: TcpConfig | None = None
    ) -> UtcpStream:
        return await open_tcp_stream(self, address, port, local_port=local_port, config=config)

    async def open_tcp_listeners(
        self, port: int, *, host: str = "0.0.0.0", backlog: int = 128, config: TcpConfig | None = None
    ) -> list[UtcpListener]:
        return await open_tcp_listeners(self, port, host=host, backlog=backlog, config=config)


class _PendingLink:
    """Placeholder until the TUN device is opened in __aenter__."""

    closed = True

    def __init__(self, mtu: int) -> None:
        self.mtu = mtu

    async def receive_batch(self) -> list[bytes]:
        raise trio.ClosedResourceError("device not open")

    def try_send(self, data: bytes) -> bool:
        raise trio.ClosedResourceError("device not open")

    async def wait_writable(self) -> None:
        raise trio.ClosedResourceError("device not open")

    def close(self) -> None:
        pass
