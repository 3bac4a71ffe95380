"""DAG parse time: every file in ``dags/`` versus an empty DAG file, in the dag-processor's own code path.

One fresh interpreter plays the dag-processor manager; every (file, repeat) is parsed in its own forked
child by Airflow's ``_pre_import_airflow_modules`` + ``_parse_file`` (see ``bench/_parse_child.py``).
The peer is a minimal DAG (one ``EmptyOperator``) written to a temporary folder and parsed in the same
run, round-robin with the project's files. Reported per file: median seconds [min-max] and the ratio
of its median to the empty DAG's median. A second reference, the smallest TaskFlow DAG (one ``@task``),
shows the floor of any file that uses ``@task``: Airflow's decorator stack (the standard provider's
Python operators, ``packaging``) is imported by ``from airflow.sdk import task`` itself.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

from bench.common import (
    PROJECT_ROOT,
    BenchError,
    console_table,
    env_int,
    machine_info,
    mib,
    run_measured,
    summarize,
    with_bytecode_cache,
    write_results,
)

DAGS_DIR = PROJECT_ROOT / "dags"
EMPTY_DAG = textwrap.dedent(
    '''\
    """The peer: the smallest DAG the dag-processor can parse (one EmptyOperator)."""
    from datetime import datetime

    from airflow.providers.standard.operators.empty import EmptyOperator
    from airflow.sdk import DAG

    with DAG(dag_id="bench_empty", schedule=None, start_date=datetime(2026, 1, 1), catchup=False):
        EmptyOperator(task_id="noop")
    '''
)
EMPTY_TASKFLOW_DAG = textwrap.dedent(
    '''\
    """A second reference: the smallest TaskFlow DAG (one @task), the floor of every file that uses @task."""
    from datetime import datetime

    from airflow.sdk import dag, task


    @dag(dag_id="bench_empty_taskflow", schedule=None, start_date=datetime(2026, 1, 1), catchup=False)
    def bench_empty_taskflow():
        @task
        def noop() -> None:
            return None

        noop()


    bench_empty_taskflow()
    '''
)
REFERENCE_LABELS = {"bench_empty.py": "(empty DAG)", "bench_empty_taskflow.py": "(empty TaskFlow DAG)"}


def dag_files(folder: Path = DAGS_DIR) -> list[Path]:
    """Python files the dag-processor would consider (safe mode: they mention both 'airflow' and 'dag')."""
    files = []
    for path in sorted(folder.rglob("*.py")):
        if "__pycache__" in path.parts or path.name.startswith("."):
            continue
        text = path.read_text(errors="replace").lower()
        if "airflow" in text and "dag" in text:
            files.append(path)
    return files


def summarize_runs(
    runs: list[dict[str, Any]], empty_file: str, references: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    """Per-file medians and the ratio of each file's median total to the empty DAG's.

    ``references`` maps other reference files (not the peer) to their labels; they are reported, not judged.
    """
    references = references or {}
    by_file: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        by_file.setdefault(run["file"], []).append(run)
    if empty_file not in by_file:
        raise BenchError("the empty DAG was not measured")
    empty_median = statistics.median(r["total_s"] for r in by_file[empty_file])
    rows = []
    for file, items in by_file.items():
        errors = {k: v for r in items for k, v in (r.get("import_errors") or {}).items()}
        totals = summarize([r["total_s"] for r in items])
        rows.append(
            {
                "file": "(empty DAG)" if file == empty_file
                else references.get(file) or os.path.relpath(file, PROJECT_ROOT),
                "is_peer": file == empty_file,
                "is_reference": file == empty_file or file in references,
                "dags": sorted({d for r in items for d in r.get("dags", [])}),
                "total_s": totals,
                "pre_import_s": statistics.median(r["pre_import_s"] for r in items),
                "parse_s": statistics.median(r["parse_s"] for r in items),
                "serialize_s": statistics.median(r.get("serialize_s", 0.0) for r in items),
                "fork_to_exit_s": statistics.median(r["fork_to_exit_s"] for r in items),
                "rss_growth_mib": statistics.median(mib(r["rss_growth"]) for r in items),
                "ratio_to_empty": totals["median"] / empty_median if empty_median else None,
                "new_modules": statistics.median(r.get("new_modules", 0) for r in items),
                "new_packages": items[0].get("new_packages", {}),
                "import_errors": errors,
            }
        )
    rows.sort(key=lambda r: (not r["is_peer"], not r["is_reference"], r["file"]))
    return rows


def render(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    lines = [
        "# DAG parse time (dag-processor code path) vs an empty DAG",
        "",
        (f"Measured {meta['machine']['date']} on {meta['machine']['cores']} cores (shared: figures are noisy), "
        f"{meta['repeats']} repeats per file, round-robin, one forked processor per parse. "
        f"Manager start-up (untimed): {meta['manager_imports_s']:.1f} s."),
        "",
        f"Command: `{meta['command']}`",
        "",
        ("| file | DAGs | median s [min-max] | pre-import s | execute file s | serialize s | ratio to empty "
        "| RSS growth MiB | modules imported |"),
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        t = row["total_s"]
        ratio_text = "1.00 (peer)" if row["is_peer"] else f"{row['ratio_to_empty']:.2f}"
        if row["is_reference"] and not row["is_peer"]:
            ratio_text += " (reference)"
        lines.append(
            f"| {row['file']} | {', '.join(row['dags']) or '-'} | {t['median']:.3f} [{t['min']:.3f}-{t['max']:.3f}] | "
            f"{row['pre_import_s']:.3f} | {row['parse_s'] - row['serialize_s']:.3f} | {row['serialize_s']:.3f} | {ratio_text} | {row['rss_growth_mib']:.1f} | "
            f"{row['new_modules']:.0f} |"
        )
    lines += [
        "",
        "Modules a parse imports beyond the manager's (top packages by module count; the empty DAG's are the",
        "floor every file pays):",
        "",
    ]
    for row in rows:
        top = ", ".join(f"{name} {count}" for name, count in row["new_packages"].items())
        lines.append(f"- {row['file']}: {top or '-'}")
    errors = [(row["file"], e) for row in rows for e in row["import_errors"].items()]
    if errors:
        lines += ["", "## Import errors", ""]
        lines += [f"- `{file}`: `{path}`: {text.splitlines()[-1] if text else ''}" for file, (path, text) in errors]
    return "\n".join(lines)


def run(repeats: int | None = None) -> dict[str, Any]:
    repeats = repeats or env_int("BENCH_PARSE_REPEATS", 7)
    files = dag_files()
    if not files:
        raise BenchError(f"no DAG files found in {DAGS_DIR}")
    with tempfile.TemporaryDirectory(prefix="bench-parse-") as tmp:
        work = Path(tmp)
        empty_dir = work / "empty-bundle"
        empty_dir.mkdir()
        empty = empty_dir / "bench_empty.py"
        empty.write_text(EMPTY_DAG)
        taskflow = empty_dir / "bench_empty_taskflow.py"
        taskflow.write_text(EMPTY_TASKFLOW_DAG)
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW__")}
        env.update(
            {
                "AIRFLOW_HOME": str(work / "airflow-home"),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_DIR),
                "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
                "PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")])),
            }
        )
        with_bytecode_cache(env)
        jobs = [f"{empty}:{empty_dir}", f"{taskflow}:{empty_dir}"] + [f"{f}:{DAGS_DIR}" for f in files]
        argv = [sys.executable, "-m", "bench._parse_child", str(repeats), *jobs]
        print(f"[bench parse] {len(files)} DAG files + 2 reference DAGs, {repeats} repeats ...", file=sys.stderr, flush=True)
        # One unrecorded manager process first (its children do only the warm-up round). Measured
        # 2026-11-30: a manager started on a cold bytecode cache (a new BENCH_RESULTS_DIR) made every parse
        # of its children ~0.25 s slower in every round, even after its warm-up round had written the cache
        # (the TaskFlow reference 0.29 s instead of 0.05 s, runbooks 5.8-8.5x instead of 2-4x); the next
        # manager process was fast. Production parses with the venv's bytecode in place, as the second does.
        warm = run_measured([sys.executable, "-m", "bench._parse_child", "0", *jobs], env=env, cwd=PROJECT_ROOT,
                            timeout=1200)
        if not warm.ok:
            raise BenchError(f"parse warm-up failed ({warm.returncode}):\n{warm.tail()}")
        measured = run_measured(argv, env=env, cwd=PROJECT_ROOT, timeout=1200)
        if not measured.ok:
            raise BenchError(f"parse child failed ({measured.returncode}):\n{measured.tail()}")
        lines = [json.loads(line) for line in measured.stdout.splitlines() if line.startswith("{")]
        header, runs = lines[0], [line for line in lines[1:] if not line.get("warmup")]
        failed = [r for r in runs if "error" in r]
        if failed:
            raise BenchError(f"parsing failed: {failed[0]}")
        rows = summarize_runs(runs, str(empty.resolve()), {str(taskflow.resolve()): REFERENCE_LABELS[taskflow.name]})
    meta = {
        "machine": machine_info(),
        "repeats": repeats,
        "manager_imports_s": header["manager_imports_s"],
        "command": "python -m bench parse",
        "method": "fork per parse from a manager-like process; timed: _pre_import_airflow_modules + _parse_file",
    }
    result = {"meta": meta, "files": rows}
    markdown = render(rows, meta)
    write_results("parse", result, markdown)
    print(
        console_table(
            ["file", "median s", "ratio to empty"],
            [
                [r["file"], f"{r['total_s']['median']:.3f}",
                 "peer" if r["is_peer"] else f"{r['ratio_to_empty']:.2f}" + (" (ref)" if r["is_reference"] else "")]
                for r in rows
            ],
        )
    )
    return result
