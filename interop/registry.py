"""Finding scenarios and selecting cells.

Scenario modules are `interop.scenario_a` .. `interop.scenario_e`, each with a module-level
`SCENARIO = Scenario(...)`. A module that is not there is skipped (the catalogue grows one module at a
time); a module that is there but fails to import is an error, never a silent gap in the matrix.

The environment variable `UTCP_SCENARIOS` (comma-separated module names, e.g.
`UTCP_SCENARIOS=tests.interop.fakes`) replaces the default list: how tests and users plug in their own
scenarios. Modules named there must exist. `module:NAME` takes the Scenario from attribute NAME instead
of `SCENARIO` (several scenarios in one module).
"""

from __future__ import annotations

import fnmatch
import importlib
import importlib.util
import os
from collections.abc import Iterable, Sequence

from interop.model import Cell, Scenario

DEFAULT_MODULES: tuple[str, ...] = tuple(f"interop.scenario_{letter}" for letter in "abcde")
ENV_MODULES = "UTCP_SCENARIOS"
_GLOB_CHARS = frozenset("*?[")


class ScenarioError(Exception):
    """A scenario module that exists but cannot be used (import error, no SCENARIO, bad cells)."""


def scenario_modules() -> tuple[tuple[str, ...], bool]:
    """(module names, whether each must exist): `UTCP_SCENARIOS` when set, else the default catalogue."""
    listed = os.environ.get(ENV_MODULES, "").strip()
    if listed:
        return tuple(name.strip() for name in listed.split(",") if name.strip()), True
    return DEFAULT_MODULES, False


def _exists(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:  # the parent package is missing
        return False


def load_scenarios(modules: Sequence[str] | None = None) -> list[Scenario]:
    """The scenarios of `modules` (default: `scenario_modules()`; `module` or `module:ATTR`), in order,
    names unique.

    Modules given explicitly (argument or `UTCP_SCENARIOS`) must exist; default ones may be missing.
    """
    required = modules is not None
    if modules is None:
        modules, required = scenario_modules()
    scenarios: list[Scenario] = []
    for spec in modules:
        name, _, attribute = spec.partition(":")
        if not _exists(name):
            if required:
                raise ScenarioError(f"scenario module {name!r} not found")
            continue
        try:
            module = importlib.import_module(name)
        except Exception as exc:
            raise ScenarioError(
                f"scenario module {name} failed to import: {type(exc).__name__}: {exc}"
            ) from exc
        attribute = attribute or "SCENARIO"
        scenario = getattr(module, attribute, None)
        if not isinstance(scenario, Scenario):
            raise ScenarioError(f"scenario module {name} has no module-level `{attribute} = Scenario(...)`")
        if any(s.name == scenario.name for s in scenarios):
            raise ScenarioError(f"scenario name {scenario.name!r} defined twice (again in {name})")
        scenarios.append(scenario)
    return scenarios


def scenario_cells(scenario: Scenario) -> list[Cell]:
    """`scenario.cells()`, checked: each cell names this scenario and its roles, ids are unique."""
    try:
        cells = list(scenario.cells())
    except Exception as exc:
        raise ScenarioError(f"scenario {scenario.name}: cells() failed: {type(exc).__name__}: {exc}") from exc
    seen: set[str] = set()
    for cell in cells:
        if cell.scenario != scenario.name:
            raise ScenarioError(f"cell {cell.id} is listed by scenario {scenario.name}")
        unknown = [role for role, _impl in cell.roles if role not in scenario.roles]
        if unknown:
            raise ScenarioError(
                f"cell {cell.id}: role(s) {unknown} not in {scenario.name}'s {scenario.roles}"
            )
        if cell.id in seen:
            raise ScenarioError(f"cell {cell.id} listed twice")
        seen.add(cell.id)
    return cells


def all_cells(scenarios: Iterable[Scenario]) -> list[Cell]:
    return [cell for scenario in scenarios for cell in scenario_cells(scenario)]


def matches_pattern(cell: Cell, pattern: str) -> bool:
    """`--only`: a glob (has `*`, `?` or `[`) matches the whole `Cell.id` (fnmatch, case-sensitive);
    anything else matches as a substring of the id."""
    if _GLOB_CHARS & set(pattern):
        return fnmatch.fnmatchcase(cell.id, pattern)
    return pattern in cell.id


def select(cells: Iterable[Cell], only: str | None, *, backend: str | None = None) -> list[Cell]:
    """The cells matching `only` (see `matches_pattern`; None keeps all) and `backend` (None: both)."""
    return [
        cell
        for cell in cells
        if (only is None or matches_pattern(cell, only)) and (backend is None or cell.backend == backend)
    ]
