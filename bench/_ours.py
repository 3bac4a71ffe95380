"""Child of the inventory / Prowler benchmarks: run OUR code once in this fresh process, print JSON.

The parent measures this process from the outside (wall time from spawn to exit, peak RSS from the
kernel), the same way it measures the peer. Inside, phases are timed too, for the breakdown.

    python -m bench._ours inventory [--targets a,b] [--services s3,ec2] [--regions us-east-1] [--no-publish] [--as-task]
    python -m bench._ours scan --target aws-prod --regions us-east-1 --rules r1,r2 --findings out.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime
from typing import Any

T0 = time.perf_counter()


def _rss() -> int:
    import psutil

    return int(psutil.Process().memory_info().rss)


def _targets(names: list[str], regions: list[str]) -> list[Any]:
    from include.targets import load_targets

    config = load_targets()
    chosen = config.select(names or None)
    if regions:
        chosen = [t.model_copy(update={"regions": tuple(r for r in t.regions if r in regions) or t.regions})
                  for t in chosen]
    return chosen


def _worker_preload() -> float:
    """Import what an Airflow worker's task process already holds when a task starts; return the seconds.

    Airflow 3's task supervisor forks the task process from itself, after importing the Task SDK and its
    task runner: a runbook task starts with Airflow loaded. ``--as-task`` does that first, so the parent
    can report the process's wall time minus this (the listing path as a runbook task pays it).
    """
    started = time.perf_counter()
    import airflow.sdk.execution_time.task_runner  # noqa: F401

    return time.perf_counter() - started


def inventory(args: argparse.Namespace) -> dict[str, Any]:
    preload_s = _worker_preload() if args.as_task else 0.0
    from include.inventory.collect import collect_target
    from include.inventory.registry import listers_for
    from include.inventory.store import publish, staging_path, write_jsonl
    from include.targets import load_targets

    config = load_targets()
    targets = _targets(args.targets, args.regions)
    services = args.services or None
    for cloud in {t.cloud for t in targets}:
        listers_for(cloud)  # imports the cloud's SDK module now, so "work" below excludes imports
    imported = time.perf_counter()
    rss_imported = _rss()
    run_id = f"bench__{datetime.now(UTC):%Y%m%dT%H%M%S}"
    summaries, staged, per_target = [], [], {}
    from include.inventory.registry import validate_services

    # An unknown service is an error (never silently dropped); a target whose cloud has none is left out.
    per_cloud = validate_services(services, {t.cloud for t in targets}) if services else None
    for target in targets:
        started = time.perf_counter()
        wanted = list(per_cloud[target.cloud]) if per_cloud is not None else None
        if wanted == []:
            continue
        result = collect_target(target, max_workers=config.concurrency(target), services=wanted)
        path = staging_path(run_id, target.name)
        write_jsonl(path, result.records)
        summary = result.summary()
        summary["staged"] = str(path)
        summaries.append(summary)
        staged.append(path)
        per_target[target.name] = {
            "seconds": time.perf_counter() - started,
            "resources": summary["resources"],
            "by_type": summary["by_type"],
            "errors": summary["errors"],
        }
    collected = time.perf_counter()
    published = None
    if not args.no_publish:
        result = publish(run_id, staged, summaries)
        published = {"resources": result["resources"], "path": result["path"], "complete": result["complete"]}
    done = time.perf_counter()
    return {
        "imports_s": imported - T0,
        "worker_preload_s": preload_s,
        "collect_s": collected - imported,
        "publish_s": done - collected,
        "work_s": done - imported,
        "rss_after_imports": rss_imported,
        "targets": per_target,
        "resources": sum(t["resources"] for t in per_target.values()),
        "published": published,
    }


def scan(args: argparse.Namespace) -> dict[str, Any]:
    from include.compliance.engine import scan as run_scan
    from include.compliance.registry import get_rule
    from include.inventory.collect import collect_target
    from include.targets import load_targets

    config = load_targets()
    (target,) = _targets([args.target], args.regions)
    rules = [get_rule(r) for r in args.rules]
    # Only the services the chosen rules read (as Prowler only loads the services of its checks).
    services = sorted({t.split(".")[1] for r in rules for t in r.meta.resource_types})
    from include.inventory.registry import listers_for

    listers_for(target.cloud)  # SDK imports before the timed part
    imported = time.perf_counter()
    rss_imported = _rss()
    result = collect_target(target, max_workers=config.concurrency(target), services=services)
    collected = time.perf_counter()
    findings = run_scan(result.records, [target], now=datetime.now(UTC), rules=rules)
    scanned = time.perf_counter()
    with open(args.findings, "w") as out:
        json.dump([f.to_dict() for f in findings], out)
    return {
        "imports_s": imported - T0,
        "collect_s": collected - imported,
        "scan_s": scanned - collected,
        "work_s": scanned - imported,
        "rss_after_imports": rss_imported,
        "services": services,
        "resources": len(result.records),
        "findings": len(findings),
        "errors": [e.to_dict() for e in result.errors],
    }


def split(text: str) -> list[str]:
    return [x for x in text.split(",") if x]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    inv = sub.add_parser("inventory")
    inv.add_argument("--targets", type=split, default=[])
    inv.add_argument("--services", type=split, default=[])
    inv.add_argument("--regions", type=split, default=[])
    inv.add_argument("--no-publish", action="store_true")
    inv.add_argument("--as-task", action="store_true", help="first import what an Airflow task process holds")
    sc = sub.add_parser("scan")
    sc.add_argument("--target", required=True)
    sc.add_argument("--regions", type=split, default=[])
    sc.add_argument("--rules", type=split, required=True)
    sc.add_argument("--findings", required=True)
    args = parser.parse_args(argv)
    output = inventory(args) if args.command == "inventory" else scan(args)
    print(json.dumps(output, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
