"""Run a DAG end to end with ``dag.test()`` in a child process under a hard timeout.

``dag.test`` ignores SIGTERM and can wait on retries, so it never runs inside the pytest process:
the child is killed outright on timeout and the test fails with its output.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parents[1]

_CHILD = r"""
import json, sys
from airflow.dag_processing.dagbag import DagBag
dag_id, conf = sys.argv[1], json.loads(sys.argv[2])
bag = DagBag(dag_folder=sys.argv[3])
assert not bag.import_errors, bag.import_errors
dag = bag.dags[dag_id]
run = dag.test(run_conf=conf)
tis = {f"{ti.task_id}[{ti.map_index}]" if ti.map_index >= 0 else ti.task_id: str(ti.state)
       for ti in run.get_task_instances()}
print("DAGRUN-RESULT " + json.dumps({"state": str(run.state), "run_id": run.run_id, "tasks": tis}))
"""


def _dag_file(dag_id: str) -> Path:
    """One runbook per file (dags/<dag id>.py): parse only that file; the folder when the convention breaks."""
    path = PROJECT_ROOT / "dags" / f"{dag_id}.py"
    return path if path.is_file() else PROJECT_ROOT / "dags"


def run_dag(dag_id: str, conf: dict[str, Any] | None = None, timeout: float = 420, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run ``dag_id`` once; return {"state", "run_id", "tasks": {task: state}, "output"}."""
    result = subprocess.run(
        [sys.executable, "-c", _CHILD, dag_id, json.dumps(conf or {}), str(_dag_file(dag_id))],
        check=False, capture_output=True, text=True, timeout=timeout, cwd=PROJECT_ROOT, env=env or dict(os.environ),
    )
    output = result.stdout + result.stderr
    for line in result.stdout.splitlines():
        if line.startswith("DAGRUN-RESULT "):
            parsed: dict[str, Any] = json.loads(line.split(" ", 1)[1])
            parsed["output"] = output
            return parsed
    raise AssertionError(f"dag.test of {dag_id} produced no result (exit {result.returncode}):\n{output[-5000:]}")
