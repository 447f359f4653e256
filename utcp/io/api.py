"""The user API: trio streams and listeners over utcp connections.

`UtcpStream` is a `trio.abc.HalfCloseableStream` and `UtcpListener` a `trio.abc.Listener`, so code
written for trio's socket streams (`trio.serve_listeners`, `trio.SSLStream`, ...) runs unchanged on a
utcp host. Errors follow trio's conventions: misuse after close is `trio.ClosedResourceError`,
conflicting concurrent calls are `trio.BusyResourceError`, and a connection the peer or the network
ended (RST, retransmission timeout) is `trio.BrokenResourceError` carrying the reason.

Every call is a checkpoint. One that blocked has had its schedule and cancel point in the wait, so, as
trio's socket calls do, it returns without a second trip through the scheduler.
"""

from __future__ import annotations

import contextlib
import errno
import math
import operator
import socket
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, NoReturn

import trio

from utcp.io.runtime import ConnectionWatch, HostRuntime
from utcp.tcp.errors import (
    ConnectionAborted,
    ConnectionFailed,
    ConnectionRefused,
    ConnectionReset,
    ConnectionTimedOut,
    TcpUsageError,
)

if TYPE_CHECKING:
    from utcp.policy import Policy
    from utcp.tcp.config import TcpConfig
    from utcp.tcp.connection import Connection
    from utcp.tcp.host import Listener
    from utcp.tcp.ports import PortAllocator

DEFAULT_RECEIVE_SIZE = 65536


# Two tasks using the same half of a stream at once (trio's rule): a flag per half, held for the call.
_SEND_BUSY = "another task is using this stream for send"
_RECEIVE_BUSY = "another task is using this stream for receive"


def _abort_succeeds(_: object) -> trio.lowlevel.Abort:
    return trio.lowlevel.Abort.SUCCEEDED


async def _close_checkpoint() -> None:
    """The checkpoint that ends aclose(): a schedule point and a cancel point, like
    trio.lowlevel.checkpoint(), but when already cancelled it delivers Cancelled in one trip through
    the scheduler instead of two plus a nested cancel scope (~17 vs ~29 us). That case is common:
    trio.serve_listeners closes every handler's stream with aclose_forcefully, i.e. in a cancelled
    scope, after the handler usually closed it already."""
    if trio.current_effective_deadline() == -math.inf:
        # Blocking with an abort that always succeeds is how trio delivers a pending cancel: the
        # scheduler aborts the wait at once and resumes us with Cancelled (no reschedule() needed).
        await trio.lowlevel.wait_task_rescheduled(_abort_succeeds)
    await trio.lowlevel.checkpoint()


def _broken(conn: Connection, watch: ConnectionWatch) -> trio.BrokenResourceError | None:
    """The error a stream raises once its connection has failed, or None while it is usable."""
    error = conn.error
    if error is not None:
        broken = trio.BrokenResourceError(f"connection failed: {error.reason}")
        broken.__cause__ = error
        return broken
    if watch.reset_reason is not None:
        return trio.BrokenResourceError(f"connection reset: {watch.reset_reason}")
    return None


class UtcpStream(trio.abc.HalfCloseableStream):
    """A byte stream over one utcp connection. `stream.connection` exposes the engine's knobs."""

    def __init__(self, runtime: HostRuntime, connection: Connection) -> None:
        self._runtime = runtime
        self._conn = connection
        self._watch = runtime.watch(connection)
        self._send_busy = False
        self._receive_busy = False
        self._closed = False
        self._eof_sent = False

    @property
    def connection(self) -> Connection:
        return self._conn

    @property
    def runtime(self) -> HostRuntime:
        return self._runtime

    @property
    def closed(self) -> bool:
        """Whether aclose() or abort() was called on this stream (the connection may still be closing)."""
        return self._closed

    def setsockopt(self, level: int, option: int, value: int | bytes) -> None:
        """trio.SocketStream's setsockopt for the TCP options utcp has: TCP_NODELAY and TCP_CORK
        (Connection.nodelay, Connection.cork; turning either on or off pushes what it held, as
        Linux's tcp_push_pending_frames). Any other option is OSError ENOPROTOOPT."""
        flag = bool(int.from_bytes(value, sys.byteorder) if isinstance(value, bytes) else value)
        conn = self._conn
        if level == socket.IPPROTO_TCP and option == socket.TCP_NODELAY:
            conn.nodelay = flag
        elif level == socket.IPPROTO_TCP and option == socket.TCP_CORK:
            conn.cork = flag
        else:
            raise OSError(errno.ENOPROTOOPT, f"utcp has no socket option ({level}, {option})")
        runtime = self._runtime
        if runtime.host.has_output():  # the option let held data go (the setter marked it to send)
            runtime.kick()

    def getsockopt(self, level: int, option: int) -> int:
        """TCP_NODELAY and TCP_CORK as 0 or 1; any other option is OSError ENOPROTOOPT."""
        if level == socket.IPPROTO_TCP and option == socket.TCP_NODELAY:
            return int(self._conn.nodelay)
        if level == socket.IPPROTO_TCP and option == socket.TCP_CORK:
            return int(self._conn.cork)
        raise OSError(errno.ENOPROTOOPT, f"utcp has no socket option ({level}, {option})")

    def getpeername(self) -> tuple[str, int]:
        """The peer as the application sees it: on a host with `toa="getpeername"` (toa.ko), the client
        address carried by the LB's TOA option when one arrived; else the 4-tuple's remote end."""
        toa = self._conn.toa_peer
        return toa if toa is not None else self._conn.remote

    @property
    def transport_peer(self) -> tuple[str, int]:
        """The remote end of the real 4-tuple (the LB's local address behind a FullNAT LB)."""
        return self._conn.remote

    def getsockname(self) -> tuple[str, int]:
        return self._conn.local

    @property
    def peer_address(self) -> tuple[str, int]:
        return self._conn.remote

    @property
    def local_address(self) -> tuple[str, int]:
        return self._conn.local

    def __repr__(self) -> str:
        (la, lp), (ra, rp) = self._conn.local, self._conn.remote
        return f"<UtcpStream {la}:{lp} -> {ra}:{rp} {self._conn.state.name}>"

    # -- sending ------------------------------------------------------------------------------------
    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        if self._closed:
            raise trio.ClosedResourceError("stream is closed")
        if self._send_busy:
            raise trio.BusyResourceError(_SEND_BUSY)
        self._send_busy = True
        try:
            await trio.lowlevel.checkpoint_if_cancelled()
            view = memoryview(data)
            if view.ndim != 1 or view.format not in ("B", "b", "c"):
                view = view.cast("B")
            conn, runtime = self._conn, self._runtime
            parked = False
            while True:
                if self._closed:
                    raise trio.ClosedResourceError("stream was closed while sending")
                if self._eof_sent:
                    raise trio.ClosedResourceError("send_eof() was called: no more sending")
                broken = _broken(conn, self._watch)
                if broken is not None:
                    raise broken
                if not view:
                    break
                space = conn.send_space
                if space > 0:
                    try:
                        accepted = conn.send(bytes(view[:space]))
                    except TcpUsageError as exc:
                        raise trio.BrokenResourceError(f"connection cannot send: {exc}") from exc
                    view = view[accepted:]
                    runtime.kick()
                    if accepted:
                        continue
                await self._watch.wait()
                parked = True
            if not parked:
                await trio.lowlevel.cancel_shielded_checkpoint()
        finally:
            self._send_busy = False

    async def wait_send_all_might_not_block(self) -> None:
        if self._closed:
            raise trio.ClosedResourceError("stream is closed")
        if self._send_busy:
            raise trio.BusyResourceError(_SEND_BUSY)
        self._send_busy = True
        try:
            await trio.lowlevel.checkpoint_if_cancelled()
            conn = self._conn
            parked = False
            while True:
                if self._closed:
                    raise trio.ClosedResourceError("stream was closed while waiting")
                if self._eof_sent or conn.send_space > 0 or _broken(conn, self._watch) is not None:
                    break
                await self._watch.wait()
                parked = True
            if not parked:
                await trio.lowlevel.cancel_shielded_checkpoint()
        finally:
            self._send_busy = False

    async def send_eof(self) -> None:
        if self._closed:
            raise trio.ClosedResourceError("stream is closed")
        if self._send_busy:
            raise trio.BusyResourceError(_SEND_BUSY)
        self._send_busy = True
        try:
            await trio.lowlevel.checkpoint_if_cancelled()
            if not self._eof_sent:
                broken = _broken(self._conn, self._watch)
                if broken is not None:
                    raise broken
                self._eof_sent = True
                try:
                    self._conn.shutdown()
                except TcpUsageError as exc:
                    raise trio.BrokenResourceError(f"connection cannot shut down: {exc}") from exc
                self._runtime.kick()
            await trio.lowlevel.cancel_shielded_checkpoint()
        finally:
            self._send_busy = False

    # -- receiving ----------------------------------------------------------------------------------
    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if max_bytes is None:
            max_bytes = DEFAULT_RECEIVE_SIZE
        else:
            max_bytes = operator.index(max_bytes)
            if max_bytes < 1:
                raise ValueError("max_bytes must be >= 1")
        if self._closed:
            raise trio.ClosedResourceError("stream is closed")
        if self._receive_busy:
            raise trio.BusyResourceError(_RECEIVE_BUSY)
        self._receive_busy = True
        try:
            await trio.lowlevel.checkpoint_if_cancelled()
            conn = self._conn
            parked = False
            while True:
                if self._closed:
                    raise trio.ClosedResourceError("stream was closed while receiving")
                if conn.readable:
                    data = conn.read(max_bytes)
                    runtime = self._runtime
                    if runtime.host.has_output():  # the read opened the window enough to announce it
                        runtime.kick()
                    break
                if conn.eof_received:
                    data = b""
                    break
                broken = _broken(conn, self._watch)
                if broken is not None:
                    raise broken
                if self._watch.closed:
                    data = b""  # closed without error or FIN (cannot normally happen): end of stream
                    break
                await self._watch.wait()
                parked = True
            if not parked:
                await trio.lowlevel.cancel_shielded_checkpoint()
            return data
        finally:
            self._receive_busy = False

    # -- closing ------------------------------------------------------------------------------------
    async def aclose(self) -> None:
        """Close both directions (FIN, or RST with unread data as Linux does); never blocks for long."""
        if not self._closed:
            self._closed = True
            # Already closed or failed: nothing left to tell the peer. (try, not contextlib.suppress:
            # ~0.3 us less, once per connection)
            try:  # noqa: SIM105
                self._conn.close()
            except (TcpUsageError, ConnectionFailed):
                pass
            self._runtime.kick()
            self._watch.wake()  # our own blocked calls raise ClosedResourceError
        await _close_checkpoint()

    def abort(self) -> None:
        """Send RST now and close (SO_LINGER 0 semantics)."""
        if not self._closed:
            self._closed = True
            with contextlib.suppress(TcpUsageError, ConnectionFailed):
                self._conn.abort()
            self._runtime.kick()
            self._watch.wake()


class UtcpListener(trio.abc.Listener[UtcpStream]):
    """Accepts connections from a utcp listening socket; works with `trio.serve_listeners`."""

    def __init__(self, runtime: HostRuntime, listener: Listener) -> None:
        self._runtime = runtime
        self._listener = listener
        self._lot = runtime.listener_lot(listener)
        self._closed = False

    @property
    def listener(self) -> Listener:
        return self._listener

    def getsockname(self) -> tuple[str, int]:
        return (self._listener.address, self._listener.port)

    @property
    def port(self) -> int:
        return self._listener.port

    def __repr__(self) -> str:
        return f"<UtcpListener {self._listener.address}:{self._listener.port}>"

    async def accept(self) -> UtcpStream:
        await trio.lowlevel.checkpoint_if_cancelled()
        parked = False
        while True:
            if self._closed:
                raise trio.ClosedResourceError("listener is closed")
            conn = self._listener.accept()
            if conn is not None:
                # No kick: taking a connection off the accept queue sends nothing (a SYN dropped on a
                # full queue is the client's to retransmit, as on Linux).
                if not parked:
                    await trio.lowlevel.cancel_shielded_checkpoint()
                return UtcpStream(self._runtime, conn)
            await self._lot.park()
            parked = True

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            self._listener.close()
            self._runtime.kick()
            self._runtime.forget_listener(self._listener)
            self._lot.unpark_all()
        await trio.lowlevel.checkpoint()


def _connect_error(error: ConnectionFailed) -> OSError:
    # The errno connect(2) would report, so callers can treat us like trio.open_tcp_stream.
    if isinstance(error, ConnectionRefused):
        return ConnectionRefusedError(errno.ECONNREFUSED, f"connection refused: {error.reason}")
    if isinstance(error, ConnectionTimedOut):
        return TimeoutError(errno.ETIMEDOUT, f"connection timed out: {error.reason}")
    if isinstance(error, ConnectionReset):
        return ConnectionResetError(errno.ECONNRESET, f"connection reset: {error.reason}")
    if isinstance(error, ConnectionAborted):
        return ConnectionAbortedError(errno.ECONNABORTED, f"connection aborted: {error.reason}")
    return OSError(errno.ECONNABORTED, f"connection failed: {error.reason}")


async def open_tcp_stream(
    runtime: HostRuntime,
    address: str,
    port: int,
    *,
    local_address: str | None = None,
    local_port: int = 0,
    config: TcpConfig | None = None,
    policy: Policy | None = None,
    port_allocator: PortAllocator | None = None,
) -> UtcpStream:
    """Actively open a connection and wait for the handshake; OSError (errno set) if it fails.
    `port_allocator` chooses the ephemeral port for this connection only (see Host.connect)."""
    conn = runtime.host.connect(
        address,
        port,
        trio.current_time(),
        local_address=local_address,
        local_port=local_port,
        config=config,
        policy=policy,
        port_allocator=port_allocator,
    )
    watch = runtime.watch(conn)
    runtime.kick()
    try:
        while not watch.connected:
            if conn.error is not None:
                raise _connect_error(conn.error) from conn.error
            if watch.closed:
                raise OSError(errno.ECONNABORTED, "connection closed during the handshake")
            await watch.wait()
    except BaseException:
        if conn.error is None:
            with contextlib.suppress(TcpUsageError, ConnectionFailed):
                conn.abort()
            runtime.kick()
        raise
    return UtcpStream(runtime, conn)


async def open_tcp_listeners(
    runtime: HostRuntime,
    port: int,
    *,
    host: str | None = "0.0.0.0",
    backlog: int | None = 128,
    config: TcpConfig | None = None,
    policy: Policy | None = None,
) -> list[UtcpListener]:
    """Listen on `port` (0: pick one, bind(0) semantics) at `host` (None/"0.0.0.0": every address)."""
    address = "0.0.0.0" if host in (None, "") else host
    assert address is not None
    if port == 0:
        port = runtime.host.bind_port(address)
    listener = runtime.host.listen(
        address, port, 128 if backlog is None else backlog, config=config, policy=policy
    )
    await trio.lowlevel.checkpoint()
    return [UtcpListener(runtime, listener)]


async def serve_workers(
    handler: Callable[[UtcpStream], Awaitable[object]],
    listeners: Sequence[UtcpListener],
    *,
    workers: int,
    task_status: trio.TaskStatus[Sequence[UtcpListener]] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """`trio.serve_listeners` with a fixed pool: `workers` tasks per listener, each accepting a
    connection, running `handler` on its stream, closing it and accepting the next. At most `workers`
    connections per listener are handled at once; the rest wait in the listener's accept queue, and
    past its backlog SYNs are dropped (Linux tcp_conn_request), as behind a server whose worker
    processes are all busy. No task is spawned per connection: for short connections that is trio's
    largest cost (docs/performance.md). As with serve_listeners, a handler's exception ends the
    server, and the listeners are closed when it ends."""
    if workers < 1:
        raise ValueError(f"workers must be >= 1, not {workers}")
    async with contextlib.AsyncExitStack() as stack:
        for listener in listeners:
            await stack.enter_async_context(listener)
        async with trio.open_nursery() as nursery:
            for listener in listeners:
                for _ in range(workers):
                    nursery.start_soon(_serve_worker, handler, listener)
            task_status.started(listeners)
            await trio.sleep_forever()
    raise AssertionError("unreachable: the nursery only ends by an exception")  # pragma: no cover


async def _serve_worker(handler: Callable[[UtcpStream], Awaitable[object]], listener: UtcpListener) -> None:
    while True:
        stream = await listener.accept()
        try:
            await handler(stream)
        finally:
            # serve_listeners closes every stream with aclose_forcefully; one the handler closed itself
            # is skipped here (a forceful close of a closed stream costs a Cancelled raised and caught).
            if not stream.closed:
                await trio.aclose_forcefully(stream)
