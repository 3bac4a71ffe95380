"""The receiver mounted in a real ``airflow api-server`` (the plugin, as Airflow loads it), and the CLI
against that server's REST API v2 with a token.

No scheduler runs here: runs are created and stay queued. A new incident is answered once it is in the
receiver's outbox; the receiver's drainer (its own process, started with the API server) creates the run
right after, so the checks on a run wait for it to exist (and one checks what the drainer does at start-up). Following a run to its end and answering an
approval need the whole stack: ``tests/test_intake_e2e.py`` does that through ``airflow standalone``.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from localdev.emulators import free_port
from tests.test_intake import intake_db  # noqa: F401  (a fixture)
from tests.test_intake_payloads import (
    am_headers,
    body_of,
    connection_env,
    public_bucket_alert,
    signed,
    unique,
)

PROJECT_ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


@dataclass
class Server:
    url: str
    password: str
    password_file: Path
    env: dict[str, str]
    log: Path

    def cli(self, *args: str, env: dict[str, str] | None = None, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "include.cli", "--url", self.url, *args], cwd=PROJECT_ROOT, text=True,
            capture_output=True, timeout=120, check=False, input=stdin, env={**self.env, **(env or {})},
        )

    def token(self) -> str:
        answer = httpx.post(f"{self.url}/auth/token", json={"username": "admin", "password": self.password})
        answer.raise_for_status()
        return str(answer.json()["access_token"])

    def get(self, path: str) -> httpx.Response:
        return httpx.get(self.url + path, headers={"Authorization": f"Bearer {self.token()}"}, timeout=30)


def wait_for_run(server: Server, dag_id: str, run_id: str, timeout: float = 60.0) -> dict[str, Any]:
    """The run as Airflow's REST API shows it, once the receiver's drainer has created it."""
    deadline = time.monotonic() + timeout
    while True:
        answer = server.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")
        if answer.status_code == 200:
            run: dict[str, Any] = answer.json()
            return run
        assert answer.status_code == 404, answer.text
        assert time.monotonic() < deadline, f"run {run_id} of {dag_id} not created in {timeout:.0f} s"
        time.sleep(0.2)


#: Accepted by a receiver that "crashed" before its drainer created the run (inserted before the server starts).
_LEFT = f"intake__generic__{unique('left-')}"
LEFT_PENDING = {"run_id": _LEFT, "actor": "intake:generic",  # the conf as the receiver stores it (with the key)
                "conf": {"dry_run": True, "rule": "aws_s3_bucket_versioning", "resources": ["rb-left-pending"],
                         "idempotency_key": _LEFT}}


@pytest.fixture(scope="module")
def server(intake_db: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:  # noqa: F811
    """``airflow api-server`` on a free loopback port, on this session's DB, with the intake connections."""
    root = tmp_path_factory.mktemp("api-server")
    password = secrets.token_urlsafe(12)
    (root / "passwords.json").write_text(json.dumps({"admin": password}))
    (root / "password").write_text(password)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "AIRFLOW__CORE__UNIT_TEST_MODE"}
    env.update(connection_env())
    env.update({
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(64),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(root / "passwords.json"),
        "RUNBOOKS_DATA_DIR": str(root / "data"),
        "PYTHONPATH": str(PROJECT_ROOT),
    })
    from include.intake import outbox

    assert outbox.accept(outbox.ensure_table(), "remediate_findings", LEFT_PENDING["run_id"], LEFT_PENDING["conf"],
                         LEFT_PENDING["actor"])
    log = root / "api-server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "airflow", "api-server", "--host", "127.0.0.1", "--port",
                                 str(port)], env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                cwd=PROJECT_ROOT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None, log.read_text()[-4000:]
            try:
                if httpx.get(f"{url}/api/v2/monitor/health", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "api-server not up in 180 s:\n" + log.read_text()[-4000:]
            time.sleep(0.5)
        cli_env = {k: v for k, v in env.items() if not k.startswith("AIRFLOW_CONN_")}
        yield Server(url, password, root / "password", cli_env, log)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


# ---- the plugin in Airflow's API server ---------------------------------------------------------------------
def test_an_incident_accepted_before_the_server_started_gets_its_run_at_start_up(server: Server) -> None:
    """First in this module: no request has reached /runbooks yet. The outbox row of an incident answered 202 by a receiver that died before creating its run: the API
    server's start builds the receiver, whose drainer creates the run, with no delivery needed to trigger it."""
    run = wait_for_run(server, "remediate_findings", LEFT_PENDING["run_id"])
    assert run["conf"] == LEFT_PENDING["conf"]
    assert run["triggering_user_name"] == "intake:generic" and run["state"] == "queued"


def test_the_plugin_is_mounted_and_starts_a_run_once(server: Server) -> None:
    health = httpx.get(f"{server.url}/runbooks/health", timeout=30)
    assert health.status_code == 200 and health.json()["routing"]["ok"] is True
    payload = public_bucket_alert(unique("srv"), ["rb-prod-public-website"])
    body, headers = signed("alertmanager", payload)
    first = httpx.post(f"{server.url}/runbooks/hooks/alertmanager", content=body, headers=headers, timeout=30)
    assert first.status_code == 202 and first.json()["decision"] == "started", first.text
    run_id = first.json()["run_id"]
    assert first.json()["state"] == "pending"  # accepted (in the outbox); the drainer creates the run
    # the run as Airflow's own REST API shows it
    run = wait_for_run(server, "remediate_findings", run_id)
    assert run["state"] == "queued" and run["run_type"] == "manual" and run["triggered_by"] == "rest_api"
    assert run["triggering_user_name"] == "intake:alertmanager"
    assert run["conf"]["idempotency_key"] == run_id and run["conf"]["resources"] == ["rb-prod-public-website"]
    again = httpx.post(f"{server.url}/runbooks/hooks/alertmanager", content=body, headers=headers, timeout=30)
    assert again.json() == {**first.json(), "decision": "duplicate", "state": "queued"}
    # the receiver's own authentication, not Airflow's: an Airflow token is not an intake token
    airflow_token = {"Authorization": f"Bearer {server.token()}"}
    assert httpx.post(f"{server.url}/runbooks/hooks/alertmanager", content=body, headers=airflow_token,
                      timeout=30).status_code == 401
    # and an intake token is nothing in Airflow's API (Airflow answers 403 to a token it did not sign)
    assert httpx.get(f"{server.url}/api/v2/dags", headers=am_headers(), timeout=30).status_code == 403


def test_twenty_concurrent_deliveries_through_the_server_start_one_run(server: Server) -> None:
    body, headers = signed("alertmanager", public_bucket_alert(unique("conc"), ["rb-prod-legacy-assets"]))

    def deliver(_: int) -> httpx.Response:
        return httpx.post(f"{server.url}/runbooks/hooks/alertmanager", content=body, headers=headers, timeout=60)

    with ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(pool.map(deliver, range(20)))
    assert [a.status_code for a in answers] == [202] * 20, [a.text for a in answers]
    assert sorted(a.json()["decision"] for a in answers) == ["duplicate"] * 19 + ["started"]
    [run_id] = {a.json()["run_id"] for a in answers}
    wait_for_run(server, "remediate_findings", run_id)
    listed = server.get(f"/api/v2/dags/remediate_findings/dagRuns?run_id_pattern={run_id}").json()
    assert [r["dag_run_id"] for r in listed["dag_runs"]] == [run_id]


def test_oversized_and_malformed_through_the_server(server: Server) -> None:
    big = b"{" + b" " * (1024 * 1024 + 10) + b"}"
    assert httpx.post(f"{server.url}/runbooks/hooks/alertmanager", content=big, headers=am_headers(),
                      timeout=60).status_code == 413
    assert httpx.post(f"{server.url}/runbooks/hooks/alertmanager", content=b"{oops", headers=am_headers(),
                      timeout=60).status_code == 400
    assert httpx.post(f"{server.url}/runbooks/hooks/zabbix", content=body_of({}), timeout=60).status_code == 404


# ---- the CLI over the REST API ----------------------------------------------------------------------------
def test_cli_trigger_is_idempotent_with_a_run_id_and_reports_refusals(server: Server, tmp_path: Path) -> None:
    conf = tmp_path / "request.json"
    conf.write_text(json.dumps({"dry_run": True, "rule": "aws_s3_bucket_versioning", "resources": ["rb-prod-scratch-eu"]}))
    run_id = unique("cli-")
    login = ["--password-file", str(server.password_file)]
    first = server.cli(*login, "trigger", "remediate_findings", "--conf-file", str(conf), "--run-id", run_id, "--json")
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout) == {"dag_id": "remediate_findings", "run_id": run_id, "state": "queued",
                                        "existed": False}
    again = server.cli(*login, "trigger", "remediate_findings", "--conf-file", str(conf), "--run-id", run_id)
    assert again.returncode == 0 and f"remediate_findings run {run_id} exists already (queued)" in again.stdout
    run = server.get(f"/api/v2/dags/remediate_findings/dagRuns/{run_id}").json()
    assert run["conf"]["resources"] == ["rb-prod-scratch-eu"]

    yaml_conf = tmp_path / "request.yaml"
    yaml_conf.write_text("retention_days: 99\n")
    bad = server.cli(*login, "trigger", "remediate_findings", "--conf-file", str(yaml_conf))
    assert bad.returncode == 1 and "400" in bad.stderr and "99 is greater than the maximum of 35" in bad.stderr
    unknown = server.cli(*login, "trigger", "no_such_runbook", "--conf-file", "-", stdin="{}")
    assert unknown.returncode == 1 and "404" in unknown.stderr
    wrong = server.cli("trigger", "remediate_findings", "--conf-file", str(conf), env={"AIRFLOW_PASSWORD": "nope"})
    assert wrong.returncode == 1 and "login as admin refused (401)" in wrong.stderr
    nothing = server.cli("trigger", "remediate_findings", "--conf-file", str(conf))
    assert nothing.returncode == 1 and "no credentials" in nothing.stderr
    # a token from the environment instead of a password
    with_token = server.cli("trigger", "remediate_findings", "--conf-file", str(conf), "--run-id", unique("tok-"),
                            env={"AIRFLOW_TOKEN": server.token()})
    assert with_token.returncode == 0, with_token.stderr


def test_cli_approvals_and_answers_without_a_waiting_request(server: Server) -> None:
    login = ["--password-file", str(server.password_file)]
    listed = server.cli(*login, "approvals", "--json")
    assert listed.returncode == 0 and json.loads(listed.stdout) == []
    assert server.cli(*login, "approvals").stdout.strip() == "nothing is waiting for approval"
    early = server.cli(*login, "approve", "remediate_findings", "nope", "approve_changes", "--comment", "x")
    assert early.returncode == 1 and "no request waiting" in early.stderr
    down = subprocess.run([sys.executable, "-m", "include.cli", "--url", f"http://127.0.0.1:{free_port()}",
                           "approvals"], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60,
                          env={**server.env, "AIRFLOW_TOKEN": "x"}, check=False)
    assert down.returncode == 1 and "cannot reach Airflow" in down.stderr
