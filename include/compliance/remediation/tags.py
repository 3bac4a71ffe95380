"""``tags.required``: the shared logic of adding missing tags / labels / metadata, never overwriting.

Each cloud module subclasses :class:`TagsFixerBase` with the two calls that read and add tags.
"""

from __future__ import annotations

from typing import Any

from include.changes.model import NeedsInput
from include.compliance.remediation.registry import Fixer, RemediationError
from include.records import ResourceRecord


def tag_values(options: dict[str, Any]) -> dict[str, str]:
    """The ``tag_values`` option, validated: a non-empty mapping of non-empty keys to string values."""
    values = options.get("tag_values") or {}
    if not values:
        raise NeedsInput('tags.required needs tag_values, e.g. {"owner": "platform-team", "cost-center": "cc-123"}')
    if not isinstance(values, dict):
        raise RemediationError("tag_values must map tag keys to string values")
    bad = [k for k, v in values.items() if not str(k).strip() or v is None or not isinstance(v, (str, int, float))]
    if bad:
        raise RemediationError(f"tag_values: invalid entries {bad}: keys must be non-empty, values strings")
    return {str(k): str(v) for k, v in values.items()}


def canonical(key: str) -> str:
    """Tag keys compare case-insensitively with ``_`` equal to ``-`` (as the required-tags rule does)."""
    return key.strip().lower().replace("_", "-")


class TagsFixerBase(Fixer):
    """Shared logic of ``tags.required``: add the missing keys of ``tag_values``; never overwrite.

    A key counts as present when a tag matches it canonically (``Cost_Center`` is ``cost-center``) and has
    a non-empty value, exactly as the compliance rule reads it. A present value is never changed; an
    empty one is filled in under its existing name, so no twin key appears.
    Subclasses implement ``current_tags`` and ``add_tags``; the state is ``{"tags": {...}}``.
    """

    recompute_on_apply = True  # a value set by someone between plan and apply is kept

    def normalise_key(self, key: str, record: ResourceRecord) -> str:
        """The key as this resource stores a new tag (Azure metadata names cannot contain '-')."""
        return key

    def current_tags(self, record: ResourceRecord) -> dict[str, str]:
        raise NotImplementedError

    def add_tags(self, record: ResourceRecord, current: dict[str, str], missing: dict[str, str]) -> None:
        """Store ``missing`` (actual key names -> values) on the resource, keeping every other tag."""
        raise NotImplementedError

    def validate_tag(self, key: str, value: str, record: ResourceRecord) -> None:
        """Raise RemediationError when this cloud would refuse the key or value."""

    def wanted(self, record: ResourceRecord) -> dict[str, str]:
        wanted = {self.normalise_key(k, record): v for k, v in tag_values(self.options).items()}
        for key, value in wanted.items():
            self.validate_tag(key, value, record)
        return wanted

    def read(self, record: ResourceRecord) -> dict[str, Any]:
        return {"tags": dict(self.current_tags(record))}

    @staticmethod
    def _match(current: dict[str, str], key: str) -> str | None:
        """The existing key matching ``key`` canonically, preferring one with a value."""
        names = [name for name in current if canonical(name) == canonical(key)]
        names.sort(key=lambda name: (not str(current[name]).strip(), name != key))
        return names[0] if names else None

    def _value(self, current: dict[str, str], key: str) -> str | None:
        name = self._match(current, key)
        value = current[name] if name is not None else None
        return value if value is not None and str(value).strip() else None

    def desired(self, state: dict[str, Any], record: ResourceRecord) -> dict[str, Any]:
        current: dict[str, str] = state.get("tags") or {}
        return {"tags": {key: self._value(current, key) or value for key, value in self.wanted(record).items()}}

    def satisfied(self, state: dict[str, Any], desired: dict[str, Any]) -> bool:
        current: dict[str, str] = state.get("tags") or {}
        return all(self._value(current, key) is not None for key in desired["tags"])

    def project(self, state: dict[str, Any], desired: dict[str, Any]) -> dict[str, Any]:
        current: dict[str, str] = state.get("tags") or {}
        return {"tags": {key: self._value(current, key) for key in desired["tags"]
                         if self._value(current, key) is not None}}

    def missing(self, state: dict[str, Any], desired: dict[str, Any]) -> dict[str, str]:
        """Actual key names to set: an empty existing key keeps its name, an absent one gets ``key``."""
        current: dict[str, str] = state.get("tags") or {}
        return {
            (self._match(current, key) or key): value
            for key, value in desired["tags"].items()
            if self._value(current, key) is None
        }

    def request_for(self, record: ResourceRecord, state: dict[str, Any], desired: dict[str, Any]) -> dict[str, Any]:
        return {"add": self.missing(state, desired)}

    def describe(self, record: ResourceRecord, before: dict[str, Any], after: dict[str, Any]) -> str:
        added = {k: v for k, v in after["tags"].items() if k not in before["tags"]}
        return f"{record.name}: add {', '.join(f'{k}={v}' for k, v in added.items())}"

    def write(self, record: ResourceRecord, state: dict[str, Any], desired: dict[str, Any]) -> dict[str, Any]:
        missing = self.missing(state, desired)
        if missing:
            self.add_tags(record, dict(state.get("tags") or {}), missing)
        return {"add": missing}
