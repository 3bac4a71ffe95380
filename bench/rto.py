"""RTO of ``failover_service`` on the embedded stack: REST API trigger -> verified, median of N drills.

    python -m bench rto            # BENCH_RTO_DRILLS=5 (at least 5), BENCH_RTO_HOME=/tmp/runbooks-bench-rto

What runs: the embedded default of ``make up`` (moto, GCS emulator, Azurite, the seeded estate, ``airflow
standalone`` on SQLite with LocalExecutor, a private home and port), the local failover estate of
``config/services.yaml`` in this process (the two HTTP endpoints on 127.0.0.2 / 127.0.0.3, on free ports, RDS's
ReplicaLag played by :class:`localdev.failover_estate.LagPublisher`). Each drill:

1. stops the primary's endpoint for real (connections refused),
2. triggers ``failover_service`` through the REST API (severity ``critical``: the catalog's policy approves,
   so no person is in the loop) and polls the run until it ends,
3. reads the run's result: RTO = the trigger (the run's ``run_after``) -> verified, split into OUR steps (the
   wall-clock time our task bodies ran: resolve, assess x2 in parallel, decide, approve, fence, promote,
   switch, verify), the cloud SDK imports each fresh task process does before its step (boto3 and the
   provider's hooks), and Airflow's scheduling overhead (the rest: queueing, task process start-up, the gaps
   between tasks); also the client's view, POST -> verified,
4. restores the topology for the next drill (endpoint up, failback in this process, not measured).

Goal (issue 8): whole RTO under 20 s, our steps under 3 s. Results: ``bench/results/rto.json`` / ``rto.md``.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
from pathlib import Path
from typing import Any

from bench.common import (
    BenchError,
    console_table,
    env_int,
    machine_info,
    summarize,
    write_results,
)

GOAL_RTO = 20.0
GOAL_OURS = 3.0


def _wait_parsed(api: Any, dag_id: str, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            api.get(f"/api/v2/dags/{dag_id}")
            return
        except (urllib.error.URLError, TimeoutError):
            time.sleep(1)
    raise BenchError(f"{dag_id} was not parsed within {timeout:.0f}s")


def _wait_run(api: Any, dag_id: str, run_id: str, timeout: float = 300) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            run: dict[str, Any] = api.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")
        except (urllib.error.URLError, TimeoutError):
            run = {}
        if run.get("state") in ("success", "failed"):
            return run
        time.sleep(0.2)
    raise BenchError(f"{dag_id} run {run_id} did not end within {timeout:.0f}s")


def _drill(api: Any, services: Any, index: int, stamp: str) -> dict[str, Any]:
    from include.failover import history

    services.down("primary")
    run_id = f"bench__rto_{stamp}_{index}"
    conf = {"service": "orders", "incident_id": f"bench-{stamp}-{index}", "severity": "critical", "dry_run": False,
            "reason": f"bench rto drill {index}"}
    posted = time.time()
    api.trigger("failover_service", run_id, conf)
    run = _wait_run(api, "failover_service", run_id)
    ended = time.time()
    result = json.loads(history.result_path(run_id).read_text())
    if run["state"] != "success" or result.get("status") != "failed_over":
        raise BenchError(f"drill {index}: {run['state']} / {result.get('status')}: {result.get('reasons') or result.get('error')}")
    figures = result["rto"]
    verified = history.parse_time(figures["verified_at"])
    assert verified is not None
    return {
        "run_id": run_id,
        "rto_seconds": figures["rto_seconds"],
        "our_steps_seconds": figures["our_steps_seconds"],
        "sdk_import_seconds": figures["sdk_import_seconds"],
        "scheduling_overhead_seconds": figures["scheduling_overhead_seconds"],
        "client_post_to_verified_seconds": round(verified.timestamp() - posted, 3),
        "client_post_to_run_end_seconds": round(ended - posted, 3),
        "steps": {s["step"]: s["seconds"] for s in result["timeline"]},
    }


def _restore(stamp: str, index: int, services: Any) -> None:
    """Back to the catalog's topology, in this process (failback is not what is measured)."""
    from include.failover import drill
    from include.failover.core import Request, RunInfo

    services.up("primary")
    run = RunInfo(runbook="bench_rto", run_id=f"restore_{stamp}_{index}", actor="bench")
    drill.fail_back(run, Request(service="orders", key=f"bench-{stamp}-{index}", dry_run=False), "bench")


def run() -> dict[str, Any]:
    drills = max(5, env_int("BENCH_RTO_DRILLS", 5))
    home = Path(os.environ.get("BENCH_RTO_HOME", "/tmp/runbooks-bench-rto"))
    (home / "logs").mkdir(parents=True, exist_ok=True)
    os.environ["RUNBOOKS_DATA_DIR"] = str(home / "data")
    os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING")
    from localdev import emulators as emu
    from localdev import stack as local
    from localdev.failover_estate import local_catalog, local_failover_estate, write_catalog
    from localdev.services import LocalServices

    # The endpoints on free ports (the catalog's fixed ones may be taken by `make demo` or a test running
    # beside the bench), in a catalog written for this run that Airflow's tasks read too.
    endpoints = LocalServices("orders", primary=("127.0.0.2", 0), standby=("127.0.0.3", 0),
                              control=("127.0.0.1", 0)).start()
    catalog = write_catalog(home / "services.yaml", local_catalog(endpoints))
    os.environ["RUNBOOKS_SERVICES_FILE"] = str(catalog)
    place = local.Stack(home=home, port=emu.free_port())
    emulators, env = local.prepare(place)
    env["RUNBOOKS_SERVICES_FILE"] = str(catalog)
    env["AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE"] = "False"  # only the triggered runs
    os.environ["AIRFLOW_CONN_RUNBOOKS_STATE"] = env["AIRFLOW_CONN_RUNBOOKS_STATE"]  # the in-process failback's ledger
    proc = local.start_airflow(place, env)
    measured: list[dict[str, Any]] = []
    try:
        api = local.Api(place.base_url, *local.credentials(place))
        started = time.monotonic()
        local.wait_for("Airflow to be healthy", api.healthy, timeout=420, proc=proc)
        ready = time.monotonic() - started
        _wait_parsed(api, "failover_service")
        stamp = time.strftime("%Y%m%dT%H%M%S")
        with local_failover_estate("orders", catalog_file=catalog, services=endpoints, lag_interval=2.0) as (services, _):
            for index in range(drills):
                measured.append(_drill(api, services, index, stamp))
                last = measured[-1]
                print(f"drill {index}: RTO {last['rto_seconds']:.2f}s = our steps {last['our_steps_seconds']:.2f}s + "
                      f"SDK imports {last['sdk_import_seconds']:.2f}s + Airflow {last['scheduling_overhead_seconds']:.2f}s",
                      flush=True)
                _restore(stamp, index, services)
    finally:
        endpoints.stop()
        local.stop_airflow(place)
        emu.stop(emulators)
    return report(measured, ready)


def report(measured: list[dict[str, Any]], ready: float) -> dict[str, Any]:
    keys = ("rto_seconds", "our_steps_seconds", "sdk_import_seconds", "scheduling_overhead_seconds",
            "client_post_to_verified_seconds")
    summary = {k: summarize([m[k] for m in measured]) for k in keys}
    steps = sorted({s for m in measured for s in m["steps"]}, key=lambda s: list(measured[0]["steps"]).index(s)
                   if s in measured[0]["steps"] else 99)
    per_step = {s: summarize([m["steps"][s] for m in measured if s in m["steps"]]) for s in steps}
    rto, ours = summary["rto_seconds"]["median"], summary["our_steps_seconds"]["median"]
    data = {"machine": machine_info(), "airflow_ready_seconds": round(ready, 1), "drills": measured,
            "summary": summary, "per_step": per_step,
            "goals": {"rto_under_20s": rto < GOAL_RTO, "our_steps_under_3s": ours < GOAL_OURS}}
    rows = [[k, f"{v['median']:.2f}", f"{v['min']:.2f}", f"{v['max']:.2f}"] for k, v in summary.items()]
    rows += [[f"  step {s}", f"{v['median']:.3f}", f"{v['min']:.3f}", f"{v['max']:.3f}"] for s, v in per_step.items()]
    table = console_table(["measure (s)", "median", "min", "max"], rows)
    print(table)
    print(f"goal RTO < {GOAL_RTO:.0f}s: {'met' if rto < GOAL_RTO else 'MISSED'} ({rto:.2f}s); our steps < "
          f"{GOAL_OURS:.0f}s: {'met' if ours < GOAL_OURS else 'MISSED'} ({ours:.2f}s)")
    machine = data["machine"]
    markdown = "\n".join([
        f"# RTO of failover_service on the embedded stack ({len(measured)} drills)", "",
        "API trigger -> verified (server side: the run's `run_after` -> the verify task's end).", "",
        f"Measured {machine['date']} on {machine['cores']} cores, load average "
        f"{' / '.join(str(x) for x in machine['load_average_at_start'])} (1 / 5 / 15 min) when the drills ended: "
        "the figures compare only within one run.", "",
        "| measure (s) | median | min | max |", "|---|---:|---:|---:|",
        *[f"| {r[0].strip()} | {r[1]} | {r[2]} | {r[3]} |" for r in rows], "",
        f"Goals: RTO < {GOAL_RTO:.0f} s {'met' if rto < GOAL_RTO else 'missed'}; our steps < {GOAL_OURS:.0f} s "
        f"{'met' if ours < GOAL_OURS else 'missed'}.",
    ])
    write_results("rto", data, markdown)
    return data
