"""`python -m tools.bench`'s arguments: the larger MTU is configurable (issue 6: "MTU 1500 and a larger
configurable MTU") and reaches the jumbo figures, the kernel client's threads reach every connection
figure where the kernel is the client; a bad argument, or a bad UTCP_TUN_WRITE_NAP_US, is one line and
exit status 2."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
import trio

from tools.bench import runner
from tools.bench.kernel_side import rr_handler

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--only", "rx_mtu9000_MBps"], "unknown figure 'rx_mtu9000_MBps'"),
        (["--jumbo-mtu", "1500"], "--jumbo-mtu must be larger than 1500, not 1500"),
        (["--jumbo-mtu", "jumbo"], "invalid MTU 'jumbo'"),
        (["--jumbo-mtu", "70000"], "MTU 70000 out of range 576-65535"),
        (["--json", "/nonexistent-dir/bench.json"], "--json: directory of '/nonexistent-dir/bench.json'"),
        (["--client-threads", "0"], "--client-threads must be >= 1, not 0"),
        (["--client-threads", "257"], "--client-threads must be <= 256, not 257"),
        (["--client-threads", "many"], "invalid thread count 'many'"),
    ],
)
def test_a_bad_argument_is_one_line_and_exit_2(args: list[str], message: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "tools.bench", *args], cwd=REPO, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and message in proc.stderr, proc.stderr
    assert proc.stderr.startswith("python -m tools.bench: error: ")


def test_a_bad_nap_in_the_environment_is_one_line_and_exit_2() -> None:
    pytest.importorskip("utcp.io._tunio", reason="the nap is the C helper's write thread's")
    proc = subprocess.run(
        [sys.executable, "-m", "tools.bench", "--quick"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "UTCP_TUN_WRITE_NAP_US": "fifty", "UTCP_TUN_WRITE_THREAD": "1"},
    )
    assert proc.returncode == 2
    assert proc.stderr == (
        "python -m tools.bench: error: UTCP_TUN_WRITE_NAP_US must be microseconds in 0..999999, not 'fifty'\n"
    )


def test_the_jumbo_mtu_reaches_the_jumbo_figures(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    mtus: list[tuple[str, int]] = []

    async def bulk(kind: str, ns: object, nbytes: int, mtu: int, **options: Any) -> float:
        mtus.append((kind, mtu))
        return 1.0

    @contextlib.contextmanager
    def no_netns() -> Iterator[None]:
        yield None

    monkeypatch.setattr(runner, "netns", no_netns)
    monkeypatch.setattr(runner, "bulk_rx", lambda *a, **k: bulk("rx", *a, **k))
    monkeypatch.setattr(runner, "bulk_tx", lambda *a, **k: bulk("tx", *a, **k))
    out = tmp_path / "bench.json"
    assert (
        runner.main(["--only", "rx_jumbo_MBps", "tx_jumbo_MBps", "--jumbo-mtu", "4000", "--json", str(out)])
        == 0
    )
    assert mtus == [("rx", 4000), ("tx", 4000)]
    report = json.loads(out.read_text())
    assert report["jumbo_mtu"] == 4000
    assert set(report["figures"]) == {"rx_jumbo_MBps", "tx_jumbo_MBps"}
    mtus.clear()
    trio.run(runner.run_all, runner.FULL, {"rx_jumbo_MBps"}, False)
    assert mtus == [("rx", 9000)]  # the default


class FakeKernelSide:
    """runner.KernelProcess without a process: records its arguments, answers as kernel_side would."""

    calls: ClassVar[list[tuple[str, ...]]] = []

    def __init__(self, ns: object, *args: str) -> None:
        self.args = args
        FakeKernelSide.calls.append(args)

    async def ready(self) -> None:
        pass

    async def result(self) -> dict[str, Any]:
        if self.args[0] == "rr-client":
            return {"count": int(self.args[3]), "seconds": 1.0, "failures": []}
        return {"bytes": runner.MB, "seconds": 1.0}

    def stop(self) -> None:
        pass


def test_the_client_threads_reach_every_kernel_client(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    utcp_servers: list[tuple[int | None, str, int]] = []
    floors: list[int] = []

    async def conn_kernel_client(
        ns: object, count: int, workers: int | None = None, handler: Any = rr_handler, threads: int = 4
    ) -> float:
        utcp_servers.append((workers, handler.__name__, threads))
        return 1.0

    async def conn_python_floor(ns: object, count: int, threads: int = 4) -> float:
        floors.append(threads)
        return 1.0

    @contextlib.contextmanager
    def no_netns() -> Iterator[None]:
        yield None

    monkeypatch.setattr(runner, "netns", no_netns)
    monkeypatch.setattr(runner, "_veth_link", lambda *args: None)
    monkeypatch.setattr(runner, "KernelProcess", FakeKernelSide)
    monkeypatch.setattr(runner, "conn_kernel_client", conn_kernel_client)
    monkeypatch.setattr(runner, "conn_python_floor", conn_python_floor)
    monkeypatch.setattr(FakeKernelSide, "calls", [])
    # every connection figure but conn_per_s_utcp_client, where utcp is the client
    connection_figures = [
        "kernel_veth_conn_per_s",
        "conn_per_s_trio_kernel_server",
        "conn_per_s_trio_kernel_server_cork",
        "conn_per_s_kernel_client",
        "conn_per_s_kernel_client_pool",
        "conn_per_s_kernel_client_pool_cork",
        "conn_per_s_python_floor",
    ]
    out = tmp_path / "bench.json"
    assert runner.main(["--only", *connection_figures, "--client-threads", "6", "--json", str(out)]) == 0

    rr_clients = [args for args in FakeKernelSide.calls if args[0] == "rr-client"]
    # three runs each: the kernel baseline and trio on kernel TCP, plain and corked
    assert len(rr_clients) == 9 and {args[-1] for args in rr_clients} == {"6"}
    assert utcp_servers == 3 * [(None, "rr_handler", 6)] + 3 * [(12, "rr_handler", 6)] + 3 * [
        (12, "rr_corked_handler", 6)
    ]
    assert floors == [6, 6, 6]
    report = json.loads(out.read_text())
    assert report["client_threads"] == 6 and report["tun_writes"] in {"thread", "in place"}
    monkeypatch.setenv("UTCP_TUN_WRITE_THREAD", "0")  # how the TUN was written is said as it was
    assert runner.main(["--only", "conn_per_s_kernel_client", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["tun_writes"] == "in place" and report["tun_write_nap_us"] is None

    FakeKernelSide.calls.clear()
    utcp_servers.clear()
    trio.run(runner.run_all, runner.FULL, {"kernel_veth_conn_per_s", "conn_per_s_kernel_client_pool"}, False)
    assert {args[-1] for args in FakeKernelSide.calls if args[0] == "rr-client"} == {"4"}  # the default
    assert utcp_servers == 3 * [(8, "rr_handler", 4)]
