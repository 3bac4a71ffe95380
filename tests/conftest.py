"""Shared fixtures: one private set of emulators per test session, a private Airflow home.

Tests talk to moto server, the GCS emulator and Azurite through the same Airflow hooks production
uses; the connections are ``AIRFLOW_CONN_*`` environment variables pointing at this session's ports,
so two suites on one machine never collide.
"""

from __future__ import annotations

import gc
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
from tests.dagrun import GC_THRESHOLDS  # noqa: E402

# ---- how the suite is spread over xdist workers (`make test`: -n auto --dist loadfile --no-loadscope-reorder) ----
#: Modules that are one long serial chain on one worker (test_local_stack.py: one `airflow standalone` for the whole
#: module, ~5 minutes): they start first, so that the other workers fill the time beside them instead of waiting
#: for them at the end.
LONG_CHAINS = ("tests/test_local_stack.py",)


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """One worker more than there are CPUs: a third of the suite's time is spent waiting (on emulators, on an
    Airflow scheduler loop, on subprocesses), measured as ~1.3 of 2 cores busy with 2 workers."""
    return (os.cpu_count() or 1) + 1


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: item.nodeid.split("::")[0] not in LONG_CHAINS)  # stable: the rest keeps its order


# ---- the garbage collector: most of a test process's CPU went to it ---------------------------------------------
# Measured on tests/test_remediation.py, test_backup_dag.py and test_failover.py in one process: 30.6 s of its 66 s of
# CPU was the cyclic garbage collector, 27 s of it in 66 full passes that each walked the whole heap (Airflow, the
# providers, botocore's models, great-expectations; ~0.4 s a pass), and 9.9 s of its dag.test children's 37 s. With
# full passes rare (dagrun.GC_THRESHOLDS, also in the dag.test zygote, which freezes its imports before forking), and
# at each module's end that module's garbage collected and the rest frozen (never walked again): 43.5 s of CPU for
# the process, 31 s for the children, the same 52 tests passing. What a frozen object leaks is at most a reference
# cycle that becomes garbage later: module-scoped fixtures are torn down (and collected) before the freeze.
gc.set_threshold(*GC_THRESHOLDS)


def pytest_collection_finish(session: pytest.Session) -> None:
    gc.freeze()  # the modules collection imported


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    yield
    if nextitem is None or nextitem.module is not item.module:
        gc.collect()
        gc.freeze()


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
def airflow_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite metadata DB in this session's private AIRFLOW_HOME (needed by dag.test).

    Migrated once per run (a migration takes ~3.5 s of CPU): the first xdist worker that needs it migrates and
    keeps a copy beside the workers' temp directories; the others copy that file into their own AIRFLOW_HOME.
    """
    import fcntl
    import shutil

    from include.fileio import atomic_binary_writer

    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    template = shared / "airflow-migrated.db"
    with open(shared / "airflow-migrated.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if template.exists():
            shutil.copyfile(template, _AIRFLOW_HOME / "airflow.db")
            return _AIRFLOW_HOME
        subprocess.run(
            [sys.executable, "-m", "airflow", "db", "migrate"],
            check=True,
            env=dict(os.environ),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=600,
        )
        with open(_AIRFLOW_HOME / "airflow.db", "rb") as migrated, atomic_binary_writer(template) as kept:
            shutil.copyfileobj(migrated, kept)
    return _AIRFLOW_HOME
