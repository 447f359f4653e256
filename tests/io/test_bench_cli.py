"""`python -m tools.bench`'s arguments: the larger MTU is configurable (issue 6: "MTU 1500 and a larger
configurable MTU") and reaches the jumbo figures; a bad argument is one line and exit status 2."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from tools.bench import runner

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--only", "rx_mtu9000_MBps"], "unknown figure 'rx_mtu9000_MBps'"),
        (["--jumbo-mtu", "1500"], "--jumbo-mtu must be larger than 1500, not 1500"),
        (["--jumbo-mtu", "jumbo"], "invalid MTU 'jumbo'"),
        (["--jumbo-mtu", "70000"], "MTU 70000 out of range 576-65535"),
        (["--json", "/nonexistent-dir/bench.json"], "--json: directory of '/nonexistent-dir/bench.json'"),
    ],
)
def test_a_bad_argument_is_one_line_and_exit_2(args: list[str], message: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "tools.bench", *args], cwd=REPO, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and message in proc.stderr, proc.stderr
    assert proc.stderr.startswith("python -m tools.bench: error: ")


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
