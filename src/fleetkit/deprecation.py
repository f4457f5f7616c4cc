"""Deprecated names kept for one release: a module-level ``__getattr__`` that warns."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

__all__ = ["renamed"]


def renamed(module: str, **aliases: tuple[Any, str]) -> Callable[[str], Any]:
    """``__getattr__ = renamed(__name__, Old=(New, "New"))``: ``module.Old`` warns
    (DeprecationWarning, naming the replacement) and returns ``New``."""

    def __getattr__(name: str) -> Any:
        if name in aliases:
            target, hint = aliases[name]
            warnings.warn(f"{module}.{name} is deprecated; use {hint}", DeprecationWarning,
                          stacklevel=2)
            return target
        raise AttributeError(f"module {module!r} has no attribute {name!r}")

    return __getattr__
