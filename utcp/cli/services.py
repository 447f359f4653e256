"""What `utcp peer --serve NAME` runs on each accepted stream: echo, discard, chargen (RFC 862, 863,
864) and a small HTTP/1.1 server (h11) with `GET /bytes/N`."""

from __future__ import annotations

import itertools
import random
import re
from collections.abc import Awaitable, Callable, Iterator

import h11
import trio

Handler = Callable[[trio.abc.HalfCloseableStream], Awaitable[None]]

CHUNK = 65536
MAX_BODY_BYTES = 1 << 34  # refuse absurd /bytes/N requests
_BYTES_PATH = re.compile(r"^/bytes/(\d+)$")

INDEX_PAGE = b"""<!doctype html>
<html><head><title>utcp</title></head>
<body><h1>Hello from utcp</h1>
<p>This page was served by a userspace TCP stack written in Python, over a TUN device.</p>
<p>Try <a href="/bytes/100000">/bytes/100000</a> for 100000 deterministic bytes.</p>
</body></html>
"""


def body_chunks(n: int, chunk: int = CHUNK) -> Iterator[bytes]:
    """The N bytes `GET /bytes/N` returns: a PRNG stream seeded by N, so both ends can check them."""
    rng = random.Random(n)
    chunk -= chunk % 4  # randbytes(a) + randbytes(b) == randbytes(a + b) when a is a multiple of 4
    left = n
    while left > 0:
        size = min(chunk, left)
        yield rng.randbytes(size)
        left -= size


def body_bytes(n: int) -> bytes:
    return random.Random(n).randbytes(n)


async def echo(stream: trio.abc.HalfCloseableStream) -> None:
    """RFC 862: send back everything, then half-close once the peer has."""
    while data := await stream.receive_some(CHUNK):
        await stream.send_all(data)
    await stream.send_eof()


async def discard(stream: trio.abc.HalfCloseableStream) -> None:
    """RFC 863: read and drop everything."""
    while await stream.receive_some(CHUNK):
        pass
    await stream.send_eof()


def chargen_pattern() -> bytes:
    """RFC 864's rotating 72-character lines of the 95 printable ASCII characters."""
    chars = bytes(range(32, 127))
    lines = [bytes(chars[(i + j) % len(chars)] for j in range(72)) + b"\r\n" for i in range(len(chars))]
    return b"".join(lines)


async def chargen(stream: trio.abc.HalfCloseableStream) -> None:
    """RFC 864: send the pattern until the peer closes or stops reading."""
    pattern = chargen_pattern()

    async def drain(cancel: trio.CancelScope) -> None:
        while await stream.receive_some(CHUNK):
            pass
        cancel.cancel()  # the peer half-closed: stop generating

    async with trio.open_nursery() as nursery:
        nursery.start_soon(drain, nursery.cancel_scope)
        for _ in itertools.count():
            await stream.send_all(pattern)


async def http(stream: trio.abc.HalfCloseableStream) -> None:
    """HTTP/1.1 with keep-alive: `/` is a small page, `/bytes/N` returns `body_chunks(N)`."""
    conn = h11.Connection(h11.SERVER)
    while True:
        event = await _next_event(conn, stream)
        if isinstance(event, h11.ConnectionClosed | type(None)):
            return
        if isinstance(event, h11.Request):
            await _respond(conn, stream, event)
        if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
            await stream.send_eof()
            while await stream.receive_some(CHUNK):
                pass
            return
        if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
            conn.start_next_cycle()


async def _next_event(conn: h11.Connection, stream: trio.abc.HalfCloseableStream) -> object:
    while True:
        try:
            event = conn.next_event()
        except h11.RemoteProtocolError:
            await _send_simple(conn, stream, 400, b"bad request\n")
            return None
        if event is h11.NEED_DATA:
            conn.receive_data(bytes(await stream.receive_some(CHUNK)))
            continue
        if isinstance(event, h11.Data | h11.EndOfMessage):
            continue  # request bodies are ignored
        return event


async def _send_simple(
    conn: h11.Connection, stream: trio.abc.HalfCloseableStream, status: int, body: bytes
) -> None:
    if conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
        return
    headers = [("content-type", "text/plain"), ("content-length", str(len(body))), ("connection", "close")]
    await stream.send_all(conn.send(h11.Response(status_code=status, headers=headers)) or b"")
    await stream.send_all(conn.send(h11.Data(data=body)) or b"")
    await stream.send_all(conn.send(h11.EndOfMessage()) or b"")


async def _respond(conn: h11.Connection, stream: trio.abc.HalfCloseableStream, request: h11.Request) -> None:
    target = request.target.decode("ascii", "replace").split("?", 1)[0]
    method = request.method.upper()
    head_only = method == b"HEAD"
    if method not in (b"GET", b"HEAD"):
        await _send_simple(conn, stream, 405, b"method not allowed\n")
        return
    chunks: Iterator[bytes]
    if target in ("/", "/index.html"):
        length, ctype, chunks = len(INDEX_PAGE), "text/html; charset=utf-8", iter([INDEX_PAGE])
    elif (match := _BYTES_PATH.match(target)) is not None and int(match.group(1)) <= MAX_BODY_BYTES:
        length = int(match.group(1))
        ctype, chunks = "application/octet-stream", body_chunks(length)
    else:
        await _send_simple(conn, stream, 404, b"not found\n")
        return
    headers = [("content-type", ctype), ("content-length", str(length)), ("server", "utcp")]
    await stream.send_all(conn.send(h11.Response(status_code=200, headers=headers)) or b"")
    if not head_only:
        for chunk in chunks:
            await stream.send_all(conn.send(h11.Data(data=chunk)) or b"")
    await stream.send_all(conn.send(h11.EndOfMessage()) or b"")


SERVICES: dict[str, Handler] = {"echo": echo, "discard": discard, "chargen": chargen, "http": http}


async def http_get(
    stream: trio.abc.HalfCloseableStream, host: str, target: str
) -> tuple[int, dict[str, str], bytes]:
    """A minimal HTTP/1.1 client (h11): GET `target`, return (status, headers, body)."""
    conn = h11.Connection(h11.CLIENT)
    request = h11.Request(method="GET", target=target, headers=[("host", host), ("connection", "close")])
    await stream.send_all(conn.send(request) or b"")
    await stream.send_all(conn.send(h11.EndOfMessage()) or b"")
    status, headers, body = 0, {}, bytearray()
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(bytes(await stream.receive_some(CHUNK)))
        elif isinstance(event, h11.Response):
            status = event.status_code
            headers = {k.decode(): v.decode() for k, v in event.headers}
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
            return status, headers, bytes(body)
