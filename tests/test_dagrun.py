"""The suite's dag.test runner (tests/dagrun.py): what its zygote does before forking stays fork-safe."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_zygote_builds_the_execution_api_routes_without_a_thread_or_a_connection() -> None:
    """The zygote's warm-up builds the in-process execution API's routes (so each dag.test child does not), and
    leaves the interpreter as fork-safe as before: one thread, no database connection checked out."""
    probe = subprocess.run(
        [sys.executable, "-c",
         "import threading\n"
         "from tests.dagrun import warm_execution_api\n"
         "from airflow import settings\n"
         "app = warm_execution_api()\n"
         "from airflow.sdk.execution_time.supervisor import in_process_api_server\n"
         "assert in_process_api_server().app is app\n"
         "engine = settings.engine\n"
         "print(app._cadwyn_initialized, threading.active_count(), engine.pool.checkedout() if engine else 0)"],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )
    assert probe.returncode == 0, probe.stderr[-3000:]
    assert probe.stdout.split()[-3:] == ["True", "1", "0"], probe.stdout[-2000:]
