"""What a runbook file imports when the dag-processor parses it: only Airflow and a few light include modules.

The property behind the parse time (`python -m bench parse` measures the time itself, as a ratio to an empty
DAG): a DAG file's module level pulls in nothing the dag-processor does not already hold, except Airflow's
own TaskFlow / HITL modules and the small include/ modules that build the forms and the approval gate.
Measured with ``python -X importtime`` (2026-11-30): ``include.backup.policies`` (pydantic models of the
policies and the targets file) cost 12 ms per backup DAG parse, and ``include.params`` pulled in the change
engine (``include.changes.rate`` -> ``.model`` -> ``include.records``, 3 ms) into every runbook's parse, against
an empty DAG parsed in 37 ms. Cloud SDKs, GX and pandas are checked in tests/test_dag_integrity.py.

One interpreter plays the dag-processor manager (it imports Airflow's processor module, as the manager holds
it before it forks, and what the smallest TaskFlow DAG file imports: ``from airflow.sdk import dag, task,
Param``), then forks one child per DAG file, as the manager does; the child executes the file and reports
the modules it added.
"""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from tests.forkprobe import fork_each

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DAG_FILES = sorted(p for p in (PROJECT_ROOT / "dags").glob("*.py") if not p.name.startswith("_"))

#: The include modules a runbook may import at parse time: they import nothing but the standard library,
#: ``airflow.sdk`` and Airflow's HITL operator. Anything else belongs inside a task callable.
LIGHT_INCLUDE_MODULES = frozenset({"include", "include.params", "include.approval", "include.assets"})
#: Third-party packages Airflow's own operators import lazily (asgiref: the HITL and TriggerDagRun operators).
AIRFLOW_LAZY_DEPENDENCIES = frozenset({"asgiref"})

_PROBE = """
import runpy, sys
import airflow.dag_processing.processor  # what the dag-processor manager holds before it forks
from airflow.sdk import DAG, Param, dag, task  # what the smallest TaskFlow DAG file imports
baseline = set(sys.modules)

def probe(path):
    runpy.run_path(path, run_name="dagfile")
    return sorted(set(sys.modules) - baseline)
"""


def _probe(files: list[Path], home: Path) -> dict[str, list[str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW__")}
    env.update({"AIRFLOW_HOME": str(home), "AIRFLOW__CORE__LOAD_EXAMPLES": "False", "PYTHONPATH": str(PROJECT_ROOT)})
    return fork_each(_PROBE, files, env)


@pytest.fixture(scope="module")
def added_modules(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    return _probe(DAG_FILES, tmp_path_factory.mktemp("airflow-home"))


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.stem)
def test_parse_imports_only_airflow_and_light_include_modules(
    added_modules: dict[str, list[str]], path: Path
) -> None:
    added = added_modules[str(path)]
    assert isinstance(added, list), added
    outside = [
        m for m in added
        if m.split(".")[0] not in {"airflow", "include", *AIRFLOW_LAZY_DEPENDENCIES}
    ]
    assert outside == [], f"{path.name} imports {outside} at parse time: import them inside the task"
    heavy_include = [m for m in added if m.split(".")[0] == "include" and m not in LIGHT_INCLUDE_MODULES]
    assert heavy_include == [], (
        f"{path.name} imports {heavy_include} at parse time: keep form constants in include/params.py and "
        "import the rest inside the task callables"
    )


def test_the_probe_sees_a_heavy_import(tmp_path: Path) -> None:
    """The check is not blind: a DAG file that imports the policy models at module level is caught."""
    dag_file = tmp_path / "heavy_probe.py"
    dag_file.write_text(
        textwrap.dedent(
            """\
            from airflow.sdk import dag, task

            from include.backup.policies import POLICY_NAME_PATTERN


            @dag(dag_id="heavy_probe", schedule=None)
            def heavy_probe():
                @task
                def noop() -> str:
                    return POLICY_NAME_PATTERN

                noop()


            heavy_probe()
            """
        )
    )
    added = _probe([dag_file], tmp_path / "airflow-home")[str(dag_file)]
    assert isinstance(added, list), added
    assert "include.backup.policies" in added and "include.targets" in added
    assert "include.backup.policies" not in LIGHT_INCLUDE_MODULES
