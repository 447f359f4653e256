"""tools.bench_conn: the in-process connection benchmark completes its workload both ways."""

from __future__ import annotations

import pytest

from tools.bench_conn import measure


@pytest.mark.parametrize("side", ["server", "pool", "client"])
def test_bench_conn_runs_the_workload(side: str) -> None:
    utcp_us, peer_us = measure(side, 50)
    assert utcp_us > 0
    assert peer_us > 0
