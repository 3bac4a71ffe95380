"""The embedded default: Airflow (SQLite, LocalExecutor via ``airflow standalone``) + local emulators.

    python -m localdev demo          # emulators, seed, Airflow, run the demo runbooks through the API, exit
    python -m localdev demo --serve  # the same, then keep serving to explore the results (schedules off)
    python -m localdev up            # the same set-up without the demo, then keep serving (schedules on)
    python -m localdev down          # stop what ``up`` / ``demo --serve`` started

Everything lives under ``.local/`` (git-ignored): the Airflow home with its SQLite DB, generated
credentials, emulator state and logs. ``.env`` is (re)written with the connection values of the
running emulators so that other shells (``set -a; . ./.env``) reach the same estate.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from include.paths import PROJECT_ROOT, data_dir
from localdev import emulators as emu

#: Runbooks ``make demo`` runs, in order: (dag id, conf builder, tasks allowed to end failed).
#: compliance_scan is EXPECTED to fail at enforce_policy: the seeded estate is deliberately non-compliant
#: and the policy fails the run on critical / high findings; every other task must succeed.
DemoStep = tuple[str, Any, frozenset[str]]


def _remediation_conf() -> dict[str, Any]:
    """A dry run over every failing finding of the latest scan that has a fixer."""
    from include.compliance.store import load_latest_findings

    ids = sorted(f.finding_id for f in load_latest_findings() if f.status == "fail" and f.fixer)
    return {
        "dry_run": True,
        "finding_ids": ids,
        # Values for the missing required tags (existing values are never overwritten).
        "tag_values": {"owner": "platform-team", "cost-center": "cc-unassigned", "data-classification": "unclassified"},
        "reason": "make demo: show the remediation plan",
    }


DEMO_RUNBOOKS: list[DemoStep] = [
    ("inventory_estate", lambda: {}, frozenset()),
    ("compliance_scan", lambda: {}, frozenset({"enforce_policy"})),
    ("remediate_findings", _remediation_conf, frozenset()),
]

#: Then, the backups: ``backup_object_stores`` for real (an API run without ``dry_run`` only plans: see
#: include.params.resolve_dry_run; ``force``: every policy now, due or not, so a re-run demo still backs up
#: what changed), and ``restore_drill`` for real (it changes only its own scratch prefix, removed at the end),
#: which restores the point just made. The failover drill (localdev.failover_estate.demo_drill) runs beside them.
BACKUP_CONF: dict[str, Any] = {"dry_run": False, "force": True}
DRILL_CONF: dict[str, Any] = {"dry_run": False}


class LocalError(RuntimeError):
    """The local stack could not be set up or a demo run did not succeed."""


@dataclass
class Stack:
    """Where one local stack lives (``home``, default ``.local/``) and the port its api-server uses."""

    home: Path  # .local/
    port: int

    @property
    def airflow_home(self) -> Path:
        """The Airflow home (SQLite DB, logs, auth files)."""
        return self.home / "airflow"

    @property
    def base_url(self) -> str:
        """The api-server's URL."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid_file(self) -> Path:
        """Holds the pid of ``airflow standalone``."""
        return self.home / "airflow.pid"

    @property
    def emulator_state(self) -> Path:
        """The emulators' state file (ports, pids)."""
        return self.home / "emulators.json"

    @property
    def dotenv(self) -> Path:
        """The project's ``.env`` for the default home; a private one beside any other home (tests)."""
        default = PROJECT_ROOT / ".local"
        return PROJECT_ROOT / ".env" if self.home.resolve() == default.resolve() else self.home / ".env"


def _secret_file(path: Path, factory: Any) -> str:
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(factory())
        path.chmod(0o600)
    return path.read_text().strip()


def credentials(stack: Stack) -> tuple[str, str]:
    """The admin login of the local Airflow (password generated once per machine, never in git)."""
    password = _secret_file(stack.home / "admin-password", lambda: secrets.token_urlsafe(12))
    passwords_file = stack.airflow_home / "simple_auth_manager_passwords.json"
    passwords_file.parent.mkdir(parents=True, exist_ok=True)
    passwords_file.write_text(json.dumps({"admin": password}))
    passwords_file.chmod(0o600)
    return "admin", password


def intake_connections(stack: Stack) -> dict[str, str]:
    """The incident intake's connections (docs/intake.md), secrets generated once under ``.local/intake/``."""
    from include.intake.credentials import CONN_IDS

    return {
        f"AIRFLOW_CONN_{conn_id.upper()}": json.dumps({"conn_type": "generic", "password": _secret_file(
            stack.home / "intake" / f"{source}-secret", lambda: secrets.token_hex(32))})
        for source, conn_id in CONN_IDS.items()
    }


def airflow_env(stack: Stack, emulators: emu.Emulators) -> dict[str, str]:
    """Environment for every Airflow process of the local stack."""
    jwt_secret = _secret_file(stack.home / "jwt-secret", lambda: secrets.token_urlsafe(64))
    env = dict(os.environ)
    env.pop("AWS_CA_BUNDLE", None)
    env.pop("AIRFLOW__LOGGING__LOGGING_LEVEL", None)  # quiet for our own seeding only; tasks log at INFO
    env.update(emulators.environment())
    env.update(intake_connections(stack))  # the webhook receiver's bearer token and signing secrets
    env.update(
        {
            "PYTHONPATH": str(PROJECT_ROOT),
            # `airflow standalone` starts its components as `airflow ...` subprocesses found on PATH.
            "PATH": os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]),
            "AIRFLOW_HOME": str(stack.airflow_home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(PROJECT_ROOT / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__PARALLELISM": "6",  # a laptop: LocalExecutor spawns this many workers
            # Airflow 3.3.2's task supervisor notices that its task process exited only when its `select` wakes
            # up; once the process has closed its sockets nothing wakes it before `min_heartbeat_interval` (5 s).
            # So a worker slot stays taken up to 5 s after the task ended (and a failed task is recorded up to 5 s
            # late): measured on this stack, 1 task in 3 ended 4-6 s before the scheduler heard of it. 1 s bounds
            # that lag, for one more heartbeat a second per running task on the local API server.
            "AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL": "1",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(
                stack.airflow_home / "simple_auth_manager_passwords.json"
            ),
            "AIRFLOW__API_AUTH__JWT_SECRET": jwt_secret,
            "AIRFLOW__API__PORT": str(stack.port),
            "AIRFLOW__API__BASE_URL": stack.base_url,
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{stack.base_url}/execution/",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{stack.airflow_home / 'airflow.db'}",
            "AIRFLOW__SCHEDULER__MIN_FILE_PROCESS_INTERVAL": "5",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "RUNBOOKS_DATA_DIR": str(data_dir()),
            # The change engine's ledger: a SQLite file on this single machine (PostgreSQL when distributed).
            "AIRFLOW_CONN_RUNBOOKS_STATE": json.dumps(
                {"conn_type": "sqlite", "host": str(stack.home / "state" / "runbooks-state.db")}
            ),
        }
    )
    return env


def write_dotenv(emulators: emu.Emulators, path: Path = PROJECT_ROOT / ".env") -> None:
    """Set the emulator connections in ``.env`` (git-ignored) for other shells and tools.

    Only the keys this module owns are replaced; anything else in the file (compose settings such as
    FERNET_KEY) is kept as it was.
    """
    owned = emulators.environment()
    kept = []
    if path.exists():
        for line in path.read_text().splitlines():
            key = line.split("=", 1)[0].strip()
            if key not in owned and not line.startswith("# Written by `make"):
                kept.append(line)
    header = "# Written by `make up` / `make demo`: emulator connections (other lines are kept). Do not commit."
    path.write_text("\n".join([*kept, header, *emu.env_lines(emulators)]) + "\n")
    path.chmod(0o600)


def _free_or(port: int) -> int:
    import socket

    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
            return port
        except OSError:
            return emu.free_port()


def prepare(stack: Stack) -> tuple[emu.Emulators, dict[str, str]]:
    """Start the emulators, seed the estate, migrate the Airflow DB. Returns emulators and Airflow env."""
    print("starting emulators ...", flush=True)
    emulators = emu.start(
        aws_port=int(os.environ.get("AWS_EMULATOR_PORT", "0")) or None,
        gcs_port=int(os.environ.get("GCS_EMULATOR_PORT", "0")) or None,
        azure_port=int(os.environ.get("AZURE_EMULATOR_PORT", "0")) or None,
        log_dir=stack.home / "logs",
    )
    emulators.save(stack.emulator_state)
    emulators.apply_environment()
    write_dotenv(emulators, stack.dotenv)
    from localdev.seed import seed_estate

    env = airflow_env(stack, emulators)
    credentials(stack)
    # The metadata DB is migrated while the estate is seeded: neither needs the other.
    print("initialising Airflow (SQLite) and seeding the estate ...", flush=True)
    migrate = subprocess.Popen(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    try:
        started = time.monotonic()
        report = seed_estate()
        print(f"seeded the three-cloud estate in {time.monotonic() - started:.1f}s: {report.summary()}", flush=True)
    finally:
        _, errors = migrate.communicate()
    if migrate.returncode != 0:
        raise LocalError(f"`airflow db migrate` failed ({migrate.returncode}):\n{errors[-3000:]}")
    return emulators, env


def start_airflow(stack: Stack, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """Start ``airflow standalone`` in its own process group; its pid goes to ``stack.pid_file``."""
    log = open(stack.home / "logs" / "airflow-standalone.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "airflow", "standalone"],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=PROJECT_ROOT,
    )
    stack.pid_file.write_text(str(proc.pid))
    return proc


def stop_airflow(stack: Stack, timeout: float = 30.0) -> None:
    """Stop the process group ``start_airflow`` recorded (TERM, then KILL after ``timeout``)."""
    if not stack.pid_file.exists():
        return
    pid = int(stack.pid_file.read_text())
    try:
        os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            os.killpg(pid, 0)
            time.sleep(0.3)
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    stack.pid_file.unlink(missing_ok=True)


class Api:
    """A minimal client for Airflow's REST API v2 (the same calls the README shows with curl)."""

    def __init__(self, base_url: str, username: str, password: str) -> None:
        self.base_url = base_url
        self._login = (username, password)
        self._token: str | None = None

    def _request(self, method: str, path: str, body: Any = None, auth: bool = True) -> Any:
        headers = {"Content-Type": "application/json"}
        if auth:
            headers["Authorization"] = f"Bearer {self.token()}"
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base_url + path, data=data, method=method, headers=headers)
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read() or b"null")

    def token(self) -> str:
        """A bearer token from ``POST /auth/token`` (fetched once)."""
        if self._token is None:
            user, password = self._login
            answer = self._request("POST", "/auth/token", {"username": user, "password": password}, auth=False)
            self._token = str(answer["access_token"])
        return self._token

    def healthy(self) -> bool:
        """The metadatabase and the scheduler report healthy."""
        try:
            health = self._request("GET", "/api/v2/monitor/health", auth=False)
        except (urllib.error.URLError, OSError, ValueError):
            return False
        return all(
            health.get(part, {}).get("status") == "healthy" for part in ("metadatabase", "scheduler")
        )

    def get(self, path: str) -> Any:
        """``GET`` a REST API path (JSON answer)."""
        return self._request("GET", path)

    def patch(self, path: str, body: Any) -> Any:
        """``PATCH`` a REST API path with a JSON body (an approval answer, for example)."""
        return self._request("PATCH", path, body)

    def trigger(self, dag_id: str, run_id: str, conf: dict[str, Any]) -> Any:
        """Trigger ``dag_id`` now with ``run_id`` and ``conf``."""
        return self._request(
            "POST", f"/api/v2/dags/{dag_id}/dagRuns", {"dag_run_id": run_id, "logical_date": None, "conf": conf}
        )


def wait_for(what: str, check: Any, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> Any:
    """Poll ``check()`` every second until it returns something truthy; ``LocalError`` on timeout or if ``proc`` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise LocalError(f"airflow standalone exited ({proc.returncode}) while waiting for {what}")
        value = check()
        if value:
            return value
        time.sleep(1.0)
    raise LocalError(f"timed out after {timeout:.0f}s waiting for {what}")


def run_runbook(
    api: Api, dag_id: str, conf: dict[str, Any], timeout: float = 600, may_fail: frozenset[str] = frozenset()
) -> dict[str, Any]:
    """Trigger one runbook through the API and wait for its end. Returns the final dag run.

    The run must succeed, or fail only in the tasks named by ``may_fail`` (all others successful).
    """

    def parsed() -> bool:
        try:
            api.get(f"/api/v2/dags/{dag_id}")
            return True
        except (TimeoutError, urllib.error.URLError):  # 404 until the dag-processor has parsed it
            return False

    wait_for(f"{dag_id} to be parsed", parsed, timeout=180)
    run_id = f"demo__{time.strftime('%Y%m%dT%H%M%S')}"

    def triggered() -> bool:
        try:
            api.trigger(dag_id, run_id, conf)
        except urllib.error.HTTPError as exc:
            # SQLite busy under load (the api-server answers 500 for "database is locked"): ask again. The run id
            # is fixed, so a trigger that did land answers 409 the second time: the run exists, as wanted.
            if exc.code in (500, 502, 503, 504):
                return False
            if exc.code == 409 and attempts:
                return True
            raise
        finally:
            attempts.append(1)
        return True

    attempts: list[int] = []
    wait_for(f"{dag_id} to be triggered", triggered, timeout=120)

    def finished() -> dict[str, Any] | None:
        try:
            run = api.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")
        except (TimeoutError, urllib.error.URLError) as exc:  # SQLite busy under load: ask again
            if isinstance(exc, urllib.error.HTTPError) and exc.code not in (500, 502, 503, 504):
                raise
            return None
        return run if run["state"] in ("success", "failed") else None

    run: dict[str, Any] = wait_for(f"{dag_id} run {run_id}", finished, timeout=timeout)
    tis = api.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances")["task_instances"]
    run["failed_tasks"] = sorted({ti["task_id"] for ti in tis if ti["state"] == "failed"})
    unexpected = [
        f"{ti['task_id']}[{ti.get('map_index', -1)}]={ti['state']}"
        for ti in tis
        if ti["state"] not in ("success", "skipped") and ti["task_id"] not in may_fail
    ]
    if run["state"] != "success" and (unexpected or not run["failed_tasks"]):
        raise LocalError(f"{dag_id} run {run_id} ended {run['state']}: {', '.join(unexpected)}")
    return run


def print_inventory_summary() -> None:
    """Print what the latest published inventory holds."""
    from include.inventory.store import latest

    pointer = latest()
    summary = json.loads((Path(pointer["path"]).parent / "summary.json").read_text())
    print(f"\ninventory: {summary['resources']} resources, complete={summary['complete']}")
    for cloud, types in summary["by_cloud"].items():
        print(f"  {cloud:<6} " + "  ".join(f"{t.split('.', 1)[1]}={n}" for t, n in types.items()))
    print(f"  dataset: {summary['path']}")
    print(f"  summary: {Path(summary['path']).parent / 'summary.json'}")


def print_compliance_summary() -> None:
    """Print the latest compliance scan's failing checks by severity and cloud."""
    from include.compliance.store import latest_pointer, load_latest_scan

    scan = load_latest_scan()
    if not scan:
        return
    findings = scan.get("findings", [])  # Finding objects
    failing = [f for f in findings if f.status == "fail"]
    by_cloud: dict[str, int] = {}
    by_severity: dict[str, int] = {}
    for finding in failing:
        by_cloud[finding.cloud] = by_cloud.get(finding.cloud, 0) + 1
        by_severity[finding.severity] = by_severity.get(finding.severity, 0) + 1
    print(f"\ncompliance: {len(findings)} checks, {len(failing)} failing")
    print("  by severity: " + "  ".join(f"{k}={by_severity[k]}" for k in
                                      ("critical", "high", "medium", "low", "info") if k in by_severity))
    print("  by cloud:    " + "  ".join(f"{k}={v}" for k, v in sorted(by_cloud.items())))
    pointer = latest_pointer() or {}
    reports = Path(pointer.get("path", "")).parent / "reports"
    if reports.exists():
        print(f"  reports: {reports}/ (report.html, findings.json/.csv/.sarif/.ocsf.json)")


def print_remediation_summary() -> None:
    """Print the totals of the latest remediation plan."""
    results = sorted((data_dir() / "remediation").glob("*/result.json"), key=lambda p: p.stat().st_mtime)
    if not results:
        return
    result = json.loads(results[-1].read_text())
    print(f"\nremediation (dry run): {json.dumps(result.get('totals', {}))}")
    print(f"  plan: {results[-1]}")


def backup_summary(run_id: str) -> list[str]:
    """What a ``backup_object_stores`` run did, per policy (from the reports its tasks wrote)."""
    from include.backup.policies import load_policies
    from include.backup.report import history_html_path, read_run_report, run_report_path

    lines = ["", f"backup ({run_id}):"]
    for policy in load_policies().policies:
        report = read_run_report(policy.name, run_id)
        if report is None:
            lines.append(f"  {policy.name:<28} no report (skipped: not due)")
            continue
        totals = report["totals"]
        lines.append(f"  {policy.name:<28} {report['status']}: point {report.get('point_id')}, listed "
                     f"{totals['listed']}, copied {totals['copied']} ({totals['bytes_copied']} bytes), unchanged "
                     f"{totals['reused']}, failed {totals['failed'] + totals['not_attempted']} in {report.get('seconds')}s")
        lines.append(f"  {'':<28} report: {run_report_path(policy.name, run_id)}")
        lines.append(f"  {'':<28} history: {history_html_path(policy.name)}")
    return lines


def restore_drill_summary(run_id: str) -> list[str]:
    """What a ``restore_drill`` run proved, per policy (its lines of the drill history)."""
    from include.backup.drill import read_history, report_path

    lines = ["", f"restore drill ({run_id}):"]
    for line in (d for d in read_history() if d.get("run_id") == run_id):
        lines.append(f"  {line['policy']:<28} {'restored and verified' if line['success'] else 'FAILED'}: point "
                     f"{line['point_id']}, {line['objects']} objects ({line['bytes']} bytes), {line['mismatches']} "
                     f"mismatches, restore {line['restore_seconds']}s, RPO {line['rpo_seconds']}s (objective "
                     f"{line['rpo_objective_seconds']}s), scratch removed: {line['scratch_removed']}"
                     + (f"; {line['error']}" if line.get("error") else ""))
    lines.append(f"  report: {report_path()}")
    return lines


def _timed(api: Api, dag_id: str, conf: dict[str, Any], may_fail: frozenset[str] = frozenset()
           ) -> tuple[dict[str, Any], str]:
    started = time.monotonic()
    run = run_runbook(api, dag_id, conf, may_fail=may_fail)
    took = time.monotonic() - started
    if run["state"] == "success":
        return run, f"{dag_id}: success in {took:.1f}s (triggered through the REST API)"
    return run, f"{dag_id}: failed by policy as designed ({', '.join(run['failed_tasks'])}) in {took:.1f}s"


def run_backups(api: Api) -> list[str]:
    """``backup_object_stores`` then ``restore_drill`` (which restores the point just made); their lines."""
    backup, said = _timed(api, "backup_object_stores", BACKUP_CONF)
    lines = [said, *backup_summary(backup["dag_run_id"])]
    drill, said = _timed(api, "restore_drill", DRILL_CONF)
    return [*lines, "", said, *restore_drill_summary(drill["dag_run_id"])]


def run_demo(api: Api) -> None:
    """Trigger the demo runbooks through the REST API, in order, and print what each did.

    The backups (a backup, then its restore drill) and the failover drill run at the same time: they touch
    different resources, and the failover drill's endpoints must live in this process. The backups' lines are
    printed after the drill's, so that the output reads runbook by runbook.
    """
    from concurrent.futures import ThreadPoolExecutor

    for dag_id, conf, may_fail in DEMO_RUNBOOKS:
        print(_timed(api, dag_id, conf(), may_fail)[1], flush=True)
    print_inventory_summary()
    print_compliance_summary()
    print_remediation_summary()
    print("", flush=True)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="backups") as pool:
        backups = pool.submit(run_backups, api)
        _failover_drill(api)  # on failure, the pool still waits for the backups before this raises
        lines = backups.result()
    print("\n" + "\n".join(lines), flush=True)


def _failover_drill(api: Api) -> None:
    """``failover_drill`` for real with the service's endpoints served from here (it prints the RTO)."""
    from localdev.failover_estate import demo_drill

    wait_for_local_endpoints("orders")
    demo_drill(api)


def wait_for_local_endpoints(service: str, wait: float = 120.0) -> None:
    """Wait until no other process listens on ``service``'s local endpoint addresses (the fixed loopback ones
    of config/services.yaml that :class:`localdev.services.LocalServices` binds, e.g. held by another demo);
    ``LocalError`` naming them after ``wait`` seconds."""
    from localdev.services import LocalServices

    local = LocalServices(service)  # not started: its addresses only
    addresses = [(app.host, app.port) for app in local.apps.values()] + [local._control_address]
    deadline = time.monotonic() + wait
    while taken := _taken(addresses):
        if time.monotonic() > deadline:
            raise LocalError(f"the local endpoints of {service} (config/services.yaml) are still taken after "
                             f"{wait:.0f}s (another demo running?): {', '.join(taken)}")
        print(f"{service}: waiting for {', '.join(taken)} (taken by another process) ...", flush=True)
        time.sleep(5)


def _taken(addresses: list[tuple[str, int]]) -> list[str]:
    """The addresses another process listens on (bound the way the endpoints bind: SO_REUSEADDR)."""
    import socket

    taken = []
    for host, port in addresses:
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((host, port))
            except OSError:
                taken.append(f"{host}:{port}")
    return taken


def serve(stack: Stack, *, demo: bool, keep_serving: bool) -> int:
    """Set up the stack, optionally run the demo, optionally keep serving; always clean up at the end.

    ``make demo`` = (demo, no serving), ``make up`` = (no demo, serving), ``make demo SERVE=1`` = both: the
    demo's results stay in the UI to explore until Ctrl-C or ``make down``.
    """
    emulators, env = prepare(stack)
    if demo:  # the demo runs exactly the runbooks it triggers; `make up` alone keeps the schedules on
        env["AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE"] = "False"
    try:
        proc = start_airflow(stack, env)
        user, password = credentials(stack)
        api = Api(stack.base_url, user, password)
        print(f"starting Airflow on {stack.base_url} ...", flush=True)
        wait_for("Airflow to be healthy", api.healthy, timeout=420, proc=proc)
        if demo:
            run_demo(api)
        if keep_serving:
            print(
                f"\nAirflow is up: {stack.base_url}  (login: {user} / {password})\n"
                f"emulators: aws {emulators.aws_endpoint}  gcs {emulators.gcs_endpoint}  "
                f"azure {emulators.azure_endpoint}\nconnections written to {stack.dotenv}; Ctrl-C (or `make down`) "
                "stops.\n"
                f"incident intake: {stack.base_url}/runbooks/hooks/<alertmanager|pagerduty|generic>, secrets in "
                f"{stack.home / 'intake'}/ (docs/intake.md)",
                flush=True,
            )
            proc.wait()
        return 0
    except KeyboardInterrupt:
        return 0
    finally:
        stop_airflow(stack)
        emu.stop(emulators)
        stack.emulator_state.unlink(missing_ok=True)


def down(stack: Stack) -> int:
    """``make down``: stop what ``up`` started."""
    stop_airflow(stack)
    try:
        emulators = emu.Emulators.load(stack.emulator_state)
    except (emu.EmulatorError, FileNotFoundError):
        emulators = None  # nothing recorded, or `up` itself is already cleaning up
    if emulators is not None:
        emu.stop(emulators)
        stack.emulator_state.unlink(missing_ok=True)
    print("stopped")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m localdev demo|up|down [--home DIR] [--port N]``."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("command", choices=["demo", "up", "down"])
    parser.add_argument("--serve", action="store_true",
                        help="demo: keep Airflow and the emulators serving after the demo (until Ctrl-C / down)")
    parser.add_argument("--home", type=Path, default=Path(os.environ.get("RUNBOOKS_LOCAL_HOME", PROJECT_ROOT / ".local")))
    parser.add_argument("--port", type=int, default=int(os.environ.get("AIRFLOW_PORT", "0")))
    args = parser.parse_args(argv)
    # The seed talks through the providers' hooks, which log every call at INFO: keep the demo readable.
    os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING")
    args.home.mkdir(parents=True, exist_ok=True)
    (args.home / "logs").mkdir(exist_ok=True)
    serving = args.command == "up" or args.serve
    # An explicit --port (or AIRFLOW_PORT) is used as given; a served stack prefers 8080; a demo any free port.
    port = args.port or (_free_or(8080) if serving else emu.free_port())
    stack = Stack(home=args.home, port=port)
    if args.command == "demo":
        return serve(stack, demo=True, keep_serving=args.serve)
    if args.command == "up":
        return serve(stack, demo=False, keep_serving=True)
    return down(stack)


def run(argv: list[str] | None = None) -> int:
    """:func:`main`, with a :class:`LocalError` reported as one line and exit code 1 (``python -m localdev``)."""
    try:
        return main(argv)
    except LocalError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
