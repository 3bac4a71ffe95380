"""Inventory wall time and peak memory, seeded estate and a scale estate, side by side with Cloud Custodian.

For each estate (the seeded one from ``config/estate.yaml``, then a scale estate of
``BENCH_SCALE_RESOURCES`` resources, default 10,000, see ``bench/scale_estate.py``), on fresh emulators:

1. **Full inventory** (the figure issue 2 asks for): one process runs ``collect_target`` for every target
   of ``config/targets.yaml`` (each with its configured concurrency), stages each target's records and
   ``publish``-es them, as the ``inventory_estate`` DAG does. Wall time and peak RSS of that process.
2. **Side by side, same work**: OUR AWS inventory restricted to what the peer lists (services ``s3`` and
   ``ec2``, region us-east-1) versus **Cloud Custodian** (pinned, own venv) running filter-less policies
   for ``aws.s3``, ``aws.ec2``, ``aws.ebs``, ``aws.ebs-snapshot`` and ``aws.security-group`` against the
   same moto server (``AWS_ENDPOINT_URL``, fake credentials, ``--region us-east-1``,
   ``--cache-period 0``). Runs alternate (ours, peer, ours, peer ...); each is its own OS process,
   measured from spawn to exit. Ratios are ours / peer of the medians.

Both sides fetch per-bucket detail: ours 11 calls per bucket (location, tags, encryption, versioning,
public access block, policy status, ACL, logging, lifecycle, object lock, one object page),
Custodian 10 (its default ``augment-keys: all``: location, tags, policy, ACL, replication, versioning,
website, logging, notification, lifecycle).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import scale_estate
from bench.common import (
    PROJECT_ROOT,
    RESULTS_DIR,
    BenchError,
    Measurement,
    RatioRow,
    console_table,
    ensure_tool_venv,
    env_int,
    last_json_line,
    machine_info,
    mib,
    ours_env,
    peer_env,
    ratio_table,
    run_measured,
    summarize,
    tool_version,
    write_results,
)
from localdev import emulators as emulators_mod

C7N_VERSION = "0.9.53"
C7N_POLICIES = {
    "s3-buckets": "aws.s3",
    "ec2-instances": "aws.ec2",
    "ebs-volumes": "aws.ebs",
    "ebs-snapshots": "aws.ebs-snapshot",
    "security-groups": "aws.security-group",
}
#: Our resource types that correspond to each Custodian policy (for the "same resources listed" check).
OUR_TYPES = {
    "s3-buckets": "aws.s3.bucket",
    "ec2-instances": "aws.ec2.instance",
    "ebs-volumes": "aws.ec2.volume",
    "ebs-snapshots": "aws.ec2.snapshot",
    "security-groups": "aws.ec2.security_group",
}
REGION = "us-east-1"


def c7n_policy_file(folder: Path, account: str) -> Path:
    """Filter-less policies. Snapshots get the owner-id query our lister also sends: moto reports its ~1,300
    public AMI snapshots as owned by the caller under ``OwnerIds=self`` (AWS would not)."""
    lines = ["policies:"]
    for name, resource in C7N_POLICIES.items():
        lines += [f"  - name: {name}", f"    resource: {resource}"]
        if resource == "aws.ebs-snapshot":
            lines += ["    query:", f"      - owner-id: '{account}'"]
    path = folder / "c7n-inventory.yml"
    path.write_text("\n".join(lines) + "\n")
    return path


def c7n_counts(output_dir: Path) -> dict[str, int]:
    """Resources each policy listed, from Custodian's ``<policy>/resources.json``."""
    counts = {}
    for name in C7N_POLICIES:
        path = output_dir / name / "resources.json"
        counts[name] = len(json.loads(path.read_text())) if path.exists() else -1
    return counts


def c7n_policy_seconds(output_dir: Path) -> dict[str, float]:
    """Custodian's own per-policy execution time (``metadata.json``)."""
    seconds = {}
    for name in C7N_POLICIES:
        path = output_dir / name / "metadata.json"
        if path.exists():
            meta = json.loads(path.read_text())
            seconds[name] = float(meta.get("execution", {}).get("duration", 0.0))
    return seconds


def _emulators(work: Path) -> emulators_mod.Emulators:
    return emulators_mod.start(log_dir=work / "emulator-logs", timeout=60)


def seed(env: dict[str, str]) -> dict[str, Any]:
    """Seed ``config/estate.yaml`` in a subprocess (through the project's own seeding code)."""
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "localdev.seed"], env=env, cwd=PROJECT_ROOT,
        capture_output=True, text=True, timeout=900, check=False,
    )
    if done.returncode != 0:
        raise BenchError(f"seeding failed:\n{(done.stderr or done.stdout)[-3000:]}")
    return {"seconds": time.perf_counter() - started, "report": done.stderr.strip().splitlines()[-1:]}


class Runner:
    """Runs and records the measured processes of one estate."""

    def __init__(self, emulators: emulators_mod.Emulators, work: Path, c7n: Path) -> None:
        self.emulators = emulators
        self.work = work
        self.c7n = c7n
        self.ours_env = ours_env(emulators.environment(), work)
        self.peer_env = peer_env(emulators.aws_endpoint)
        self.policies = c7n_policy_file(work, emulators_mod.AWS_LOCAL_ACCOUNT)
        self.count = 0

    def ours(self, *args: str) -> tuple[Measurement, dict[str, Any]]:
        measured = run_measured([sys.executable, "-m", "bench._ours", *args], env=self.ours_env, cwd=PROJECT_ROOT)
        if not measured.ok:
            raise BenchError(f"our inventory failed ({measured.returncode}):\n{measured.tail()}")
        return measured, last_json_line(measured.stdout)

    def custodian(self) -> tuple[Measurement, dict[str, Any]]:
        self.count += 1
        out = self.work / f"c7n-out-{self.count}"
        argv = [str(self.c7n), "run", "--region", REGION, "--cache-period", "0", "-s", str(out), str(self.policies)]
        measured = run_measured(argv, env=self.peer_env, cwd=self.work)
        if not measured.ok:
            raise BenchError(f"custodian failed ({measured.returncode}):\n{measured.tail()}")
        return measured, {"counts": c7n_counts(out), "policy_seconds": c7n_policy_seconds(out)}


def measure_estate(label: str, runner: Runner, repeats: int, warmup: bool) -> dict[str, Any]:
    """Full inventory x repeats, then ours-vs-Custodian pairs x repeats (after an unrecorded warm-up pair)."""
    if warmup:
        print(f"[bench inventory] {label}: warm-up (not recorded)", file=sys.stderr, flush=True)
        runner.ours("inventory", "--no-publish")
        runner.custodian()
    full: list[dict[str, Any]] = []
    for i in range(repeats):
        print(f"[bench inventory] {label}: full inventory {i + 1}/{repeats}", file=sys.stderr, flush=True)
        measured, data = runner.ours("inventory")
        full.append({"measurement": measured.brief(), "result": data})
    pairs: list[dict[str, Any]] = []
    for i in range(repeats):
        print(f"[bench inventory] {label}: ours vs custodian {i + 1}/{repeats}", file=sys.stderr, flush=True)
        side_by_side = ("inventory", "--targets", _aws_target(), "--services", "s3,ec2", "--regions", REGION,
                        "--no-publish")
        ours_m, ours_d = runner.ours(*side_by_side)
        peer_m, peer_d = runner.custodian()
        # The same listing as a runbook task runs it: Airflow already imported by the worker (see _ours.py).
        task_m, task_d = runner.ours(*side_by_side, "--as-task")
        pairs.append({"ours": {"measurement": ours_m.brief(), "result": ours_d},
                      "peer": {"measurement": peer_m.brief(), "result": peer_d},
                      "ours_as_task": {"measurement": task_m.brief(), "result": task_d}})
    return {"full": full, "pairs": pairs}


def _aws_target() -> str:
    from include.targets import load_targets

    targets = load_targets().select(cloud="aws")
    if not targets:
        raise BenchError("config/targets.yaml has no aws target")
    return targets[0].name


def rows_for(label: str, data: dict[str, Any]) -> list[RatioRow]:
    pairs = data["pairs"]

    def stat(values: list[float]) -> tuple[float, tuple[float, float]]:
        s = summarize(values)
        return s["median"], (s["min"], s["max"])

    ours_wall, ours_wall_sp = stat([p["ours"]["measurement"]["wall_s"] for p in pairs])
    peer_wall, peer_wall_sp = stat([p["peer"]["measurement"]["wall_s"] for p in pairs])
    ours_rss, ours_rss_sp = stat([mib(p["ours"]["measurement"]["peak_rss"]) for p in pairs])
    peer_rss, peer_rss_sp = stat([mib(p["peer"]["measurement"]["peak_rss"]) for p in pairs])
    ours_work, ours_work_sp = stat([p["ours"]["result"]["work_s"] for p in pairs])
    peer_work, peer_work_sp = stat([sum(p["peer"]["result"]["policy_seconds"].values()) for p in pairs])
    ours_up, ours_up_sp = stat([p["ours"]["measurement"]["wall_s"] - p["ours"]["result"]["work_s"] for p in pairs])
    peer_up, peer_up_sp = stat([p["peer"]["measurement"]["wall_s"] - sum(p["peer"]["result"]["policy_seconds"].values())
                                for p in pairs])
    tasks = [p["ours_as_task"] for p in pairs if "ours_as_task" in p]
    as_task = []
    if tasks:
        task_wall, task_wall_sp = stat([t["measurement"]["wall_s"] - t["result"]["worker_preload_s"] for t in tasks])
        preload = summarize([t["result"]["worker_preload_s"] for t in tasks])["median"]
        as_task = [RatioRow(f"{label}: wall time as a runbook task (spawn to exit - worker's Airflow import)",
                            task_wall, peer_wall, "s", task_wall_sp, peer_wall_sp,
                            note=f"Airflow's task runner imported first ({preload:.1f} s), as a worker holds it")]
    ours_n = pairs[0]["ours"]["result"]["resources"]
    peer_n = sum(v for v in pairs[0]["peer"]["result"]["counts"].values() if v > 0)
    return [
        RatioRow(f"{label}: wall time, process spawn to exit", ours_wall, peer_wall, "s", ours_wall_sp, peer_wall_sp),
        *as_task,
        RatioRow(f"{label}: listing work only (after imports)", ours_work, peer_work, "s", ours_work_sp, peer_work_sp,
                 note="ours: collect_target; Custodian: sum of its per-policy durations"),
        RatioRow(f"{label}: start-up and exit (wall - work)", ours_up, peer_up, "s", ours_up_sp, peer_up_sp,
                 note="interpreter, imports (ours: Airflow + amazon provider), output"),
        RatioRow(f"{label}: peak RSS", ours_rss, peer_rss, "MiB", ours_rss_sp, peer_rss_sp),
        RatioRow(f"{label}: resources listed", ours_n, peer_n, "",
                 note="ours incl. aws.ec2.region_settings (1 per region)"),
    ]


def full_rows(label: str, data: dict[str, Any]) -> list[list[str]]:
    full = data["full"]
    wall = summarize([f["measurement"]["wall_s"] for f in full])
    work = summarize([f["result"]["work_s"] for f in full])
    rss = summarize([mib(f["measurement"]["peak_rss"]) for f in full])
    resources = full[0]["result"]["resources"]
    errors = sum(len(t["errors"]) for t in full[0]["result"]["targets"].values())
    per_target = ", ".join(
        f"{name} {t['resources']} in {t['seconds']:.1f}s" for name, t in full[0]["result"]["targets"].items()
    )
    return [[
        label, str(resources), f"{wall['median']:.2f} [{wall['min']:.2f}-{wall['max']:.2f}]",
        f"{work['median']:.2f}", f"{rss['median']:.0f} [{rss['min']:.0f}-{rss['max']:.0f}]", str(errors), per_target,
    ]]


def type_check(data: dict[str, Any]) -> list[str]:
    """Lines comparing what each side listed, per resource kind (they must agree for the ratio to mean much)."""
    pair = data["pairs"][0]
    by_type: dict[str, int] = {}
    for target in pair["ours"]["result"]["targets"].values():
        for kind, count in target["by_type"].items():
            by_type[kind] = by_type.get(kind, 0) + count
    lines = []
    for policy, ours_type in OUR_TYPES.items():
        ours_n = by_type.get(ours_type, 0)
        peer_n = pair["peer"]["result"]["counts"].get(policy, -1)
        flag = "" if ours_n == peer_n else "  <- differs"
        lines.append(f"| {policy} ({C7N_POLICIES[policy]}) | {ours_type} | {ours_n} | {peer_n} |{flag}")
    return lines


def render(meta: dict[str, Any], estates: dict[str, dict[str, Any]]) -> str:
    lines = [
        "# Inventory: wall time and peak memory (seeded and scale estates) vs Cloud Custodian",
        "",
        (f"Measured {meta['machine']['date']} on {meta['machine']['cores']} cores, shared with other work "
        f"(load average at start {meta['machine']['load_average_at_start']}): treat single figures as noisy, "
        "compare ratios within this run. Median [min-max] of "
        f"{meta['repeats']} (seeded) / {meta['scale_repeats']} (scale) runs; each run is its own process."),
        "",
        f"Command: `{meta['command']}`  ·  Custodian {meta['c7n_version']} in `bench/.venv-c7n`",
        "",
        "## Full inventory (every target of config/targets.yaml, then publish)",
        "",
        "| estate | resources | wall s | work s (after imports) | peak RSS MiB | errors | per target |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for label, data in estates.items():
        for row in full_rows(label, data["measure"]):
            lines.append("| " + " | ".join(row) + " |")
    problems = [
        f"- **{label}**, {kind} run {index + 1}: {e['target']} {e['service']} {e['region']}: {e['kind']}: {e['message']}"
        for label, data in estates.items()
        for kind, runs in (("full", data["measure"]["full"]),
                           ("side-by-side", [p["ours"] for p in data["measure"]["pairs"]]))
        for index, run in enumerate(runs)
        for t in run["result"]["targets"].values()
        for e in t["errors"]
    ]
    if problems:
        lines += ["", "**Incomplete runs** (the collector recorded these errors; that run's figures cover less):", ""]
        lines += problems
    lines += ["", "## Side by side: AWS S3 + EC2 in us-east-1, ours vs Cloud Custodian", ""]
    rows = [row for label, data in estates.items() for row in rows_for(label, data["measure"])]
    lines.append(ratio_table(rows, ours="ours", peer="custodian"))
    for label, data in estates.items():
        lines += ["", f"What each side listed ({label}):", "",
                  "| Custodian policy | our type | ours | Custodian |", "|---|---|---:|---:|"]
        lines += type_check(data["measure"])
        lines += ["", f"Estate set-up ({label}): {json.dumps(data.get('setup', {}), default=str)}"]
    return "\n".join(lines)


def run(repeats: int | None = None, scale_total: int | None = None, scale_repeats: int | None = None) -> dict[str, Any]:
    repeats = repeats or env_int("BENCH_REPEATS", 3)
    scale_repeats = scale_repeats or env_int("BENCH_SCALE_REPEATS", 1)
    scale_total = scale_total or env_int("BENCH_SCALE_RESOURCES", 10_000)
    c7n = ensure_tool_venv("c7n", [f"c7n=={C7N_VERSION}"], "custodian")
    estates: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-inventory-") as tmp:
        work = Path(tmp)
        for label in ("seeded", f"scale {scale_total}"):
            emulators = _emulators(work)
            try:
                runner = Runner(emulators, work, c7n)
                if label == "seeded":
                    setup = seed(runner.ours_env)
                else:
                    spec = scale_estate.spec_for(scale_total)
                    print(f"[bench inventory] building scale estate: {spec}", file=sys.stderr, flush=True)
                    setup = scale_estate.build(emulators, spec)
                measured = measure_estate(
                    label, runner, repeats if label == "seeded" else scale_repeats, warmup=label == "seeded"
                )
                estates[label] = {"setup": setup, "measure": measured}
            finally:
                emulators_mod.stop(emulators)
    meta = {
        "machine": machine_info(),
        "repeats": repeats,
        "scale_repeats": scale_repeats,
        "scale_total": scale_total,
        "command": "python -m bench inventory",
        "c7n_version": tool_version(c7n, "version"),
    }
    result = {"meta": meta, "estates": estates}
    markdown = render(meta, estates)
    write_results("inventory", result, markdown)
    rows = [row for label, data in estates.items() for row in rows_for(label, data["measure"])]
    print(console_table(
        ["measure", "ours", "custodian", "ours/custodian"],
        [[r.label, f"{r.ours:.2f}", "-" if r.peer is None else f"{r.peer:.2f}",
          "-" if r.ratio is None else f"{r.ratio:.2f}"] for r in rows],
    ))
    for label, data in estates.items():
        for run in data["measure"]["full"] + [p["ours"] for p in data["measure"]["pairs"]]:
            for target in run["result"]["targets"].values():
                for e in target["errors"]:
                    print(f"[bench inventory] INCOMPLETE {label}: {e['target']} {e['service']} {e['region']}: "
                          f"{e['kind']}: {e['message'][:200]}", file=sys.stderr)
    print(f"[bench inventory] results: {RESULTS_DIR / 'inventory.md'}", file=sys.stderr)
    return result
