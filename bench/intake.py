"""Incident intake under sustained load: answer latency and exactly-once, on loopback.

A real ``airflow api-server`` (the receiver mounted by ``plugins/runbooks_intake.py``, as in production)
on a fresh SQLite metadata DB holding the project's runbooks (``airflow db migrate`` + ``airflow dags
reserialize``), no scheduler (runs are created and stay queued). ``BENCH_INTAKE_SERVER=uvicorn`` serves
only the receiver app instead (uvicorn, ``bench.intake:receiver_only``).

The load is open-loop: one request every 1/rate seconds whatever the answers do, for ``seconds``; half
are duplicates: every incident is delivered twice, the copy at a random moment up to 2 s after the first
(some copies race the first delivery). Incidents are spread over the three sources with their real
authentication (Alertmanager bearer token, PagerDuty and generic HMAC signatures) and match the shipped
routes (config/intake/routes.yaml -> remediate_findings, dry run).

Reported: answer latency p50 / p90 / p99 / max (overall, first deliveries, duplicates), the achieved rate,
and runs in the metadata DB versus unique incidents (must be equal), plus any non-202 answer. A new
incident is answered once it is in the receiver's outbox; its run is created right after
(include/intake/outbox.py): the count waits until every accepted run exists (at most 120 s after the
load) and reports how long that took, and the delay from accept to run per incident (p50 / p99). The CPU
time of the load client (this process) and of the server (with its drainer) per request is reported too:
the client shares the 2 cores with the server, so it must stay small.

=========================  =======  ===============================================
``BENCH_INTAKE_RATE``      100      requests per second
``BENCH_INTAKE_SECONDS``   30       duration of the load
``BENCH_INTAKE_SERVER``    api-server  or ``uvicorn``
``BENCH_INTAKE_DB``        sqlite   or ``postgres`` (a private server, localdev/postgres.py)
``BENCH_INTAKE_WORKERS``   1        api-server workers
=========================  =======  ===============================================
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import math
import os
import random
import secrets
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import (
    PROJECT_ROOT,
    BenchError,
    console_table,
    env_int,
    machine_info,
    ours_env,
    write_results,
)

AM_TOKEN = secrets.token_hex(32)
PD_SECRET = secrets.token_hex(32)
GENERIC_SECRET = secrets.token_hex(32)
SOURCES = ("alertmanager", "pagerduty", "generic")
RETRIES = 20
WARM_UP = 30  # incidents delivered before the measurement (caches built), not counted


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_env(work: Path, port: int, db_url: str | None = None, workers: int = 1) -> dict[str, str]:
    env = ours_env({}, work)
    env.pop("AIRFLOW__CORE__UNIT_TEST_MODE", None)
    env = {k: v for k, v in env.items() if not k.startswith("AIRFLOW_CONN_")}
    (work / "passwords.json").write_text(json.dumps({"admin": secrets.token_urlsafe(12)}))
    env.update({
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": db_url or f"sqlite:///{work / 'airflow.db'}",
        "AIRFLOW__API__WORKERS": str(workers),
        "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(PROJECT_ROOT / "plugins"),
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(64),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(work / "passwords.json"),
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",  # Airflow's default: access log and one line per delivery
        "AIRFLOW_CONN_RUNBOOKS_INTAKE_ALERTMANAGER": json.dumps({"conn_type": "generic", "password": AM_TOKEN}),
        "AIRFLOW_CONN_RUNBOOKS_INTAKE_PAGERDUTY": json.dumps({"conn_type": "generic", "password": PD_SECRET}),
        "AIRFLOW_CONN_RUNBOOKS_INTAKE_GENERIC": json.dumps({"conn_type": "generic", "password": GENERIC_SECRET}),
    })
    return env


def prepare(work: Path, env: dict[str, str]) -> None:
    """Migrate a fresh SQLite DB and serialize the project's runbooks into it (the dag-processor's path)."""
    for argv in (["db", "migrate"], ["dags", "reserialize"]):
        done = subprocess.run([sys.executable, "-m", "airflow", *argv], env=env, cwd=PROJECT_ROOT,
                              capture_output=True, text=True, timeout=600, check=False)
        if done.returncode != 0:
            raise BenchError(f"airflow {' '.join(argv)} failed:\n{done.stderr[-3000:]}")


def start_server(kind: str, env: dict[str, str], port: int, log: Path) -> subprocess.Popen[bytes]:
    if kind == "uvicorn":
        argv = [sys.executable, "-m", "uvicorn", "bench.intake:receiver_only", "--factory", "--host", "127.0.0.1",
                "--port", str(port), "--log-level", "warning", "--no-access-log"]
    else:
        argv = [sys.executable, "-m", "airflow", "api-server", "--host", "127.0.0.1", "--port", str(port)]
    with log.open("wb") as out:
        return subprocess.Popen(argv, env=env, cwd=PROJECT_ROOT, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)


def receiver_only() -> Any:
    """The receiver alone under ``/runbooks`` (``BENCH_INTAKE_SERVER=uvicorn``): Airflow's app left out."""
    from fastapi import FastAPI

    from include.intake.app import create_app

    app = FastAPI()
    app.mount("/runbooks", create_app())
    return app


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    except ProcessLookupError:
        return
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)


# ---- the deliveries ---------------------------------------------------------------------------------------
def _hmac(secret: str, message: bytes) -> str:
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def incident(index: int, run_tag: str) -> tuple[str, bytes, dict[str, str]]:
    """One incident's delivery (path, body, headers), for one of the three sources by ``index``."""
    source = SOURCES[index % 3]
    name = f"{run_tag}-{index}"
    if source == "alertmanager":
        fingerprint = hashlib.sha256(name.encode()).hexdigest()[:16]
        payload: dict[str, Any] = {
            "version": "4", "groupKey": f'{{}}:{{alertname="PublicBucket", group="{name}"}}', "truncatedAlerts": 0,
            "status": "firing", "receiver": "runbooks", "groupLabels": {"alertname": "PublicBucket"},
            "commonLabels": {"alertname": "PublicBucket"}, "commonAnnotations": {"summary": "bucket is public"},
            "externalURL": "http://alertmanager:9093",
            "alerts": [{"status": "firing", "labels": {"alertname": "PublicBucket", "bucket": f"rb-{name}"},
                        "annotations": {}, "startsAt": "2026-11-30T08:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
                        "generatorURL": "http://prometheus:9090", "fingerprint": fingerprint}],
        }
        body = json.dumps(payload).encode()
        return source, body, {"Authorization": f"Bearer {AM_TOKEN}", "Content-Type": "application/json"}
    if source == "pagerduty":
        finding = "aws_s3_bucket_versioning:" + hashlib.sha256(name.encode()).hexdigest()[:16]
        payload = {"event": {"id": str(uuid.uuid4()), "event_type": "incident.triggered", "resource_type": "incident",
                             "occurred_at": "2026-11-30T08:00:00Z", "agent": None, "client": {"name": "PagerDuty"},
                             "data": {"id": "Q" + hashlib.sha256(name.encode()).hexdigest()[:12].upper(),
                                      "type": "incident", "status": "triggered", "incident_key": finding,
                                      "title": "versioning off", "urgency": "high",
                                      "service": {"id": "PSVC", "summary": "Cloud compliance",
                                                  "type": "service_reference"}}}}
        body = json.dumps(payload).encode()
        return source, body, {"X-PagerDuty-Signature": f"v1={_hmac(PD_SECRET, body)}", "Content-Type": "application/json"}
    payload = {"event_id": f"evt-{name}", "type": "compliance.finding", "summary": "versioning off",
               "labels": {"rule": "aws_s3_bucket_versioning", "resource": f"rb-{name}"}}
    body = json.dumps(payload).encode()
    return source, body, {"Content-Type": "application/json"}  # generic headers are signed at send time


def _signed_now(source: str, body: bytes, headers: dict[str, str]) -> dict[str, str]:
    if source != "generic":
        return headers
    stamp = str(int(time.time()))
    return {**headers, "X-Runbooks-Timestamp": stamp,
            "X-Runbooks-Signature": f"v1={_hmac(GENERIC_SECRET, stamp.encode() + b'.' + body)}"}


@dataclass
class Result:
    scheduled: float
    latency: float
    status: int
    decision: str
    duplicate: bool
    run_id: str | None
    attempt: int = 0


def schedule(rate: int, seconds: int, seed: int = 7) -> list[tuple[float, int, bool]]:
    """(send time, incident index, is the duplicate) for ``rate * seconds`` requests, half duplicates."""
    rng = random.Random(seed)
    total = rate * seconds
    interval = 1.0 / rate
    slots = [i * interval for i in range(total)]
    firsts: list[int] = []
    plan: list[tuple[float, int, bool] | None] = [None] * total
    incidents = 0
    for slot in range(total):
        if plan[slot] is not None:
            continue
        index = incidents
        incidents += 1
        plan[slot] = (slots[slot], index, False)
        firsts.append(slot)
        free = [s for s in range(slot + 1, min(total, slot + 1 + 2 * rate)) if plan[s] is None]
        if free:
            copy = rng.choice(free)
            plan[copy] = (slots[copy], index, True)
        else:  # the last slots: the copy goes at the same moment (a concurrent duplicate)
            plan.append((slots[slot], index, True))
    return [p for p in plan if p is not None]


async def load(base_url: str, plan: list[tuple[float, int, bool]], run_tag: str) -> list[Result]:
    """Send ``plan`` open-loop. aiohttp, not httpx: with hundreds of requests in flight httpx's pool costs the
    client several ms of CPU per request (measured: 13 ms at 100/s), CPU the server on the same 2 cores lacks."""
    import aiohttp

    deliveries = {index: incident(index, run_tag) for _, index, _ in plan}
    results: list[Result] = []
    connector = aiohttp.TCPConnector(limit=400, limit_per_host=400)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(base_url=base_url, connector=connector, timeout=timeout) as client:
        started = time.perf_counter() + 0.5

        async def one(at: float, index: int, duplicate: bool) -> None:
            await asyncio.sleep(max(0.0, started + at - time.perf_counter()))
            source, body, headers = deliveries[index]
            for attempt in range(RETRIES + 1):  # as a sender does: a 503 is retried (here after 1 s)
                sent = time.perf_counter()
                try:
                    async with client.post(f"/runbooks/hooks/{source}", data=body,
                                           headers=_signed_now(source, body, headers)) as answer:
                        raw = await answer.read()
                        latency = time.perf_counter() - sent
                        status = answer.status
                        json_answer = answer.content_type == "application/json"
                    data = json.loads(raw) if json_answer else {}
                    results.append(Result(at, latency, status, str(data.get("decision")), duplicate,
                                          data.get("run_id"), attempt))
                    if status != 503:
                        return
                except (TimeoutError, aiohttp.ClientError) as exc:
                    results.append(Result(at, time.perf_counter() - sent, 0, type(exc).__name__, duplicate, None,
                                          attempt))
                await asyncio.sleep(1.0)

        await asyncio.gather(*(one(at, index, dup) for at, index, dup in plan))
    return results


def _percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    if not ordered:
        return {}

    def pct(p: float) -> float:  # nearest rank
        return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]

    return {"p50_ms": pct(50) * 1000, "p90_ms": pct(90) * 1000, "p99_ms": pct(99) * 1000,
            "max_ms": ordered[-1] * 1000, "mean_ms": statistics.fmean(ordered) * 1000, "n": len(ordered)}


def runs_in_db(db_url: str) -> int:
    """DAG runs the receiver created (run ids ``intake__...``), straight from the metadata DB."""
    query = "select count(*) from dag_run where run_id like 'intake\\_\\_%' escape '\\'"
    if db_url.startswith("sqlite:///"):
        with sqlite3.connect(db_url.removeprefix("sqlite:///")) as conn:
            return int(conn.execute(query).fetchone()[0])
    from sqlalchemy import create_engine, text

    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(text(query)).scalar_one())
    finally:
        engine.dispose()


def outbox_lag(db_url: str) -> dict[str, float]:
    """Accept -> run created per incident (the outbox's ``done_at - accepted_at``), ms; {} without an outbox."""
    query = "select done_at - accepted_at from runbooks_intake_outbox where run_id like 'intake\\_\\_%' escape '\\' " \
            "and status = 'created'"
    try:
        if db_url.startswith("sqlite:///"):
            with sqlite3.connect(db_url.removeprefix("sqlite:///")) as conn:
                values = [float(r[0]) for r in conn.execute(query)]
        else:
            from sqlalchemy import create_engine, text

            engine = create_engine(db_url)
            try:
                with engine.connect() as conn:
                    values = [float(r[0]) for r in conn.execute(text(query))]
            finally:
                engine.dispose()
    except Exception:  # no outbox table (a receiver without one)
        return {}
    return _percentiles(values)


def wait_for_runs(db_url: str, before: int, expected: int, limit: float = 120.0) -> tuple[int, float]:
    """Runs created since ``before``, polled until ``expected`` (or ``limit`` s); and how long it took."""
    t0 = time.perf_counter()
    while True:
        runs = runs_in_db(db_url) - before
        if runs >= expected or time.perf_counter() - t0 > limit:
            return runs, time.perf_counter() - t0
        time.sleep(0.2)


def cpu_seconds(pid: int) -> dict[str, float]:
    """User + system CPU seconds of the server ``pid`` and its descendants: the outbox drainer (its child
    ``include.intake.outbox``) apart from the rest (the api-server and its workers)."""
    import psutil

    total = {"server": 0.0, "drainer": 0.0}
    try:
        root = psutil.Process(pid)
        for proc in [root, *root.children(recursive=True)]:
            try:
                times = proc.cpu_times()
                part = "drainer" if "include.intake.outbox" in " ".join(proc.cmdline()) else "server"
                total[part] += times.user + times.system
            except psutil.Error:
                continue
    except psutil.Error:
        pass
    return total


def warm_up(base_url: str) -> None:
    import httpx

    deadline = time.monotonic() + 240
    while True:
        try:
            if httpx.get(f"{base_url}/runbooks/health", timeout=10).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise BenchError("the receiver did not come up in 240 s")
        time.sleep(0.5)
    asyncio.run(load(base_url, [(i * 0.05, i, False) for i in range(WARM_UP)], "warmup"))  # build caches, then reset


def run() -> dict[str, Any]:
    rate = env_int("BENCH_INTAKE_RATE", 100)
    seconds = env_int("BENCH_INTAKE_SECONDS", 30)
    kind = os.environ.get("BENCH_INTAKE_SERVER", "api-server")
    database = os.environ.get("BENCH_INTAKE_DB", "sqlite")
    workers = env_int("BENCH_INTAKE_WORKERS", 1)
    with ExitStack() as stack:
        db_url = None
        if database == "postgres":
            from localdev.postgres import private_postgres

            db_url = stack.enter_context(private_postgres()).url
        elif database != "sqlite":
            raise BenchError(f"BENCH_INTAKE_DB must be sqlite or postgres, not {database!r}")
        return _measure(rate, seconds, kind, database, workers, db_url)


def _measure(rate: int, seconds: int, kind: str, database: str, workers: int, db_url: str | None) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="bench-intake-"))
    port = _free_port()
    env = server_env(work, port, db_url, workers)
    db_url = env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    print(f"[bench] intake: preparing an Airflow DB ({database}) in {work} ...", file=sys.stderr, flush=True)
    prepare(work, env)
    proc = start_server(kind, env, port, work / "server.log")
    base_url = f"http://127.0.0.1:{port}"
    try:
        warm_up(base_url)
        before, _ = wait_for_runs(db_url, 0, WARM_UP, limit=60)  # the warm-up's runs, once created
        plan = schedule(rate, seconds)
        tag = uuid.uuid4().hex[:8]
        print(f"[bench] intake: {len(plan)} requests at {rate}/s for {seconds}s against {kind} "
              f"({workers} worker(s), {database}) ...", file=sys.stderr, flush=True)
        load_before = os.getloadavg()
        unique_incidents = len({index for _, index, _ in plan})
        server_cpu0, client_cpu0 = cpu_seconds(proc.pid), time.process_time()
        t0 = time.perf_counter()
        results = asyncio.run(load(base_url, plan, tag))
        wall = time.perf_counter() - t0
        client_cpu = time.process_time() - client_cpu0
        runs, drain_s = wait_for_runs(db_url, before, unique_incidents)
        server_cpu1 = cpu_seconds(proc.pid)
        server_cpu, drainer_cpu = (server_cpu1[k] - server_cpu0[k] for k in ("server", "drainer"))
        lag = outbox_lag(db_url)
    finally:
        stop_server(proc)
    statuses: dict[str, int] = {}
    for r in results:
        statuses[str(r.status)] = statuses.get(str(r.status), 0) + 1
    decisions: dict[str, int] = {}
    for r in results:
        decisions[r.decision] = decisions.get(r.decision, 0) + 1
    data = {
        "machine": machine_info(),
        "server": kind,
        "database": database,
        "workers": workers,
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "rate_per_s": rate,
        "seconds": seconds,
        "requests": len(results),
        "achieved_rate_per_s": len(results) / wall,
        "unique_incidents": unique_incidents,
        "runs_started": runs,
        "answers_started": decisions.get("started", 0),
        "statuses": statuses,
        "decisions": decisions,
        "retried_503": sum(1 for r in results if r.status == 503),
        "latency_all": _percentiles([r.latency for r in results]),
        "latency_202": _percentiles([r.latency for r in results if r.status == 202]),
        "latency_first": _percentiles([r.latency for r in results if not r.duplicate]),
        "latency_duplicate": _percentiles([r.latency for r in results if r.duplicate]),
        "exactly_once": runs == unique_incidents == decisions.get("started", 0),
        "runs_complete_after_load_s": drain_s,
        "accept_to_run_ms": lag,
        "client_cpu_ms_per_request": client_cpu / max(1, len(results)) * 1000,
        "server_cpu_ms_per_request": server_cpu / max(1, len(results)) * 1000,
        "drainer_cpu_ms_per_run": drainer_cpu / max(1, runs) * 1000,
        "command": "python -m bench intake",
    }
    rows = [[name, f"{p['p50_ms']:.1f}", f"{p['p90_ms']:.1f}", f"{p['p99_ms']:.1f}", f"{p['max_ms']:.1f}", p["n"]]
            for name, p in (("all", data["latency_all"]), ("202 only", data["latency_202"]),
                            ("first delivery", data["latency_first"]),
                            ("duplicate", data["latency_duplicate"]))]
    table = console_table(["answers", "p50 ms", "p90 ms", "p99 ms", "max ms", "n"], rows)
    summary = (f"{len(results)} requests in {wall:.1f}s ({data['achieved_rate_per_s']:.1f}/s) against {kind} "
               f"({workers} worker(s), {database}; load average {load_before[0]:.1f} before); "
               f"statuses {statuses}; runs started {runs} vs unique incidents {unique_incidents} "
               f"({'equal' if data['exactly_once'] else 'NOT EQUAL'}), all runs created {drain_s:.1f}s after the load"
               + (f" (accept -> run p50 {lag['p50_ms']:.0f} ms, p99 {lag['p99_ms']:.0f} ms)" if lag else "")
               + f"; CPU per request: client {data['client_cpu_ms_per_request']:.2f} ms, "
               f"server {data['server_cpu_ms_per_request']:.2f} ms; drainer CPU per run "
               f"{data['drainer_cpu_ms_per_run']:.2f} ms")
    print(table + "\n" + summary, flush=True)
    markdown = "\n".join([
        "# Incident intake under load", "",
        f"{rate} requests/s for {seconds} s on loopback, half duplicates, against `{kind}` ({workers} worker(s), "
        f"{database}, no scheduler). Command: `BENCH_INTAKE_DB={database} BENCH_INTAKE_WORKERS={workers} "
        f"BENCH_INTAKE_RATE={rate} python -m bench intake`.", "",
        "| answers | p50 ms | p90 ms | p99 ms | max ms | n |", "|---|---:|---:|---:|---:|---:|",
        *[f"| {' | '.join(str(c) for c in row)} |" for row in rows], "",
        summary, "",
    ])
    write_results(f"intake-{database}-{workers}w-{rate}rps", data, markdown)
    if not data["exactly_once"] or set(statuses) - {"202", "503"}:
        raise BenchError(summary)
    return data


if __name__ == "__main__":
    run()
