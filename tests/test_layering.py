"""The sans-IO core never imports the runtime's libraries (DESIGN.md, Layers)."""

from __future__ import annotations

import subprocess
import sys

import pytest

CORE = ["utcp.wire", "utcp.tcp", "utcp.policy", "utcp.middlebox", "utcp.sim"]
FORBIDDEN = ["trio", "pytun", "pyroute2", "structlog"]


@pytest.mark.parametrize("package", CORE)
def test_core_package_imports_no_runtime_library(package: str) -> None:
    # A fresh interpreter, so nothing another test imported hides a violation.
    probe = (
        "import importlib, pkgutil, sys\n"
        f"pkg = importlib.import_module({package!r})\n"
        "for info in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + '.'):\n"
        "    importlib.import_module(info.name)\n"
        f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r})\n"
        "print(','.join(bad))\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "", f"{package} pulled in {result.stdout.strip()}"
