"""``python -m include.cli`` on its own: conf files, usage, exit codes (the REST API calls are tested against a
real api-server in tests/test_intake_server.py and through airflow standalone in tests/test_intake_e2e.py)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from include.cli import CliError, load_conf, parser

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def test_conf_files_json_yaml_and_stdin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "a.json").write_text(json.dumps({"dry_run": True, "finding_ids": ["x"]}))
    (tmp_path / "b.yaml").write_text("dry_run: false\nreason: CHG-1\n")
    assert load_conf(str(tmp_path / "a.json")) == {"dry_run": True, "finding_ids": ["x"]}
    assert load_conf(str(tmp_path / "b.yaml")) == {"dry_run": False, "reason": "CHG-1"}
    monkeypatch.setattr(sys, "stdin", io.StringIO('{"targets": ["aws-prod"]}'))
    assert load_conf("-") == {"targets": ["aws-prod"]}


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("list.json", "[1]", "the conf must be an object (mapping), not list"),
        ("broken.json", "{", "not valid JSON"),
        ("broken.yaml", "a: [", "not valid YAML"),
        ("scalar.yaml", "just text", "not str"),
    ],
)
def test_bad_conf_files_are_refused(tmp_path: Path, name: str, text: str, expected: str) -> None:
    (tmp_path / name).write_text(text)
    with pytest.raises(CliError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        load_conf(str(tmp_path / name))
    with pytest.raises(CliError, match="cannot read"):
        load_conf(str(tmp_path / "absent.json"))


def test_usage() -> None:
    args = parser().parse_args(["approve", "remediate_findings", "run-1", "approve_changes", "--comment", "ok"])
    assert (args.command, args.dag_id, args.run_id, args.task_id, args.comment, args.map_index) == (
        "approve", "remediate_findings", "run-1", "approve_changes", "ok", -1)
    with pytest.raises(SystemExit):
        parser().parse_args(["trigger", "remediate_findings"])  # --conf-file is required
    done = subprocess.run([sys.executable, "-m", "include.cli", "follow"], cwd=PROJECT_ROOT, capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 2 and "run_id" in done.stderr
    helped = subprocess.run([sys.executable, "-m", "include.cli", "--help"], cwd=PROJECT_ROOT, capture_output=True,
                            text=True, timeout=60, check=False)
    assert helped.returncode == 0 and "AIRFLOW_TOKEN" in helped.stdout
