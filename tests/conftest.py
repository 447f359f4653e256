"""Shared fixtures. Tests that need root and /dev/net/tun skip without them, unless
UTCP_REQUIRE_PRIVILEGES=1 (set by CI), where a missing privilege is a failure."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import structlog
from hypothesis import settings

from utcp.lab.pytest_plugin import require_lab_privileges

# Hypothesis's per-example deadline (200 ms) is a timed assertion: on a loaded CI machine an example that
# is slow once and fast on the rerun fails as "Flaky: unreliable test timings". Speed is the benchmarks'
# business; every @settings below inherits this.
settings.register_profile("utcp", deadline=None)
settings.load_profile("utcp")


@pytest.fixture
def privileged() -> None:
    """Skip (or, in CI, fail) when namespaces and TUN devices cannot be created."""
    require_lab_privileges()


@pytest.fixture(autouse=True)
def _structlog_config_restored() -> Iterator[None]:
    """structlog's configuration is process-wide: a test that runs the CLI or a tool in-process
    configures it (a WARNING filter, say), and a later test on the same worker would inherit it."""
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)
