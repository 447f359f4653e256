"""`utcp peer` and `utcp connect`."""

from __future__ import annotations

import argparse
import functools
import os
import signal
import sys

import structlog
import trio

from utcp.cli.boxes import environment_problem
from utcp.cli.common import EXIT_FAILED, EXIT_OK, UsageError, check_output_path, guarded
from utcp.cli.services import CHUNK, SERVICES
from utcp.io.api import UtcpStream, serve_workers
from utcp.io.stack import UtcpStack


def _stack(args: argparse.Namespace, *, linger: float) -> UtcpStack:
    return UtcpStack(
        netns=args.netns,
        address=args.address,
        peer_address=args.peer_address,
        mtu=args.mtu,
        policy=args.policy_obj,
        seed=args.seed,
        pcap=args.pcap,
        linger=linger,
    )


async def _peer(args: argparse.Namespace) -> int:
    log = structlog.get_logger("utcp.cli")
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with _stack(args, linger=0.5) as stack:
            listeners = await stack.open_tcp_listeners(args.listen)
            assert stack.tun is not None
            log.info(
                "serving",
                service=args.serve,
                workers=args.workers,
                address=f"{stack.address}:{args.listen}",
                device=stack.tun.name,
                netns=args.netns,
            )
            # A line on stdout that scripts can wait for.
            print(f"listening {stack.address}:{args.listen} {args.serve} {stack.tun.name}", flush=True)
            async with trio.open_nursery() as nursery:
                if args.workers is None:
                    nursery.start_soon(trio.serve_listeners, guarded(SERVICES[args.serve]), listeners)
                else:
                    nursery.start_soon(
                        functools.partial(
                            serve_workers, guarded(SERVICES[args.serve]), listeners, workers=args.workers
                        )
                    )
                async for signum in signals:
                    log.info("stopping", signal=signal.Signals(signum).name)
                    nursery.cancel_scope.cancel()
                    break
            log.info("stopped", counters=dict(stack.host.counters))
    return EXIT_OK


def _environment_ok(args: argparse.Namespace) -> bool:
    """No root or no /dev/net/tun: one line and exit 1, before anything is opened."""
    problem = environment_problem()
    if problem is not None:
        print(f"utcp {args.command}: error: {problem}", file=sys.stderr)
    return problem is None


def run_peer(args: argparse.Namespace) -> int:
    check_output_path("--pcap", args.pcap)
    if not _environment_ok(args):
        return EXIT_FAILED
    return trio.run(_peer, args)


async def _stdin_to_stream(stream: UtcpStream) -> None:
    while True:
        data = await trio.to_thread.run_sync(os.read, 0, CHUNK, abandon_on_cancel=True)
        if not data:
            await stream.send_eof()
            return
        await stream.send_all(data)


async def _connect(args: argparse.Namespace) -> int:
    log = structlog.get_logger("utcp.cli")
    async with _stack(args, linger=2.0) as stack:
        try:
            with trio.fail_after(args.timeout):
                stream = await stack.open_tcp_stream(args.host, args.port)
        except (OSError, trio.TooSlowError) as exc:
            print(f"utcp connect: {args.host}:{args.port}: {exc or 'handshake timed out'}", file=sys.stderr)
            return EXIT_FAILED
        log.info("connected", local="{}:{}".format(*stream.getsockname()), remote=f"{args.host}:{args.port}")
        out = sys.stdout.buffer
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_stdin_to_stream, stream)
                while data := await stream.receive_some(CHUNK):
                    out.write(data)
                    out.flush()
                nursery.cancel_scope.cancel()  # the peer is done: like nc, stop reading stdin
        except trio.BrokenResourceError as exc:
            print(f"utcp connect: {exc}", file=sys.stderr)
            return EXIT_FAILED
        finally:
            await stream.aclose()
    return EXIT_OK


def run_connect(args: argparse.Namespace) -> int:
    if not args.timeout > 0:  # also refuses nan; trio.fail_after raises on a negative timeout
        raise UsageError(f"--timeout must be a positive number of seconds, not {args.timeout}")
    check_output_path("--pcap", args.pcap)
    if not _environment_ok(args):
        return EXIT_FAILED
    return trio.run(_connect, args)
