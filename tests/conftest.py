"""Shared fixtures. Tests that need root and /dev/net/tun skip without them, unless
UTCP_REQUIRE_PRIVILEGES=1 (set by CI), where a missing privilege is a failure."""

from __future__ import annotations

import os

import pytest


def privilege_problem() -> str | None:
    if os.geteuid() != 0:
        return "needs root to create network namespaces"
    if not os.path.exists("/dev/net/tun"):
        return "needs /dev/net/tun"
    return None


@pytest.fixture
def privileged() -> None:
    """Skip (or, in CI, fail) when namespaces and TUN devices cannot be created."""
    problem = privilege_problem()
    if problem is None:
        return
    if os.environ.get("UTCP_REQUIRE_PRIVILEGES") == "1":
        pytest.fail(f"{problem} (UTCP_REQUIRE_PRIVILEGES=1 forbids skipping)")
    pytest.skip(problem)
