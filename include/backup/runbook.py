"""The task bodies of the ``backup_object_stores`` runbook: each DAG task is one call into this module.

- :func:`select_policies`: refuse unknown conf keys and unknown policy names (no retry), return the names.
- :func:`back_up_policy`: one mapped task per policy: skip it unless it is due (or named, or forced), then
  :func:`include.backup.runner.back_up`.
- :func:`validate_points`: great-expectations on each point the run wrote, in its own task (so the copying
  process never imports it).
- :func:`check_results`: fail the run listing every policy that failed and every RPO breach.

Which policies run: ``force``, or named in ``policies``, or due (their own schedule fired since their newest
point). A scheduled run names none, so each policy runs on its own schedule; by hand, the named policies run.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from include.audit import actor_from_context
from include.backup.copier import brief_error
from include.backup.policies import BackupPolicyError, load_policies
from include.backup.report import read_run_report
from include.backup.runner import (
    RUNBOOK,
    BackupConfigError,
    BackupFailed,
    back_up,
    backup_store,
    due_state,
    places,
    rpo_status,
    utc_now,
    validate_point,
)
from include.backup.validation import ManifestValidation
from include.params import check_conf, resolve_dry_run


def _requested(context: Mapping[str, Any]) -> list[str]:
    return list(dict.fromkeys((context.get("params") or {}).get("policies") or []))


def select_policies(context: Mapping[str, Any]) -> list[str]:
    """Validate the request; return the policy names to map over. A bad request fails once, unretried."""
    from airflow.sdk.exceptions import AirflowFailException

    check_conf(context)
    try:
        config = load_policies()
    except BackupPolicyError as exc:
        raise AirflowFailException(str(exc)) from None
    known = [policy.name for policy in config.policies]
    requested = _requested(context)
    unknown = [name for name in requested if name not in known]
    if unknown:
        raise AirflowFailException(
            f"unknown backup polic{'y' if len(unknown) == 1 else 'ies'} {', '.join(map(repr, unknown))}; "
            f"known: {', '.join(known) or 'none'} (config/backup/policies.yaml)"
        )
    selected = requested or known
    params = context.get("params") or {}
    print(f"{len(selected)} policies, dry run: {resolve_dry_run(context)}, force: {bool(params.get('force'))}: "
          + ", ".join(selected))
    return selected


def _summary(report: Mapping[str, Any]) -> dict[str, Any]:
    keys = ("policy", "status", "dry_run", "point_id", "previous_point", "totals", "rpo", "report", "seconds",
            "validation_pending", "validation_seconds")
    summary = {key: report.get(key) for key in keys}
    validation = report.get("validation")
    summary["validation_success"] = validation.get("success") if validation else None
    return summary


def _print(report: Mapping[str, Any]) -> None:
    t = report["totals"]
    print(f"{report['policy']}: {report['status']} point {report.get('point_id')} | listed {t['listed']}, "
          f"unchanged {t['reused']}, {'to copy' if report['dry_run'] else 'copied'} "
          f"{t['to_copy'] if report['dry_run'] else t['copied']}, deduplicated {t['deduplicated']}, "
          f"failed {t['failed'] + t['not_attempted']}, bytes copied {t['bytes_copied']} | {report.get('seconds')} s")
    for line in report.get("plan") or []:
        print(f"  would {line}")
    for failure in report.get("failures") or []:
        print(f"  FAILED {failure['key']}: {failure['kind']}: {failure['error']}")
    for error in report.get("errors") or []:
        print(f"  error: {error}")
    retention = report.get("retention") or {}
    if retention:
        verb = "would delete" if report["dry_run"] else "deleted"
        print(f"  retention: keeps {len(retention['plan']['keep'])} points, {verb} {len(retention['points_deleted'])} "
              f"points and {len(retention['blobs_deleted'])} blobs ({retention['bytes_freed']} bytes)")
    print(f"  report: {report.get('report')}")


def back_up_policy(context: Mapping[str, Any], name: str) -> dict[str, Any]:
    """Back up (or plan) one policy; skipped unless due, named or forced. Fails (retried) when not complete."""
    from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

    params = context.get("params") or {}
    policy = load_policies().get(name)
    source, destination = places(policy)
    if not (params.get("force") or name in _requested(context)):
        try:
            due = due_state(policy, destination, utc_now())
        except Exception as exc:  # when in doubt, back up: the run then fails with a report saying why
            print(f"{name}: cannot tell whether it is due ({brief_error(exc)}): backing up")
        else:
            if not due.due:
                raise AirflowSkipException(f"{name}: {due.reason}")
            print(f"{name}: due: {due.reason}")
    try:
        report = back_up(
            policy, run_id=str(context["run_id"]), dry_run=resolve_dry_run(context),
            actor=actor_from_context(context), stores=(source, destination), defer_validation=True,
            params={"force": bool(params.get("force")), "policies": params.get("policies")},
        )
    except BackupConfigError as exc:
        raise AirflowFailException(str(exc)) from None  # retrying cannot fix a configuration
    except BackupFailed as exc:
        _print(exc.report)
        raise
    _print(report)
    return _summary(report)


def validate_points(context: Mapping[str, Any], selected: list[str] | None) -> dict[str, Any]:
    """great-expectations on each point this run wrote (after every copy task, in this task's own process).

    Fails (loudly, listing each policy) when a manifest fails a structural check (it is quarantined, see
    :func:`include.backup.runner.validate_point`) or cannot be validated; a stale point is reported, not failed.
    """
    from airflow.sdk.exceptions import AirflowFailException

    if selected is None:
        raise AirflowFailException("select_policies refused the request (see its log): nothing to validate")
    run_id = str(context["run_id"])
    config = load_policies()
    results: dict[str, Any] = {}
    problems: list[str] = []  # a verdict: failing again cannot change it (no retry)
    errors: list[str] = []  # validation did not run: a retry may succeed
    for name in selected:
        previous = read_run_report(name, run_id)
        if previous is not None and previous.get("quarantined"):  # a retry after the verdict: still a failure
            problems.append(f"{name}: point {previous.get('point_id')} failed validation and was quarantined at "
                            f"{previous['quarantined']}")
            results[name] = {"validated": True, "success": False}
            continue
        try:
            report = validate_point(config.get(name), run_id)
        except BackupFailed as exc:
            problems.append(f"{name}: {exc}")
            results[name] = {"validated": True, "success": False}
            continue
        except Exception as exc:
            errors.append(f"{name}: the manifest could not be validated: {brief_error(exc)}")
            results[name] = {"validated": False, "error": brief_error(exc)}
            continue
        if report is None:
            print(f"{name}: no point written by this run: nothing to validate")
            results[name] = {"validated": False}
            continue
        validation = report["validation"]
        results[name] = {"validated": True, "success": validation["success"], "point_id": report["point_id"],
                         "seconds": report.get("validation_seconds")}
        print(f"{name}: point {report['point_id']} validated by great-expectations in {validation['seconds']} s: "
              + ("every check held" if validation["success"] else "; ".join(
                  ManifestValidation.from_dict(validation).failed())))
    if problems:
        raise AirflowFailException(f"{len(problems)} manifest validation problem(s) in {RUNBOOK} {run_id}:\n"
                                   + "\n".join(problems + errors))
    if errors:
        raise RuntimeError(f"{len(errors)} manifest(s) of {RUNBOOK} {run_id} could not be validated (retried):\n"
                           + "\n".join(errors))
    return {"run_id": run_id, "policies": results}


def check_results(context: Mapping[str, Any], selected: list[str] | None) -> dict[str, Any]:
    """Fail the run listing every policy that failed and every RPO breach (breaches only fail real runs)."""
    from airflow.sdk.exceptions import AirflowFailException

    if selected is None:
        raise AirflowFailException("select_policies refused the request (see its log): nothing was backed up")
    run_id, dry_run = str(context["run_id"]), resolve_dry_run(context)
    config = load_policies()
    failed: list[str] = []
    breaches: list[str] = []
    results: dict[str, Any] = {}
    for name in selected:
        policy = config.get(name)
        report = read_run_report(name, run_id)
        store = backup_store(policy)
        if report is not None:
            status = str(report["status"])
            if status == "failed":
                failed.append(f"{name}: " + "; ".join(report.get("errors") or ["see its log"]))
            elif report.get("validation_pending"):
                status = "not validated"
                failed.append(f"{name}: point {report.get('point_id')} was written but great-expectations did not "
                              "validate it (see the validate_points task's log)")
        else:
            try:
                due = due_state(policy, store, utc_now())
                status = "skipped (not due)" if not due.due else "did not report"
            except Exception as exc:
                status = f"did not report ({brief_error(exc)})"
            if status.startswith("did not report"):
                failed.append(f"{name}: the back_up_policy task ended without a report: see its log ({status})")
        rpo = rpo_status(policy, store, utc_now(), None)
        if rpo["breached"]:
            age = "no point" if rpo["age_seconds"] is None else f"{rpo['age_seconds'] / 60:.0f} min old"
            breaches.append(f"{name}: RPO breached: newest point {rpo['newest_point'] or '-'} is {age}, objective "
                            f"{rpo['objective_seconds'] / 60:.0f} min" + (f" ({rpo['error']})" if rpo.get("error") else ""))
        results[name] = {"status": status, "rpo": rpo}
        print(f"{name}: {status}; newest point {rpo['newest_point']}, RPO {'BREACHED' if rpo['breached'] else 'met'}")
    problems = failed + ([] if dry_run else breaches)
    if dry_run and breaches:
        print("dry run: RPO breaches are reported, not enforced:\n" + "\n".join(breaches))
    if problems:
        raise AirflowFailException(f"{len(problems)} problem(s) in {RUNBOOK} {run_id}:\n" + "\n".join(problems))
    return {"run_id": run_id, "dry_run": dry_run, "policies": results}
