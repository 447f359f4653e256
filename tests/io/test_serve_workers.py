"""serve_workers: trio.serve_listeners' contract with a fixed pool of handler tasks, over two in-memory
utcp hosts."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from tests.io.pairs import B_ADDRESS, host_pair
from utcp.io.api import UtcpStream, open_tcp_listeners, open_tcp_stream, serve_workers
from utcp.io.runtime import HostRuntime
from utcp.tcp.state import TcpState


async def _reply(stream: UtcpStream) -> None:
    if data := await stream.receive_some():
        await stream.send_all(data.upper())
    await stream.aclose()


async def _ask(rt_a: HostRuntime, port: int, request: bytes) -> bytes:
    stream = await open_tcp_stream(rt_a, B_ADDRESS, port)
    await stream.send_all(request)
    got = b""
    while chunk := await stream.receive_some():
        got += chunk
    await stream.aclose()
    return got


async def test_a_pool_of_two_serves_more_connections_than_it_has_workers() -> None:
    async with host_pair() as (rt_a, rt_b):
        listeners = await open_tcp_listeners(rt_b, 0)
        port = listeners[0].port
        answers: dict[int, bytes] = {}

        async def client(i: int) -> None:
            answers[i] = await _ask(rt_a, port, f"request {i}".encode())

        async with trio.open_nursery() as nursery:
            await nursery.start(
                lambda task_status: serve_workers(_reply, listeners, workers=2, task_status=task_status)
            )
            async with trio.open_nursery() as clients:
                for i in range(7):
                    clients.start_soon(client, i)
            nursery.cancel_scope.cancel()
        assert answers == {i: f"REQUEST {i}".encode() for i in range(7)}


async def test_at_most_workers_handlers_run_and_the_rest_wait_in_the_accept_queue() -> None:
    async with host_pair() as (rt_a, rt_b):
        listeners = await open_tcp_listeners(rt_b, 0)
        port = listeners[0].port
        release = trio.Event()
        running = peak = 0

        async def held(stream: UtcpStream) -> None:
            nonlocal running, peak
            running += 1
            peak = max(peak, running)
            await release.wait()
            running -= 1
            await _reply(stream)

        async with trio.open_nursery() as nursery:
            await nursery.start(
                lambda task_status: serve_workers(held, listeners, workers=2, task_status=task_status)
            )
            async with trio.open_nursery() as clients:
                for _ in range(3):
                    clients.start_soon(_ask, rt_a, port, b"x")
                # all three handshakes complete (the kernel-like accept queue holds the third)
                while len([c for c in rt_b.host.connections() if c.state is TcpState.ESTABLISHED]) < 3:
                    await trio.sleep(0.01)
                await trio.testing.wait_all_tasks_blocked()
                assert (running, len(listeners[0].listener._accept_queue)) == (2, 1)
                release.set()
            nursery.cancel_scope.cancel()
        assert peak == 2


async def test_a_stream_the_handler_leaves_open_is_closed_with_a_fin() -> None:
    async with host_pair() as (rt_a, rt_b):
        listeners = await open_tcp_listeners(rt_b, 0)
        served: list[UtcpStream] = []

        async def leave_open(stream: UtcpStream) -> None:
            served.append(stream)
            await stream.send_all(b"hello")

        async with trio.open_nursery() as nursery:
            await nursery.start(
                lambda task_status: serve_workers(leave_open, listeners, workers=1, task_status=task_status)
            )
            with trio.fail_after(10):  # a hang guard, not a timing assertion
                assert await _ask(rt_a, listeners[0].port, b"") == b"hello"  # then EOF: the pool's FIN
            nursery.cancel_scope.cancel()
        assert served[0].closed
        assert served[0].connection.state is not TcpState.ESTABLISHED


async def test_a_handler_exception_ends_the_server_and_closes_the_listener() -> None:
    async with host_pair() as (rt_a, rt_b):
        listeners = await open_tcp_listeners(rt_b, 0)
        port = listeners[0].port

        async def fail(stream: UtcpStream) -> None:
            raise RuntimeError("handler bug")

        with pytest.RaisesGroup(pytest.RaisesExc(RuntimeError, match="handler bug"), flatten_subgroups=True):
            async with trio.open_nursery() as nursery:
                await nursery.start(
                    lambda task_status: serve_workers(fail, listeners, workers=3, task_status=task_status)
                )
                with trio.fail_after(10):
                    stream = await open_tcp_stream(rt_a, B_ADDRESS, port)
                    assert await stream.receive_some() == b""  # the pool closed the failed handler's stream
                await trio.sleep_forever()
        with pytest.raises(ConnectionRefusedError):
            await open_tcp_stream(rt_a, B_ADDRESS, port)


async def test_cancelling_the_server_closes_its_listeners_and_open_streams() -> None:
    async with host_pair() as (rt_a, rt_b):
        listeners = await open_tcp_listeners(rt_b, 0)
        port = listeners[0].port
        entered = trio.Event()

        async def forever(stream: UtcpStream) -> None:
            entered.set()
            await trio.sleep_forever()

        async with trio.open_nursery() as nursery:
            await nursery.start(
                lambda task_status: serve_workers(forever, listeners, workers=1, task_status=task_status)
            )
            client = await open_tcp_stream(rt_a, B_ADDRESS, port)
            await entered.wait()
            nursery.cancel_scope.cancel()
        with trio.fail_after(10):
            assert await client.receive_some() == b""  # FIN from the forceful close of the handler's stream
        with pytest.raises(ConnectionRefusedError):
            await open_tcp_stream(rt_a, B_ADDRESS, port)


@pytest.mark.parametrize("workers", [0, -1])
async def test_workers_below_one_is_a_value_error(workers: int) -> None:
    async with host_pair() as (_rt_a, rt_b):
        listeners = await open_tcp_listeners(rt_b, 0)
        with pytest.raises(ValueError, match="workers must be >= 1"):
            await serve_workers(_reply, listeners, workers=workers)
