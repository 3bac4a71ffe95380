"""Drift: every environment spec compared with live state, per resource and field (reads only).

A drift check is a provisioning plan that is never applied. What it finds, per resource:

- ``changed``: the resource exists, is managed by the environment, and fields differ from the spec (changed
  by hand); every differing field is listed with the live value and the spec's;
- ``missing``: the spec declares it and it does not exist: ``deleted`` when provision_environment created it
  before (the audit trail says when and in which run), ``not created yet`` otherwise, ``torn down`` when
  teardown_environment removed it last (not counted as drift);
- ``conflict``: something with the spec's name exists but is not managed by the environment (an unmanaged
  look-alike, or a resource of another environment);
- ``error``: the resource could not be read (the message says why).

The report goes to ``<data dir>/drift/<run id>/report.json`` and ``report.md``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from include.audit import read_audit
from include.changes import engine
from include.fileio import atomic_write_text
from include.paths import DataPath, data_root, safe_segment
from include.provisioning.base import Session
from include.provisioning.render import plan_entries
from include.provisioning.runbook import READ_CONCURRENCY, build_items
from include.provisioning.spec import SpecError, list_environments, load_spec
from include.targets import TargetsConfig, load_targets

DRIFT_KINDS = ("changed", "missing", "conflict", "error")


def _history(environments: Iterable[str]) -> dict[str, dict[str, Any]]:
    """resource id -> the last apply that created / changed it or deleted it (from the audit trail)."""
    wanted = set(environments)
    last: dict[str, dict[str, Any]] = {}
    for runbook in ("provision_environment", "teardown_environment"):
        for record in read_audit(runbook=runbook, step="apply"):
            if record.outcome != "changed" or not record.resource or record.resource.split("/", 1)[0] not in wanted:
                continue
            seen = last.get(record.resource)
            if seen is None or record.time > seen["time"]:
                last[record.resource] = {"runbook": runbook, "run_id": record.run_id, "time": record.time}
    return last


def _classify(entry: Mapping[str, Any], history: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The drift finding of one plan entry (None: in line with the spec, or skipped)."""
    action = entry["action"]
    base = {"address": entry["address"], "kind": entry["kind"], "name": entry["name"], "target": entry["target"],
            "region": entry["region"]}
    if action == "update":
        return {**base, "drift": "changed", "fields": list(entry.get("diff") or []),
                "detail": "changed outside the runbook: " + ", ".join(d["field"] for d in entry.get("diff") or [])}
    if action == "create":
        if history and history["runbook"] == "teardown_environment":
            return {**base, "drift": "torn_down", "detail": f"torn down by teardown_environment run "
                                                             f"{history['run_id']} at {history['time']}"}
        if history:
            return {**base, "drift": "missing", "detail": f"deleted outside the runbook (last applied by "
                                                           f"provision_environment run {history['run_id']} at "
                                                           f"{history['time']})"}
        return {**base, "drift": "missing", "detail": "not created yet (never applied)"}
    if action == "conflict":
        observed = entry.get("observed") or {}
        what = "an unmanaged look-alike" if observed.get("status") == "unmanaged" else "a resource of another environment"
        return {**base, "drift": "conflict", "detail": f"{what} has the spec's name: {entry.get('message')}"}
    if action in ("error", "protected"):
        return {**base, "drift": "error", "detail": str(entry.get("message"))}
    return None


def check_environment(environment: str, *, targets: TargetsConfig, history: Mapping[str, Any]) -> dict[str, Any]:
    """Plan one environment (reads only) and turn the plan into drift findings."""
    spec = load_spec(environment, targets=targets)
    items, skipped, order = build_items(spec, "provision", targets)
    session = Session(spec, "provision", targets, cache_absent=True)
    planned = engine.plan_items(items, session.resolver(), max_workers=READ_CONCURRENCY)
    planned = [replace(i, labels={**i.labels, "observed": session.observed.get(str(i.labels["address"]), {})})
               for i in planned]
    entries = plan_entries(planned, spec, skipped, order)
    findings = [f for f in (_classify(e, history.get(f"{spec.environment}/{e['address']}")) for e in entries) if f]
    drifted = [f for f in findings if f["drift"] in DRIFT_KINDS and f["drift"] != "error"]
    return {"environment": spec.environment, "path": spec.path, "production": spec.production, "owner": spec.owner,
            "resources": len(spec.resources), "skipped": skipped, "findings": findings,
            "drifted": bool(drifted), "errors": [f for f in findings if f["drift"] == "error"],
            "counts": {kind: sum(1 for f in findings if f["drift"] == kind) for kind in (*DRIFT_KINDS, "torn_down")}}


def detect(environments: Sequence[str] | None = None, *, targets: TargetsConfig | None = None) -> dict[str, Any]:
    """Check every environment (or the ones named); a spec that cannot be loaded is reported, not fatal."""
    config = targets or load_targets()
    names = list(environments or list_environments())
    known = set(list_environments())
    unknown = [n for n in names if n not in known]
    if unknown:
        raise SpecError(f"unknown environment(s) {', '.join(unknown)}; specs: {', '.join(sorted(known)) or 'none'}")
    history = _history(names)
    results = []
    for name in names:
        try:
            results.append(check_environment(name, targets=config, history=history))
        except SpecError as exc:
            results.append({"environment": name, "drifted": False, "findings": [], "resources": 0, "skipped": {},
                            "errors": [{"address": "(spec)", "drift": "error", "detail": str(exc)}],
                            "counts": {kind: 0 for kind in (*DRIFT_KINDS, "torn_down")}})
    return {"checked_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), "environments": results,
            "drifted": [r["environment"] for r in results if r["drifted"]],
            "errors": [{"environment": r["environment"], **e} for r in results for e in r["errors"]]}


def render(report: Mapping[str, Any]) -> str:
    lines = ["# Drift report", "", f"Checked at {report['checked_at']}: {len(report['environments'])} environment(s), "
             f"{len(report['drifted'])} drifted, {len(report['errors'])} error(s).", ""]
    for env in report["environments"]:
        counts = env["counts"]
        lines.append(f"## {env['environment']}: " + ("DRIFTED" if env["drifted"] else "in line with its spec")
                     + f" ({counts['changed']} changed, {counts['missing']} missing, {counts['conflict']} conflict(s), "
                       f"{counts['error']} error(s))")
        lines.append("")
        for finding in env["findings"]:
            lines.append(f"- **{finding['drift']}** `{finding['address']}` ({finding.get('kind', '')} "
                         f"{finding.get('name', '')}): {finding['detail']}")
            for field in finding.get("fields") or []:
                lines.append(f"    - `{field['field']}`: live {json.dumps(field['before'], default=str)}, "
                             f"spec {json.dumps(field['after'], default=str)}")
        for address, why in (env.get("skipped") or {}).items():
            lines.append(f"- skipped `{address}`: {why}")
        lines.append("")
    return "\n".join(lines)


def write_report(report: Mapping[str, Any], run_id: str, base: DataPath | None = None) -> dict[str, str]:
    folder = (base or data_root()) / "drift" / safe_segment(run_id)
    atomic_write_text(folder / "report.json", json.dumps(report, indent=2, sort_keys=True, default=str))
    atomic_write_text(folder / "report.md", render(report))
    return {"json": str(folder / "report.json"), "markdown": str(folder / "report.md")}


def notification_items(report: Mapping[str, Any], top: int = 10) -> list[dict[str, Any]]:
    found = [{"environment": env["environment"], "drift": f["drift"], "resource": f["address"], "detail": f["detail"]}
             for env in report["environments"] for f in env["findings"] if f["drift"] in ("changed", "missing",
                                                                                         "conflict")]
    return found[:top]


# ---- the detect_drift runbook's task bodies ---------------------------------------------------------------
def check_task(context: Mapping[str, Any]) -> dict[str, Any]:
    """The ``compare_with_specs`` task: check the requested environments, write the report, return its summary."""
    from airflow.sdk.exceptions import AirflowFailException

    from include.params import check_conf

    check_conf(context)
    params = context.get("params") or {}
    try:
        report = detect(list(params.get("environments") or []) or None)
    except SpecError as exc:
        raise AirflowFailException(str(exc)) from None
    paths = write_report(report, str(context["run_id"]))
    for env in report["environments"]:
        state = "DRIFTED" if env["drifted"] else "in line"
        print(f"{env['environment']}: {state} {env['counts']}")
        for finding in env["findings"]:
            print(f"  {finding['drift']}: {finding['address']}: {finding['detail']}")
    print(f"report: {paths['markdown']}")
    return {"checked_at": report["checked_at"], "drifted": report["drifted"], "errors": report["errors"],
            "paths": paths, "items": notification_items(report, top=20),
            "counts": {env["environment"]: env["counts"] for env in report["environments"]}}


def notify_task(summary: Mapping[str, Any], context: Mapping[str, Any]) -> dict[str, str]:
    """Notify (log, file, Slack / e-mail when configured) when an environment drifted; say so in the log if not."""
    from include.notify import Notification, send

    if not summary["drifted"]:
        print("no drift: nothing to notify")
        return {}
    count = len(summary["drifted"])
    return send(Notification(
        title=f"Drift in {count} environment{'s' if count != 1 else ''}: {', '.join(summary['drifted'])}",
        text="Live resources no longer match their spec (changed by hand, deleted, or an unmanaged look-alike). "
             "A provision_environment dry run shows the plan that would bring each back.",
        severity="warning", runbook="detect_drift", run_id=str(context.get("run_id") or ""),
        link=summary["paths"]["markdown"], items=list(summary["items"]),
        fields={"drifted": summary["drifted"], "counts": summary["counts"]},
    ))


def dry_run_requests(summary: Mapping[str, Any], context: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One provision_environment dry-run trigger per drifted environment (when ``start_dry_runs``)."""
    params = context.get("params") or {}
    if params.get("start_dry_runs") is False:
        print("start_dry_runs is false: no dry run started")
        return []
    run_id = safe_segment(str(context["run_id"]))
    return [{"trigger_run_id": f"drift__{env}__{run_id}",
             "conf": {"environment": env, "dry_run": True,
                      "reason": f"drift detected by detect_drift run {context['run_id']}"}}
            for env in summary["drifted"]]


def check_errors_task(summary: Mapping[str, Any]) -> None:
    """Fail the run when a spec could not be loaded or a resource could not be read (drift is not a failure)."""
    from airflow.sdk.exceptions import AirflowFailException

    if summary["errors"]:
        raise AirflowFailException(
            f"{len(summary['errors'])} resource(s) / spec(s) could not be checked (report: "
            f"{summary['paths']['markdown']}):\n"
            + "\n".join(f"{e['environment']} {e['address']}: {e['detail']}" for e in summary["errors"]))
