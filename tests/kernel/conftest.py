"""Each kernel test gets its own network namespace (created and deleted here) and needs root."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from utcp.lab.netns import Namespace, netns


@pytest.fixture
def namespace(privileged: None) -> Iterator[Namespace]:
    with netns() as ns:
        yield ns
