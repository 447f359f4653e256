"""Putting threads on CPUs of their own choosing, for tests of what depends on where a thread runs (the
TUN write thread naps only on another CPU than the thread that pushes)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import pytest


def two_cpus() -> tuple[int, int]:
    """Two CPUs this process may run on, or skip: the test needs threads apart."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        pytest.skip("needs two CPUs, to put two threads apart")
    return cpus[0], cpus[1]


@contextlib.contextmanager
def on_cpu(cpu: int) -> Iterator[None]:
    """Run the calling thread on `cpu` alone; threads it starts meanwhile keep that CPU (they inherit
    its affinity)."""
    before = os.sched_getaffinity(0)  # pid 0: the calling thread
    os.sched_setaffinity(0, {cpu})
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)
