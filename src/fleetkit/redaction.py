"""The one redaction of secrets in text: start-up errors, log lines, exception messages.

:func:`redact_text` hides

- the password of every URL, whatever it contains: the userinfo of ``scheme://user:pass@host``
  ends at the *last* ``@`` before the next URL or whitespace, so ``redis://:se/cret@h`` and
  ``redis://u:p@ss@h`` both become ``scheme://user:***@h``; userinfo without a ``:`` (a bare
  token, ``https://ghp_x@github.com``) is hidden whole;
- inline ``password=...``, ``secret: ...``, ``token=...``, ``api_key=...`` values (query strings,
  DSNs in key=value form, messages).

Over-redacting a URL whose path or query holds an ``@`` is the accepted cost: nothing after
``://`` up to the last ``@`` is ever shown.
"""

from __future__ import annotations

import re

__all__ = ["redact_text"]

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
# A URL's text: from the scheme to whitespace or a quote (quotes end a repr()'d value).
_URL = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://)([^\s'\"<>`]*)")
_INLINE = re.compile(
    r"(?i)\b(password|passwd|pwd|secret|token|api[_-]?key)(\s*[=:]\s*)(?!\*\*\*)[^\s,;&'\"]+")


def _authority(rest: str) -> str:
    """``rest`` (the text after ``scheme://``) with its userinfo's secret part replaced."""
    glued = _SCHEME.search(rest)  # "a://u:p@h,b://..." : the next URL is redacted on its own
    head, tail = (rest[:glued.start()], rest[glued.start():]) if glued else (rest, "")
    at = head.rfind("@")
    if at >= 0:
        user, colon, _ = head[:at].partition(":")
        head = (f"{user}:***" if colon else "***") + head[at:]
    return head + (_URL.sub(_url, tail) if tail else "")


def _url(match: re.Match[str]) -> str:
    return match.group(1) + _authority(match.group(2))


def redact_text(text: str) -> str:
    """``text`` with URL passwords and inline credential values replaced by ``***``."""
    if "://" in text:
        text = _URL.sub(_url, text)
    return _INLINE.sub(r"\1\2***", text)
