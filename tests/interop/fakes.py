"""A fake scenario for the matrix machinery's tests: no root, no namespaces, real IPv4 packets.

`SCENARIO` ("F") has cells whose `run` returns an observation built from `cell.params` and records a
TCP handshake built with utcp.wire, so pcaps and ladders have content. One cell raises, one has a
deliberately wrong expectation (`with_expected(outcome="nonsense")`), one is on the netns backend (it
needs nothing: the fake ignores the backend; it exists so backend selection and the privilege check
have something to act on). `make_scenario(tracker)` builds the same with a concurrency tracker.
The CLI tests load it with `UTCP_SCENARIOS=tests.interop.fakes`.
"""

from __future__ import annotations

from dataclasses import dataclass

import trio

from interop.model import Backend, Cell, CellContext, Impl, Observation, Scenario, Within
from utcp.wire.codec import build_ipv4
from utcp.wire.packet import IPv4Packet, Mss, SackPermitted, TcpFlags, TcpSegment, Timestamps, WindowScale

CLIENT = "198.18.0.1"
SERVER = "198.18.0.2"


@dataclass
class Tracker:
    """How many fake cells were inside `run` at once, at most."""

    running: int = 0
    peak: int = 0


def handshake(isn: int = 1000, peer_isn: int = 5000) -> list[bytes]:
    """SYN, SYN-ACK, ACK from CLIENT:40000 to SERVER:80, as bytes on the wire."""
    syn_options = (Mss(1460), SackPermitted(), Timestamps(1, 0), WindowScale(7))
    segments = [
        (CLIENT, SERVER, TcpSegment(40000, 80, isn, 0, TcpFlags.SYN, 64240, syn_options)),
        (
            SERVER,
            CLIENT,
            TcpSegment(80, 40000, peer_isn, isn + 1, TcpFlags.SYN | TcpFlags.ACK, 65535, (Mss(1460),)),
        ),
        (CLIENT, SERVER, TcpSegment(40000, 80, isn + 1, peer_isn + 1, TcpFlags.ACK, 502)),
    ]
    return [build_ipv4(IPv4Packet(src, dst, seg)) for src, dst, seg in segments]


def _cell(case: str, roles: tuple[tuple[str, Impl], ...], policy: str | None, **params: object) -> Cell:
    expected: dict[str, object] = {"outcome": params["outcome"]}
    if "attempts" in params:
        expected["attempts"] = Within(1, 3)
    backend: Backend = "netns" if params.pop("netns", False) else "sim"
    return Cell("F", case, roles, expected, policy=policy, backend=backend, params=params)


def cells() -> list[Cell]:
    return [
        _cell("handshake", (("client", "kernel"), ("server", "utcp")), "linux", outcome="connected"),
        _cell("handshake", (("client", "utcp"), ("server", "utcp")), "rfc7323", outcome="connected"),
        _cell(
            "handshake", (("client", "kernel"), ("server", "kernel")), None, outcome="connected", netns=True
        ),
        _cell("reset", (("client", "utcp"), ("server", "kernel")), None, outcome="reset", attempts=2),
        _cell("boom", (("client", "utcp"), ("server", "utcp")), "linux", outcome="connected", boom=True),
        # The must-show: an expectation that is deliberately wrong fails with a clear diff.
        _cell("wrong", (("client", "utcp"), ("server", "utcp")), "linux", outcome="connected").with_expected(
            outcome="nonsense"
        ),
    ]


def make_scenario(tracker: Tracker | None = None, extra: tuple[Cell, ...] = ()) -> Scenario:
    async def run(cell: Cell, ctx: CellContext) -> Observation:
        if tracker is not None:
            tracker.running += 1
            tracker.peak = max(tracker.peak, tracker.running)
        try:
            await trio.sleep(float(cell.params.get("sleep", 0)))
            ctx.label(CLIENT, "client")
            ctx.label(SERVER, "server")
            for i, raw in enumerate(handshake()):
                ctx.record("client-server", raw, 0.001 * i)
            ctx.note(f"fake {cell.case}: three packets recorded")
            if cell.params.get("boom"):
                raise RuntimeError("fake cell exploded on purpose")
            values = {"outcome": cell.params["outcome"], "server_state": "ESTAB"}
            if "attempts" in cell.params:
                values["attempts"] = cell.params["attempts"]
            return Observation(values=values, notes=["returned by run"])
        finally:
            if tracker is not None:
                tracker.running -= 1

    return Scenario(
        name="F",
        title="A fake scenario",
        roles=("client", "server"),
        cells=lambda: [*cells(), *extra],
        run=run,
        summary="Cells whose observations come from their parameters; for the matrix machinery's tests.",
    )


SCENARIO = make_scenario()

# A second scenario in the same module, loaded as `tests.interop.fakes:OTHER` (registry's module:ATTR).
OTHER = Scenario(
    name="G",
    title="Another fake",
    roles=("client",),
    cells=lambda: [
        Cell("G", "one", (("client", "utcp"),), {"outcome": "connected"}, params={"outcome": "connected"})
    ],
    run=SCENARIO.run,
)
