"""The one results table of a bench run (bench/summary.py): rows from what the steps returned, never timed here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import summary
from bench.__main__ import QUICK


def _parse_result() -> dict[str, object]:
    def row(file: str, median: float, peer: bool = False, reference: bool = False) -> dict[str, object]:
        return {"file": file, "is_peer": peer, "is_reference": peer or reference,
                "total_s": {"median": median, "min": median, "max": median}}

    return {"files": [row("(empty DAG)", 0.04, peer=True), row("(empty TaskFlow DAG)", 0.06, reference=True),
                      row("dags/a.py", 0.05), row("dags/b.py", 0.12)]}


def _provisioning_result() -> dict[str, object]:
    return {"resources": 100, "summary": {
        "plan": {"ours_s": 2.0, "minimal_s": 2.0, "ours_calls": 90, "minimal_calls": 90, "goal": 1.3},
        "apply": {"ours_s": 3.0, "minimal_s": 2.0, "ours_calls": 300, "minimal_calls": 280, "goal": 1.3},
    }}


def test_rows_carry_ratio_goal_and_verdict() -> None:
    built = summary.build(
        {"parse": _parse_result(), "provisioning": _provisioning_result()},
        steps=["parse", "provisioning", "rto"], failed={"rto": "failed: BenchError: airflow did not start"},
        seconds={"parse": 12.0, "provisioning": 60.0, "rto": 3.0}, settings={"BENCH_QUICK": "1"},
        load_before=[1.0, 1.0, 1.0],
    )
    rows = {(r["step"], r["measure"].split(" (")[0]): r for r in built["rows"]}
    slowest = rows[("parse", "DAG parse, slowest runbook")]
    assert "dags/b.py" in slowest["measure"]
    assert slowest["ratio"] == pytest.approx(3.0) and slowest["goal"] == "<= 1.5" and slowest["met"] is False
    fastest = rows[("parse", "DAG parse, fastest runbook")]
    assert fastest["ratio"] == pytest.approx(1.25) and fastest["met"] is True
    reference = [r for r in built["rows"] if "TaskFlow" in r["measure"]]
    assert len(reference) == 1 and reference[0]["met"] is None, "a reference row is shown, not judged"
    apply = next(r for r in built["rows"] if r["measure"].startswith("apply"))
    assert apply["ratio"] == pytest.approx(1.5) and apply["met"] is False
    plan = next(r for r in built["rows"] if r["measure"].startswith("plan"))
    assert plan["met"] is True
    assert built["not_measured"] == {"rto": "failed: BenchError: airflow did not start"}
    assert built["steps"]["rto"] == {"seconds": 3.0, "ok": False}
    assert built["settings"] == {"BENCH_QUICK": "1"}
    for key in ("date", "cpu_count", "platform", "load_average", "load_average_at_start"):
        assert key in built["machine"]
    assert built["versions"]["apache-airflow"] and built["versions"]["python"]


def test_a_step_result_it_cannot_read_is_reported_not_hidden() -> None:
    built = summary.build({"provisioning": {"resources": 1}}, steps=["provisioning"], failed={}, seconds={},
                          settings={}, load_before=[0.0, 0.0, 0.0])
    assert built["rows"] == []
    assert built["not_measured"]["provisioning"].startswith("no summary row: KeyError")


def test_goal_directions() -> None:
    def row(ours: float, peer: float, goal: str) -> summary.Row:
        return summary.Row("s", "m", ours, peer, "s", "peer", goal)

    assert row(1.3, 1.0, ">= 1.2").met is True and row(1.1, 1.0, ">= 1.2").met is False
    assert row(0.9, 1.0, "< 1.0").met is True and row(1.0, 1.0, "< 1.0").met is False
    assert row(1.0, 0.0, "<= 1.0").met is None, "no peer figure, no verdict"
    assert row(1.0, 1.0, "-").met is None


def test_written_table_and_json_agree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(summary, "RESULTS_DIR", tmp_path)
    built = summary.build({"parse": _parse_result()}, steps=["parse"], failed={}, seconds={"parse": 5.0},
                          settings={}, load_before=[0.5, 0.5, 0.5])
    json_path, md_path = summary.write(built)
    assert json.loads(json_path.read_text())["rows"] == json.loads(json.dumps(built["rows"]))
    table = md_path.read_text()
    assert "| parse | DAG parse, slowest runbook (dags/b.py) | 0.120 s | empty DAG | 0.040 s | 3.00 | <= 1.5 | **no** |" \
        in table
    assert "apache-airflow " in table and "load average [0.5, 0.5, 0.5] at start" in table


def test_quick_sizes_are_smaller_than_the_defaults() -> None:
    defaults = {"BENCH_PARSE_REPEATS": 7, "BENCH_SCALE_RESOURCES": 10_000, "BENCH_INTAKE_SECONDS": 30,
                "BENCH_PROVISIONING_RESOURCES": 500, "BENCH_BACKUP_SMALL": 2000, "BENCH_BACKUP_NOCHANGE": 10_000,
                "BENCH_BACKUP_HUGE_MIB": 1024, "BENCH_BACKUP_REPEATS": 3}
    for name, default in defaults.items():
        assert int(QUICK[name]) < default, name
