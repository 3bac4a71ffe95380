"""The inventory dataset: dated, versioned JSON Lines with a summary, and a pointer to the latest.

Layout under the data directory (``RUNBOOKS_DATA_DIR``, default ``<project>/data``)::

    inventory/
      staging/<run_id>/<target>.jsonl           # per-target output of the collecting tasks
      date=2026-11-28/run=<run_id>/inventory.jsonl
      date=2026-11-28/run=<run_id>/summary.json
      latest.json                               # {"path": ..., "run_id": ..., "collected_at": ...}

Versions are never overwritten: each run writes its own folder; ``latest.json`` is replaced atomically
(a rename on local disk, one put on an object-store data root: docs/data-root.md).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

from include.fileio import atomic_text_writer, atomic_write_text, remove_tree
from include.paths import DataPath, as_data_path, data_root, safe_segment
from include.records import ResourceRecord


def inventory_dir(base: DataPath | None = None) -> DataPath:
    """The inventory folder under ``base`` (default: the runbooks' data root)."""
    return (base or data_root()) / "inventory"


def write_jsonl(path: DataPath, records: Iterable[ResourceRecord]) -> int:
    """Write records as JSON Lines (atomically: a failed write leaves the old file and no temp file); return how many."""
    count = 0
    with atomic_text_writer(path) as handle:
        for record in records:
            handle.write(record.to_json())
            handle.write("\n")
            count += 1
    return count


def read_jsonl(path: DataPath | str) -> Iterator[ResourceRecord]:
    """The records of one JSON Lines file, in file order."""
    with as_data_path(path).open() as handle:
        for line in handle:
            if line.strip():
                yield ResourceRecord.from_dict(json.loads(line))


def staging_path(run_id: str, target: str, base: DataPath | None = None) -> DataPath:
    """Where the collecting task of ``target`` stages its records for run ``run_id``."""
    return inventory_dir(base) / "staging" / safe_segment(run_id) / f"{target}.jsonl"


def publish(
    run_id: str,
    staged: Sequence[DataPath | str],
    target_summaries: list[dict[str, Any]],
    *,
    collected_at: datetime | None = None,
    base: DataPath | None = None,
) -> dict[str, Any]:
    """Merge staged per-target files into one dated version, write its summary, move ``latest``.

    Returns the summary (also written as ``summary.json``).
    """
    collected_at = collected_at or datetime.now(UTC)
    root = inventory_dir(base)
    version = root / f"date={collected_at:%Y-%m-%d}" / f"run={safe_segment(run_id)}"
    records_path = version / "inventory.jsonl"

    def merged() -> Iterator[ResourceRecord]:
        for path in map(as_data_path, staged):
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
    remove_tree(root / "staging" / safe_segment(run_id))
    return summary


def latest(base: DataPath | None = None) -> dict[str, Any]:
    """The pointer to the latest published inventory (raises FileNotFoundError when none exists)."""
    pointer: dict[str, Any] = json.loads((inventory_dir(base) / "latest.json").read_text())
    return pointer


def load_latest(base: DataPath | None = None) -> list[ResourceRecord]:
    """The records of the latest published inventory."""
    return list(read_jsonl(as_data_path(latest(base)["path"])))
