"""Soak against the kernel over TUN (issue 7 must-show 3): connections in both directions with every close
order, then nothing left in utcp or the kernel. UTCP_SOAK_N sets the count (the full run: 20000)."""

from __future__ import annotations

import os

from tools.soak_kernel import MODES, soak


async def test_kernel_soak_leaves_nothing_behind(privileged: None) -> None:
    count = int(os.environ.get("UTCP_SOAK_N", "1200"))
    report = await soak(count, concurrency=16, time_wait=0.3, warmup=120)

    assert report.failed == 0, report.failures
    assert report.completed == count
    # every close order ran (client first, server first, abort with RST)
    assert set(report.by_mode) == set(MODES)
    # Once every connection is closed utcp holds only TIME-WAIT (it closed first in a third of them) ...
    assert set(report.states_before_drain) <= {"TIME_WAIT"}, report.states_before_drain
    # ... and TIME-WAIT expired: no connection at all, and nothing else the runtime tracks per connection
    assert report.leftover_connections == 0, report.leftover_states
    assert report.leftover_listener_queues == 0
    assert report.leftover_watches == 0
    assert report.leftover_listener_lots == 0
    assert report.leftover_delayed == 0 and report.leftover_tx_backlog == 0
    assert not report.next_deadline_pending
    assert report.final_tasks <= report.baseline_tasks
    assert report.receive_errors == 0
    # The kernel may hold TIME-WAIT (it closes first a third of the time), never ESTAB or a half-close.
    assert set(report.kernel_leftovers) <= {"TIME-WAIT"}, report.kernel_leftovers
    # Memory back near the baseline: allocations still alive since the warm-up stay small and do not
    # scale with the connection count (a leak of one Connection each would be ~1 KB x count).
    assert report.traced
    assert report.memory_growth < max(1 << 20, 100 * count), report.memory_growth
    assert report.leaks() == []
