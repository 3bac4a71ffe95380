"""Secret redaction: one set of rules for everything the runbooks write (audit, reports, notifications,
results, logs of errors).

- :func:`redact` copies a JSON-able value: entries under secret-looking keys (``password``, ``token``,
  ``connection_string``, ``sas_url``...) become ``***``; every string is scrubbed.
- :func:`scrub` replaces credential material inside free text: ``AccountKey=``, ``password=``, ``token=``,
  ``user:password@`` in URLs, SAS / presigned-URL signatures, bearer / basic tokens, AWS and OAuth client
  secrets, Slack webhook paths, PEM private keys, and any literal secret the caller knows.

Identifiers that merely look secret by name (``kms_key_id``, ``idempotency_key``, tag ``key``) are kept.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

REDACTED = "***"

#: Keys whose values are secrets (matched case-insensitively anywhere in the key).
_SECRET_KEY = re.compile(
    r"password|passwd|passphrase|(^|[_-])pass($|[_-])|pwd|secret|token|credential|api[_-]?key|access[_-]?key|"
    r"private[_-]?key|account[_-]?key|connection[_-]?string|conn[_-]?str|(^|[_-])sas($|[_-])|sas[_-]?(url|token)|"
    r"signature|authorization|auth[_-]?header|cookie|session[_-]?key|keyfile|key[_-]?json|"
    r"service[_-]?account[_-]?json|webhook[_-]?url",
    re.IGNORECASE,
)
#: Keys that look secret by name but are identifiers (KMS key ids / ARNs, idempotency keys, tag keys).
_NOT_SECRET_KEY = re.compile(
    r"^(kms_key(_id|_arn)?|idempotency_key|key|keys|tag_keys|required_keys|token_count)$", re.IGNORECASE
)

#: Credential patterns inside text (group 1 is kept, the secret after it is replaced).
_SECRET_PATTERNS: tuple[re.Pattern[str], ...] = (
    re.compile(r"((?:AccountKey|SharedAccessKey|SharedAccessSignature|password|passwd|pwd|secret|token|"
               r"api[_-]?key|access[_-]?key)\s*=\s*)[^;&\s\"',]+", re.IGNORECASE),
    re.compile(r"([?&](?:sig|signature|X-Amz-Signature|X-Amz-Credential|X-Amz-Security-Token)=)[^&\s\"']+",
               re.IGNORECASE),
    re.compile(r"(\b[a-z][a-z0-9+.-]*://[^/\s:@\"']*:)[^@\s/\"']+(?=@)", re.IGNORECASE),
    re.compile(r"(\b(?:Bearer|Basic)\s+)[A-Za-z0-9._~+/=-]{8,}", re.IGNORECASE),
    re.compile(r"((?:aws_secret_access_key|secret_access_key|SecretAccessKey|client_secret)[\"']?\s*[:=]\s*[\"']?)"
               r"[A-Za-z0-9/+=._-]{8,}", re.IGNORECASE),
    re.compile(r"(hooks\.slack\.com/services/)[^\s\"']+"),
    re.compile(r"(-----BEGIN [A-Z ]*PRIVATE KEY-----)[\s\S]*?(?=-----END|$)"),
)


def scrub(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with credential material (and each literal in ``secrets``) replaced by ``***``."""
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(lambda m: f"{m.group(1)}{REDACTED}", text)
    return text


def is_secret_key(key: str) -> bool:
    """Whether a mapping key names a secret (``password``, ``sas_url``...), not an identifier."""
    return bool(_SECRET_KEY.search(key)) and not _NOT_SECRET_KEY.match(key)


def redact(value: Any, *, key: str | None = None, secrets: Iterable[str] = ()) -> Any:
    """A JSON-able copy of ``value``: secret-named entries replaced, every string scrubbed."""
    known = tuple(secrets)
    if key is not None and is_secret_key(key) and value not in (None, "", [], {}):
        return REDACTED
    if isinstance(value, Mapping):
        return {str(k): redact(v, key=str(k), secrets=known) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [redact(v, secrets=known) for v in value]
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(value, str):
        return scrub(value, known)
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return scrub(str(value), known)


def error_text(exc: BaseException, limit: int = 600) -> str:
    """``Type: message`` of an exception, scrubbed and cut to ``limit`` characters (for results and audit)."""
    text = scrub(f"{type(exc).__name__}: {exc}")
    return text if len(text) <= limit else text[: limit - 3] + "..."
