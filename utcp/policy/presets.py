"""The preset registry, and loading a policy by name: a preset (`linux`) or a user policy
(`package.module:Name`, a Policy subclass, instance or factory), wherever a command takes `--policy`.

`describe_policies()` and `describe_knobs()` give what `utcp policies [--json]` lists.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from utcp.policy.base import KNOBS, Policy
from utcp.policy.linux import LinuxPolicy, LinuxTwRecyclePolicy
from utcp.policy.rfc import Rfc793Policy, Rfc5961Policy, Rfc7323Policy

__all__ = ["PRESETS", "describe_knobs", "describe_policies", "describe_policy", "resolve_policy"]

PRESETS: Mapping[str, type[Policy]] = MappingProxyType(
    {
        "linux": LinuxPolicy,
        "linux-tw-recycle": LinuxTwRecyclePolicy,
        "rfc793": Rfc793Policy,
        "rfc5961": Rfc5961Policy,
        "rfc7323": Rfc7323Policy,
    }
)


def resolve_policy(spec: str) -> Policy:
    """A fresh policy for `spec`: a preset name (see PRESETS) or `package.module:Name`, where Name is a
    Policy subclass (instantiated without arguments), a Policy instance (returned as is) or a callable
    returning one. ValueError says what is wrong: unknown preset, module not importable, attribute missing,
    or not a Policy."""
    spec = spec.strip()
    preset = PRESETS.get(spec)
    if preset is not None:
        return preset()
    if ":" not in spec:
        known = ", ".join(PRESETS)
        hint = " (a user policy is written package.module:Name)" if "." in spec else ""
        raise ValueError(f"unknown policy preset {spec!r}{hint}; known presets: {known}")
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ValueError(f"policy {spec!r}: expected package.module:Name")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # ImportError, or the module's own error while importing
        raise ValueError(f"policy {spec!r}: cannot import module {module_name!r}: {exc}") from exc
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ValueError(f"policy {spec!r}: module {module_name!r} has no attribute {attr!r}") from None
    if isinstance(obj, Policy):
        return obj
    if inspect.isclass(obj):
        if not issubclass(obj, Policy):
            raise ValueError(f"policy {spec!r}: class {obj.__name__} is not a utcp.policy.Policy subclass")
        return obj()
    if callable(obj):
        made = obj()
        if not isinstance(made, Policy):
            raise ValueError(
                f"policy {spec!r}: factory returned {type(made).__name__}, not a utcp.policy.Policy"
            )
        return made
    raise ValueError(f"policy {spec!r}: {type(obj).__name__} is neither a Policy, its class, nor a factory")


def _summary(cls: type) -> str:
    doc = inspect.getdoc(cls) or ""
    return doc.split("\n\n", 1)[0].replace("\n", " ").strip()


def describe_policy(policy: Policy, name: str | None = None) -> dict[str, Any]:
    """One policy as JSON-ready data: name, class path, docstring summary and text, knob values."""
    cls = type(policy)
    return {
        "name": name if name is not None else policy.name,
        "class": f"{cls.__module__}:{cls.__qualname__}",
        "summary": _summary(cls),
        "doc": inspect.getdoc(cls) or "",
        "knobs": policy.knobs(),
    }


def describe_policies() -> list[dict[str, Any]]:
    """Every preset, in PRESETS order (`utcp policies --json`)."""
    return [describe_policy(cls(), name) for name, cls in PRESETS.items()]


def describe_knobs() -> list[dict[str, Any]]:
    """Every knob: name, type, allowed values, the states it applies to, what it means, and its value in
    each preset."""
    presets = {name: cls() for name, cls in PRESETS.items()}
    return [
        {
            "name": k.name,
            "type": k.kind.__name__,
            "choices": list(k.choices),
            "states": k.states,
            "doc": k.doc,
            "presets": {name: p.knobs()[k.name] for name, p in presets.items()},
        }
        for k in KNOBS
    ]
