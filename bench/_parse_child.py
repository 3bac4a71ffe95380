"""Child of ``bench.parse``: parse ONE DAG file the way the dag-processor does, print timings as JSON.

Runs in a fresh interpreter per measurement, so nothing the file imports is cached. The modules the
dag-processor manager already holds before it forks a file processor (Airflow's processor module, the
DagBag, the serializer) are imported first and not timed; then the timed part is exactly what the
processor does for one file:

1. ``_pre_import_airflow_modules(file)``: the manager imports the ``airflow.*`` modules the file names
   (``[dag_processor] parsing_pre_import_modules``, on by default);
2. ``_parse_file(DagFileParseRequest(...))``: the forked child's work: the stability check, a
   ``BundleDagBag`` over the one file (executing it), and the serialization of every DAG found.

    python -m bench._parse_child /abs/path/to/dag.py /abs/path/to/bundle
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path


def main(argv: list[str]) -> int:
    file, bundle = Path(argv[0]).resolve(), Path(argv[1]).resolve()
    t_start = time.perf_counter()
    import structlog

    from airflow.dag_processing.processor import (
        DagFileParseRequest,
        _parse_file,
        _pre_import_airflow_modules,
    )

    log = structlog.get_logger(logger_name="bench.parse")
    t_ready = time.perf_counter()
    _pre_import_airflow_modules(str(file), log)
    t_pre = time.perf_counter()
    result = _parse_file(DagFileParseRequest(file=str(file), bundle_path=bundle, bundle_name="bench"), log)
    t_end = time.perf_counter()
    errors = dict(result.import_errors or {}) if result else {}
    dags = [d.dag_id for d in result.serialized_dags] if result else []
    sys.stdout.flush()
    print(
        json.dumps(
            {
                "file": str(file),
                "manager_imports_s": t_ready - t_start,
                "pre_import_s": t_pre - t_ready,
                "parse_s": t_end - t_pre,
                "total_s": t_end - t_ready,
                "dags": dags,
                "import_errors": {k: v[-800:] for k, v in errors.items()},
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
