"""Run tests/kernel/kernel_peer.py inside a namespace and collect its JSON results."""

from __future__ import annotations

import functools
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import trio

from utcp.lab.netns import Namespace
from utcp.wire.codec import build_ipv4
from utcp.wire.packet import IPv4Packet, TcpFlags, TcpSegment

SCRIPT = Path(__file__).with_name("kernel_peer.py")
KERNEL = "198.18.0.1"
UTCP = "198.18.0.2"


class CallCount:
    """Counts the calls of the async function `owner.name` (a module's or a class's) once installed,
    e.g. trio.lowlevel.wait_readable (each an epoll registration) or TunDevice.wait_writable."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, owner: object, name: str) -> None:
        self.count = 0
        original = getattr(owner, name)

        async def counting(*args: Any, **kwargs: Any) -> Any:
            self.count += 1
            return await original(*args, **kwargs)

        monkeypatch.setattr(owner, name, counting)


def closed_port_syn(src_port: int) -> bytes:
    """A SYN from UTCP to KERNEL's port 9, where nothing listens: the kernel answers with an RST."""
    segment = TcpSegment(src_port=src_port, dst_port=9, seq=1000, ack=0, flags=TcpFlags.SYN, window=1000)
    return build_ipv4(IPv4Packet(src=UTCP, dst=KERNEL, payload=segment))


class KernelPeer:
    """One kernel_peer.py process in `ns`, started and (if need be) ended by its PID."""

    def __init__(self, ns: Namespace, *args: str) -> None:
        self.ns = ns
        self.proc = ns.popen(
            [sys.executable, str(SCRIPT), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )

    async def ready(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        with trio.fail_after(20):
            line = await trio.to_thread.run_sync(self.proc.stdout.readline, abandon_on_cancel=True)
        if not line:
            raise AssertionError(f"kernel peer died before it was ready: {self.proc.stderr.read()}")  # type: ignore[union-attr]
        return dict(json.loads(line))

    async def result(self, timeout: float = 120.0) -> dict[str, Any]:
        try:
            out, err = await trio.to_thread.run_sync(
                functools.partial(self.proc.communicate, timeout=timeout), abandon_on_cancel=True
            )
        finally:
            self.ns.terminate(self.proc)
        if self.proc.returncode != 0:
            raise AssertionError(f"kernel peer exited {self.proc.returncode}: {err}")
        return dict(json.loads(out.strip().splitlines()[-1]))

    def stop(self) -> None:
        self.ns.terminate(self.proc)
