"""Runbook form parameters and run-conf checks shared by every DAG (light: imported at DAG parse time).

Nothing heavy is imported at module level: include/targets.py shares the pattern constant without paying
for ``airflow.sdk``, and DAG files pull in no cloud SDK.

Airflow 3.3's trigger form marks every parameter whose JSON-schema type does not allow null as required,
and an empty default (``[]``, ``""``, ``{}``) counts as missing: the form cannot be submitted. So every
optional parameter here is nullable with a ``None`` default; the runbook treats null as "not given".
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow.sdk import Param

#: A target's name in config/targets.yaml; include/targets.py validates the file with the same pattern.
TARGET_NAME_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}$"
#: A backup policy's name; include/backup/policies.py validates config/backup/policies.yaml with it. Defined
#: here (not there) so that the backup DAG files' forms do not import the policy models at parse time.
POLICY_NAME_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}$"
#: ``max_concurrency`` / ``max_errors`` in a form: the rule of include/changes/rate.py:parse_limit (which
#: re-exports it). Defined here so that a DAG's form does not import the change engine at parse time.
LIMIT_PATTERN = r"^[0-9]+%?$"
#: Every runbook parameter's schema is JSON Schema draft 7. Airflow checks a Param's schema against its
#: meta-schema on every resolve (``jsonschema.validate``: at DAG serialization, at each trigger, in each task),
#: and draft 2020-12's meta-schema (jsonschema's default) costs about three times draft 7's: 0.46 ms against
#: 0.14 ms per check here. Every keyword the runbooks use (type, enum, items, pattern, minimum / maximum,
#: minItems, format) means the same in both drafts.
SCHEMA_DIALECT = "http://json-schema.org/draft-07/schema#"


def param(*args: Any, **schema: Any) -> Param:
    """``airflow.sdk.Param`` with the runbooks' schema dialect (:data:`SCHEMA_DIALECT`); same arguments."""
    from airflow.sdk import Param

    return Param(*args, **{"$schema": SCHEMA_DIALECT, **schema})


def targets_param() -> Param:
    """The ``targets`` form field: target names from config/targets.yaml, empty for all."""
    return param(
        None,
        type=["null", "array"],
        items={"type": "string", "pattern": TARGET_NAME_PATTERN},
        title="Targets",
        description="Target names from config/targets.yaml. Empty: every target.",
    )


def dry_run_param() -> Param:
    """``dry_run``: on by default, so a person who triggers a mutating runbook sees the plan first."""
    return param(
        True, type="boolean", title="Dry run",
        description="Plan and show each change, change nothing. Turn off to apply (after approval).",
    )


def auto_dry_run_param() -> Param:
    """``dry_run`` for a runbook that also runs on a schedule: empty = a real run on the schedule, a dry run
    when a person (UI) or a caller (API) triggers it without saying; true / false as given."""
    return param(
        None, type=["null", "boolean"], title="Dry run",
        description="Empty: plan only when triggered by hand or the API, apply on the schedule. "
                    "true: plan and show each change, change nothing. false: apply.",
    )


def resolve_dry_run(context: Mapping[str, Any]) -> bool:
    """The effective ``dry_run`` of a run: the parameter when set, else False only for scheduled runs."""
    value = (context.get("params") or {}).get("dry_run")
    if isinstance(value, bool):
        return value
    run_type = str(getattr(context.get("dag_run"), "run_type", "") or "").lower()
    return "scheduled" not in run_type


def reason_param() -> Param:
    return param(
        None, type=["null", "string"], maxLength=500, title="Reason",
        description="Why (ticket, incident). Required to apply; recorded in the audit trail.",
    )


def rate_params(default_concurrency: str = "1", default_errors: str = "100%") -> dict[str, Param]:
    """``max_concurrency`` and ``max_errors`` as AWS SSM Automation defines them (a number or a percentage)."""
    return {
        "max_concurrency": param(
            default_concurrency, type="string", pattern=LIMIT_PATTERN, title="Max concurrency",
            description="Changes applied at once: a number (3) or a percentage of the change set (10%).",
        ),
        "max_errors": param(
            default_errors, type="string", pattern=LIMIT_PATTERN, title="Max errors",
            description="Failures tolerated before nothing new is dispatched: a number (0 = stop at the first "
                        "error) or a percentage (10%). Changes already running finish.",
        ),
    }


def idempotency_key_param() -> Param:
    return param(
        None, type=["null", "string"], maxLength=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:@+=-]*$",
        title="Idempotency key",
        description="A request or incident id. Runs with the same key share one change ledger: a rerun resumes "
                    "and never repeats a completed change, and two never apply at once. Empty: the run id.",
    )


def unknown_conf_keys(conf: Mapping[str, Any], declared: Mapping[str, Any]) -> list[str]:
    """Keys of a run's conf that the runbook does not declare (sorted)."""
    return sorted(set(conf) - set(declared))


def check_conf(context: Mapping[str, Any]) -> None:
    """Refuse a run conf with keys the runbook does not declare (a typo like ``tragets``), listing the allowed ones.

    Airflow accepts unknown conf keys and ignores them, so a typo would silently act on the defaults (every
    target). Called by each runbook's first task; raises ``AirflowFailException`` (a bad request does not
    improve by retrying).
    """
    from airflow.sdk.exceptions import AirflowFailException

    dag = context.get("dag")
    conf = getattr(context.get("dag_run"), "conf", None) or {}
    params = getattr(dag, "params", None)
    declared = {key: None for key in (params.keys() if params is not None else ())}  # values may lack defaults
    unknown = unknown_conf_keys(conf, declared)
    if unknown:
        raise AirflowFailException(
            f"unknown parameter(s) {', '.join(repr(k) for k in unknown)} for {getattr(dag, 'dag_id', 'this runbook')}; "
            f"allowed: {', '.join(sorted(declared))}"
        )
