"""Authenticating a delivery: bearer tokens and HMAC-SHA256 signatures (stdlib only).

Every comparison is constant-time (:func:`hmac.compare_digest`) and every configured secret is tried,
so neither the answer nor its timing says which secret or which signature was close. Nothing here logs:
callers get a reason without the secret or the signature in it.

- Alertmanager: ``Authorization: Bearer <token>``, as ``http_config.authorization`` sends it.
- PagerDuty V3: ``X-PagerDuty-Signature: v1=<hex>[,v1=<hex>...]``, the HMAC-SHA256 of the raw body with
  the subscription's signing secret, hex encoded. PagerDuty sends one signature per active secret while it
  rotates; any one matching any of our secrets is enough.
- Generic: ``X-Runbooks-Timestamp: <unix seconds>`` and ``X-Runbooks-Signature: v1=<hex>[,...]``, the
  HMAC-SHA256 of ``<timestamp>.<raw body>``. The timestamp must be within :data:`GENERIC_TOLERANCE_S`
  of the receiver's clock (a captured request cannot be replayed later; within the window the event id
  makes a replay a duplicate).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

#: How far a generic delivery's timestamp may be from now, either way (seconds).
GENERIC_TOLERANCE_S = 300
#: Secrets shorter than this are not used (a guessable secret is worse than none: it looks configured).
MIN_SECRET_LENGTH = 16
_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")
_TIMESTAMP = re.compile(r"^[0-9]{1,12}$")
_SPLIT = re.compile(r"[\s,]+")


class AuthError(Exception):
    """The delivery is not authenticated; ``str(error)`` is safe to return and to record."""


@dataclass(frozen=True)
class Secrets:
    """The usable secrets of one source (several while rotating) and what was wrong with the others."""

    values: tuple[str, ...]
    problems: tuple[str, ...] = ()


def parse_secrets(raw: str | None) -> Secrets:
    """Secrets from a connection password: one or more, separated by commas, spaces or newlines."""
    values: list[str] = []
    problems: list[str] = []
    for index, item in enumerate(part for part in _SPLIT.split(raw or "") if part):
        if len(item) < MIN_SECRET_LENGTH:
            problems.append(f"secret #{index + 1} is shorter than {MIN_SECRET_LENGTH} characters and is not used")
        else:
            values.append(item)
    if not values and not problems:
        problems.append("no secret is set (the connection's password is empty)")
    return Secrets(tuple(values), tuple(problems))


def _any_equal(candidates: Iterable[bytes], expected: Sequence[bytes]) -> bool:
    """Whether any candidate equals any expected value; every pair is compared (no early exit)."""
    found = False
    for candidate in candidates:
        for value in expected:
            found |= hmac.compare_digest(candidate, value)
    return found


def check_bearer(authorization: str | None, secrets: Secrets) -> None:
    """Accept ``Authorization: Bearer <token>`` when the token is one of ``secrets``."""
    if not secrets.values:
        raise AuthError("this source has no usable secret configured")
    if not authorization:
        raise AuthError("missing Authorization header (expected: Bearer <token>)")
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthError("Authorization must be: Bearer <token>")
    if not _any_equal([token.strip().encode()], [s.encode() for s in secrets.values]):
        raise AuthError("invalid bearer token")


def sign(secret: str, message: bytes) -> str:
    """Hex HMAC-SHA256 of ``message`` with ``secret``."""
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def _v1_signatures(header: str | None, name: str) -> list[bytes]:
    if not header:
        raise AuthError(f"missing {name} header")
    found = []
    for part in header.split(","):
        version, _, value = part.strip().partition("=")
        if version == "v1" and _HEX64.match(value):
            found.append(value.lower().encode())
    if not found:
        raise AuthError(f"{name} holds no v1=<hex sha256> signature")
    return found[:16]  # PagerDuty sends one per active secret; more than a few is not a rotation


def check_signature(header: str | None, body: bytes, secrets: Secrets, *, name: str) -> None:
    """Accept ``v1=<hex>[,v1=<hex>...]`` when one signature is the HMAC of ``body`` with one of ``secrets``."""
    if not secrets.values:
        raise AuthError("this source has no usable secret configured")
    given = _v1_signatures(header, name)
    expected = [sign(secret, body).encode() for secret in secrets.values]
    if not _any_equal(given, expected):
        raise AuthError(f"{name} does not match the body")


def check_pagerduty(header: str | None, body: bytes, secrets: Secrets) -> None:
    """PagerDuty V3: ``X-PagerDuty-Signature`` over the raw body."""
    check_signature(header, body, secrets, name="X-PagerDuty-Signature")


def generic_message(timestamp: str, body: bytes) -> bytes:
    """What the generic source signs: ``<timestamp>.<raw body>``."""
    return timestamp.encode() + b"." + body


def check_generic(
    timestamp: str | None, header: str | None, body: bytes, secrets: Secrets, *, now: float,
    tolerance: float = GENERIC_TOLERANCE_S,
) -> None:
    """Generic HMAC: the timestamp within ``tolerance`` of ``now``, then the signature over timestamp + body."""
    if not timestamp:
        raise AuthError("missing X-Runbooks-Timestamp header (unix seconds)")
    if not _TIMESTAMP.match(timestamp.strip()):
        raise AuthError("X-Runbooks-Timestamp must be unix seconds")
    stamp = timestamp.strip()
    # Check the signature first, so an unauthenticated sender learns nothing about our clock.
    check_signature(header, generic_message(stamp, body), secrets, name="X-Runbooks-Signature")
    skew = now - int(stamp)
    if abs(skew) > tolerance:
        raise AuthError(f"stale timestamp: {abs(skew):.0f} s from the receiver's clock (at most {tolerance:.0f} s)")
