"""Validated types for everything a client sends: ids, offsets, text, event ids.

Declared once and used by every route model and parameter, so input the datastores cannot hold
is a 422 problem+json at the edge, never a driver error (a 500) deep in a query:

- :data:`DbId` / :data:`DbOffset`: an integer inside PostgreSQL's BIGINT (and SQLite's INTEGER)
  range; ``9223372036854775808`` overflows both drivers.
- :data:`SafeText`: text without NUL (PostgreSQL text cannot hold it:
  ``CharacterNotInRepertoireError``) and without lone surrogates (JSON's ``"\\ud800"`` has no UTF-8
  form, so every driver and the password hasher fail to encode it).
- :data:`EventIdText`: a canonical lower-case UUID string (the audit trail's cursor).
"""

from __future__ import annotations

import re
from typing import Annotated

from annotated_types import Interval
from pydantic import AfterValidator, StringConstraints

from fleetkit.errors import InvalidArgument

__all__ = ["BIGINT_MAX", "DbId", "DbOffset", "EventIdText", "SafeText", "check_safe_text"]

BIGINT_MAX = 2**63 - 1
_UNSAFE = re.compile("[\x00\ud800-\udfff]")


def check_safe_text(value: str) -> str:
    """``value`` unchanged, or ValueError when it holds NUL or a lone surrogate."""
    if _UNSAFE.search(value) is not None:
        raise InvalidArgument("text must not contain NUL characters or unpaired surrogates")
    return value


DbId = Annotated[int, Interval(ge=1, le=BIGINT_MAX)]
DbOffset = Annotated[int, Interval(ge=0, le=BIGINT_MAX)]
SafeText = Annotated[str, AfterValidator(check_safe_text)]
EventIdText = Annotated[str, StringConstraints(
    pattern=r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")]
