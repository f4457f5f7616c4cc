"""Password hashing with Argon2id (argon2-cffi), off the event loop.

Hashing costs tens of milliseconds of CPU by design; running it in the default executor keeps
the event loop answering other requests meanwhile.
"""

from __future__ import annotations

import asyncio

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

__all__ = ["hash_password", "verify_password"]

# OWASP's Argon2id minimum (m=19 MiB, t=2, p=1): strong, and cheap enough for a login endpoint.
_HASHER = PasswordHasher(time_cost=2, memory_cost=19_456, parallelism=1)
# Verified against when the user does not exist, so timing does not reveal registered emails.
_DUMMY = _HASHER.hash("fleetkit-timing-equaliser")


async def hash_password(password: str) -> str:
    return await asyncio.get_running_loop().run_in_executor(None, _HASHER.hash, password)


def _verify(stored: str | None, password: str) -> bool:
    try:
        return _HASHER.verify(stored or _DUMMY, password) and stored is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


async def verify_password(stored: str | None, password: str) -> bool:
    """True when ``password`` matches ``stored``; ``stored=None`` still spends the same time."""
    return await asyncio.get_running_loop().run_in_executor(None, _verify, stored, password)
