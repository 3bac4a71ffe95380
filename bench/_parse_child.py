"""Child of ``bench.parse``: parse DAG files the way the dag-processor does, print timings as JSON lines.

This process plays the dag-processor *manager*: it imports what the manager holds before it starts a
file processor (Airflow's processor module, the DagBag, the serializer), untimed. Then, for every
(repeat, file) job, it forks a fresh child exactly as ``DagFileProcessorProcess.start`` does, and the
child times the processor's work for one file:

1. ``_pre_import_airflow_modules(file)``: the ``airflow.*`` modules the file names
   (``[dag_processor] parsing_pre_import_modules``, on by default). The real manager runs this before
   the fork and keeps the modules for later files; here it runs inside each child so that no file
   profits from another file's imports (every measurement starts from the same manager state);
2. ``_parse_file(DagFileParseRequest(...))``: the stability check, a ``BundleDagBag`` over the one
   file (executing it: every import of the file is paid here), and the serialization of its DAGs.

A first, unrecorded round warms the bytecode and page caches. Jobs run round-robin over the files (repeat 1 of every file, then repeat 2 ...), so slow drift in the
machine's load hits every file alike.

    python -m bench._parse_child REPEATS FILE:BUNDLE [FILE:BUNDLE ...]
"""

from __future__ import annotations

import functools
import json
import sys
import time
from pathlib import Path

from bench.forked import in_child


def _one(file: Path, bundle: Path, log: object) -> dict[str, object]:
    from airflow.dag_processing import processor
    from airflow.dag_processing.processor import (
        DagFileParseRequest,
        _parse_file,
        _pre_import_airflow_modules,
    )

    # Time the serialization step on its own by wrapping the processor's module-level helper.
    serialize = processor._serialize_dags
    spent = [0.0]

    def timed_serialize(*args: object, **kwargs: object) -> object:
        started = time.perf_counter()
        try:
            return serialize(*args, **kwargs)  # type: ignore[arg-type]
        finally:
            spent[0] += time.perf_counter() - started

    processor._serialize_dags = timed_serialize  # type: ignore[assignment]

    import resource

    import psutil

    before = set(sys.modules)
    rss_start = psutil.Process().memory_info().rss
    t0 = time.perf_counter()
    _pre_import_airflow_modules(str(file), log)  # type: ignore[arg-type]
    t1 = time.perf_counter()
    result = _parse_file(
        DagFileParseRequest(file=str(file), bundle_path=bundle, bundle_name="bench"), log  # type: ignore[arg-type]
    )
    t2 = time.perf_counter()
    errors = dict(result.import_errors or {}) if result else {}
    new_modules = set(sys.modules) - before
    packages: dict[str, int] = {}
    for name in new_modules:
        if name.startswith("unusual_prefix_"):  # the DAG file itself (Airflow's module name for it)
            continue
        top = ".".join(name.split(".")[:2]) if name.startswith(("airflow.", "include.")) else name.split(".")[0]
        packages[top] = packages.get(top, 0) + 1
    return {
        "new_modules": len(new_modules),
        "new_packages": dict(sorted(packages.items(), key=lambda kv: -kv[1])[:12]),
        "pre_import_s": t1 - t0,
        "parse_s": t2 - t1,
        "serialize_s": spent[0],
        "total_s": t2 - t0,
        "dags": [d.dag_id for d in result.serialized_dags] if result else [],
        "import_errors": {k: v[-800:] for k, v in errors.items()},
        # High-water mark of this processor minus its resident set when it started (after the fork).
        "rss_growth": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - rss_start,
    }


def main(argv: list[str]) -> int:
    repeats = int(argv[0])
    jobs = []
    for spec in argv[1:]:
        file, _, bundle = spec.rpartition(":")
        jobs.append((Path(file).resolve(), Path(bundle).resolve()))

    t_start = time.perf_counter()
    import airflow.dag_processing.processor  # noqa: F401 - the manager's state before it forks
    import psutil
    import structlog

    log = structlog.get_logger(logger_name="bench.parse")
    manager_rss = psutil.Process().memory_info().rss
    print(json.dumps({"manager_imports_s": time.perf_counter() - t_start, "manager_rss": manager_rss}), flush=True)

    # Round 0 is a warm-up (fills the bytecode cache and the OS page cache); the parent drops it.
    for repeat in range(repeats + 1):
        for file, bundle in jobs:
            forked = time.perf_counter()
            payload, _, usage = in_child(functools.partial(_one, file, bundle, log))  # the file processor
            reaped = time.perf_counter()
            payload.update(
                {
                    "file": str(file),
                    "repeat": repeat,
                    "warmup": repeat == 0,
                    "fork_to_exit_s": reaped - forked,
                    "child_peak_rss": int(usage.ru_maxrss) * 1024,
                }
            )
            print(json.dumps(payload), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
