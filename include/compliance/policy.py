"""The compliance policy (``config/compliance/policy.yaml``): what fails a run, what is off, thresholds.

Validated when loaded, against the rule registry: an unknown severity, rule id or parameter, or a
parameter of the wrong type is a :class:`PolicyError` naming the entry, never a silently ignored line.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from include.compliance.model import SEVERITIES, Severity
from include.compliance.registry import RuleMeta, get_rule, rule_ids
from include.paths import CONFIG_DIR

DEFAULT_POLICY_FILE = CONFIG_DIR / "compliance" / "policy.yaml"


class PolicyError(ValueError):
    """The policy file is missing, malformed, or names an unknown rule / parameter."""


class Policy(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    #: New or still-open failing findings of these severities fail the compliance run.
    fail_on: tuple[Severity, ...] = ("critical", "high")
    #: Rules not evaluated at all (their findings disappear from reports; prefer a waiver for exceptions).
    disabled_rules: tuple[str, ...] = ()
    #: Tag / label / metadata keys every taggable resource must carry (the *_required_* rules).
    required_tags: tuple[str, ...] = Field(default=("owner", "cost-center", "data-classification"), min_length=1)
    #: Per-rule threshold overrides: {rule_id: {param: value}} (defaults are in each rule's metadata).
    parameters: dict[str, dict[str, Any]] = Field(default_factory=dict)

    @field_validator("required_tags")
    @classmethod
    def _non_empty_keys(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if any(not key.strip() for key in value):
            raise ValueError("tag keys must not be empty")
        return value

    def params_for(self, meta: RuleMeta) -> dict[str, Any]:
        """The rule's thresholds: its metadata defaults, then ``required_tags``, then overrides."""
        params: dict[str, Any] = dict(meta.params)
        if "required_tags" in params:
            params["required_tags"] = tuple(self.required_tags)
        params.update(self.parameters.get(meta.id, {}))
        return params

    def enabled(self, meta: RuleMeta) -> bool:
        return meta.enabled and meta.id not in self.disabled_rules


def _check_against_registry(policy: Policy, source: str) -> None:
    known = set(rule_ids())
    unknown = sorted(set(policy.disabled_rules) - known)
    if unknown:
        raise PolicyError(f"{source}: disabled_rules names unknown rules: {', '.join(unknown)}")
    for rule_id, overrides in policy.parameters.items():
        if rule_id not in known:
            raise PolicyError(f"{source}: parameters names unknown rule {rule_id!r}")
        defaults = get_rule(rule_id).meta.params
        for name, value in overrides.items():
            if name not in defaults:
                choices = ", ".join(sorted(defaults)) or "none"
                raise PolicyError(f"{source}: rule {rule_id!r} has no parameter {name!r} (has: {choices})")
            default = defaults[name]
            numeric = isinstance(default, (int, float)) and not isinstance(default, bool)
            if numeric and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise PolicyError(f"{source}: {rule_id}.{name} must be a number, got {value!r}")
            if isinstance(default, tuple) and not (
                isinstance(value, list) and all(isinstance(v, str) for v in value)
            ):
                raise PolicyError(f"{source}: {rule_id}.{name} must be a list of strings, got {value!r}")
            if isinstance(default, (str, bool)) and type(value) is not type(default):
                raise PolicyError(f"{source}: {rule_id}.{name} must be a {type(default).__name__}")


def parse_policy(text: str, source: str = "<string>") -> Policy:
    """Parse and validate a policy document."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PolicyError(f"{source}: not valid YAML: {exc}") from exc
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise PolicyError(f"{source}: expected a mapping (fail_on, disabled_rules, required_tags, parameters)")
    try:
        policy = Policy.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}" for err in exc.errors()
        )
        raise PolicyError(f"{source}: invalid policy: {problems} (severities: {', '.join(SEVERITIES)})") from exc
    _check_against_registry(policy, source)
    return policy


def policy_file() -> Path:
    return Path(os.environ.get("RUNBOOKS_COMPLIANCE_POLICY", DEFAULT_POLICY_FILE))


def load_policy(path: Path | str | None = None) -> Policy:
    """Load the policy file (``RUNBOOKS_COMPLIANCE_POLICY`` or ``config/compliance/policy.yaml``)."""
    file = Path(path) if path else policy_file()
    if not file.exists():
        raise PolicyError(f"compliance policy file not found: {file}")
    return parse_policy(file.read_text(), source=str(file))
