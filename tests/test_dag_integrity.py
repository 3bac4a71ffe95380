"""Every runbook DAG: imports cleanly, reads like a runbook, and parses without cloud SDKs."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest

from tests.forkprobe import fork_each

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DAG_FILES = sorted(p for p in (PROJECT_ROOT / "dags").glob("*.py") if not p.name.startswith("_"))

#: Modules that must never be imported while a DAG file is parsed (slow, or create clients). ruff's
#: TID253 bans the same list at module level in dags/ (ruff.toml), so `make lint` catches it first.
FORBIDDEN_AT_PARSE = (
    "boto3", "botocore", "google.cloud", "google.api_core", "googleapiclient", "azure", "great_expectations",
    "pandas", "airflow.providers.amazon", "airflow.providers.google", "airflow.providers.microsoft",
    "include.clouds", "include.compliance.validation",
)


@pytest.fixture(scope="module")
def dagbag():  # type: ignore[no-untyped-def]
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(PROJECT_ROOT / "dags"))


def test_there_are_runbooks() -> None:
    assert DAG_FILES, "no DAG files found"


def test_every_dag_imports_without_error(dagbag) -> None:  # type: ignore[no-untyped-def]
    assert dagbag.import_errors == {}
    assert sorted(dagbag.dag_ids) == sorted(p.stem for p in DAG_FILES), "one runbook per file, id = file name"


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.stem)
def test_runbook_metadata(dagbag, path: Path) -> None:  # type: ignore[no-untyped-def]
    dag = dagbag.dags.get(path.stem)
    assert dag is not None
    assert dag.doc_md and "## Steps" in dag.doc_md, "the module docstring is the runbook (with ## Steps)"
    assert "**Owner:**" in dag.doc_md and "**Trigger:**" in dag.doc_md
    assert "runbook" in dag.tags
    kinds = {"read-only", "mutating"} & set(dag.tags)
    assert len(kinds) == 1, "tag a runbook exactly one of read-only / mutating"
    assert dag.is_paused_upon_creation is False, "a paused runbook queues forever when triggered"
    for task in dag.tasks:
        assert task.owner and task.owner != "airflow", f"{task.task_id}: set an owner"
        assert task.retries >= 1, f"{task.task_id}: retries >= 1"
    if "mutating" in dag.tags:
        assert "dry_run" in dag.params, "a mutating runbook takes a dry_run parameter"
        if type(dag.timetable).__name__ == "NullTimetable":
            assert dag.params["dry_run"] is True, "dry_run defaults to true for people"
        else:  # on a schedule: empty = apply on the schedule, a dry run by hand (include.params.resolve_dry_run)
            assert dag.params["dry_run"] in (True, None), "dry_run: true, or empty (auto) for a scheduled runbook"


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.stem)
def test_every_param_schema_is_draft_7(dagbag, path: Path) -> None:  # type: ignore[no-untyped-def]
    """Airflow re-checks each Param's schema against its meta-schema on every resolve (serialization, each
    trigger, each task); draft 7's check costs a third of jsonschema's default 2020-12: include.params.param."""
    import jsonschema

    from include.params import SCHEMA_DIALECT

    params = dagbag.dags[path.stem].params
    assert params, f"{path.stem} has a form"
    for name in params:
        schema = params.get_param(name).schema
        assert schema.get("$schema") == SCHEMA_DIALECT, f"{path.stem}.{name}: build it with include.params.param"
        assert jsonschema.validators.validator_for(schema) is jsonschema.Draft7Validator
        jsonschema.Draft7Validator.check_schema(schema)


#: The baseline is what a fresh interpreter holds after ``import airflow.sdk`` (it loads the bare ``google.cloud``
#: namespace package); each DAG file runs in a child forked from it (tests/forkprobe.py) and reports the forbidden
#: modules it added.
_PARSE_PROBE = f"""
import importlib.util, sys
import airflow.sdk
baseline = set(sys.modules)
PREFIXES = {sorted({p.split(".")[0] for p in FORBIDDEN_AT_PARSE})!r}
FORBIDDEN = {list(FORBIDDEN_AT_PARSE)!r}

def probe(path):
    spec = importlib.util.spec_from_file_location("dagfile", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return sorted(m for m in set(sys.modules) - baseline
                  if m.split(".")[0] in PREFIXES and any(m == p or m.startswith(p + ".") for p in FORBIDDEN))
"""


@pytest.fixture(scope="module")
def parse_time_imports() -> dict[str, object]:
    return fork_each(_PARSE_PROBE, DAG_FILES)


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.stem)
def test_no_cloud_sdk_imported_at_parse_time(parse_time_imports: dict[str, object], path: Path) -> None:
    imported = parse_time_imports[str(path)]
    assert not isinstance(imported, dict), f"{path.name} failed to load: {imported}"
    assert imported == [], f"{path.name} imports {imported} at parse time"


def test_the_parse_time_probe_catches_a_forbidden_import(tmp_path: Path) -> None:
    """The probe itself: a DAG file importing boto3 at module level is reported, a clean one is not."""
    heavy, light = tmp_path / "heavy.py", tmp_path / "light.py"
    heavy.write_text("import boto3\nfrom airflow.sdk import dag\n")
    light.write_text("from airflow.sdk import dag\n")
    found = fork_each(_PARSE_PROBE, [heavy, light])
    assert "boto3" in found[str(heavy)] and found[str(light)] == []


# ---- the same rule, statically: ruff's banned module-level imports (TID253) for dags/ ---------------
def _ruff(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--no-cache", "--output-format", "concise", *args],
        check=False, capture_output=True, text=True, timeout=120, cwd=cwd,
    )


def test_ruff_bans_the_parse_time_modules_in_dag_files() -> None:
    config = tomllib.loads((PROJECT_ROOT / "ruff.toml").read_text())
    banned = config["lint"]["flake8-tidy-imports"]["banned-module-level-imports"]
    assert "TID253" in config["lint"]["select"]
    assert sorted(banned) == sorted(FORBIDDEN_AT_PARSE)


def test_ruff_reports_a_top_level_sdk_import_in_a_dag_file(tmp_path: Path) -> None:
    source = textwrap.dedent(
        """\
        import boto3
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook
        from airflow.sdk import task


        @task
        def list_buckets() -> list[str]:
            import boto3 as sdk  # inside the task: allowed

            return [str(b) for b in sdk.client("s3").list_buckets()["Buckets"]] + [str(boto3), str(S3Hook)]
        """
    )
    for folder in ("dags", "include"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "probe.py").write_text(source)
    config = str(PROJECT_ROOT / "ruff.toml")  # its per-file patterns are relative to cwd, here tmp_path

    in_dags = _ruff("--config", config, "--select", "TID253", "dags/probe.py", cwd=tmp_path)
    assert in_dags.returncode == 1, in_dags.stdout + in_dags.stderr
    reported = [line for line in in_dags.stdout.splitlines() if "TID253" in line]
    assert any(line.startswith("dags/probe.py:1:") and "`boto3`" in line for line in reported), in_dags.stdout
    assert any(line.startswith("dags/probe.py:2:") and "`airflow.providers.amazon`" in line for line in reported)
    assert len(reported) == 2, "an import inside a task is allowed"

    elsewhere = _ruff("--config", config, "--select", "TID253", "include/probe.py", cwd=tmp_path)
    assert elsewhere.returncode == 0, "the ban is for DAG files only: " + elsewhere.stdout


def test_ruff_finds_the_real_dags_clean() -> None:
    result = _ruff("dags", cwd=PROJECT_ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
