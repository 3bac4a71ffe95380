"""`make demo` / `make up` / `make down`: the embedded default, for real (airflow standalone + REST API)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from localdev.emulators import Emulators, free_port
from localdev.stack import Stack, write_dotenv

PROJECT_ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _env(home: Path, data: Path) -> dict[str, str]:
    env = dict(os.environ)
    # The demo builds its own Airflow home, emulators and connections: drop the test session's.
    for key in list(env):
        if key.startswith(("AIRFLOW_CONN_", "AIRFLOW__")) or key in ("AIRFLOW_HOME", "STORAGE_EMULATOR_HOST"):
            env.pop(key)
    env["RUNBOOKS_DATA_DIR"] = str(data)
    return env


def test_make_demo_runs_the_runbooks_through_the_api(tmp_path: Path) -> None:
    home, data = tmp_path / "local", tmp_path / "data"
    result = subprocess.run(
        [sys.executable, "-m", "localdev", "demo", "--home", str(home)],
        cwd=PROJECT_ROOT, env=_env(home, data), capture_output=True, text=True, timeout=1200, check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    assert "inventory_estate: success" in output
    assert "compliance_scan: failed by policy as designed (enforce_policy)" in output
    assert "remediate_findings: success" in output
    assert "complete=True" in output
    # what the demo says it produced is really there
    pointer = json.loads((data / "inventory" / "latest.json").read_text())
    assert pointer["complete"] is True and pointer["run_id"].startswith("demo__")
    summary = json.loads((Path(pointer["path"]).parent / "summary.json").read_text())
    assert set(summary["by_cloud"]) == {"aws", "gcp", "azure"}
    assert list((data / "compliance" / "scans").glob("*/reports/report.html"))
    plans = list((data / "remediation").glob("demo__*/result.json"))
    assert plans and json.loads(plans[0].read_text())["status"] == "dry_run"
    # it cleaned up after itself: no Airflow or emulator left running, private .env written
    assert not (home / "airflow.pid").exists() and not (home / "emulators.json").exists()
    assert "AIRFLOW_CONN_AWS_ESTATE" in (home / ".env").read_text()


def test_make_up_serves_until_down(tmp_path: Path) -> None:
    home, data = tmp_path / "local", tmp_path / "data"
    env = _env(home, data)
    port = str(free_port())
    env["AIRFLOW_PORT"] = port
    proc = subprocess.Popen(
        [sys.executable, "-m", "localdev", "up", "--home", str(home)],
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
        banner = "".join(lines)
        assert f"Airflow is up: http://127.0.0.1:{port}" in banner, banner[-4000:]
        assert "login: admin / " in banner
        state = json.loads((home / "emulators.json").read_text())
        airflow_pid = int((home / "airflow.pid").read_text())
        down = subprocess.run(
            [sys.executable, "-m", "localdev", "down", "--home", str(home)],
            cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=120, check=False,
        )
        assert down.returncode == 0, down.stderr
        proc.wait(timeout=120)
        for pid in [airflow_pid, *state["pids"].values()]:
            with pytest.raises(ProcessLookupError):
                os.killpg(pid, 0)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


def test_dotenv_keeps_foreign_lines(tmp_path: Path) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text("FERNET_KEY=keep-me\nAIRFLOW_CONN_AWS_ESTATE='old'\n")
    write_dotenv(Emulators(aws_port=1, gcs_port=2, azure_port=3), dotenv)
    text = dotenv.read_text()
    assert "FERNET_KEY=keep-me" in text and "'old'" not in text
    assert text.count("AIRFLOW_CONN_AWS_ESTATE=") == 1 and "127.0.0.1:1" in text
    assert Stack(home=tmp_path / "x", port=1).dotenv == tmp_path / "x" / ".env"
