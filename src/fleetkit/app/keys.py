"""Keys derived from ``SECRET_KEY``: one secret setting, a separate key per use.

* ``route``: keys the user part of session tokens (``fleetkit.sessions.tokens.make_route``), so
  nobody without the secret can map a token, or a Redis key, to a user id.
* ``account``: keys the hash of an email in rate-limit keys and audit events (who was targeted,
  without storing or revealing the address; an unkeyed hash of an email is easy to reverse).
* ``device``: signs the device cookie that lets a user's known browser past the per-account
  login lockout (:mod:`fleetkit.app.login`).

Every instance of a fleet must share ``SECRET_KEY`` (tokens minted on one are listed and revoked
on another). Production refuses to start without it; elsewhere a per-process key is generated
with a warning, which is only right for one process (embedded mode).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass

from fleetkit.config import Settings

__all__ = ["Keys"]

log = logging.getLogger("fleetkit.app")


def _derive(master: bytes, purpose: str) -> bytes:
    return hmac.new(master, f"fleetkit/{purpose}".encode(), hashlib.sha256).digest()


@dataclass(frozen=True, slots=True)
class Keys:
    route: bytes
    account: bytes
    device: bytes

    @classmethod
    def from_secret(cls, secret: bytes) -> Keys:
        return cls(route=_derive(secret, "session-route"), account=_derive(secret, "account"),
                   device=_derive(secret, "device-cookie"))

    @classmethod
    def from_settings(cls, settings: Settings) -> Keys:
        if settings.secret_key is not None:
            return cls.from_secret(settings.secret_key.get_secret_value().encode())
        log.warning("SECRET_KEY is not set: using a key generated for this process only. "
                    "Instances (and workers) that do not share SECRET_KEY cannot list or revoke "
                    "each other's sessions; set SECRET_KEY to the same secret on every instance")
        return cls.from_secret(secrets.token_bytes(32))

    def account_hash(self, email: str) -> str:
        """Keyed hash of a (normalised) email: 128 bits, hex."""
        return hmac.new(self.account, email.encode("utf-8"), hashlib.sha256).hexdigest()[:32]
