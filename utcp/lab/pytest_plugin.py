"""pytest fixtures for kernel-vs-utcp tests (registered as the `utcp` pytest11 entry point).

    async def test_rst_reaches_the_kernel(lab):
        ns = lab.namespace("server")
        kernel = lab.kernel(ns)
        ...

`lab` skips the test when root or /dev/net/tun is missing, and fails instead when the environment sets
UTCP_REQUIRE_PRIVILEGES=1 (CI, where skipping would hide a broken set-up). Tests must run under trio
(pytest-trio's `trio_mode = true`, or the `@pytest.mark.trio` marker).

At session start (as root) it deletes the namespaces an earlier run left behind when a signal killed it
(`utcp.lab.netns.stale_namespaces`: utcp's own names, creator gone, no process inside).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import pytest

from utcp.lab.netns import prune_stale_namespaces
from utcp.lab.topology import Lab


def lab_privilege_problem() -> str | None:
    """Why this process cannot build a lab, or None."""
    if os.geteuid() != 0:
        return "needs root to create network namespaces"
    if not os.path.exists("/dev/net/tun"):
        return "needs /dev/net/tun"
    return None


def require_lab_privileges() -> None:
    problem = lab_privilege_problem()
    if problem is None:
        return
    if os.environ.get("UTCP_REQUIRE_PRIVILEGES") == "1":
        pytest.fail(f"{problem} (UTCP_REQUIRE_PRIVILEGES=1 forbids skipping)")
    pytest.skip(problem)


def pytest_sessionstart(session: pytest.Session) -> None:
    """Delete the namespaces an earlier run killed by a signal left behind (see stale_namespaces)."""
    if lab_privilege_problem() is None:
        prune_stale_namespaces()


@pytest.fixture
async def lab() -> AsyncIterator[Lab]:
    """A `Lab` torn down after the test (namespaces, devices, tasks), whatever the outcome."""
    require_lab_privileges()
    async with Lab() as the_lab:
        yield the_lab
