"""Host.receive_batch against the kernel: a kernel client's bulk send reaches a utcp server over TUN in
batches, and runs of its segments go through Connection._fast_data_run; every byte arrives in order."""

from __future__ import annotations

import hashlib

import pytest

from tests.kernel.helpers import UTCP, KernelPeer
from tests.kernel.transfers import payload
from utcp.io.stack import UtcpStack
from utcp.lab.netns import Namespace
from utcp.tcp.connection import Connection
from utcp.wire.fastpath import PlainSegment


async def test_a_kernel_senders_bursts_are_taken_as_runs(
    namespace: Namespace, monkeypatch: pytest.MonkeyPatch
) -> None:
    taken: list[int] = []
    run = Connection._fast_data_run

    def counting(self: Connection, raws: list[bytes], shapes: list[PlainSegment], now: float) -> int:
        taken.append(n := run(self, raws, shapes, now))
        return n

    monkeypatch.setattr(Connection, "_fast_data_run", counting)
    nbytes = 4 << 20
    digest = hashlib.sha256()
    received = 0
    async with UtcpStack(netns=namespace.name) as stack:
        (listener,) = await stack.open_tcp_listeners(9)
        source = KernelPeer(namespace, "source-client", UTCP, "9", str(nbytes))
        stream = await listener.accept()
        while chunk := await stream.receive_some(1 << 20):
            digest.update(chunk)
            received += len(chunk)
        segments = stream.connection.stats.segments_received
        await stream.aclose()
        assert (await source.result(timeout=60))["sent"] == nbytes
    assert received == nbytes and digest.hexdigest() == hashlib.sha256(payload(nbytes)).hexdigest()
    # most segments went in runs (measured: 2,896 of 2,898 in 18 runs), and no more than arrived
    assert segments // 2 <= sum(taken) <= segments, (sum(taken), segments, len(taken))
