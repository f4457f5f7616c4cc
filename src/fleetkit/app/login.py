"""Login protection: brute force and credential stuffing stopped without handing attackers a
lockout of the real user (design and numbers in docs/security.md, "Login protection").

Four limits, all counting every attempt:

* per client address (``RATE_LIMIT_LOGIN``, the rate-limit middleware's ``login`` policy):
  one address guessing many accounts;
* per account and address (``RATE_LIMIT_LOGIN_ACCOUNT_IP``): one address guessing one account;
* per account (``RATE_LIMIT_LOGIN_ACCOUNT``, much higher): many addresses guessing one account.
  Only clients the account does not know count against it and are locked out by it: a request
  with a valid device cookie of this account skips it (and counts against the device instead),
  and an address with a live session of this account passes it;
* per device cookie (``RATE_LIMIT_LOGIN_DEVICE``): a stolen device cookie is still limited.

The route's decision is one limiter call (:meth:`LoginGuard.check`: the keys are queued into one
pipeline); the session list behind "known address" is read only while the account is locked.
Accounts are named by a keyed hash (:meth:`Keys.account_hash`), in Redis and in audit events.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from fleetkit.app.keys import Keys
from fleetkit.config import Settings
from fleetkit.ratelimit import Decision, Limit, RateLimiter, parse_limits

__all__ = ["DEVICE_MAX_AGE", "REASONS", "LoginGuard", "Verdict"]

DEVICE_MAX_AGE = 180 * 86_400
_DEVICE_RE = re.compile(r"^([A-Za-z0-9_-]{16})\.([A-Za-z0-9_-]{24})$")
REASONS = {"login-account-ip": "too many attempts for this account from this address",
           "login-account": "too many attempts for this account",
           "login-device": "too many attempts from this device"}


@dataclass(slots=True)
class Verdict:
    """The limits of one login attempt; ``denied`` names the first exhausted policy."""

    account: str
    device: str | None
    results: list[tuple[str, Decision]]
    denied: str | None

    @property
    def locked_for_unknown_clients(self) -> bool:
        """Only the per-account limit refused: a known address may still pass."""
        return self.denied == "login-account"


class LoginGuard:
    def __init__(self, *, limiter: RateLimiter, keys: Keys, account_ip: tuple[Limit, ...],
                 account: tuple[Limit, ...], device: tuple[Limit, ...],
                 cookie_secure: bool = True) -> None:
        self.limiter = limiter
        self.keys = keys
        self.limits = {"login-account-ip": account_ip, "login-account": account,
                       "login-device": device}
        self.cookie_name = "__Host-device" if cookie_secure else "device"
        self._attrs = "Path=/; HttpOnly; SameSite=Strict" + ("; Secure" if cookie_secure else "")

    @classmethod
    def from_settings(cls, settings: Settings, *, limiter: RateLimiter, keys: Keys) -> LoginGuard:
        return cls(limiter=limiter, keys=keys,
                   account_ip=parse_limits(settings.rate_limit_login_account_ip),
                   account=parse_limits(settings.rate_limit_login_account),
                   device=parse_limits(settings.rate_limit_login_device),
                   cookie_secure=settings.session_cookie_secure)

    def account_hash(self, email: str) -> str:
        return self.keys.account_hash(email)

    # --- device cookies ------------------------------------------------------------------------
    def _mac(self, account: str, nonce: str) -> str:
        digest = hmac.new(self.keys.device, f"{account}.{nonce}".encode(), hashlib.sha256)
        return base64.urlsafe_b64encode(digest.digest()[:18]).decode()

    def device_of(self, cookie: str | None, account: str) -> str | None:
        """The device id of a cookie issued to ``account`` (None if absent, forged or another
        account's)."""
        match = _DEVICE_RE.match(cookie or "")
        if match is None:
            return None
        nonce, mac = match.groups()
        return nonce if hmac.compare_digest(mac, self._mac(account, nonce)) else None

    def device_cookie(self, account: str, device: str | None) -> str:
        """``Set-Cookie`` value binding this browser to ``account`` (kept id when it had one)."""
        nonce = device or secrets.token_urlsafe(12)
        return (f"{self.cookie_name}={nonce}.{self._mac(account, nonce)}; {self._attrs}; "
                f"Max-Age={DEVICE_MAX_AGE}")

    # --- the decision --------------------------------------------------------------------------
    async def check(self, account: str, ip: str, device: str | None) -> Verdict:
        if device is not None:
            names = ["login-device"]
            keys = [f"login-device:{device}"]
        else:
            names = ["login-account-ip", "login-account"]
            keys = [f"login-account-ip:{account}:{ip}", f"login-account:{account}"]
        decisions = await self.limiter.hit_all(
            [(key, self.limits[name], 1, name) for key, name in zip(keys, names, strict=True)])
        results = list(zip(names, decisions, strict=True))
        denied = next((name for name, d in results if not d.allowed), None)
        return Verdict(account, device, results, denied)
