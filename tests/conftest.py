"""Shared fixtures: one private set of emulators per test session, a private Airflow home.

Tests talk to moto server, the GCS emulator and Azurite through the same Airflow hooks production
uses; the connections are ``AIRFLOW_CONN_*`` environment variables pointing at this session's ports,
so two suites on one machine never collide.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]

# ---- Airflow environment: must be set before anything imports airflow ---------------------------
_AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="runbooks-test-airflow-"))
os.environ["AIRFLOW_HOME"] = str(_AIRFLOW_HOME)
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(PROJECT_ROOT / "dags")
os.environ["AIRFLOW__CORE__PLUGINS_FOLDER"] = str(PROJECT_ROOT / "plugins")
os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{_AIRFLOW_HOME / 'airflow.db'}"
os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "True"
os.environ["AIRFLOW__LOGGING__LOGGING_LEVEL"] = "WARNING"
os.environ["RUNBOOKS_DATA_DIR"] = str(_AIRFLOW_HOME / "data")
# The change ledger's database (a PostgreSQL connection in a distributed deployment).
os.environ["AIRFLOW_CONN_RUNBOOKS_STATE"] = json.dumps({"conn_type": "sqlite", "host": str(_AIRFLOW_HOME / "state.db")})
os.environ.setdefault("PYTHONPATH", str(PROJECT_ROOT))
if str(PROJECT_ROOT) not in sys.path:
    sys.path.insert(0, str(PROJECT_ROOT))

from localdev import emulators as emulators_mod  # noqa: E402


@pytest.fixture(scope="session")
def emulators(tmp_path_factory: pytest.TempPathFactory) -> Iterator[emulators_mod.Emulators]:
    """Start moto, the GCS emulator and Azurite on free ports for this session."""
    logs = tmp_path_factory.mktemp("emulator-logs")
    running = emulators_mod.start(log_dir=logs)
    running.apply_environment()
    try:
        yield running
    finally:
        emulators_mod.stop(running)


@pytest.fixture
def clean_clouds(emulators: emulators_mod.Emulators) -> emulators_mod.Emulators:
    """Emulators emptied before the test."""
    emulators.reset()
    return emulators


@pytest.fixture
def seeded(clean_clouds: emulators_mod.Emulators):  # type: ignore[no-untyped-def]
    """A freshly seeded estate (emptied, then seeded from config/estate.yaml). Returns the seed report."""
    from localdev.seed import seed_estate

    return seed_estate()


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private RUNBOOKS_DATA_DIR for one test."""
    path = tmp_path / "data"
    monkeypatch.setenv("RUNBOOKS_DATA_DIR", str(path))
    return path


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """A migrated SQLite metadata DB in this session's private AIRFLOW_HOME (needed by dag.test)."""
    subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        check=True,
        env=dict(os.environ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        timeout=600,
    )
    return _AIRFLOW_HOME
