"""Every error fleetkit raises for bad constructor input is a FleetkitError (errors.py).

Walks the public classes (``__all__``) of every public fleetkit module and calls each with bad
values of the right type, one parameter at a time: negative and zero numbers, empty and
hash-tag-breaking strings, an unknown choice. A constructor may accept the value or refuse it,
but only with a :class:`~fleetkit.errors.FleetkitError` (``ConfigError`` is also a ValueError).
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import pkgutil
import types
import typing
import warnings
from collections.abc import Iterator
from typing import Any

import pytest

import fleetkit
from fleetkit.errors import ConfigError, FleetkitError, InvalidArgument
from fleetkit.redis import scripts

# pydantic's model: bad values raise its ValidationError; load_settings() is the API that turns
# them into one ConfigError naming every setting (tests/test_config.py).
NOT_CHECKED = {"fleetkit.config.Settings"}
BAD_NUMBERS = (-1, 0)
BAD_STRINGS = ("", "{}", "no such choice")


def _public_classes() -> list[type]:
    found: dict[str, type] = {}
    for info in pkgutil.walk_packages(fleetkit.__path__, "fleetkit."):
        if any(part.startswith("_") for part in info.name.split(".")) or ".migrations" in info.name:
            continue
        module = importlib.import_module(info.name)
        for name in getattr(module, "__all__", ()):
            obj = getattr(module, name, None)
            if (inspect.isclass(obj) and obj.__module__.startswith("fleetkit")
                    and not issubclass(obj, BaseException)
                    and not getattr(obj, "_is_protocol", False)):
                found[f"{obj.__module__}.{obj.__qualname__}"] = obj
    return [cls for key, cls in sorted(found.items()) if key not in NOT_CHECKED]


def _kind(hint: Any) -> str:
    """int, float, str, bool or Literal when that is all ``hint`` allows (None aside)."""
    args = [a for a in typing.get_args(hint) if a is not type(None)] \
        if typing.get_origin(hint) in (typing.Union, types.UnionType) else [hint]
    kinds = set()
    for arg in args:
        if typing.get_origin(arg) is typing.Literal:
            kinds.add("Literal")
        elif arg in (bool, int, float, str):
            kinds.add(arg.__name__)
        else:
            return "object"
    return kinds.pop() if len(kinds) == 1 else "object"


def _plausible(kind: str, hint: Any) -> Any:
    if kind == "Literal":
        arg = hint if typing.get_origin(hint) is typing.Literal else next(
            a for a in typing.get_args(hint) if typing.get_origin(a) is typing.Literal)
        return typing.get_args(arg)[0]
    return {"bool": False, "float": 1.0, "int": 1, "str": "x"}.get(kind)


def _calls(cls: type) -> list[tuple[str, dict[str, Any]]] | None:
    """One call per bad value; None when the class needs arguments this walk cannot make."""
    try:
        sig = inspect.signature(cls)
        hints = typing.get_type_hints(cls.__init__)
    except (TypeError, ValueError, NameError):
        return None
    params = [p for p in sig.parameters.values()
              if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    kinds = {p.name: _kind(hints.get(p.name, Any)) for p in params}
    if any(kinds[p.name] == "object" and p.default is p.empty for p in params):
        return None
    base = {p.name: _plausible(kinds[p.name], hints.get(p.name)) for p in params
            if p.default is p.empty}
    calls = []
    for p in params:
        kind = kinds[p.name]
        bad: tuple[Any, ...] = (BAD_NUMBERS if kind in ("int", "float")
                                else BAD_STRINGS if kind in ("str", "Literal") else ())
        calls += [(f"{p.name}={value!r}", {**base, p.name: value}) for value in bad]
    return calls


@pytest.fixture(autouse=True)
def _keep_script_registry() -> Iterator[None]:
    # Script(...) registers itself for RedisClients.preload: a bad-source script made here
    # must not reach later tests' Redis.
    saved = dict(scripts._REGISTRY)
    yield
    scripts._REGISTRY.clear()
    scripts._REGISTRY.update(saved)


CLASSES = [cls for cls in _public_classes() if _calls(cls) is not None]


def test_the_walk_finds_the_components() -> None:
    names = {cls.__name__ for cls in CLASSES}
    assert {"RateLimiter", "SessionStore", "SessionMonitor", "Limit", "Database",
            "CircuitBreaker", "HealthRegistry"} <= names


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: f"{c.__module__}.{c.__qualname__}")
async def test_bad_constructor_input_raises_only_fleetkit_errors(cls: type) -> None:
    wrong = []
    for label, kwargs in _calls(cls) or ():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                obj = cls(**kwargs)
        except FleetkitError:
            continue
        except Exception as exc:
            wrong.append(f"{label}: {type(exc).__name__}: {exc}")
            continue
        aclose = getattr(obj, "aclose", None)
        if inspect.iscoroutinefunction(aclose):
            with contextlib.suppress(Exception):  # closing a half-configured object
                await aclose()
    assert wrong == []


def test_errors_keep_the_builtin_callers_caught() -> None:
    assert issubclass(ConfigError, ValueError) and issubclass(InvalidArgument, ValueError)
