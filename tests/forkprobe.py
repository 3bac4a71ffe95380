"""Run a probe over many files in forked children of one interpreter: what each file adds to a known baseline.

Both parse-time checks (tests/test_dag_integrity.py, tests/test_dag_parse_imports.py) ask what executing one DAG
file adds to an interpreter that has already imported a baseline (as the dag-processor manager holds its imports
before it forks a file processor). A fresh interpreter per file pays the baseline import every time (~1.5 s of
CPU); one interpreter imports it once and forks a child per file, each child starting from exactly the baseline.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parents[1]

# Before ``setup`` (so that the baseline ``setup`` takes holds them): the loop's own imports.
_PRELUDE = "import json, sys\nfrom bench.forked import in_child\n"
# After it: ``setup`` imports the baseline and defines ``probe(path)``, whose JSON-able result (or {"error": ...}
# when it raises) is reported per file, each computed in a child forked from the baseline (bench/forked.py).
_LOOP = textwrap.dedent(
    """\
    found = {path: in_child(lambda: probe(path))[0] for path in sys.argv[1:]}
    print(json.dumps(found))
    """
)

def fork_each(setup: str, files: Iterable[Path], env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """``probe(path)`` of ``setup`` for each file, each in its own child forked after ``setup`` ran once."""
    result = subprocess.run(
        [sys.executable, "-c", _PRELUDE + textwrap.dedent(setup) + "\n" + _LOOP, *map(str, files)],
        check=False, capture_output=True, text=True, timeout=300, cwd=PROJECT_ROOT,
        env=dict(env) if env is not None else None,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    found: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return found
