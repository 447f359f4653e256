"""A TUN device (IFF_TUN | IFF_NO_PI) created inside a network namespace, read and written from trio.

The device is created by python-pytun on a dedicated thread that has `setns`'d into the target
namespace, so the interface, its address and its connected route exist only there; the file
descriptor stays usable from the main thread afterwards. The kernel end of the link gets `address`
(e.g. 198.18.0.1/24); the userspace host answers for another address of that prefix (198.18.0.2),
which the kernel reaches through the device's connected route. Closing the fd removes the device.

Writes go through a thread of the optional C helper `utcp.io._tunio` when it is built: the kernel
runs its receive path for a packet (IP, then the kernel peer's TCP) inside the write(2), so the stack
hands the packet over and goes on while that work runs on the other CPU. Packets leave in order; one
the kernel refuses is counted in `write_errors` and lost, as on a wire. `write_thread=False`, or
UTCP_TUN_WRITE_THREAD=0 in the environment, writes in place instead: then the kernel has taken each
packet when `try_send` returns. While it has written lately, on another CPU than the stack's thread,
the thread naps (WRITE_NAP_US at a time) instead of sleeping until a push wakes it: where IPIs are VM
exits waking it there costs the stack's thread ~8 us, and a packet now waits at most a nap.
UTCP_TUN_WRITE_NAP_US=0 puts it to sleep after each batch.
Reads of a batch loop in the same helper when it is built (`read_batch`), in Python otherwise, with the
same result.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import ipaddress
import os
from pathlib import Path

import pytun
import trio

from utcp.io.gso import NO_GSO, TUN_F_CSUM, TUN_F_TSO4, TUNSETOFFLOAD, VNET_HDR_LEN, gso_header
from utcp.lab.netns import NETNS_DIR, run_in_namespace

DEFAULT_NAME = "utcp%d"  # the kernel fills in %d
READ_SIZE = 65536  # no IFF_VNET_HDR: the kernel segments for us, but be generous
MAX_BATCH = 256  # packets drained per wakeup, so one busy device cannot starve the scheduler
# Bytes the write thread may hold; past it try_send returns False and the runtime's backlog waits in
# wait_writable, as for a device that would block. 1 MiB: ~700 packets at MTU 1500, 16 TSO segments.
WRITE_QUEUE_LIMIT = 1 << 20
# While it has written within WRITE_NAP_WINDOW_US, and runs on another CPU than the pushes, the write
# thread naps WRITE_NAP_US at a time instead of sleeping until a push wakes it: waking it there costs
# the stack's thread ~8 us in a VM, a nap's timer costs the writer's CPU (utcp/io/_tunio.c;
# docs/performance.md, session 10). UTCP_TUN_WRITE_NAP_US=0 turns the naps off.
WRITE_NAP_US = 50
WRITE_NAP_WINDOW_US = 1000

try:
    from utcp.io._tunio import TunWriter, read_batch
except ImportError:  # not built (no C compiler): writes stay in place, reads loop in Python
    TunWriter = None  # type: ignore[assignment,misc]
    read_batch = None  # type: ignore[assignment]


def write_thread_default() -> bool:
    """Whether a TunDevice writes through the C helper's thread unless told: when it is built, and
    UTCP_TUN_WRITE_THREAD is not 0 (which measures and debugs the in-place writes)."""
    return TunWriter is not None and os.environ.get("UTCP_TUN_WRITE_THREAD", "1") != "0"


def write_nap_us() -> int:
    """The write thread's nap: WRITE_NAP_US, or UTCP_TUN_WRITE_NAP_US from the environment."""
    value = os.environ.get("UTCP_TUN_WRITE_NAP_US")
    if value is None:
        return WRITE_NAP_US
    try:
        nap = int(value)
    except ValueError:
        nap = -1
    if not 0 <= nap < 1_000_000:
        raise ValueError(f"UTCP_TUN_WRITE_NAP_US must be microseconds in 0..999999, not {value!r}")
    return nap


class TunError(OSError):
    """The TUN device could not be created or configured."""


def _netns_path(netns: str | os.PathLike[str]) -> Path:
    path = Path(netns)
    return path if path.is_absolute() else NETNS_DIR / path


def _configure(
    name: str, interface: ipaddress.IPv4Interface, mtu: int, disable_ipv6: bool, offload: bool = False
) -> pytun.TunTapDevice:
    # Runs on a thread inside the target namespace: the ioctl sockets pytun opens and /proc/sys/net
    # both resolve to the calling thread's namespace.
    flags = pytun.IFF_TUN | pytun.IFF_NO_PI | (pytun.IFF_VNET_HDR if offload else 0)
    dev = pytun.TunTapDevice(name=name, flags=flags)
    try:
        if offload:
            # Let the kernel hand us unsegmented TCP (TSO) with partial checksums (utcp.io.gso).
            fcntl.ioctl(dev.fileno(), TUNSETOFFLOAD, TUN_F_CSUM | TUN_F_TSO4)
        if disable_ipv6:
            # Before `up`: otherwise addrconf starts router solicitations on the device.
            knob = Path(f"/proc/sys/net/ipv6/conf/{dev.name}/disable_ipv6")
            if knob.exists():
                knob.write_text("1")
        dev.mtu = mtu
        dev.addr = str(interface.ip)
        dev.netmask = str(interface.netmask)
        dev.up()
    except BaseException:
        dev.close()
        raise
    return dev


class TunDevice:
    """A non-blocking TUN fd with batch reads for trio. Use `TunDevice.open(...)` to create one."""

    def __init__(
        self,
        device: pytun.TunTapDevice,
        *,
        mtu: int,
        netns: Path | None,
        offload: bool = False,
        write_thread: bool | None = None,
    ) -> None:
        self._device = device
        # IFF_VNET_HDR: a virtio_net_hdr precedes every packet both ways; try_send_gso() is usable.
        self.gso = offload
        self._fd: int = device.fileno()
        self.name: str = device.name
        self.mtu = mtu
        self.netns = netns
        self.closed = False
        self.non_ipv4_dropped = 0
        self._maybe_ready = False  # packets may be queued without epoll having said so (see receive_batch)
        os.set_blocking(self._fd, False)
        if write_thread is None:
            write_thread = write_thread_default()
        if write_thread and TunWriter is None:
            raise ValueError("write_thread needs the C helper utcp.io._tunio, which is not built")
        self._writer = None
        if write_thread:
            self._writer = TunWriter(self._fd, WRITE_QUEUE_LIMIT, write_nap_us(), WRITE_NAP_WINDOW_US)

    @property
    def write_thread(self) -> bool:
        """Whether packets are written by the C helper's thread (see the module docstring)."""
        return self._writer is not None

    @property
    def write_errors(self) -> int:
        """Packets the write thread's write(2) refused (dropped); in place, the error is raised."""
        return self._writer.errors if self._writer is not None else 0

    @classmethod
    def open(
        cls,
        *,
        address: str,
        netns: str | os.PathLike[str] | None = None,
        name: str = DEFAULT_NAME,
        mtu: int = 1500,
        disable_ipv6: bool = True,
        offload: bool = False,
        write_thread: bool | None = None,
    ) -> TunDevice:
        """Create the device in `netns` (a name under /run/netns or a path; None: the current one).

        `address` is the *kernel's* address with its prefix, e.g. "198.18.0.1/24". `offload` opens it
        with IFF_VNET_HDR and TSO/checksum offloads (see utcp.io.gso): reads can then be 64 KB TCP
        super-segments whose checksums are not filled in, so the host must not verify them.
        `write_thread`: write through the C helper's thread (None: when it is built, see the module
        docstring).
        """
        interface = ipaddress.IPv4Interface(address)
        if interface.network.prefixlen == 32:
            raise ValueError(f"{address}: the kernel end needs a prefix that also covers the utcp host")
        if len(name.replace("%d", "0")) > 15:
            raise ValueError(f"interface name {name!r} is longer than IFNAMSIZ-1 (15)")
        try:
            if netns is None:
                dev = _configure(name, interface, mtu, disable_ipv6, offload)
                path = None
            else:
                path = _netns_path(netns)
                if not path.exists():
                    raise TunError(errno.ENOENT, f"network namespace {os.fspath(netns)!r} does not exist")
                dev = run_in_namespace(path, _configure, name, interface, mtu, disable_ipv6, offload)
        except pytun.Error as exc:
            raise TunError(errno.EIO, f"cannot create TUN device: {exc}") from exc
        try:
            return cls(dev, mtu=mtu, netns=path, offload=offload, write_thread=write_thread)
        except BaseException:
            dev.close()
            raise

    def fileno(self) -> int:
        return self._fd

    async def receive_batch(self, max_packets: int = MAX_BATCH) -> list[bytes]:
        """Wait for at least one IPv4 packet, then return every packet already queued (up to a limit).

        Non-IPv4 frames (version nibble != 4) are counted in `non_ipv4_dropped` and skipped.
        """
        if self._maybe_ready and not self.closed:
            # The kernel answers a packet we write inside that write(2) (a SYN-ACK's ACK, an ACK's
            # data): read first, and wait in epoll (a registration and a scheduler trip) only if
            # nothing came. Still a cancel point and a schedule point per batch.
            await trio.lowlevel.checkpoint_if_cancelled()
            batch = self._read_queued(max_packets)
            if batch:
                await trio.lowlevel.cancel_shielded_checkpoint()
                return batch
        elif self._writer is not None and not self.closed:
            # Through the write thread the kernel answers microseconds after our writes: let the other
            # tasks run once, then read, and wait in epoll (a registration, a wake-up) only if nothing
            # came (docs/performance.md, session 9: the stock server's CPU per connection falls).
            await trio.lowlevel.checkpoint_if_cancelled()
            await trio.lowlevel.cancel_shielded_checkpoint()
            batch = self._read_queued(max_packets)
            if batch:
                return batch
        while True:
            if self.closed:
                raise trio.ClosedResourceError("TUN device closed")
            await trio.lowlevel.wait_readable(self._fd)
            batch = self._read_queued(max_packets)
            if batch:
                return batch

    def _read_queued(self, max_packets: int) -> list[bytes]:
        """Non-blocking reads until the device is empty or `max_packets` were read."""
        skip = VNET_HDR_LEN if self.gso else 0
        if read_batch is not None:
            # The C helper's loop: the same reads, without an interpreted step and a bytes object of
            # READ_SIZE per packet (nor an exception at the end)
            try:
                packets, non_ipv4, self._maybe_ready = read_batch(self._fd, max_packets, skip)
            except OSError as exc:
                if self.closed or exc.errno == errno.EBADF:
                    raise trio.ClosedResourceError("TUN device closed") from None
                raise
            self.non_ipv4_dropped += non_ipv4
            return packets
        batch: list[bytes] = []
        size = READ_SIZE + skip
        fd = self._fd
        read = os.read
        append = batch.append
        # Left True when the limit stopped us: more may be queued.
        self._maybe_ready = True
        for _ in range(max_packets):
            try:
                data = read(fd, size)
            except BlockingIOError:
                self._maybe_ready = False
                break
            except OSError as exc:
                if self.closed or exc.errno == errno.EBADF:
                    raise trio.ClosedResourceError("TUN device closed") from None
                raise
            if skip:
                data = data[skip:]  # the virtio_net_hdr: nothing in it that we need
            if not data or data[0] >> 4 != 4:
                self.non_ipv4_dropped += 1
                continue
            append(data)
        return batch

    def try_send(self, data: bytes) -> bool:
        """Write one packet without blocking; False when the device would block (caller retries)."""
        if self.closed:
            raise trio.ClosedResourceError("TUN device closed")
        writer = self._writer
        if writer is not None:
            # The kernel's answer comes once the thread has written: no early read (_maybe_ready).
            return writer.push_pair(NO_GSO, data) if self.gso else writer.push(data)
        try:
            if self.gso:
                os.writev(self._fd, (NO_GSO, data))
            else:
                os.write(self._fd, data)
        except BlockingIOError:
            return False
        self._maybe_ready = True
        return True

    def try_send_many(self, packets: list[bytes]) -> int:
        """try_send for a run of packets, in order: how many were taken (the rest would block)."""
        if self.closed:
            raise trio.ClosedResourceError("TUN device closed")
        writer = self._writer
        if writer is not None:
            return writer.push_many(packets, NO_GSO if self.gso else None)  # one call for the run
        sent = 0
        for data in packets:
            if not self.try_send(data):
                break
            sent += 1
        return sent

    def try_send_gso(self, data: bytes, header_len: int, gso_size: int) -> bool:
        """Write one TCP super-segment the kernel treats as segments of `gso_size` payload bytes
        (`header_len`: IPv4 + TCP header bytes). Only with `offload`; False when it would block."""
        if self.closed:
            raise trio.ClosedResourceError("TUN device closed")
        if self._writer is not None:
            return self._writer.push_pair(gso_header(header_len, gso_size), data)
        try:
            os.writev(self._fd, (gso_header(header_len, gso_size), data))
        except BlockingIOError:
            return False
        self._maybe_ready = True
        return True

    async def wait_writable(self) -> None:
        """Wait until a try_send that returned False may succeed."""
        writer = self._writer
        if writer is None:
            await trio.lowlevel.wait_writable(self._fd)
            return
        if self.closed:
            raise trio.ClosedResourceError("TUN device closed")
        # The thread makes space_fd (an eventfd) readable when it takes the queue that refused.
        await trio.lowlevel.wait_readable(writer.space_fd)
        with contextlib.suppress(BlockingIOError):
            os.read(writer.space_fd, 8)

    async def send(self, data: bytes) -> None:
        """Write one packet, waiting while the device would block."""
        while not self.try_send(data):
            await self.wait_writable()

    def close(self) -> None:
        """Close the fd; the kernel removes the (non-persistent) device with it."""
        if self.closed:
            return
        self.closed = True
        with contextlib.suppress(Exception):
            trio.lowlevel.notify_closing(self._fd)
        if self._writer is not None:
            with contextlib.suppress(Exception):
                trio.lowlevel.notify_closing(self._writer.space_fd)
            self._writer.close()  # what is queued goes out first, then the thread ends
        self._device.close()

    def __enter__(self) -> TunDevice:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
