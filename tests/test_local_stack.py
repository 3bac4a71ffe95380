"""The embedded default, for real, as a user meets it: `make demo SERVE=1`, the UI in a real browser, `make down`.

One `airflow standalone` serves the whole module (an Airflow start-up is the most expensive thing in the
suite): `python -m localdev demo --serve` sets up the emulators and the seeded estate, runs the demo
runbooks through the REST API (as `make demo` does), then keeps serving. On that stack:

- the demo's output: each runbook it ran through the REST API, with what it did (backups, the restore
  drill, the failover drill's measured RTO);
- every runbook in dags/ is triggered from its form in the Airflow UI in Debian's chromium, driven by
  Playwright's Python package (no browser download), with a realistic request and a screenshot of each
  filled form kept as a test artefact; each run reaches its expected end (the mutating ones as dry runs, so
  that they change nothing the other tests of the module look at);
- a bad request through the REST API is refused (400), and an unknown conf key fails the first task once;
- a remediation is approved from the task's *Required Actions* page and applies, verified in the cloud;
- the incident intake end to end (tests/test_intake_e2e.py) against this stack;
- `python -m localdev down` stops everything it started.

Screenshots: ``test-artifacts/ui/`` (or ``$RUNBOOKS_TEST_ARTIFACTS/ui``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from include.changes.report import result_path
from include.compliance.remediation.runner import WORDING
from localdev.emulators import Emulators, free_port
from localdev.stack import Api

PROJECT_ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = Path(os.environ.get("RUNBOOKS_TEST_ARTIFACTS", PROJECT_ROOT / "test-artifacts")) / "ui"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = pytest.mark.slow
TAGS = {"owner": "platform-team", "cost-center": "cc-42", "data-classification": "internal"}
#: Every runbook (one DAG file each): each needs a form test below.
RUNBOOKS = {p.stem for p in (PROJECT_ROOT / "dags").glob("*.py") if not p.name.startswith("_")}


def _env(home: Path, data: Path) -> dict[str, str]:
    env = dict(os.environ)
    # The stack builds its own Airflow home, emulators and connections: drop the test session's.
    for key in list(env):
        if key.startswith(("AIRFLOW_CONN_", "AIRFLOW__")) or key in ("AIRFLOW_HOME", "STORAGE_EMULATOR_HOST"):
            env.pop(key)
    env["RUNBOOKS_DATA_DIR"] = str(data)
    return env


@dataclass
class Served:
    proc: subprocess.Popen[str]
    home: Path
    data: Path
    env: dict[str, str]
    base_url: str
    password: str
    output: str
    api: Api

    def emulators(self) -> Emulators:
        return Emulators.load(self.home / "emulators.json")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """`python -m localdev demo --serve` on a free port; read its output up to the serving banner."""
    root = tmp_path_factory.mktemp("stack")
    home, data = root / "local", root / "data"
    env = _env(home, data)
    env["AIRFLOW_PORT"] = str(free_port())
    proc = subprocess.Popen(
        [sys.executable, "-m", "localdev", "demo", "--serve", "--home", str(home)],
        cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 900
        assert proc.stdout is not None
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if line.startswith("Airflow is up"):
                break
        output = "".join(lines)
        match = re.search(r"Airflow is up: (http://127\.0\.0\.1:\d+)\s+\(login: admin / (\S+)\)", output)
        assert match, f"no serving banner (exit {proc.poll()}):\n{output[-6000:]}"
        yield Served(proc, home, data, env, match.group(1), match.group(2), output,
                     Api(match.group(1), "admin", match.group(2)))
    finally:
        if proc.poll() is None:  # the last test stops it with `down`; after a failure, stop it here
            subprocess.run([sys.executable, "-m", "localdev", "down", "--home", str(home)], cwd=PROJECT_ROOT,
                           env=env, capture_output=True, timeout=120, check=False)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


def test_demo_runs_the_runbooks_through_the_api_then_serves(served: Served) -> None:
    output, data = served.output, served.data
    assert "inventory_estate: success" in output
    assert "compliance_scan: failed by policy as designed (enforce_policy)" in output
    assert "remediate_findings: success" in output
    assert "complete=True" in output
    assert f"login: admin / {served.password}" in output
    # what the demo says it produced is really there
    pointer = json.loads((data / "inventory" / "latest.json").read_text())
    assert pointer["complete"] is True and pointer["run_id"].startswith("demo__")
    summary = json.loads((Path(pointer["path"]).parent / "summary.json").read_text())
    assert set(summary["by_cloud"]) == {"aws", "gcp", "azure"}
    assert list((data / "compliance" / "scans").glob("*/reports/report.html"))
    plans = list((data / "remediation").glob("demo__*/result.json"))
    assert plans and json.loads(plans[0].read_text())["status"] == "dry_run"
    assert "AIRFLOW_CONN_AWS_ESTATE" in (served.home / ".env").read_text()
    check_demo_backups_and_drills(served)


def check_demo_backups_and_drills(served: Served) -> None:
    """After the first three: a real backup of every policy, its restore drill, the failover drill's RTO."""
    from include.backup.drill import read_history
    from include.backup.report import read_run_report

    output, data = served.output, served.data
    for dag_id in ("backup_object_stores", "restore_drill"):
        assert re.search(rf"^{dag_id}: success in [\d.]+s \(triggered through the REST API\)$", output, re.M), dag_id
    backup_run = re.search(r"^backup \((demo__\w+)\):$", output, re.M)
    drill_run = re.search(r"^restore drill \((demo__\w+)\):$", output, re.M)
    assert backup_run and drill_run, output[-4000:]
    for policy in ("aws-customer-exports-to-gcp", "gcp-app-data-to-azure"):
        copied = re.search(rf"^  {policy} +succeeded: point (\S+), listed (\d+), copied (\d+) \((\d+) bytes\)",
                           output, re.M)
        assert copied and int(copied[2]) > 0 and int(copied[3]) == int(copied[2]) and int(copied[4]) > 0, policy
        report = read_run_report(policy, backup_run[1], data)  # what the demo printed is what the run wrote
        assert report and report["dry_run"] is False and report["point_id"] == copied[1].rstrip(","), report
        restored = re.search(rf"^  {policy} +restored and verified: point (\S+), (\d+) objects \(\d+ bytes\), "
                             r"0 mismatches, .*scratch removed: True$", output, re.M)
        assert restored and restored[1].rstrip(",") == report["point_id"] and int(restored[2]) == int(copied[2]), policy
    drilled = [line for line in read_history(data) if line["run_id"] == drill_run[1]]
    assert len(drilled) == 2 and all(line["success"] and line["scratch_removed"] for line in drilled), drilled
    # the failover drill: a real outage of the primary endpoint, failed over and back, its RTO measured
    assert re.search(r"^failover_drill: passed in [\d.]+s \(triggered through the REST API\)$", output, re.M)
    rto = re.search(r"^  orders: primary endpoint stopped for real -> failed over and verified in ([\d.]+)s \(RTO; "
                    r"our steps ([\d.]+)s\), failed back in ([\d.]+)s$", output, re.M)
    assert rto and 0 < float(rto[2]) <= float(rto[1]), output[-3000:]
    result_file = re.search(r"^  result: (\S+/result\.json)$", output, re.M)
    assert result_file, output[-3000:]
    result = json.loads(Path(result_file[1]).read_text())
    assert result["status"] == "passed" and result["dry_run"] is False
    assert result["rto"]["rto_seconds"] == pytest.approx(float(rto[1]))
    assert (served.home / "airflow.pid").exists() and (served.home / "emulators.json").exists()


# ---- the browser -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def browser(served: Served) -> Iterator[Any]:
    """A logged-in page in headless Debian chromium (clipboard allowed: the JSON fields are pasted into)."""
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"])
        context = chromium.new_context(viewport={"width": 1400, "height": 1000},
                                       permissions=["clipboard-read", "clipboard-write"])
        page = context.new_page()
        page.set_default_timeout(30_000)
        page.goto(served.base_url + "/")
        page.fill("input[name=username]", "admin")
        page.fill("input[name=password]", served.password)
        page.keyboard.press("Enter")
        page.get_by_text("Welcome").first.wait_for()  # the home page of a signed-in user
        yield page
        chromium.close()


def open_form(page: Any, base_url: str, dag_id: str) -> Any:
    """Find the runbook as a person does, *Dags* in the navigation -> its name -> *Trigger*, and open its form.

    The UI is loaded once and then navigated: a full load of the single-page app took ~2.3 s of chromium's CPU
    per form (measured on a quiet machine: 33 s for the 14 forms loaded one by one, 19 s navigated).
    """
    if page.url.startswith(base_url):
        page.get_by_test_id("nav-dags-link").click()
    else:  # the first form, or after park()
        page.goto(f"{base_url}/dags")
    page.locator(f'a[data-testid="dag-id"][href="/dags/{dag_id}"]').click()
    page.wait_for_url(re.compile(rf"/dags/{dag_id}(/|$|[?#])"))
    page.locator('a[data-testid="dag-id"]').first.wait_for(state="detached")  # the list is gone: its own Trigger
    page.get_by_role("button", name=re.compile("^Trigger", re.I)).first.click()  # buttons are too
    dialog = page.get_by_role("dialog")
    dialog.get_by_text("Run Parameters").wait_for()
    return dialog


def paste_json(page: Any, dialog: Any, label: str, value: dict[str, Any]) -> None:
    """Fill a JSON (object) field the way a person does: select its editor's text and paste over it."""
    editor = dialog.locator(".chakra-field__root, [role=group]").filter(has_text=label).locator(".monaco-editor").first
    page.evaluate("text => navigator.clipboard.writeText(text)", json.dumps(value))
    editor.click()
    page.keyboard.press("Control+A")
    page.keyboard.press("Control+V")


def submit(page: Any, dialog: Any, run_id: str, screenshot: str) -> None:
    """Name the run (Advanced Options -> Run ID), keep a screenshot of the filled form, press Trigger."""
    dialog.get_by_text("Advanced Options").click()
    dialog.locator("input[name=dagRunId]").fill(run_id)
    dialog.screenshot(path=str(ARTIFACTS / screenshot))
    button = dialog.locator('[data-testid="trigger-dag-submit"]')
    assert button.is_enabled(), f"{screenshot}: the form cannot be submitted"
    button.click()
    dialog.wait_for(state="hidden")


def park(page: Any) -> None:
    """Leave the UI for a blank page while the test waits through the REST API for more than a few seconds.

    A page of the UI keeps polling and re-rendering (a DAG page with a running run refreshes itself every 3 s,
    ``[api] auto_refresh_interval``): left open while the runs went, it was the browser's largest CPU cost
    (chromium's renderer took 85 s of CPU in one suite run), taken from the runs it waited for on 2 cores.
    """
    page.goto("about:blank")


def wait_run(api: Api, dag_id: str, run_id: str, until: tuple[str, ...] = ("success", "failed"),
             timeout: float = 300) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            run: dict[str, Any] = api.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")
        except OSError:  # 404 until the trigger lands; SQLite busy under load
            run = {"state": None}
        if run.get("state") in until:
            return run
        time.sleep(1)
    raise AssertionError(f"{dag_id} {run_id} did not reach {until} in {timeout}s")


def task_states(api: Api, dag_id: str, run_id: str) -> dict[str, tuple[str, int]]:
    tis = api.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances")["task_instances"]
    return {ti["task_id"]: (ti["state"], ti["try_number"]) for ti in tis}


def failing_findings(data: Path, rule: str) -> list[str]:
    """Failing finding ids of ``rule`` in the stack's latest compliance scan."""
    from include.compliance.store import load_latest_findings

    return sorted(f.finding_id for f in load_latest_findings(data) if f.rule_id == rule and f.status == "fail")


# ---- every other runbook's form --------------------------------------------------------------------------
def text(dialog: Any, name: str, value: str) -> None:
    dialog.locator(f"input[name=element_{name}]").fill(value)


def lines(dialog: Any, name: str, *values: str) -> None:
    """A list field: one value a line."""
    dialog.locator(f"textarea[name=element_{name}]").fill("\n".join(values))


def switch(dialog: Any, name: str, on: bool) -> None:
    """Turn a switch on or off by clicking it, as a person does."""
    box = dialog.locator(f"input[name=element_{name}]")
    if box.is_checked() != on:
        dialog.locator(f"label[data-scope=switch]:has(input[name=element_{name}]) [data-part=control]").click()
    assert box.is_checked() == on, name


def choose(page: Any, dialog: Any, name: str, option: str) -> None:
    """Pick ``option`` in a select field (an enum): open it, type, take the match."""
    dialog.locator(f"#element_{name}").click()
    page.keyboard.type(option)
    page.keyboard.press("Enter")
    assert option in dialog.locator(f"#element_{name}").inner_text(), name


@dataclass(frozen=True)
class Form:
    """What a person fills in a runbook's form, what the run's conf then holds, and how the run ends."""

    fill: Callable[[Any, Any], None]  # (page, dialog)
    conf: dict[str, Any]
    state: str = "success"
    check: Callable[[Served, str], None] | None = None  # (served, run id): the run's own results


def _json(path: Path) -> Any:
    return json.loads(path.read_text())


def _backup_planned(served: Served, run_id: str) -> None:
    from include.backup.report import read_run_report

    report = read_run_report("aws-customer-exports-to-gcp", run_id, served.data)
    assert report is not None and report["dry_run"] is True and report["status"] == "planned", report
    assert read_run_report("gcp-app-data-to-azure", run_id, served.data) is None  # only the named policy


def _failover_result(status: str) -> Callable[[Served, str], None]:
    def check(served: Served, run_id: str) -> None:
        result = _json(served.data / "failover" / run_id / "result.json")
        assert result["status"] == status and result["dry_run"] is True, result

    return check


def _report_written(kind: str) -> Callable[[Served, str], None]:
    def check(served: Served, run_id: str) -> None:
        assert (served.data / kind / run_id / "report.json").stat().st_size > 0

    return check


#: Every runbook but the three above, as a person fills its form in: each a safe request (a dry run, or
#: read-only), so that the runs can go at once, beside the other tests of this module.
FORMS: dict[str, Form] = {
    # `dry_run` left empty: a run triggered by hand only plans (include.params.auto_dry_run_param)
    "backup_object_stores": Form(
        lambda page, d: lines(d, "policies", "aws-customer-exports-to-gcp"),
        {"policies": ["aws-customer-exports-to-gcp"], "dry_run": None, "force": False}, check=_backup_planned),
    "backup_snapshots": Form(
        lambda page, d: (lines(d, "policies", "aws-tagged-daily"), switch(d, "force", True)),
        {"policies": ["aws-tagged-daily"], "force": True, "dry_run": None}),
    "restore_objects": Form(
        lambda page, d: (text(d, "policy", "aws-customer-exports-to-gcp"), text(d, "prefix", "exports/"),
                         text(d, "destination", "gcp-prod:rb-gcp-legacy-scratch/ui-restore/"),
                         text(d, "reason", "CHG-11 yesterday's exports, to compare")),
        {"policy": "aws-customer-exports-to-gcp", "point": None, "prefix": "exports/", "dry_run": True,
         "destination": "gcp-prod:rb-gcp-legacy-scratch/ui-restore/"}),
    "restore_drill": Form(
        lambda page, d: (lines(d, "policies", "gcp-app-data-to-azure"), text(d, "hash_sample_percent", "50")),
        {"policies": ["gcp-app-data-to-azure"], "hash_sample_percent": 50, "dry_run": None}),
    # both sides answer (the endpoints run in this test): a failover of a degraded primary needs `force`
    "failover_service": Form(
        lambda page, d: (text(d, "service", "orders"), text(d, "incident_id", "INC-4711"),
                         choose(page, d, "severity", "critical"), switch(d, "force", True),
                         text(d, "reason", "INC-4711 orders latency: show the failover plan")),
        {"service": "orders", "incident_id": "INC-4711", "severity": "critical", "force": True, "dry_run": True},
        check=_failover_result("dry_run")),
    "failback_service": Form(
        lambda page, d: (text(d, "service", "orders"), text(d, "incident_id", "INC-4700"),
                         text(d, "reason", "INC-4700 is over: is orders back on its primary?")),
        {"service": "orders", "incident_id": "INC-4700", "dry_run": True}, check=_failover_result("nothing_to_do")),
    "failover_drill": Form(
        lambda page, d: text(d, "reason", "game day: is orders ready for a drill?"),
        {"service": "orders", "dry_run": None}, check=_failover_result("dry_run")),
    "provision_environment": Form(
        lambda page, d: (text(d, "environment", "demo"), text(d, "reason", "CHG-12 preview the demo stack")),
        {"environment": "demo", "dry_run": True, "max_concurrency": "5"}),
    "teardown_environment": Form(
        lambda page, d: (text(d, "environment", "demo"), text(d, "reason", "CHG-13 what would go")),
        {"environment": "demo", "dry_run": True}),
    "detect_drift": Form(
        lambda page, d: (lines(d, "environments", "demo"), switch(d, "start_dry_runs", False)),
        {"environments": ["demo"], "start_dry_runs": False}, check=_report_written("drift")),
    "cost_hygiene": Form(
        lambda page, d: (lines(d, "cleanup", "bucket_without_lifecycle"), text(d, "stopped_days", "14"),
                         text(d, "reason", "FIN-3 lifecycle rules for the buckets")),
        {"cleanup": ["bucket_without_lifecycle"], "stopped_days": 14, "dry_run": True},
        check=_report_written("cost")),
}
DETAILED = ("inventory_estate", "compliance_scan", "remediate_findings")


@contextmanager
def failover_endpoints(served: Served, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The local service's two endpoints (config/services.yaml's loopback addresses) and its replica lag,
    served from this test for the failover runbooks' runs (as the demo serves them for its drill)."""
    from localdev.failover_estate import local_failover_estate
    from localdev.stack import wait_for_local_endpoints

    for conn_id, conn in served.emulators().connections().items():
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))
    wait_for_local_endpoints("orders")  # fixed loopback addresses: another demo on this machine may hold them
    with local_failover_estate("orders"):
        yield


def wait_runs(api: Api, runs: dict[str, str], timeout: float = 600) -> dict[str, dict[str, Any]]:
    """Wait for every (dag id -> run id) at once; their final dag runs."""
    done: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + timeout
    while len(done) < len(runs):
        for dag_id, run_id in runs.items():
            if dag_id not in done:
                run = _state(api, dag_id, run_id)
                if run.get("state") in ("success", "failed"):
                    done[dag_id] = run
        pending = sorted(set(runs) - set(done))
        assert not pending or time.monotonic() < deadline, f"not finished in {timeout}s: {pending}"
        time.sleep(3 if pending else 0)  # one round of GETs every few seconds: the api-server shares 2 cores
    return done


def _state(api: Api, dag_id: str, run_id: str) -> dict[str, Any]:
    try:
        run: dict[str, Any] = api.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")
    except OSError:  # 404 until the trigger lands; SQLite busy under load
        return {"state": None}
    return run


def test_every_runbook_form_triggers_a_run(served: Served, browser: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every runbook's form, filled and submitted in the browser; the runs go at once and end as expected."""
    from include.audit import read_audit

    assert RUNBOOKS == {*FORMS, *DETAILED}, "a runbook without a form test (add it to FORMS)"
    page, api = browser, served.api
    runs = {dag_id: f"ui__{dag_id}" for dag_id in FORMS}
    started = time.monotonic()
    with failover_endpoints(served, monkeypatch):
        for dag_id, form in FORMS.items():
            dialog = open_form(page, served.base_url, dag_id)
            form.fill(page, dialog)
            submit(page, dialog, runs[dag_id], f"{dag_id}-form.png")
        submitted = time.monotonic() - started
        check_inventory_compliance_remediation_forms(served, page)  # while those runs go
        ended = wait_runs(api, runs)
    print(f"{len(FORMS)} forms filled and submitted in {submitted:.0f}s; all {len(FORMS) + len(DETAILED)} runs "
          f"ended {time.monotonic() - started:.0f}s after the first form was opened")
    problems = {}
    for dag_id, form in FORMS.items():
        run = ended[dag_id]
        conf = {key: run["conf"].get(key) for key in form.conf}
        if run["state"] != form.state or conf != form.conf:
            problems[dag_id] = (run["state"], conf, task_states(api, dag_id, runs[dag_id]))
    assert not problems, problems
    for dag_id, form in FORMS.items():
        if form.check is not None:
            form.check(served, runs[dag_id])
        # dry runs and read-only runbooks: the audit trail holds no change
        trail = read_audit(run_id=runs[dag_id], base=served.data)
        assert not [r for r in trail if r.outcome == "changed"], (dag_id, trail)
    for name in RUNBOOKS:
        assert (ARTIFACTS / f"{name}-form.png").stat().st_size > 10_000, name


def check_inventory_compliance_remediation_forms(served: Served, page: Any) -> None:
    """The three forms of the first runbooks, each run followed to its end and its results checked."""
    api = served.api
    # inventory_estate: two targets, one service each cloud understands
    dialog = open_form(page, served.base_url, "inventory_estate")
    dialog.locator("textarea[name=element_targets]").fill("aws-prod\ngcp-prod")
    dialog.locator("textarea[name=element_services]").fill("s3\nstorage")
    submit(page, dialog, "ui__inventory", "inventory_estate-form.png")
    park(page)
    run = wait_run(api, "inventory_estate", "ui__inventory")
    assert run["conf"]["targets"] == ["aws-prod", "gcp-prod"] and run["conf"]["services"] == ["s3", "storage"]
    assert run["state"] == "success", task_states(api, "inventory_estate", "ui__inventory")
    pointer = json.loads((served.data / "inventory" / "latest.json").read_text())
    summary = json.loads((Path(pointer["path"]).parent / "summary.json").read_text())
    assert pointer["run_id"] == "ui__inventory"  # each cloud listed only the services it has
    assert {cloud: set(types) for cloud, types in summary["by_cloud"].items()} == {
        "aws": {"aws.s3.bucket"}, "gcp": {"gcp.storage.bucket"}}

    # compliance_scan: only the critical severity fails the run, two rules
    dialog = open_form(page, served.base_url, "compliance_scan")
    dialog.locator("textarea[name=element_fail_on]").fill("critical")
    dialog.locator("textarea[name=element_rules]").fill("aws_s3_bucket_versioning\naws_required_tags")
    submit(page, dialog, "ui__compliance", "compliance_scan-form.png")
    park(page)
    run = wait_run(api, "compliance_scan", "ui__compliance")
    assert run["conf"]["rules"] == ["aws_s3_bucket_versioning", "aws_required_tags"]
    assert run["conf"]["fail_on"] == ["critical"]
    # The estate is deliberately non-compliant: critical findings of the demo's scan are still open (the other
    # rules were not re-evaluated, azure-prod was not re-inventoried), so the policy fails the run, and only it.
    states = task_states(api, "compliance_scan", "ui__compliance")
    assert run["state"] == "failed" and {t for t, (state, _) in states.items() if state != "success"} == {
        "enforce_policy"}, states

    # remediate_findings: the defaults (dry run on) with finding ids and tag values pasted as JSON
    ids = failing_findings(served.data, "aws_required_tags")[:2]
    dialog = open_form(page, served.base_url, "remediate_findings")
    dialog.locator("textarea[name=element_finding_ids]").fill("\n".join(ids))
    paste_json(page, dialog, "Tag values", TAGS)
    dialog.locator("input[name=element_reason]").fill("CHG-7 tag the legacy buckets")
    submit(page, dialog, "ui__remediate_dry", "remediate_findings-form.png")
    park(page)
    run = wait_run(api, "remediate_findings", "ui__remediate_dry")
    assert run["conf"]["dry_run"] is True and run["conf"]["tag_values"] == TAGS and run["conf"]["finding_ids"] == ids
    assert run["state"] == "success", task_states(api, "remediate_findings", "ui__remediate_dry")
    states = task_states(api, "remediate_findings", "ui__remediate_dry")
    assert states["report_plan"][0] == "success"
    assert {states[t][0] for t in ("approve_changes", "apply_changes", "verify_changes", "report")} == {"skipped"}
    saved = json.loads(result_path(WORDING, "ui__remediate_dry", served.data).read_text())
    assert saved["status"] == "dry_run" and saved["totals"]["planned_changes"] == len(ids)
    assert all("add " in line for line in saved["plan"]), saved["plan"]
    # a dry run reads and plans, and writes nothing: the audit trail holds only plan records, all "skipped"
    from include.audit import read_audit

    trail = read_audit(run_id="ui__remediate_dry", base=served.data)
    assert len(trail) == len(ids) and {(r.step, r.outcome, r.dry_run) for r in trail} == {("plan", "skipped", True)}


def test_bad_requests_through_the_api_are_refused(served: Served) -> None:
    import urllib.error

    api = served.api
    with pytest.raises(urllib.error.HTTPError) as refused:  # the Param schema: retention is 1..35
        api.trigger("remediate_findings", "api__bad_retention", {"finding_ids": [], "retention_days": 99})
    assert refused.value.code == 400
    latest_before = (served.data / "inventory" / "latest.json").read_text()
    # a typo in a parameter name: the run starts, its first task refuses it once (no retry), naming the allowed;
    # an unknown target, or a service no selected cloud has, also fails once, listing the known ones (all three
    # are triggered at once: the runs queue one after another)
    api.trigger("inventory_estate", "api__typo", {"tragets": ["aws-prod"]})
    api.trigger("inventory_estate", "api__unknown_target", {"targets": ["aws-staging"]})
    api.trigger("inventory_estate", "api__unknown_service", {"targets": ["gcp-prod"], "services": ["s3"]})
    run = wait_run(api, "inventory_estate", "api__typo")
    states = task_states(api, "inventory_estate", "api__typo")
    assert run["state"] == "failed" and states["select_targets"] == ("failed", 1), states
    # a refused request changes nothing: nothing collected, nothing published, the latest inventory stays
    assert states["publish_inventory"] == ("failed", 1) and states["check_complete"][0] == "upstream_failed"
    assert (served.data / "inventory" / "latest.json").read_text() == latest_before
    log = json.dumps(api.get("/api/v2/dags/inventory_estate/dagRuns/api__typo/taskInstances/select_targets/logs/1"))
    assert "unknown parameter(s) 'tragets'" in log and "allowed: services, targets" in log
    for run_id, expected in (("api__unknown_target", "unknown target 'aws-staging'; known targets: aws-prod"),
                             ("api__unknown_service", "unknown services: s3; known: gcp: compute, storage")):
        wait_run(api, "inventory_estate", run_id)
        assert task_states(api, "inventory_estate", run_id)["select_targets"] == ("failed", 1)
        log = json.dumps(api.get(f"/api/v2/dags/inventory_estate/dagRuns/{run_id}/taskInstances/select_targets/logs/1"))
        assert expected in log, log[-3000:]
    assert (served.data / "inventory" / "latest.json").read_text() == latest_before


def test_remediation_approved_from_required_actions_applies(
    served: Served, browser: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from include.audit import read_audit
    from include.clouds.aws.clients import client_for

    page, api = browser, served.api
    ids = failing_findings(served.data, "aws_s3_bucket_versioning")[:2]
    assert len(ids) == 2
    dialog = open_form(page, served.base_url, "remediate_findings")
    dialog.locator('label[data-scope=switch]:has(input[name=element_dry_run]) [data-part=control]').click()
    assert not dialog.locator("input[name=element_dry_run]").is_checked()
    dialog.locator("textarea[name=element_finding_ids]").fill("\n".join(ids))
    dialog.locator("input[name=element_reason]").fill("CHG-8 versioning on the legacy buckets")
    submit(page, dialog, "ui__remediate", "remediate_findings-apply-form.png")
    park(page)

    approve_in_required_actions(page, served, "ui__remediate", expect="Apply 2 compliance fixes on aws-prod?")

    run = wait_run(api, "remediate_findings", "ui__remediate")
    states = task_states(api, "remediate_findings", "ui__remediate")
    assert run["state"] == "success", states
    assert {states[t][0] for t in ("approve_changes", "apply_changes", "verify_changes", "report")} == {"success"}
    assert states["report_plan"][0] == "skipped"
    saved = json.loads(result_path(WORDING, "ui__remediate", served.data).read_text())
    assert saved["status"] == "fixed" and saved["approver"] == "admin" and saved["totals"]["verified"] == 2
    # the buckets really are versioned now (read through the stack's own emulator)
    emulators = served.emulators()
    monkeypatch.setenv("AIRFLOW_CONN_AWS_ESTATE", json.dumps(emulators.connections()["aws_estate"]))
    s3 = client_for("aws_estate", "s3", "us-east-1")
    buckets = [item["record"]["name"] for item in saved["items"]]
    assert [s3.get_bucket_versioning(Bucket=b).get("Status") for b in buckets] == ["Enabled", "Enabled"]
    trail = read_audit(run_id="ui__remediate", base=served.data)
    assert {r.outcome for r in trail if r.step == "plan"} == {"skipped"}
    assert {r.approver for r in trail if r.step in ("apply", "verify")} == {"admin"}
    assert sorted(r.outcome for r in trail if r.step == "apply") == ["changed", "changed"]
    assert {r.actor for r in trail} == {"admin"}  # triggered by the signed-in user


def approve_in_required_actions(page: Any, served: Served, run_id: str, expect: str) -> None:
    """Open the approval task's Required Action page, check the request, press Approve.

    Airflow 3.3.2 loses an answer given before the scheduler has processed the executor event of the
    task's pause (seen up to ~6 s under load): the task then fails that try and asks again on its next
    try (the approval task has retries for this). A person would see the request again and approve
    again; so does this test, at most three times.
    """
    api = served.api
    url = f"{served.base_url}/dags/remediate_findings/runs/{run_id}/tasks/approve_changes/required_actions"
    answered_try = 0
    for _ in range(3):
        deadline = time.monotonic() + 240
        while True:
            state, try_number = task_states(api, "remediate_findings", run_id).get("approve_changes", ("", 0))
            if state == "awaiting_input" and try_number > answered_try:
                break
            if state == "success":
                return
            assert state not in ("failed", "upstream_failed") and time.monotonic() < deadline, (state, try_number)
            time.sleep(1)
        time.sleep(5)  # see above: give the scheduler time to register the pause
        page.goto(url)
        approve = page.get_by_role("button", name="Approve", exact=True)
        approve.wait_for()
        page.screenshot(path=str(ARTIFACTS / "remediate_findings-required-action.png"), full_page=True)
        shown = page.inner_text("body")
        assert expect in shown, shown[:3000]
        assert all(f"arn:aws:s3:::{name}" in shown for name in planned_buckets(served, run_id)), shown[:3000]
        approve.click()
        answered_try = try_number
        deadline = time.monotonic() + 120
        while True:  # the answer is taken (success), or lost and asked again on the next try
            state, now_try = task_states(api, "remediate_findings", run_id)["approve_changes"]
            if state == "success" or (state == "awaiting_input" and now_try > answered_try):
                break
            assert time.monotonic() < deadline, f"the approval task never moved on: {state} (try {now_try})"
            assert not (state == "failed" and now_try >= 3), f"the approval task failed its last try ({now_try})"
            time.sleep(1)
        park(page)  # the answer was taken (or lost): nothing more to see on this page
        if state == "success":
            return
    raise AssertionError("the approval was lost three times")


def planned_buckets(served: Served, run_id: str) -> list[str]:
    """The buckets the run's plan changes (from its plan task's return value, through the REST API)."""
    xcom = served.api.get(f"/api/v2/dags/remediate_findings/dagRuns/{run_id}/taskInstances/plan_changes/xcomEntries/"
                          "return_value")
    value = xcom["value"] if isinstance(xcom["value"], dict) else json.loads(xcom["value"])
    return [item["record"]["name"] for item in value["items"] if item["change"]]


def test_incident_intake_end_to_end(served: Served, tmp_path: Path) -> None:
    from tests.test_intake_e2e import check_intake_end_to_end

    check_intake_end_to_end(served.base_url, served.password, served.home, served.data, tmp_path)


def test_runbooks_dashboard_in_the_ui(served: Served, browser: Any) -> None:
    """The dashboard from the UI's navigation shows the demo's data; its audit filter works; no sign-in, no page.

    (Placed before test_make_down_stops_everything, which stops the stack.)
    """
    import urllib.error
    import urllib.request

    from include.audit import read_audit
    from include.backup.drill import read_history as drill_history
    from include.compliance.store import load_latest_scan
    from include.dashboard.data import posture
    from include.dashboard.page import duration, when
    from include.failover.history import read_history as failover_history

    page, data = browser, served.data
    page.goto(served.base_url + "/")
    page.get_by_role("link", name="Runbooks dashboard").click()  # the plugin's entry in the navigation
    page.wait_for_url(re.compile(r"/plugin/runbooks-dashboard$"))
    frame = page.frame_locator('iframe[title="Runbooks dashboard"]')
    frame.locator("section#runbooks").wait_for()
    assert "Signed in as admin" in frame.locator("body").inner_text()
    page.screenshot(path=str(ARTIFACTS / "runbooks-dashboard-in-ui.png"))

    # compliance posture per cloud: the stack's latest scan, as the page computes it
    scan = load_latest_scan(data)
    assert scan is not None
    clouds = sorted({f.cloud for f in scan["findings"]})
    assert set(clouds) == {"aws", "gcp", "azure"}
    for cloud in clouds:
        statuses = [f.status for f in scan["findings"] if f.cloud == cloud]
        expected = posture({status: statuses.count(status) for status in ("pass", "fail", "waived")})
        cells = frame.locator(f'#compliance tr[data-cloud="{cloud}"] td').all_inner_texts()
        assert cells[:2] == [cloud, f"{expected}%"], cells
    assert frame.locator("#compliance svg").count() == 2

    # backups: every drilled policy with its RPO objective, its last drill passed, the drill's RPO
    drills = {line["policy"]: line for line in drill_history(data)}
    assert {"aws-customer-exports-to-gcp", "gcp-app-data-to-azure"} <= set(drills)
    for policy, line in drills.items():
        row = frame.locator(f'#backup tr[data-policy="{policy}"]').inner_text()
        assert duration(line["rpo_objective_seconds"]) in row and "passed" in row, row
        assert duration(line["rpo_seconds"]) in row and str(when(line["time"])) in row, row

    # failover: the demo's drill and its measured RTO
    [drilled] = [e for e in failover_history(data) if e["runbook"] == "failover_drill" and e["status"] == "passed"]
    row = frame.locator("#failover tbody tr", has_text=drilled["run_id"]).first.inner_text()
    assert duration(drilled["rto_seconds"]) in row and "passed" in row, row
    assert frame.locator("#failover svg").count() == 1

    # audit: the newest mutation first; then filtered by one resource through the form
    mutations = [r for r in read_audit(base=data) if r.outcome in ("changed", "failed")]
    assert mutations
    first_row = frame.locator("#audit tbody tr").first.inner_text()
    assert mutations[-1].run_id in first_row and mutations[-1].action in first_row, first_row
    frame.locator("#audit").screenshot(path=str(ARTIFACTS / "runbooks-dashboard-audit.png"))
    resource = next(r.resource for r in reversed(mutations) if r.resource and r.runbook == "restore_drill")
    expected_rows = [r for r in mutations if r.runbook == "restore_drill" and resource in (r.resource or "")]
    frame.locator("#audit input[name=resource]").fill(resource)
    frame.locator("#audit select[name=runbook]").select_option("restore_drill")
    frame.locator("#audit button[type=submit]").click()
    frame.locator(f"#audit p.count:has-text('{len(expected_rows)} record(s) match')").wait_for()
    rows = frame.locator("#audit tbody tr").all_inner_texts()
    assert len(rows) == len(expected_rows) and all(resource in text for text in rows), rows
    frame.locator("#audit").screenshot(path=str(ARTIFACTS / "runbooks-dashboard-audit-filtered.png"))

    # the page on its own, whole
    page.goto(served.base_url + "/runbooks-dashboard/")
    page.locator("section#runbooks").wait_for()
    page.screenshot(path=str(ARTIFACTS / "runbooks-dashboard.png"), full_page=True)
    park(page)
    for name in ("in-ui", "audit", "audit-filtered"):
        assert (ARTIFACTS / f"runbooks-dashboard-{name}.png").stat().st_size > 10_000, name
    assert (ARTIFACTS / "runbooks-dashboard.png").stat().st_size > 10_000

    # nobody signed in: a browser lands on the login page, an API client gets 401
    anonymous = page.context.browser.new_context()
    try:
        stranger = anonymous.new_page()
        stranger.goto(served.base_url + "/runbooks-dashboard/")
        stranger.locator("input[name=username]").wait_for()
        assert "Runbooks dashboard" not in stranger.content()
    finally:
        anonymous.close()
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(served.base_url + "/runbooks-dashboard/data.json", timeout=30)
    assert refused.value.code == 401


def test_make_down_stops_everything(served: Served) -> None:
    state = json.loads((served.home / "emulators.json").read_text())
    airflow_pid = int((served.home / "airflow.pid").read_text())
    down = subprocess.run([sys.executable, "-m", "localdev", "down", "--home", str(served.home)],
                          cwd=PROJECT_ROOT, env=served.env, capture_output=True, text=True, timeout=120, check=False)
    assert down.returncode == 0, down.stderr
    served.proc.wait(timeout=120)

    def gone(pgid: int) -> bool:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        return False

    from localdev.stack import wait_for

    # Under load Airflow may outlast `down`'s TERM grace and be KILLed: its last processes are then reaped by
    # init, not by us, a moment later. Every process group must be gone; the bound only stops a hang.
    for pid in [airflow_pid, *state["pids"].values()]:
        wait_for(f"process group {pid} to be gone after `down`", lambda pgid=pid: gone(pgid), timeout=30)
    assert not (served.home / "airflow.pid").exists() and not (served.home / "emulators.json").exists()
