"""Pieces several AWS rule modules share: attribute access, the boolean-attribute rule shape and the
regulation controls every at-rest-encryption or backup rule cites."""

from __future__ import annotations

from typing import Any

from include.compliance.model import Verdict
from include.compliance.registry import verdict
from include.records import ResourceRecord

#: Regulation controls of every "data is encrypted at rest" rule.
AT_REST: dict[str, list[str]] = {"GDPR": ["Art.32"], "HIPAA": ["164.312(a)(2)(iv)"]}
#: Regulation controls of every "data can be restored" rule.
BACKUP: dict[str, list[str]] = {"HIPAA": ["164.308(a)(7)(ii)(A)"]}


def attr(record: ResourceRecord, key: str) -> Any:
    """The record attribute ``key`` (None when absent)."""
    return record.attributes.get(key)


def bool_rule(record: ResourceRecord, key: str, ok: str, failed: str) -> Verdict | None:
    """The common shape: a documented boolean that must be true (absent = not applicable)."""
    value = attr(record, key)
    if value is None:
        return None
    return verdict(value is True, ok, failed, **{key: value})
