"""Must-show 2: SCENARIOS.md B against the real kernel. The Linux server is a listening socket in the test's
namespace (an accept loop that keeps what it accepts); a utcp client plays each row of the table in
interop/b_table.py over TUN with the crafting API (third ACK held, RSTs with normal / no / zero /
stale timestamps, exact or in-window seq, SYNs, old-timestamp data). The kernel's replies (seen by the
runtime's tap), its end state (`ss -tan`: a leftover ESTABLISHED socket or not) and its `nstat` deltas
must equal the `linux` column of that same table, which tests/policy/test_b_table.py checks utcp's
`linux` preset against: the kernel and the preset agree row by row.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable

import trio

from interop.b_script import (
    COMPARED,
    STEP_GAP,
    Observed,
    Row,
    client_clock,
    normalise,
    perform,
    run_row_sim,
)
from interop.b_table import TABLE
from tests.kernel.helpers import KERNEL, UTCP
from utcp.io.stack import UtcpStack
from utcp.lab.netns import Namespace
from utcp.policy import POLICY_COUNTERS, PRESETS, linux_counter_name
from utcp.tcp.connection import Connection
from utcp.wire.codec import parse_ipv4
from utcp.wire.packet import TcpFlags, TcpSegment

PORT = 8000
FIRST_CLIENT_PORT = 41000
SETTLE = 0.1  # after the last step: late replies (a 40 ms delayed ACK) arrive

# A server that accepts and keeps every connection (a health-check target waiting for a request).
SERVER = f"""
import socket, sys, threading
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", {PORT}))
s.listen(128)
print("ready", flush=True)
kept = []
while True:
    conn, peer = s.accept()
    kept.append(conn)
    print(peer[1], flush=True)
"""


class Replies:
    """Every TCP segment the kernel sends to one client port, in order (from the runtime's tap)."""

    def __init__(self) -> None:
        self.by_port: dict[int, list[TcpSegment]] = {}

    def tap(self, direction: str, raw: bytes, now: float) -> None:
        if direction != "in":
            return
        seg = parse_ipv4(raw).payload
        if isinstance(seg, TcpSegment) and seg.src_port == PORT:
            self.by_port.setdefault(seg.dst_port, []).append(seg)


async def _wait_for(predicate: Callable[[], bool], timeout: float) -> None:
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(0.002)


async def _nstat(ns: Namespace) -> dict[str, int]:
    return await trio.to_thread.run_sync(ns.nstat)


async def _established(ns: Namespace, client_port: int) -> bool:
    out = await trio.to_thread.run_sync(
        lambda: (
            ns.run(
                ["ss", "-tanH", "state", "established", f"( sport = :{PORT} and dport = :{client_port} )"]
            ).stdout
        )
    )
    return bool(out.strip())


async def _play(stack: UtcpStack, ns: Namespace, replies: Replies, row: Row, client_port: int) -> Observed:
    before = await _nstat(ns)
    conn: Connection = stack.host.connect(
        KERNEL, PORT, trio.current_time(), local_port=client_port, hold_third_ack=True
    )
    stack.kick()
    await _wait_for(lambda: conn.third_ack_held, 2.0)
    for step in row.steps:
        if step.kind == "wait":
            await trio.sleep(step.seconds)
            continue
        perform(conn, step, trio.current_time())
        stack.kick()
        await trio.sleep(STEP_GAP)
    await trio.sleep(SETTLE)
    after = await _nstat(ns)
    segments = [s for s in replies.by_port.get(client_port, []) if not s.flags & TcpFlags.SYN]
    return Observed(
        tuple(normalise(s, conn.iss, conn.irs) for s in segments),
        await _established(ns, client_port),
        {k: after.get(linux_counter_name(k), 0) - before.get(linux_counter_name(k), 0) for k in COMPARED},
    )


async def test_every_b_row_on_the_kernel_matches_the_linux_preset(namespace: Namespace) -> None:
    server = namespace.popen([sys.executable, "-c", SERVER], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        assert (await trio.to_thread.run_sync(server.stdout.readline)).strip() == "ready"
        replies = Replies()
        async with UtcpStack(
            netns=namespace.name,
            address=f"{UTCP}/24",
            peer_address=KERNEL,
            seed=1,
            host_options={"ts_clock": client_clock(trio.current_time())},
            tap=replies.tap,
            linger=0.0,
        ) as stack:
            results: list[tuple[Row, Observed, list[str]]] = []
            for i, row in enumerate(TABLE):
                observed = await _play(stack, namespace, replies, row, FIRST_CLIENT_PORT + i)
                results.append((row, observed, observed.mismatches(row.expect["linux"])))
    finally:
        namespace.terminate(server)
    report = "\n".join(
        f"{row.id:9} {'agrees' if not bad else 'DIFFERS'}  {row.what}"
        + "".join(f"\n            {line}" for line in bad)
        for row, _observed, bad in results
    )
    print("\nkernel 6.x vs the linux preset, SCENARIOS.md B:\n" + report)
    assert all(not bad for _row, _observed, bad in results), report
    # the rows did exercise the kernel's policy: case 4 leaves leftovers, case 2 does not
    by_id = {row.id: observed for row, observed, _ in results}
    assert by_id["4-ts0"].leftover and by_id["4-ts0"].counters["PAWSEstab"] == 1
    assert not by_id["2"].leftover and by_id["2"].counters["EmbryonicRsts"] == 1


def test_policy_counter_names_are_the_kernels(namespace: Namespace) -> None:
    names = set(namespace.nstat())
    missing = {c for c in POLICY_COUNTERS if linux_counter_name(c) not in names}
    assert missing == {"PAWSPassive"}  # gone with tcp_tw_recycle in Linux 4.12
    # and every counter a utcp server bumps while replaying the B table, whatever the preset
    bumped: set[str] = set()
    for preset in PRESETS:
        for row in TABLE:
            _observed, server = run_row_sim(row, preset)
            bumped |= {name for name, value in server.counters.items() if value}
    assert bumped and {c for c in bumped if linux_counter_name(c) not in names} == set()
