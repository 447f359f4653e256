"""Shared fixtures. Tests that need root and /dev/net/tun skip without them, unless
UTCP_REQUIRE_PRIVILEGES=1 (set by CI), where a missing privilege is a failure."""

from __future__ import annotations

import pytest

from utcp.lab.pytest_plugin import require_lab_privileges


@pytest.fixture
def privileged() -> None:
    """Skip (or, in CI, fail) when namespaces and TUN devices cannot be created."""
    require_lab_privileges()
