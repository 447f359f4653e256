"""The kernel half of the benchmarks: plain Linux sockets, run inside a benchmark's namespace as
`ip netns exec NS python kernel_side.py MODE ...`. Prints {"ready": PORT} once listening (servers),
then one JSON line of results.

  sink-server PORT                 accept one connection, read to EOF, close; bytes and seconds
  source-client HOST PORT NBYTES   connect, send NBYTES, half-close, wait for the peer's close
  rr-server PORT                   forever: accept, read 1 byte, write 1 byte, close
  rr-client HOST PORT N THREADS    N times: connect, write 1 byte, read 1 byte, read to EOF, close
  trio-rr-server PORT [cork]       rr-server's exchange in trio: trio.serve_tcp with `rr_handler`, the
                                   handler the utcp server runs (the trio API's cost on kernel TCP);
                                   with `cork`, `rr_corked_handler` (TCP_CORK: reply and FIN together)
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
from typing import TYPE_CHECKING

import trio

if TYPE_CHECKING:
    from utcp.io.api import UtcpStream

CHUNK = 1 << 18


def sink_server(port: int) -> dict[str, object]:
    with socket.create_server(("0.0.0.0", port)) as server:
        print(json.dumps({"ready": port}), flush=True)
        conn, _ = server.accept()
        start = time.monotonic()
        total = 0
        buf = bytearray(CHUNK)
        with conn:
            while n := conn.recv_into(buf):
                total += n
            seconds = time.monotonic() - start
    return {"bytes": total, "seconds": seconds}


def source_client(host: str, port: int, nbytes: int) -> dict[str, object]:
    block = memoryview(bytes(CHUNK))
    start = time.monotonic()
    with socket.create_connection((host, port), timeout=120) as conn:
        left = nbytes
        while left:
            left -= conn.send(block[: min(left, CHUNK)])
        conn.shutdown(socket.SHUT_WR)
        conn.recv(1)  # the peer closes once it has read everything
    return {"bytes": nbytes, "seconds": time.monotonic() - start}


def rr_server(port: int) -> dict[str, object]:
    with socket.create_server(("0.0.0.0", port), backlog=4096) as server:
        print(json.dumps({"ready": port}), flush=True)
        served = 0
        while True:
            conn, _ = server.accept()
            with conn:
                if conn.recv(1):
                    conn.sendall(b"y")
            served += 1


# The rr-client's threads, i.e. connections in flight, in the connection figures (tools.bench
# --client-threads changes it).
RR_CLIENT_THREADS = 4


def pool_workers(client_threads: int) -> int:
    """The utcp.io.serve_workers pool that runs rr_handler for conn_per_s_kernel_client_pool: twice the
    rr-client's connections in flight (8 by default, as many tasks as conn_per_s_utcp_client's client)."""
    return 2 * client_threads


POOL_WORKERS = pool_workers(RR_CLIENT_THREADS)


async def rr_handler(stream: trio.abc.HalfCloseableStream) -> None:
    """The server side of the connection benchmarks, per stream under trio.serve_listeners: read the
    request byte, answer one, close. The utcp server (tools/bench/runner.py, tools/bench_conn.py) and
    trio-rr-server run this same function."""
    try:
        if await stream.receive_some(1):
            await stream.send_all(b"y")
    except trio.BrokenResourceError:
        pass
    finally:
        await stream.aclose()


async def rr_corked_handler(stream: trio.SocketStream | UtcpStream) -> None:
    """`rr_handler` as a server written for short connections answers: TCP_CORK before the reply, so
    the reply and the FIN that close() sends leave in one segment (trio.SocketStream and UtcpStream
    both take the option)."""
    try:
        if await stream.receive_some(1):
            stream.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)
            await stream.send_all(b"y")
    except trio.BrokenResourceError:
        pass
    finally:
        await stream.aclose()


def trio_rr_server(port: int, cork: bool = False) -> dict[str, object]:
    async def serve() -> None:
        listeners = await trio.open_tcp_listeners(port, backlog=4096)
        handler = rr_corked_handler if cork else rr_handler
        async with trio.open_nursery() as nursery:
            await nursery.start(trio.serve_listeners, handler, listeners)
            print(json.dumps({"ready": port}), flush=True)

    trio.run(serve)
    return {}


def rr_client(host: str, port: int, count: int, threads: int) -> dict[str, object]:
    failures: list[str] = []

    def worker(n: int) -> None:
        for _ in range(n):
            try:
                with socket.create_connection((host, port), timeout=30) as conn:
                    conn.sendall(b"x")
                    if conn.recv(1) != b"y":
                        failures.append("no reply")
                    while conn.recv(64):
                        pass
            except OSError as exc:
                failures.append(repr(exc))

    share = [count // threads + (1 if i < count % threads else 0) for i in range(threads)]
    pool = [threading.Thread(target=worker, args=(n,)) for n in share]
    start = time.monotonic()
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    seconds = time.monotonic() - start
    return {"count": count - len(failures), "seconds": seconds, "failures": failures[:5]}


def main(argv: list[str]) -> int:
    mode, args = argv[0], argv[1:]
    if mode == "sink-server":
        result = sink_server(int(args[0]))
    elif mode == "source-client":
        result = source_client(args[0], int(args[1]), int(args[2]))
    elif mode == "rr-server":
        result = rr_server(int(args[0]))
    elif mode == "rr-client":
        result = rr_client(args[0], int(args[1]), int(args[2]), int(args[3]))
    elif mode == "trio-rr-server":
        result = trio_rr_server(int(args[0]), cork=args[1:] == ["cork"])
    else:
        print(f"unknown mode {mode!r}", file=sys.stderr)
        return 2
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
