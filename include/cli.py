"""The plain API path: trigger, follow and approve runbooks over Airflow's REST API v2 with a token.

    python -m include.cli trigger remediate_findings --conf-file request.json [--run-id chg-4711]
    python -m include.cli follow remediate_findings chg-4711
    python -m include.cli approvals
    python -m include.cli approve remediate_findings chg-4711 approve_changes --comment "CHG-4711 ok"
    python -m include.cli reject  remediate_findings chg-4711 approve_changes --comment "not now"

Where and who (never a password on the command line, where `ps` shows it):

- ``--url`` or ``AIRFLOW_URL`` (default ``http://localhost:8080``);
- ``AIRFLOW_TOKEN``: a bearer token (e.g. from your SSO); else ``--user`` / ``AIRFLOW_USER`` (default
  ``admin``) with the password from ``AIRFLOW_PASSWORD`` or ``--password-file`` (``make up`` writes
  ``.local/admin-password``), exchanged for a token at ``POST /auth/token``.

Exit codes: 0 done (``follow``: the run succeeded), 1 the API refused or the run failed, 2 bad usage,
3 ``follow`` timed out.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

DEFAULT_URL = "http://localhost:8080"
#: Terminal DAG run states.
DONE = ("success", "failed")
#: Airflow 3.3.2 can lose an answer given within ~1 s of the task starting to wait (platform notes):
#: an approval is sent no earlier than this many seconds after the request was created.
MIN_REQUEST_AGE_S = 3.0


class CliError(RuntimeError):
    """A refusal of the API (or a bad input) with the message to show; exit code 1."""


class Client:
    """Airflow REST API v2 with a bearer token."""

    def __init__(self, url: str, token: str | None = None, user: str | None = None, password: str | None = None,
                 timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self._http = httpx.Client(base_url=self.url, timeout=timeout)
        self._token = token
        self._login = (user, password)

    def close(self) -> None:
        self._http.close()

    def token(self) -> str:
        if self._token is None:
            user, password = self._login
            if not user or password is None:
                raise CliError("no credentials: set AIRFLOW_TOKEN, or AIRFLOW_PASSWORD / --password-file")
            answer = self._http.post("/auth/token", json={"username": user, "password": password})
            if answer.status_code >= 300:
                raise CliError(f"login as {user} refused ({answer.status_code}): {_detail(answer)}")
            self._token = str(answer.json()["access_token"])
        return self._token

    def request(self, method: str, path: str, body: Any = None, params: dict[str, Any] | None = None) -> httpx.Response:
        return self._http.request(method, path, json=body, params=params,
                                  headers={"Authorization": f"Bearer {self.token()}"})

    def call(self, method: str, path: str, body: Any = None, params: dict[str, Any] | None = None) -> Any:
        """The JSON answer; ``CliError`` with the API's message for any refusal."""
        answer = self.request(method, path, body, params)
        if answer.status_code >= 300:
            raise CliError(f"{method} {path}: {answer.status_code} {_detail(answer)}")
        return answer.json() if answer.content else None


def _detail(answer: httpx.Response) -> str:
    try:
        body = answer.json()
    except ValueError:
        return answer.text[:500]
    detail = body.get("detail", body) if isinstance(body, dict) else body
    return detail if isinstance(detail, str) else json.dumps(detail)[:1000]


def _q(value: str) -> str:
    return quote(value, safe="")


def _now() -> str:
    return datetime.now(UTC).strftime("%H:%M:%S")


def load_conf(path: str) -> dict[str, Any]:
    """A conf file: JSON, or YAML for ``.yaml`` / ``.yml``; ``-`` reads JSON from stdin."""
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text()
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror or exc}") from None
    if path.endswith((".yaml", ".yml")):
        import yaml

        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise CliError(f"{path}: not valid YAML: {exc}") from None
    else:
        try:
            value = json.loads(text)
        except ValueError as exc:
            raise CliError(f"{path}: not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise CliError(f"{path}: the conf must be an object (mapping), not {type(value).__name__}")
    return value


# ---- commands ----------------------------------------------------------------------------------------
def trigger(client: Client, dag_id: str, conf: dict[str, Any], run_id: str | None, *, as_json: bool) -> int:
    """Start ``dag_id`` with ``conf``; with ``--run-id`` a repeat answers with the existing run (exit 0)."""
    body = {"dag_run_id": run_id, "logical_date": None, "conf": conf}
    answer = client.request("POST", f"/api/v2/dags/{_q(dag_id)}/dagRuns", body)
    existed = answer.status_code == 409 and run_id is not None
    if existed:
        run = client.call("GET", f"/api/v2/dags/{_q(dag_id)}/dagRuns/{_q(run_id or '')}")
    elif answer.status_code >= 300:
        raise CliError(f"trigger {dag_id}: {answer.status_code} {_detail(answer)}")
    else:
        run = answer.json()
    if as_json:
        print(json.dumps({"dag_id": dag_id, "run_id": run["dag_run_id"], "state": run["state"], "existed": existed}))
    else:
        verb = "exists already" if existed else "started"
        print(f"{dag_id} run {run['dag_run_id']} {verb} ({run['state']})")
        print(f"follow it: python -m include.cli follow {dag_id} {run['dag_run_id']}")
    return 0


def task_states(client: Client, dag_id: str, run_id: str) -> dict[str, str]:
    answer = client.call("GET", f"/api/v2/dags/{_q(dag_id)}/dagRuns/{_q(run_id)}/taskInstances",
                         params={"limit": 1000})
    states: dict[str, str] = {}
    for ti in answer["task_instances"]:
        name = ti["task_id"] if ti.get("map_index", -1) < 0 else f"{ti['task_id']}[{ti['map_index']}]"
        states[name] = str(ti.get("state") or "none")
    return states


def follow(client: Client, dag_id: str, run_id: str, *, interval: float, timeout: float) -> int:
    """Print each task's state as it changes until the run ends; exit 0 only when it succeeded."""
    seen: dict[str, str] = {}
    deadline = time.monotonic() + timeout
    while True:
        run = client.call("GET", f"/api/v2/dags/{_q(dag_id)}/dagRuns/{_q(run_id)}")
        states = task_states(client, dag_id, run_id)
        for task, state in states.items():
            if seen.get(task) != state:
                print(f"{_now()}  {task}: {state}", flush=True)
                if state == "awaiting_input":
                    print(f"          waiting for a human: python -m include.cli approve|reject {dag_id} {run_id} "
                          f"{task.split('[')[0]} --comment '...'", flush=True)
        seen = states
        if run["state"] in DONE:
            print(f"{_now()}  run {run_id}: {run['state']}", flush=True)
            return 0 if run["state"] == "success" else 1
        if time.monotonic() > deadline:
            print(f"{_now()}  run {run_id}: still {run['state']} after {timeout:.0f}s", file=sys.stderr)
            return 3
        time.sleep(interval)


def pending_approvals(client: Client, dag_id: str | None = None) -> list[dict[str, Any]]:
    """Every human-in-the-loop request still waiting for an answer (all runbooks, or one)."""
    params: dict[str, Any] = {"response_received": "false", "limit": 100, "offset": 0}
    if dag_id:
        params["dag_id_pattern"] = dag_id
    found: list[dict[str, Any]] = []
    while True:
        page = client.call("GET", "/api/v2/dags/~/dagRuns/~/hitlDetails", params=params)
        found.extend(page["hitl_details"])
        if len(found) >= page["total_entries"] or not page["hitl_details"]:
            break
        params["offset"] = len(found)
    return [d for d in found if not dag_id or d["task_instance"]["dag_id"] == dag_id]


def approvals(client: Client, dag_id: str | None, *, as_json: bool) -> int:
    details = pending_approvals(client, dag_id)
    rows = [{
        "dag_id": d["task_instance"]["dag_id"],
        "run_id": d["task_instance"]["dag_run_id"],
        "task_id": d["task_instance"]["task_id"],
        "map_index": d["task_instance"].get("map_index", -1),
        "state": d["task_instance"].get("state"),
        "since": d.get("created_at"),
        "subject": d.get("subject"),
        "options": d.get("options"),
    } for d in details]
    if as_json:
        print(json.dumps(rows))
        return 0
    if not rows:
        print("nothing is waiting for approval")
        return 0
    for row in rows:
        print(f"{row['dag_id']}  {row['run_id']}  {row['task_id']}  since {row['since']}  "
              f"[{' / '.join(row['options'] or [])}]\n    {row['subject']}")
    return 0


def answer(client: Client, dag_id: str, run_id: str, task_id: str, option: str, comment: str | None,
           map_index: int) -> int:
    """Approve or reject a waiting request, with an optional comment (kept in the request's params_input)."""
    path = (f"/api/v2/dags/{_q(dag_id)}/dagRuns/{_q(run_id)}/taskInstances/{_q(task_id)}/{map_index}/hitlDetails")
    current = client.request("GET", path)
    if current.status_code == 404:
        raise CliError(f"{dag_id} {run_id} {task_id}: no request waiting (not reached yet, or not an approval task)")
    if current.status_code >= 300:
        raise CliError(f"{dag_id} {run_id} {task_id}: {current.status_code} {_detail(current)}")
    detail = current.json()
    if detail.get("response_received"):
        raise CliError(f"{dag_id} {run_id} {task_id}: already answered {detail.get('chosen_options')} by "
                       f"{(detail.get('responded_by_user') or {}).get('name')}")
    if option not in detail.get("options", []):
        raise CliError(f"{task_id} offers {detail.get('options')}, not {option!r}")
    created = detail.get("created_at")
    if created:
        age = (datetime.now(UTC) - datetime.fromisoformat(created.replace("Z", "+00:00"))).total_seconds()
        if age < MIN_REQUEST_AGE_S:
            time.sleep(MIN_REQUEST_AGE_S - age)
    body = {"chosen_options": [option], "params_input": {"comment": comment} if comment else {}}
    done = client.call("PATCH", path, body)
    who = (done.get("responded_by") or {}).get("name")
    print(f"{dag_id} {run_id} {task_id}: {option} by {who}" + (f" ({comment})" if comment else ""))
    return 0


# ---- entry point -------------------------------------------------------------------------------------
def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m include.cli", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default=os.environ.get("AIRFLOW_URL", DEFAULT_URL), help="Airflow's base URL")
    parser.add_argument("--user", default=os.environ.get("AIRFLOW_USER", "admin"))
    parser.add_argument("--password-file", type=Path, help="a file holding the password (else AIRFLOW_PASSWORD)")
    commands = parser.add_subparsers(dest="command", required=True)

    trigger_cmd = commands.add_parser("trigger", help="start a runbook with a conf file")
    trigger_cmd.add_argument("dag_id")
    trigger_cmd.add_argument("--conf-file", required=True, help="JSON (or .yaml) object; - for stdin")
    trigger_cmd.add_argument("--run-id", help="your own run id: a repeat answers with the existing run")
    trigger_cmd.add_argument("--json", action="store_true", help="print the run as JSON")

    follow_cmd = commands.add_parser("follow", help="print task states until the run ends")
    follow_cmd.add_argument("dag_id")
    follow_cmd.add_argument("run_id")
    follow_cmd.add_argument("--interval", type=float, default=2.0)
    follow_cmd.add_argument("--timeout", type=float, default=3600.0)

    approvals_cmd = commands.add_parser("approvals", help="list runs waiting for approval")
    approvals_cmd.add_argument("--dag", help="only this runbook")
    approvals_cmd.add_argument("--json", action="store_true")

    for name in ("approve", "reject"):
        cmd = commands.add_parser(name, help=f"{name} a waiting approval task")
        cmd.add_argument("dag_id")
        cmd.add_argument("run_id")
        cmd.add_argument("task_id")
        cmd.add_argument("--comment", help="why (kept with the answer)")
        cmd.add_argument("--map-index", type=int, default=-1)
    return parser


def _client(args: argparse.Namespace) -> Client:
    token = os.environ.get("AIRFLOW_TOKEN") or None
    password = os.environ.get("AIRFLOW_PASSWORD")
    if args.password_file is not None:
        try:
            password = args.password_file.read_text().strip()
        except OSError as exc:
            raise CliError(f"cannot read {args.password_file}: {exc.strerror or exc}") from None
    return Client(args.url, token=token, user=args.user, password=password)


def run(args: argparse.Namespace, client: Client) -> int:
    if args.command == "trigger":
        return trigger(client, args.dag_id, load_conf(args.conf_file), args.run_id, as_json=args.json)
    if args.command == "follow":
        return follow(client, args.dag_id, args.run_id, interval=args.interval, timeout=args.timeout)
    if args.command == "approvals":
        return approvals(client, args.dag, as_json=args.json)
    option = "Approve" if args.command == "approve" else "Reject"
    return answer(client, args.dag_id, args.run_id, args.task_id, option, args.comment, args.map_index)


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        client = _client(args)
        try:
            return run(args, client)
        finally:
            client.close()
    except CliError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except httpx.HTTPError as exc:
        print(f"error: cannot reach Airflow at {args.url}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
