"""Waivers (``config/compliance/waivers.yaml``): accepted exceptions with a reason, an owner and an expiry.

A failing finding that matches an unexpired waiver is reported as ``waived`` with the waiver attached.
Once the waiver expires the finding fails again and its detail says when the waiver ran out, so an
exception can never silently become permanent.

File format::

    waivers:
      - rule: aws_s3_bucket_versioning          # a rule id, or "*" for every rule
        resource: "arn:aws:s3:::scratch-*"      # fnmatch pattern over the resource id or name
        reason: scratch buckets hold reproducible data only
        owner: data-platform@example.com
        expires: 2027-03-31                     # valid through the end of that day (UTC)
"""

from __future__ import annotations

import fnmatch
import os
from dataclasses import asdict, replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import yaml

from include.compliance.model import Finding, Waiver
from include.paths import CONFIG_DIR

DEFAULT_WAIVERS_FILE = CONFIG_DIR / "compliance" / "waivers.yaml"
_FIELDS = ("rule", "resource", "reason", "owner", "expires")


class WaiverError(ValueError):
    """The waivers file is malformed (names the entry and the problem)."""


def _expiry(value: Any, where: str) -> str:
    if isinstance(value, datetime):
        value = value.date()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, str):
        try:
            return date.fromisoformat(value.strip()).isoformat()
        except ValueError:
            pass
    raise WaiverError(f"{where}: expires must be a date YYYY-MM-DD, got {value!r}")


def parse_waivers(text: str, source: str = "<string>", known_rules: set[str] | None = None) -> list[Waiver]:
    """Parse and validate a waivers document (rule ids are checked when ``known_rules`` is given)."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise WaiverError(f"{source}: not valid YAML: {exc}") from exc
    if raw is None:
        return []
    if not isinstance(raw, dict) or set(raw) - {"waivers"}:
        raise WaiverError(f"{source}: expected a mapping with one key, 'waivers' (a list)")
    entries = raw.get("waivers") or []
    if not isinstance(entries, list):
        raise WaiverError(f"{source}: 'waivers' must be a list")
    waivers: list[Waiver] = []
    for index, entry in enumerate(entries):
        where = f"{source}: waivers[{index}]"
        if not isinstance(entry, dict):
            raise WaiverError(f"{where}: expected a mapping with {', '.join(_FIELDS)}")
        unknown = sorted(set(entry) - set(_FIELDS))
        if unknown:
            raise WaiverError(f"{where}: unknown field(s) {', '.join(unknown)}")
        missing = [name for name in _FIELDS if entry.get(name) in (None, "")]
        if missing:
            raise WaiverError(f"{where}: missing {', '.join(missing)}")
        for name in ("rule", "resource", "reason", "owner"):
            if not isinstance(entry[name], str) or not entry[name].strip():
                raise WaiverError(f"{where}: {name} must be a non-empty string")
        rule_id = entry["rule"].strip()
        if known_rules is not None and rule_id != "*" and rule_id not in known_rules:
            raise WaiverError(f"{where}: unknown rule {rule_id!r}")
        waivers.append(
            Waiver(
                rule=rule_id,
                resource=entry["resource"].strip(),
                reason=entry["reason"].strip(),
                owner=entry["owner"].strip(),
                expires=_expiry(entry["expires"], where),
            )
        )
    return waivers


def waivers_file() -> Path:
    return Path(os.environ.get("RUNBOOKS_WAIVERS_FILE", DEFAULT_WAIVERS_FILE))


def load_waivers(path: Path | str | None = None, *, check_rules: bool = True) -> list[Waiver]:
    """Load the waivers file; a file named explicitly (argument or env) must exist."""
    explicit = path is not None or "RUNBOOKS_WAIVERS_FILE" in os.environ
    file = Path(path) if path else waivers_file()
    if not file.exists():
        if explicit:
            raise WaiverError(f"waivers file not found: {file}")
        return []
    known: set[str] | None = None
    if check_rules:
        from include.compliance.registry import rule_ids

        known = set(rule_ids())
    return parse_waivers(file.read_text(), source=str(file), known_rules=known)


def matches(waiver: Waiver, finding: Finding) -> bool:
    if waiver.rule not in ("*", finding.rule_id):
        return False
    return fnmatch.fnmatchcase(finding.resource_id, waiver.resource) or fnmatch.fnmatchcase(
        finding.resource_name, waiver.resource
    )


def expired(waiver: Waiver, now: datetime) -> bool:
    """True once the UTC day after ``expires`` has begun."""
    today = (now if now.tzinfo else now.replace(tzinfo=UTC)).astimezone(UTC).date()
    return today > date.fromisoformat(waiver.expires)


def apply_waivers(findings: list[Finding], waivers: list[Waiver] | tuple[Waiver, ...], now: datetime) -> list[Finding]:
    """Waive failing findings with an unexpired matching waiver; note expired ones in the detail."""
    if not waivers:
        return list(findings)
    result: list[Finding] = []
    for finding in findings:
        if finding.status != "fail":
            result.append(finding)
            continue
        found = [w for w in waivers if matches(w, finding)]
        active = [w for w in found if not expired(w, now)]
        if active:
            waiver = max(active, key=lambda w: w.expires)
            result.append(replace(finding, status="waived", waiver=asdict(waiver)))
        elif found:
            last = max(found, key=lambda w: w.expires)
            result.append(
                replace(
                    finding,
                    detail=f"{finding.detail} (waiver expired on {last.expires}; owner {last.owner}: {last.reason})",
                    evidence={**finding.evidence, "expired_waiver": asdict(last)},
                )
            )
        else:
            result.append(finding)
    return result
