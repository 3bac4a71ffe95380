"""The inventory dataset: dated, versioned JSON Lines with a summary, and a pointer to the latest.

Layout under the data directory (``RUNBOOKS_DATA_DIR``, default ``<project>/data``)::

    inventory/
      staging/<run_id>/<target>.jsonl           # per-target output of the collecting tasks
      date=2026-11-28/run=<run_id>/inventory.jsonl
      date=2026-11-28/run=<run_id>/summary.json
      latest.json                               # {"path": ..., "run_id": ..., "collected_at": ...}

Versions are never overwritten: each run writes its own folder; ``latest.json`` is replaced atomically.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from include.records import ResourceRecord

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def data_dir() -> Path:
    return Path(os.environ.get("RUNBOOKS_DATA_DIR", PROJECT_ROOT / "data"))


def inventory_dir(base: Path | None = None) -> Path:
    return (base or data_dir()) / "inventory"


def safe_run_id(run_id: str) -> str:
    """A run id usable as one path segment."""
    return re.sub(r"[^A-Za-z0-9_.+=-]", "_", run_id)


def atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(tmp, path)


def write_jsonl(path: Path, records: Iterable[ResourceRecord]) -> int:
    """Write records as JSON Lines (atomically); return how many."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    count = 0
    with os.fdopen(fd, "w") as handle:
        for record in records:
            handle.write(record.to_json())
            handle.write("\n")
            count += 1
    os.replace(tmp, path)
    return count


def read_jsonl(path: Path) -> Iterator[ResourceRecord]:
    with path.open() as handle:
        for line in handle:
            if line.strip():
                yield ResourceRecord.from_dict(json.loads(line))


def staging_path(run_id: str, target: str, base: Path | None = None) -> Path:
    return inventory_dir(base) / "staging" / safe_run_id(run_id) / f"{target}.jsonl"


def publish(
    run_id: str,
    staged: list[Path],
    target_summaries: list[dict[str, Any]],
    *,
    collected_at: datetime | None = None,
    base: Path | None = None,
) -> dict[str, Any]:
    """Merge staged per-target files into one dated version, write its summary, move ``latest``.

    Returns the summary (also written as ``summary.json``).
    """
    collected_at = collected_at or datetime.now(UTC)
    root = inventory_dir(base)
    version = root / f"date={collected_at:%Y-%m-%d}" / f"run={safe_run_id(run_id)}"
    records_path = version / "inventory.jsonl"

    def merged() -> Iterator[ResourceRecord]:
        for path in staged:
            if path.exists():
                yield from read_jsonl(path)

    by_cloud_type: dict[str, dict[str, int]] = {}

    def counting() -> Iterator[ResourceRecord]:
        for record in merged():
            bucket = by_cloud_type.setdefault(record.cloud, {})
            bucket[record.resource_type] = bucket.get(record.resource_type, 0) + 1
            yield record

    total = write_jsonl(records_path, counting())
    errors = [error for summary in target_summaries for error in summary.get("errors", [])]
    summary = {
        "run_id": run_id,
        "collected_at": collected_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "path": str(records_path),
        "resources": total,
        "by_cloud": {cloud: dict(sorted(types.items())) for cloud, types in sorted(by_cloud_type.items())},
        "targets": sorted(target_summaries, key=lambda s: s["target"]),
        "complete": not errors,
        "errors": errors,
    }
    atomic_write_text(version / "summary.json", json.dumps(summary, indent=2, sort_keys=True))
    atomic_write_text(
        root / "latest.json",
        json.dumps({k: summary[k] for k in ("run_id", "collected_at", "path", "complete")}, indent=2),
    )
    staging = root / "staging" / safe_run_id(run_id)
    shutil.rmtree(staging, ignore_errors=True)
    return summary


def latest(base: Path | None = None) -> dict[str, Any]:
    """The pointer to the latest published inventory (raises FileNotFoundError when none exists)."""
    return json.loads((inventory_dir(base) / "latest.json").read_text())


def load_latest(base: Path | None = None) -> list[ResourceRecord]:
    return list(read_jsonl(Path(latest(base)["path"])))
