"""End to end through ``airflow standalone`` (the stack of ``make demo SERVE=1`` / ``make up``):

1. a signed Alertmanager alert for a public bucket starts ``remediate_findings`` (dry run) once: repeats
   and concurrent copies answer with the same run, the resolved notification starts nothing, a bad token is
   refused; the run is followed to its end with the CLI and its plan names the bucket;
2. the CLI triggers a real remediation with a conf file, lists it among the runs waiting for approval,
   approves it with a comment, follows it to success; the cloud is changed as planned;
3. a signed Alertmanager ``ServiceDown`` alert (critical) for ``orders``, whose primary endpoint is really
   down (the service's endpoints and replica lag are served from this process, as ``make demo`` does for its
   drill), starts ``failover_service`` once: concurrent repeats answer with the same run, which the catalog's
   policy approves (critical) and which fails the service over for real, verified, its RTO recorded. This
   leaves ``orders`` on its standby: run it against a stack you can throw away.

:func:`check_intake_end_to_end` takes the running stack as parameters, so that the one shared standalone
of ``tests/test_local_stack.py`` can run it (``served.base_url``, ``served.password``, ``served.home``,
``served.data``, ``served.emulators()``). To run it against a stack of your own:

    python -m localdev demo --serve --home /tmp/me --port 18080   # RUNBOOKS_DATA_DIR=/tmp/me/data
    python -m tests.test_intake_e2e --url http://127.0.0.1:18080 --home /tmp/me --data /tmp/me/data
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.test_intake_payloads import am_alert, am_payload, public_bucket_alert, unique

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DAG = "remediate_findings"
PUBLIC_BUCKET = "rb-prod-public-website"  # public through its bucket policy in config/estate.yaml
#: The real change the CLI approves: default encryption on a bucket the estate leaves unencrypted. No other
#: test of the shared stack uses this rule (the browser tests use versioning and required tags).
APPLY_RULE, APPLY_BUCKET = "aws_s3_bucket_default_encryption", "rb-prod-scratch-eu"


class Stack:
    """The running stack, through its REST API (a token from /auth/token) and the CLI."""

    def __init__(self, base_url: str, password: str, home: Path) -> None:
        self.url = base_url.rstrip("/")
        self.password = password
        self.home = home
        self._token: str | None = None

    def token(self) -> str:
        if self._token is None:
            answer = httpx.post(f"{self.url}/auth/token", json={"username": "admin", "password": self.password},
                                timeout=60)
            answer.raise_for_status()
            self._token = str(answer.json()["access_token"])
        return self._token

    def get(self, path: str) -> Any:
        answer = httpx.get(self.url + path, headers={"Authorization": f"Bearer {self.token()}"}, timeout=60)
        answer.raise_for_status()
        return answer.json()

    def secret(self, source: str) -> str:
        return (self.home / "intake" / f"{source}-secret").read_text().strip()

    def cli(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW_CONN_")}
        env.update({"AIRFLOW_URL": self.url, "AIRFLOW_PASSWORD": self.password, "PYTHONPATH": str(PROJECT_ROOT)})
        env.pop("AIRFLOW_TOKEN", None)
        return subprocess.run([sys.executable, "-m", "include.cli", *args], cwd=PROJECT_ROOT, env=env, text=True,
                              capture_output=True, timeout=timeout, check=False)

    def task_states(self, run_id: str, dag_id: str = DAG) -> dict[str, tuple[str, int]]:
        tis = self.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances")["task_instances"]
        return {ti["task_id"]: (ti["state"], ti["try_number"]) for ti in tis}


def _until(what: str, probe: Callable[[], Any], timeout: float = 300, interval: float = 1.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def _parsed(stack: Stack, dag_id: str = DAG) -> bool:
    try:
        stack.get(f"/api/v2/dags/{dag_id}")
        return True
    except httpx.HTTPError:
        return False


def created_runs(stack: Stack, dag_id: str, run_id: str) -> list[dict[str, Any]]:
    """The runs matching ``run_id``, once the receiver's outbox drainer has created the answered one."""
    def listed() -> list[dict[str, Any]] | None:
        runs: list[dict[str, Any]] = stack.get(f"/api/v2/dags/{dag_id}/dagRuns?run_id_pattern={run_id}")["dag_runs"]
        return runs if any(r["dag_run_id"] == run_id for r in runs) else None

    found: list[dict[str, Any]] = _until(f"run {run_id} of {dag_id} to be created", listed, timeout=60, interval=0.5)
    return found


def check_alert_starts_the_runbook_once(stack: Stack, data: Path | None) -> str:
    hook = f"{stack.url}/runbooks/hooks/alertmanager"
    group = unique("e2e-")
    alert = public_bucket_alert(group, [PUBLIC_BUCKET])
    body = json.dumps(alert).encode()
    token = {"Authorization": f"Bearer {stack.secret('alertmanager')}", "Content-Type": "application/json"}
    refused = httpx.post(hook, content=body, headers={**token, "Authorization": "Bearer wrong-token-0123456789"},
                         timeout=60)
    assert refused.status_code == 401, refused.text
    first = httpx.post(hook, content=body, headers=token, timeout=60)
    assert first.status_code == 202 and first.json()["decision"] == "started", first.text
    run_id = first.json()["run_id"]
    with ThreadPoolExecutor(max_workers=5) as pool:  # Alertmanager re-sends; replicas send concurrently
        repeats = list(pool.map(lambda _: httpx.post(hook, content=body, headers=token, timeout=60), range(5)))
    assert {(r.status_code, r.json()["decision"], r.json()["run_id"]) for r in repeats} == {(202, "duplicate", run_id)}
    resolved = json.dumps(public_bucket_alert(group, [PUBLIC_BUCKET], status="resolved")).encode()
    ignored = httpx.post(hook, content=resolved, headers=token, timeout=60)
    assert ignored.status_code == 202 and ignored.json()["decision"] == "ignored", ignored.text
    runs = created_runs(stack, DAG, run_id)
    assert [r["dag_run_id"] for r in runs] == [run_id]
    assert runs[0]["conf"]["dry_run"] is True and runs[0]["conf"]["resources"] == [PUBLIC_BUCKET]
    assert runs[0]["triggering_user_name"] == "intake:alertmanager"

    followed = stack.cli("follow", DAG, run_id, "--interval", "2", "--timeout", "600")
    assert followed.returncode == 0, followed.stdout + followed.stderr
    assert "report_plan: success" in followed.stdout and f"run {run_id}: success" in followed.stdout
    states = stack.task_states(run_id)
    assert states["report_plan"][0] == "success" and states["approve_changes"][0] == "skipped"
    if data is not None:
        result = json.loads((data / "remediation" / run_id / "result.json").read_text())
        assert result["status"] == "dry_run" and any(PUBLIC_BUCKET in line for line in result["plan"]), result
        from include.audit import read_audit

        trail = [r for r in read_audit(base=data) if r.step == "intake" and r.idempotency_key == run_id]
        assert [r.action for r in trail] == ["started"] + ["duplicate"] * 5
    return run_id


def _waiting(stack: Stack, run_id: str, answered_try: int) -> bool:
    """The run's approval request is listed by ``approvals`` and its task waits on a try not answered yet."""
    listed = stack.cli("approvals", "--dag", DAG, "--json")
    assert listed.returncode == 0, listed.stderr
    rows = [r for r in json.loads(listed.stdout) if r["run_id"] == run_id]
    state, try_number = stack.task_states(run_id).get("approve_changes", ("", 0))
    assert state not in ("failed", "upstream_failed"), (state, try_number)
    return bool(rows) and state == "awaiting_input" and try_number > answered_try


def _moved_on(stack: Stack, run_id: str, answered_try: int) -> str | None:
    state, now_try = stack.task_states(run_id)["approve_changes"]
    return state if state == "success" or (state == "awaiting_input" and now_try > answered_try) else None


def _approve(stack: Stack, run_id: str, comment: str) -> None:
    """Approve through the CLI; Airflow 3.3.2 can lose an answer given right after the task starts waiting
    (the task then asks again on its next try), so answer again when asked again, at most three times."""
    answered_try = 0
    for _ in range(3):
        _until(f"{run_id} to wait for approval", lambda a=answered_try: _waiting(stack, run_id, a), 300, 2)
        answered_try = stack.task_states(run_id)["approve_changes"][1]
        time.sleep(5)  # let the scheduler register the pause first (see tests/test_local_stack.py)
        approved = stack.cli("approve", DAG, run_id, "approve_changes", "--comment", comment)
        assert approved.returncode == 0, approved.stderr
        assert f"{DAG} {run_id} approve_changes: Approve by admin ({comment})" in approved.stdout
        if _until("the approval task to move on", lambda a=answered_try: _moved_on(stack, run_id, a), 120) == "success":
            return
    raise AssertionError("the approval was lost three times")


def check_cli_triggers_approves_and_follows(stack: Stack, data: Path | None, tmp: Path) -> str:
    run_id = unique("cli-e2e-")
    conf = tmp / "encrypt.json"
    conf.write_text(json.dumps({"dry_run": False, "rule": APPLY_RULE, "resources": [APPLY_BUCKET],
                                "reason": "CHG-9 default encryption on the scratch bucket"}))
    started = stack.cli("trigger", DAG, "--conf-file", str(conf), "--run-id", run_id, "--json")
    assert started.returncode == 0, started.stderr
    assert json.loads(started.stdout)["run_id"] == run_id and json.loads(started.stdout)["existed"] is False
    _approve(stack, run_id, "CHG-9 approved by the on-call")
    followed = stack.cli("follow", DAG, run_id, "--interval", "2", "--timeout", "600")
    assert followed.returncode == 0, followed.stdout + followed.stderr
    assert "apply_changes: success" in followed.stdout and "verify_changes: success" in followed.stdout
    detail = stack.get(f"/api/v2/dags/{DAG}/dagRuns/{run_id}/taskInstances/approve_changes/-1/hitlDetails")
    assert detail["chosen_options"] == ["Approve"] and detail["responded_by_user"]["name"] == "admin"
    assert detail["params_input"] == {"comment": "CHG-9 approved by the on-call"}
    nothing = stack.cli("approvals", "--dag", DAG, "--json")
    assert run_id not in {r["run_id"] for r in json.loads(nothing.stdout)}
    if data is not None:
        result = json.loads((data / "remediation" / run_id / "result.json").read_text())
        assert result["status"] == "fixed" and result["approver"] == "admin", result
        assert result["totals"]["changed"] == 1 and result["totals"]["verified"] == 1, result["totals"]
    return run_id


@contextmanager
def primary_down(home: Path, service: str = "orders") -> Iterator[None]:
    """``service``'s endpoints served from here with its primary down (an outage), its replica lag published.

    The stack's emulators (``home``/emulators.json) hold the service's databases and DNS; this process reaches
    them with the stack's connections (set for the duration only)."""
    from localdev.emulators import Emulators
    from localdev.failover_estate import local_failover_estate
    from localdev.stack import wait_for_local_endpoints

    env = {f"AIRFLOW_CONN_{conn_id.upper()}": json.dumps(conn)
           for conn_id, conn in Emulators.load(home / "emulators.json").connections().items()}
    wait_for_local_endpoints(service)  # fixed loopback addresses: another demo on this machine may hold them
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        with local_failover_estate(service) as (services, _lag):
            services.down("primary")
            yield


def start_service_down_incident(stack: Stack, service: str = "orders") -> str:
    """A signed ServiceDown alert (critical) for ``service`` starts failover_service once; its run id."""
    hook = f"{stack.url}/runbooks/hooks/alertmanager"
    labels = {"alertname": "ServiceDown", "service": service, "severity": "critical", "team": "sre"}
    alert = am_payload(unique("e2e-down-"), [am_alert(unique("f")[:16], labels, summary=f"{service} does not answer")],
                       alertname="ServiceDown", summary=f"{service} does not answer")
    body = json.dumps(alert).encode()
    token = {"Authorization": f"Bearer {stack.secret('alertmanager')}", "Content-Type": "application/json"}
    with ThreadPoolExecutor(max_workers=4) as pool:  # Alertmanager replicas deliver the same group at once
        answers = list(pool.map(lambda _: httpx.post(hook, content=body, headers=token, timeout=60), range(4)))
    assert {a.status_code for a in answers} == {202}, [a.text for a in answers]
    decisions = sorted(a.json()["decision"] for a in answers)
    run_ids = {a.json()["run_id"] for a in answers}
    assert decisions == ["duplicate"] * 3 + ["started"] and len(run_ids) == 1, [a.json() for a in answers]
    assert {(a.json()["dag_id"], a.json()["route"]) for a in answers} == {("failover_service", "service-down-failover")}
    return run_ids.pop()


def check_service_down_fails_over_once(stack: Stack, data: Path | None, run_id: str, service: str = "orders") -> str:
    """Follow the incident's run to a verified failover, approved by the service's policy (critical)."""
    dag = "failover_service"
    runs = created_runs(stack, dag, run_id)
    assert [r["dag_run_id"] for r in runs] == [run_id] and runs[0]["triggering_user_name"] == "intake:alertmanager"
    assert runs[0]["conf"] == {"service": service, "incident_id": run_id, "severity": "critical", "dry_run": False,
                               "reason": f"Alertmanager ServiceDown for {service}: {service} does not answer"}
    followed = stack.cli("follow", dag, run_id, "--interval", "2", "--timeout", "600")
    states = stack.task_states(run_id, dag)
    assert followed.returncode == 0, (followed.stdout + followed.stderr, states)
    assert f"run {run_id}: success" in followed.stdout
    assert {t: states[t][0] for t in ("approve_by_policy", "approve_failover", "promote_standby", "switch_dns",
                                      "verify", "record_and_notify")} == {
        "approve_by_policy": "success", "approve_failover": "skipped", "promote_standby": "success",
        "switch_dns": "success", "verify": "success", "record_and_notify": "success"}, states
    if data is not None:
        result = json.loads((data / "failover" / run_id / "result.json").read_text())
        assert result["status"] == "failed_over" and result["dry_run"] is False, result
        assert result["rto"]["rto_seconds"] > 0, result["rto"]
    return run_id


def check_intake_end_to_end(base_url: str, admin_password: str, home: Path, data: Path | None = None,
                            tmp: Path | None = None) -> dict[str, str]:
    """The three checks against a running stack (the failover's run goes while the others do); their run ids."""
    stack = Stack(base_url, admin_password, home)
    for dag in (DAG, "failover_service"):
        _until(f"{dag} to be parsed", lambda d=dag: _parsed(stack, d), timeout=180)
    health = httpx.get(f"{stack.url}/runbooks/health", timeout=60).json()
    assert health["routing"]["ok"] and all(s["configured"] for s in health["sources"].values()), health
    work = tmp or Path(os.environ.get("TMPDIR", "/tmp"))
    with primary_down(home):
        failover_run = start_service_down_incident(stack)
        runs = {
            "intake_run": check_alert_starts_the_runbook_once(stack, data),
            "cli_run": check_cli_triggers_approves_and_follows(stack, data, work),
        }
        runs["failover_run"] = check_service_down_fails_over_once(stack, data, failover_run)
    return runs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True)
    parser.add_argument("--home", type=Path, required=True, help="the stack's .local home (admin-password, intake/)")
    parser.add_argument("--data", type=Path, help="the stack's RUNBOOKS_DATA_DIR (checks result files when given)")
    args = parser.parse_args(argv)
    password = (args.home / "admin-password").read_text().strip()
    started = time.monotonic()
    runs = check_intake_end_to_end(args.url, password, args.home, args.data)
    print(f"intake end to end: ok in {time.monotonic() - started:.0f}s: {runs}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
