"""One results table for one ``python -m bench`` run: ``bench/results/summary.md`` and ``summary.json``.

Built from what each step returned *in this run* (never from older result files), so every ratio in the
table was measured on the same machine, the same day, under the same load: machine (cores, CPU model,
RAM, load average), versions (Python, Airflow, its providers, moto, rclone, the peers) and date, then one
row per comparison: ours, the peer (or the issue's goal where no peer runs the same thing), the ratio
ours / peer and the goal for that ratio. Steps not run (or failed) are listed as such.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from bench.common import BENCH_DIR, RESULTS_DIR

#: Python distributions whose versions the table names (when installed in the project's venv).
PACKAGES = (
    "apache-airflow", "apache-airflow-task-sdk", "apache-airflow-providers-amazon",
    "apache-airflow-providers-google", "apache-airflow-providers-microsoft-azure",
    "apache-airflow-providers-standard", "moto", "boto3", "gcp-storage-emulator", "great-expectations",
)
#: The peers, each in its own venv made by the bench (bench/.venv-<name>): distribution name per venv.
PEER_VENVS = {"c7n": "c7n", "prowler": "prowler"}


@dataclass
class Row:
    """One comparison: ``ratio`` = ours / peer, judged against ``goal`` (``<= x`` or ``>= x``)."""

    step: str
    measure: str
    ours: float | None
    peer: float | None
    unit: str
    peer_name: str
    goal: str
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.ours is None or not self.peer:
            return None
        return self.ours / self.peer

    @property
    def met(self) -> bool | None:
        value = self.ratio
        match = re.fullmatch(r"\s*(<=|>=|<|>)\s*([0-9.]+)\s*", self.goal)
        if value is None or not match:
            return None
        op, bound = match.group(1), float(match.group(2))
        return {"<=": value <= bound, ">=": value >= bound, "<": value < bound, ">": value > bound}[op]

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ratio": self.ratio, "met": self.met}


# ---- machine and versions ----------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                info["ram_gib"] = round(int(line.split()[1]) / 2**20, 1)
                break
    except OSError:
        pass
    return info


def _venv_version(venv: Path, distribution: str) -> str | None:
    """A distribution's version in another venv, read from its ``*.dist-info`` folder (no subprocess)."""
    pattern = re.compile(rf"^{re.escape(distribution).replace('-', '[-_]')}-([^-]+)\.dist-info$", re.IGNORECASE)
    for site in venv.glob("lib/python*/site-packages"):
        for entry in site.iterdir():
            match = pattern.match(entry.name)
            if match:
                return match.group(1)
    return None


def _rclone_version() -> str | None:
    rclone = shutil.which("rclone")
    if not rclone:
        return None
    try:
        done = subprocess.run([rclone, "version"], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    first = (done.stdout or "").strip().splitlines()
    return first[0].replace("rclone ", "") if first else None


def versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    found["rclone"] = _rclone_version()
    for venv, distribution in PEER_VENVS.items():
        found[f"{distribution} (bench/.venv-{venv})"] = _venv_version(BENCH_DIR / f".venv-{venv}", distribution)
    return found


# ---- rows per step (from the dict each step's run() returned) -----------------------------------------


def parse_rows(result: Mapping[str, Any]) -> list[Row]:
    files = result["files"]
    peer = next(f for f in files if f["is_peer"])
    runbooks = [f for f in files if not f.get("is_reference", f["is_peer"])]
    worst = max(runbooks, key=lambda f: f["total_s"]["median"])
    best = min(runbooks, key=lambda f: f["total_s"]["median"])
    rows = [
        Row("parse", f"DAG parse, slowest runbook ({worst['file']})", worst["total_s"]["median"],
            peer["total_s"]["median"], "s", "empty DAG", "<= 1.5"),
        Row("parse", f"DAG parse, fastest runbook ({best['file']})", best["total_s"]["median"],
            peer["total_s"]["median"], "s", "empty DAG", "<= 1.5"),
    ]
    for ref in files:
        if ref.get("is_reference") and not ref["is_peer"]:
            rows.append(Row("parse", f"DAG parse, {ref['file']} (reference: the floor of any @task file)",
                            ref["total_s"]["median"], peer["total_s"]["median"], "s", "empty DAG", "-"))
    return rows


def inventory_rows(result: Mapping[str, Any]) -> list[Row]:
    from bench.scale import rows_for

    rows = []
    for label, data in result["estates"].items():
        for r in rows_for(label, data["measure"]):
            if "wall time" in r.label or "listing work" in r.label:
                rows.append(Row("inventory", r.label, r.ours, r.peer, r.unit, "Cloud Custodian",
                                "<= 1.0" if "wall time" in r.label else "-", r.note))
    return rows


def prowler_rows(result: Mapping[str, Any]) -> list[Row]:
    from bench.prowler import _ratio_rows

    return [
        Row("compliance", r.label, r.ours, r.peer, r.unit, "Prowler",
            "<= 1.0" if "wall time" in r.label else "-",
            "no goal in the issue; not slower than the peer" if "wall time" in r.label else r.note)
        for r in _ratio_rows(result["estates"])
        if "wall time" in r.label or "peak RSS" in r.label
    ]


def backup_rows(result: Mapping[str, Any]) -> list[Row]:
    rows = []
    summary = result["summary"]
    sizes = result.get("sizes", {})
    for key, item in sorted(summary.items()):
        if not isinstance(item, Mapping):
            continue
        dest = key.split("->")[-1]
        if key.startswith(("small", "large")) and "ours_mb_s" in item:
            count = sizes.get(f"{key.split('->')[0]}_count")
            size = sizes.get(f"{key.split('->')[0]}_size")
            what = (f"{count} x {size // 2**20} MiB" if size >= 2**20 else f"{count} x {size // 1024} KiB") \
                if count and size else key.split("->")[0]
            rows.append(Row("backup", f"throughput S3 -> {dest}, {what}", item["ours_mb_s"], item["rclone_mb_s"],
                            "MB/s", "rclone", ">= 1.2"))
        elif key.startswith("nochange") and "ours_s" in item:
            rows.append(Row("backup", f"no-change pass S3 -> {dest}, {sizes.get('nochange_count', '?')} objects",
                            item["ours_s"], item["rclone_s"], "s", "rclone", "<= 1.0"))
        elif key == "memory" and "ours_peak_rss_mb" in item:
            rows.append(Row("backup", f"peak RSS backing up one {sizes.get('huge_size', 0) // 2**20} MiB object",
                            item["ours_peak_rss_mb"], float(item.get("limit_mb", 300)), "MB", "goal (300 MB)",
                            "< 1.0", f"the same process without the object: {item.get('ours_floor_peak_rss_mb', 0):.0f} MB; "
                                     f"rclone {item.get('rclone_peak_rss_mb', 0):.0f} MB"))
    return rows


def rto_rows(result: Mapping[str, Any]) -> list[Row]:
    from bench.rto import GOAL_OURS, GOAL_RTO

    summary = result["summary"]
    n = summary["rto_seconds"]["n"]
    return [
        Row("rto", f"failover_service RTO (median of {n} drills)", summary["rto_seconds"]["median"], GOAL_RTO, "s",
            f"goal ({GOAL_RTO:.0f} s)", "< 1.0", "no peer runs failovers here"),
        Row("rto", "failover_service, our steps only", summary["our_steps_seconds"]["median"], GOAL_OURS, "s",
            f"goal ({GOAL_OURS:.0f} s)", "< 1.0"),
    ]


def intake_rows(result: Mapping[str, Any]) -> list[Row]:
    rate = result["rate_per_s"]
    p99 = result["latency_all"]["p99_ms"]
    label = f"{result['server']}, {result['database']}, {result['workers']} worker(s)"
    return [
        Row("intake", f"webhook answer p99 at {rate}/s offered ({label})", p99, 50.0, "ms", "goal (50 ms)", "< 1.0",
            f"p50 {result['latency_all']['p50_ms']:.0f} ms; exactly once: {result['exactly_once']}"),
        Row("intake", f"webhook deliveries answered per second at {rate}/s offered", result["achieved_rate_per_s"],
            float(rate), "/s", "offered rate", ">= 0.95"),
    ]


def provisioning_rows(result: Mapping[str, Any]) -> list[Row]:
    rows = []
    for phase, item in result["summary"].items():
        rows.append(Row("provisioning", f"{phase}, {result['resources']} resources (calls {item['ours_calls']:.0f} / "
                        f"{item['minimal_calls']:.0f})", item["ours_s"], item["minimal_s"], "s", "minimal SDK calls",
                        f"<= {item.get('goal', 1.3)}"))
    return rows


EXTRACTORS: dict[str, Callable[[Mapping[str, Any]], list[Row]]] = {
    "parse": parse_rows,
    "inventory": inventory_rows,
    "prowler": prowler_rows,
    "backup": backup_rows,
    "rto": rto_rows,
    "intake": intake_rows,
    "provisioning": provisioning_rows,
}


# ---- the table ------------------------------------------------------------------------------------------


def _num(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    digits = 3 if unit == "s" and value < 1 else (1 if value < 100 else 0)
    return f"{value:,.{digits}f} {unit}".strip()


def build(
    results: Mapping[str, Mapping[str, Any]],
    *,
    steps: list[str],
    failed: Mapping[str, str],
    seconds: Mapping[str, float],
    settings: Mapping[str, str],
    load_before: list[float],
) -> dict[str, Any]:
    """The summary as data: machine, versions, settings, rows, and what was not measured."""
    rows: list[Row] = []
    problems = dict(failed)
    for step in steps:
        if step not in results:
            continue
        try:
            rows += EXTRACTORS[step](results[step])
        except (KeyError, TypeError, ValueError, StopIteration, ImportError) as exc:
            problems[step] = f"no summary row: {type(exc).__name__}: {exc}"
    info = machine()
    info["load_average_at_start"] = load_before
    return {
        "machine": info,
        "versions": versions(),
        "settings": dict(settings),
        "steps": {s: {"seconds": round(seconds.get(s, 0.0), 1), "ok": s in results and s not in failed}
                  for s in steps},
        "rows": [row.as_dict() for row in rows],
        "not_measured": problems,
    }


def render(summary: Mapping[str, Any]) -> str:
    m = summary["machine"]
    versions_text = ", ".join(f"{k} {v}" for k, v in summary["versions"].items() if v)
    settings = ", ".join(f"`{k}={v}`" for k, v in summary["settings"].items()) or "defaults"
    total = sum(s["seconds"] for s in summary["steps"].values())
    per_step = ", ".join(f"{name} {step['seconds']:.0f} s" for name, step in summary["steps"].items())
    lines = [
        "# Benchmarks: one run, every comparison",
        "",
        f"- **Date:** {m['date']}; run took {total / 60:.1f} min "
        f"({per_step})",
        f"- **Machine:** {m.get('cpu_count')} CPUs ({m.get('cpu_model', '?')}), {m.get('ram_gib', '?')} GiB RAM, "
        f"{m['platform']}; load average {m['load_average_at_start']} at start, {m['load_average']} at the end "
        "(a shared machine: read the ratios, not the seconds)",
        f"- **Versions:** {versions_text}",
        f"- **Settings:** {settings}",
        "",
        "Ratio = ours / peer, each pair measured side by side in this run (details: `bench/results/<step>.md`).",
        "",
        "| step | measure | ours | peer | peer value | ratio | goal | met |",
        "|---|---|---:|---|---:|---:|---:|---|",
    ]
    for row in summary["rows"]:
        ratio = "-" if row["ratio"] is None else f"{row['ratio']:.2f}"
        met = {True: "yes", False: "**no**", None: "-"}[row["met"]]
        measure = row["measure"] + (f" ({row['note']})" if row["note"] else "")
        lines.append(
            f"| {row['step']} | {measure} | {_num(row['ours'], row['unit'])} | {row['peer_name']} | "
            f"{_num(row['peer'], row['unit'])} | {ratio} | {row['goal']} | {met} |"
        )
    if summary["not_measured"]:
        lines += ["", "Not measured in this run:", ""]
        lines += [f"- {step}: {why}" for step, why in summary["not_measured"].items()]
    return "\n".join(lines)


def write(summary: Mapping[str, Any]) -> tuple[Path, Path]:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    json_path, md_path = RESULTS_DIR / "summary.json", RESULTS_DIR / "summary.md"
    json_path.write_text(json.dumps(summary, indent=2, sort_keys=True, default=str) + "\n")
    md_path.write_text(render(summary).rstrip() + "\n")
    return json_path, md_path
