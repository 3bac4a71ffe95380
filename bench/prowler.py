"""Compliance scan side by side with Prowler: wall time, peak memory, and every verdict that differs.

For each estate (the seeded one, then the scale estate unless ``BENCH_PROWLER_SCALE=0``), on fresh
emulators:

- **ours**: one process runs ``collect_target`` on the AWS target restricted to us-east-1 (only the
  services the compared rules read) and ``include.compliance.engine.scan`` with exactly the rules of
  ``bench/prowler_map.yaml``; it writes the findings as JSON;
- **Prowler** (pinned 5.x, own venv ``bench/.venv-prowler``): ``prowler aws --region us-east-1 --checks
  <the mapped checks> --scan-unused-services -M json-ocsf csv`` against the same moto server
  (``AWS_ENDPOINT_URL``, fake credentials); its OCSF output is parsed into (check, resource, status).

Wall time is spawn-to-exit of each process; Prowler's own start-up (loading every check's metadata and
every compliance framework: tens of seconds, whatever the estate) is also reported apart, from the
timestamps of its log. Verdicts are paired per (our rule, resource) through the map's ``match`` and every
difference is listed in ``bench/results/prowler-diff.md`` with the explanation found for it.
"""

from __future__ import annotations

import csv
import fnmatch
import io
import json
import re
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from bench import scale_estate
from bench.common import (
    BENCH_DIR,
    PROJECT_ROOT,
    RESULTS_DIR,
    BenchError,
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
from bench.scale import seed
from localdev import emulators as emulators_mod

PROWLER_VERSION = "5.46.0"
MAP_FILE = BENCH_DIR / "prowler_map.yaml"
REGION = "us-east-1"
#: Regions our findings may carry and still be in Prowler's scope (one audited region + global services).
IN_SCOPE_REGIONS = frozenset({REGION, "global"})


# ---- the map ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MapEntry:
    rule: str
    prowler: tuple[str, ...]
    match: str  # resource | account | region
    note: str = ""


@dataclass(frozen=True)
class Explanation:
    rule: str  # our rule id or "*"
    resource: str  # fnmatch pattern over the resource (ARN / account / region)
    ours: str  # pass | fail | none | *
    prowler: str  # PASS | FAIL | MANUAL | none | *
    why: str

    def matches(self, rule: str, resource: str, ours: str, prowler: str) -> bool:
        return (
            self.rule in ("*", rule)
            and fnmatch.fnmatchcase(resource, self.resource)
            and self.ours in ("*", ours)
            and self.prowler in ("*", prowler)
        )


def load_map(path: Path = MAP_FILE) -> tuple[list[MapEntry], list[Explanation]]:
    data = yaml.safe_load(path.read_text())
    entries = []
    for item in data.get("rules", []):
        match = item.get("match", "resource")
        if match not in ("resource", "account", "region"):
            raise BenchError(f"{path}: rule {item.get('rule')}: unknown match {match!r}")
        entries.append(MapEntry(str(item["rule"]), tuple(item["prowler"]), match, str(item.get("note", ""))))
    explanations = [
        Explanation(str(e.get("rule", "*")), str(e.get("resource", "*")), str(e.get("ours", "*")),
                    str(e.get("prowler", "*")), str(e["why"]))
        for e in data.get("explanations", [])
    ]
    return entries, explanations


def prowler_checks(entries: Iterable[MapEntry]) -> list[str]:
    return sorted({check for entry in entries for check in entry.prowler})


# ---- Prowler output --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProwlerResult:
    """One Prowler finding, reduced to what the comparison needs."""

    check_id: str
    resource_uid: str
    status: str  # PASS | FAIL | MANUAL
    region: str
    account: str
    detail: str
    muted: bool = False


def parse_ocsf(text: str) -> list[ProwlerResult]:
    """Prowler's ``json-ocsf`` output (a JSON array of OCSF Detection Findings)."""
    data = json.loads(text) if text.strip() else []
    results = []
    for item in data:
        resources = item.get("resources") or [{}]
        resource = resources[0]
        results.append(
            ProwlerResult(
                check_id=str(item.get("metadata", {}).get("event_code") or item.get("finding_info", {}).get("uid", "")),
                resource_uid=str(resource.get("uid") or resource.get("name") or ""),
                status=str(item.get("status_code", "")).upper(),
                region=str(resource.get("region") or item.get("cloud", {}).get("region") or ""),
                account=str(item.get("cloud", {}).get("account", {}).get("uid", "")),
                detail=str(item.get("status_detail", "")),
                muted=str(item.get("status", "")).lower() == "suppressed",
            )
        )
    return results


def parse_csv(text: str) -> list[ProwlerResult]:
    """Prowler's ``csv`` output (semicolon-separated, one finding per row)."""
    reader = csv.DictReader(io.StringIO(text), delimiter=";")
    return [
        ProwlerResult(
            check_id=row["CHECK_ID"],
            resource_uid=row.get("RESOURCE_UID") or row.get("RESOURCE_NAME") or "",
            status=row["STATUS"].upper(),
            region=row.get("REGION", ""),
            account=row.get("ACCOUNT_UID", ""),
            detail=row.get("STATUS_EXTENDED", ""),
            muted=str(row.get("MUTED", "")).lower() == "true",
        )
        for row in reader
    ]


_LOG_LINE = re.compile(
    r'^\{"timestamp": "(?P<ts>[^"]+)".*?"level": "(?P<level>[A-Z]+)".*?"message": "(?P<message>.*)"\}\s*$',
    re.DOTALL,
)


def _log_records(log_text: str) -> list[tuple[float, str, str]]:
    """(epoch, level, message) of every line of Prowler's ``--log-file`` (JSON lines).

    Prowler writes messages unescaped: a message holding a quote (an endpoint URL in an error) or a newline
    (an unparsable response body) is not valid JSON and may span lines. Lines are grouped into records at
    each ``{"timestamp"`` and those that do not parse are read with a regular expression.
    """
    chunks: list[str] = []
    for line in log_text.splitlines():
        if line.startswith('{"timestamp"') or not chunks:
            chunks.append(line)
        else:
            chunks[-1] += "\n" + line
    records = []
    for line in chunks:
        try:
            item = json.loads(line)
            fields = (str(item["timestamp"]), str(item.get("level", "")), str(item.get("message", "")))
        except (ValueError, KeyError, TypeError):
            found = _LOG_LINE.match(line)
            if not found:
                continue
            fields = (found["ts"], found["level"], found["message"])
        try:
            stamp = datetime.strptime(fields[0], "%Y-%m-%d %H:%M:%S,%f").timestamp()
        except ValueError:
            continue
        records.append((stamp, fields[1], fields[2]))
    return records


def prowler_phase_times(log_text: str, marker: str = "Initializing AWS provider") -> tuple[float, float] | None:
    """(epoch of ``marker``, epoch of the last log line) from Prowler's ``--log-file``; None if absent."""
    records = _log_records(log_text)
    start = next((stamp for stamp, _, message in records if marker in message), None)
    if start is None:
        return None
    return start, records[-1][0]


def prowler_log_errors(log_text: str) -> list[str]:
    """ERROR / CRITICAL messages of the log, de-duplicated, in order."""
    seen: dict[str, None] = {}
    for _, level, message in _log_records(log_text):
        if level in ("ERROR", "CRITICAL"):
            seen.setdefault(message[:300], None)
    return list(seen)


# ---- pairing verdicts ------------------------------------------------------------------------------


def resource_key(uid: str) -> str:
    """A comparable resource key: ``service:resource`` of an ARN (region and account dropped), else the uid.

    Our snapshot ARNs carry no account (``arn:aws:ec2:<region>::snapshot/<id>``) while Prowler's do; bucket
    ARNs carry neither. Resource ids are unique within one estate, so (service, resource) suffices.
    """
    if uid.startswith("arn:"):
        parts = uid.split(":", 5)
        if len(parts) == 6:
            return f"{parts[2]}:{parts[5]}"
    return uid


def _key(entry: MapEntry, resource_uid: str, region: str, account: str) -> str:
    if entry.match == "account":
        return f"account:{account}"
    if entry.match == "region":
        return f"region:{region}"
    return resource_key(resource_uid)


def _combine(statuses: Iterable[str]) -> str:
    values = set(statuses)
    for status in ("FAIL", "PASS", "MANUAL"):
        if status in values:
            return status
    return next(iter(values)) if values else "none"


def prowler_verdicts(results: Iterable[ProwlerResult], entries: Sequence[MapEntry]) -> dict[tuple[str, str], dict[str, Any]]:
    """(our rule, key) -> combined Prowler status, with the findings behind it."""
    by_check: dict[str, list[MapEntry]] = {}
    for entry in entries:
        for check in entry.prowler:
            by_check.setdefault(check, []).append(entry)
    found: dict[tuple[str, str], list[ProwlerResult]] = {}
    for result in results:
        for entry in by_check.get(result.check_id, []):
            found.setdefault((entry.rule, _key(entry, result.resource_uid, result.region, result.account)), []).append(result)
    return {
        key: {
            "status": _combine(r.status for r in items),
            "resource": items[0].resource_uid,
            "detail": " | ".join(sorted({f"{r.check_id}: {r.status}: {r.detail}" for r in items}))[:600],
        }
        for key, items in found.items()
    }


def our_verdicts(findings: Iterable[Mapping[str, Any]], entries: Sequence[MapEntry]) -> tuple[dict[tuple[str, str], dict[str, Any]], int]:
    """(our rule, key) -> our status for findings in Prowler's scope; and how many were out of scope."""
    by_rule = {entry.rule: entry for entry in entries}
    grouped: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    out_of_scope = 0
    for finding in findings:
        entry = by_rule.get(finding["rule_id"])
        if entry is None:
            continue
        if finding["region"] not in IN_SCOPE_REGIONS:
            out_of_scope += 1
            continue
        key = _key(entry, finding["resource_id"], finding["region"], finding["account"])
        grouped.setdefault((entry.rule, key), []).append(finding)
    verdicts = {}
    for key, items in grouped.items():
        statuses = {str(f["status"]).lower() for f in items}
        status = "fail" if "fail" in statuses else ("pass" if "pass" in statuses else min(statuses))
        verdicts[key] = {
            "status": status,
            "resource": items[0]["resource_id"],
            "detail": " | ".join(sorted({str(f.get("detail", "")) for f in items}))[:600],
        }
    return verdicts, out_of_scope


@dataclass
class DiffRow:
    rule: str
    prowler_checks: str
    key: str
    resource: str
    ours: str  # pass | fail | none
    prowler: str  # PASS | FAIL | MANUAL | none
    ours_detail: str
    prowler_detail: str
    explanation: str


def agrees(ours: str, prowler: str) -> bool:
    return (ours == "pass" and prowler == "PASS") or (ours == "fail" and prowler == "FAIL")


def diff_verdicts(
    ours: Mapping[tuple[str, str], Mapping[str, Any]],
    theirs: Mapping[tuple[str, str], Mapping[str, Any]],
    entries: Sequence[MapEntry],
    explanations: Sequence[Explanation] = (),
) -> tuple[list[DiffRow], dict[str, dict[str, int]]]:
    """Every (rule, resource) where the verdicts differ (including 'only one side evaluated it'),
    and per-rule counts of agreements and differences."""
    by_rule = {entry.rule: entry for entry in entries}
    rows: list[DiffRow] = []
    counts: dict[str, dict[str, int]] = {e.rule: {"agree": 0, "differ": 0, "only_ours": 0, "only_prowler": 0}
                                          for e in entries}
    for key in sorted(set(ours) | set(theirs)):
        rule, resource_key_ = key
        mine, other = ours.get(key), theirs.get(key)
        o_status = mine["status"] if mine else "none"
        p_status = other["status"] if other else "none"
        tally = counts[rule]
        if mine and other and agrees(o_status, p_status):
            tally["agree"] += 1
            continue
        if mine and other:
            tally["differ"] += 1
        elif mine:
            tally["only_ours"] += 1
        else:
            tally["only_prowler"] += 1
        resource = (mine or other or {}).get("resource", resource_key_)
        why = next(
            (e.why for e in explanations if e.matches(rule, resource, o_status, p_status)),
            by_rule[rule].note or "UNEXPLAINED",
        )
        rows.append(
            DiffRow(
                rule=rule,
                prowler_checks=", ".join(by_rule[rule].prowler),
                key=resource_key_,
                resource=resource,
                ours=o_status,
                prowler=p_status,
                ours_detail=(mine or {}).get("detail", ""),
                prowler_detail=(other or {}).get("detail", ""),
                explanation=why,
            )
        )
    return rows, counts


def group_rows(rows: Sequence[DiffRow], limit: int = 8) -> list[dict[str, Any]]:
    """Differences grouped by (rule, ours, Prowler, explanation), with up to ``limit`` example resources."""
    groups: dict[tuple[str, str, str, str], list[DiffRow]] = {}
    for row in rows:
        groups.setdefault((row.rule, row.ours, row.prowler, row.explanation), []).append(row)
    return [
        {"rule": k[0], "ours": k[1], "prowler": k[2], "explanation": k[3], "count": len(v),
         "prowler_checks": v[0].prowler_checks, "examples": [r.resource for r in v[:limit]],
         "example_detail": {"ours": v[0].ours_detail, "prowler": v[0].prowler_detail}}
        for k, v in sorted(groups.items())
    ]


# ---- running both sides ----------------------------------------------------------------------------


def run_ours(emulators: emulators_mod.Emulators, work: Path, entries: Sequence[MapEntry], tag: str) -> dict[str, Any]:
    findings_path = work / f"ours-findings-{tag}.json"
    argv = [sys.executable, "-m", "bench._ours", "scan", "--target", _aws_target(), "--regions", REGION,
            "--rules", ",".join(e.rule for e in entries), "--findings", str(findings_path)]
    measured = run_measured(argv, env=ours_env(emulators.environment(), work), cwd=PROJECT_ROOT)
    if not measured.ok:
        raise BenchError(f"our scan failed ({measured.returncode}):\n{measured.tail()}")
    return {"measurement": measured.brief(), "result": last_json_line(measured.stdout),
            "findings": json.loads(findings_path.read_text())}


def run_prowler(tool: Path, emulators: emulators_mod.Emulators, work: Path, checks: Sequence[str], tag: str) -> dict[str, Any]:
    out = work / f"prowler-{tag}"
    out.mkdir(parents=True, exist_ok=True)
    log_file = out / "prowler.log"
    argv = [
        str(tool), "aws", "--region", REGION, "--checks", *checks,
        # Evaluate every resource, as our scan does (by default Prowler skips e.g. security groups that no
        # network interface uses and regions without volumes for EBS default encryption).
        "--scan-unused-services",
        "-M", "json-ocsf", "csv", "-o", str(out), "-F", "prowler",
        "--no-banner", "--no-color", "--ignore-exit-code-3",
        "--log-level", "INFO", "--log-file", str(log_file),
    ]
    measured = run_measured(argv, env=peer_env(emulators.aws_endpoint), cwd=work, timeout=3600)
    ended = time.time()
    if not measured.ok:
        raise BenchError(f"prowler failed ({measured.returncode}):\n{measured.tail(60)}")
    ocsf = out / "prowler.ocsf.json"
    if not ocsf.exists():
        raise BenchError(f"prowler wrote no OCSF output in {out}: {sorted(p.name for p in out.iterdir())}")
    results = parse_ocsf(ocsf.read_text())
    log_text = log_file.read_text() if log_file.exists() else ""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / f"prowler-{tag}.log").write_text(log_text)  # kept: the errors explain missing verdicts
    phases = prowler_phase_times(log_text)
    errors = prowler_log_errors(log_text)
    sample = work / f"prowler-sample-{tag}.json"
    sample.write_text(json.dumps(json.loads(ocsf.read_text())[:3], indent=1))
    return {
        "measurement": measured.brief(),
        "results": [asdict(r) for r in results],
        # Spawn-to-"Initializing AWS provider": loading checks metadata + compliance frameworks.
        "startup_s": (measured.wall_s - (ended - phases[0])) if phases else None,
        "scan_s": (ended - phases[0]) if phases else None,
        "log_errors": errors[:50],
        "log_error_count": len(errors),
    }


def _aws_target() -> str:
    from bench.scale import _aws_target as target

    return target()


# ---- report ----------------------------------------------------------------------------------------


def render(meta: dict[str, Any], estates: dict[str, dict[str, Any]]) -> str:
    lines = [
        "# Compliance scan vs Prowler: time, memory, verdict differences",
        "",
        (f"Measured {meta['machine']['date']} on {meta['machine']['cores']} cores shared with other work "
        f"(load average at start {meta['machine']['load_average_at_start']}): single figures are noisy; "
        f"each side ran {meta['repeats']} time(s) per estate, each run its own process."),
        "",
        (f"Command: `{meta['command']}`  ·  {meta['prowler_version']} in `bench/.venv-prowler`  ·  "
        f"{len(meta['rules'])} rule pairs, {len(meta['checks'])} Prowler checks, region {REGION}"),
        "",
        "## Time and memory (ours = collect_target on the AWS target + scan; Prowler = `prowler aws`)",
        "",
        ratio_table(_ratio_rows(estates), ours="ours", peer="Prowler"),
        "",
    ]
    for label, data in estates.items():
        lines += _estate_section(label, data)
    return "\n".join(lines)


def _ratio_rows(estates: Mapping[str, Mapping[str, Any]]) -> list[RatioRow]:
    rows = []
    for label, data in estates.items():
        ours_runs, peer_runs = data["ours"], data["prowler"]

        def s(values: list[float]) -> tuple[float, tuple[float, float]]:
            st = summarize(values)
            return st["median"], (st["min"], st["max"])

        ow, ows = s([r["measurement"]["wall_s"] for r in ours_runs])
        pw, pws = s([r["measurement"]["wall_s"] for r in peer_runs])
        rows.append(RatioRow(f"{label}: wall time, spawn to exit", ow, pw, "s", ows, pws))
        scans = [r["scan_s"] for r in peer_runs if r.get("scan_s") is not None]
        if scans:
            ok, oks = s([r["result"]["work_s"] for r in ours_runs])
            pk, pks = s(scans)
            rows.append(RatioRow(f"{label}: after start-up", ok, pk, "s", oks, pks,
                                 note="ours: collect+scan after imports; Prowler: from 'Initializing AWS provider' to exit"))
        orss, orsss = s([mib(r["measurement"]["peak_rss"]) for r in ours_runs])
        prss, prsss = s([mib(r["measurement"]["peak_rss"]) for r in peer_runs])
        rows.append(RatioRow(f"{label}: peak RSS", orss, prss, "MiB", orsss, prsss))
        ours_n = len(ours_runs[0]["findings"]) if "findings" in ours_runs[0] else ours_runs[0]["findings_count"]
        peer_n = len(peer_runs[0]["results"]) if "results" in peer_runs[0] else peer_runs[0]["results_count"]
        rows.append(RatioRow(f"{label}: findings (mapped rules/checks)", ours_n, peer_n, "",
                             note="ours: every region; Prowler: us-east-1 + global"))
    return rows


def _estate_section(label: str, data: Mapping[str, Any]) -> list[str]:
    comparison = data["comparison"]
    lines = [f"## Verdicts: {label}", ""]
    lines.append(
        f"Pairs compared: {comparison['pairs']}; agree: {comparison['agree']}; differ: {comparison['differ']}; "
        f"only ours evaluated: {comparison['only_ours']}; only Prowler evaluated: {comparison['only_prowler']}. "
        f"Our findings outside Prowler's region (not compared): {comparison['ours_out_of_scope']}. "
        f"Prowler log errors: {data['prowler'][0]['log_error_count']}."
    )
    lines += ["", "| rule | Prowler check(s) | agree | differ | only ours | only Prowler |", "|---|---|---:|---:|---:|---:|"]
    for rule, tally in comparison["by_rule"].items():
        checks = next((e["prowler"] for e in comparison["map"] if e["rule"] == rule), [])
        lines.append(f"| {rule} | {', '.join(checks)} | {tally['agree']} | {tally['differ']} | "
                     f"{tally['only_ours']} | {tally['only_prowler']} |")
    lines += ["", "Differences (grouped; `none` = that side reported nothing for the resource):", "",
              "| rule | ours | Prowler | count | resources (examples) | explanation |", "|---|---|---|---:|---|---|"]
    for group in comparison["groups"]:
        examples = ", ".join(f"`{x}`" for x in group["examples"])
        more = f" (+{group['count'] - len(group['examples'])} more)" if group["count"] > len(group["examples"]) else ""
        lines.append(f"| {group['rule']} | {group['ours']} | {group['prowler']} | {group['count']} | "
                     f"{examples}{more} | {group['explanation']} |")
    errors = data["prowler"][0]["log_errors"]
    if errors:
        lines += ["", "<details><summary>Prowler log errors (first ones)</summary>", "", "```"]
        lines += [e.replace("\n", " ")[:300] for e in errors[:15]]
        lines += ["```", "</details>"]
    lines.append("")
    return lines


def render_diff(estates: Mapping[str, Mapping[str, Any]], meta: Mapping[str, Any], each: int = 12) -> str:
    """``prowler-diff.md``: every differing (resource, check) with its explanation. A group of more than
    ``each`` rows with the same rule, verdicts and explanation is shown as one line with its count."""
    lines = [
        "# Verdict differences: ours vs Prowler",
        "",
        (f"{meta['prowler_version']}, region {REGION}, measured {meta['machine']['date']} with "
        f"`{meta['command']}`. One line per (rule, resource) where the verdicts differ or only one side "
        "evaluated the resource (`none`). Explanations were found by reading both implementations and the "
        "emulator's answers; they live in `bench/prowler_map.yaml` (`explanations:`)."),
        "",
    ]
    for label, data in estates.items():
        comparison = data["comparison"]
        rows = comparison["rows"]
        lines += [
            (f"## {label}: {len(rows)} differences "
            f"({comparison['agree']} of {comparison['pairs']} (rule, resource) pairs agree)"),
            "",
            "| resource | our rule | Prowler check | ours | Prowler | explanation |",
            "|---|---|---|---|---|---|",
        ]
        groups: dict[tuple[str, str, str, str], list[Mapping[str, Any]]] = {}
        for row in rows:
            groups.setdefault((row["rule"], row["ours"], row["prowler"], row["explanation"]), []).append(row)
        for (rule, ours, theirs, why), items in groups.items():
            if len(items) > each:
                examples = ", ".join(f"`{r['resource']}`" for r in items[:3])
                lines.append(f"| {len(items)} resources, e.g. {examples} | {rule} | {items[0]['prowler_checks']} | "
                             f"{ours} | {theirs} | {why} |")
                continue
            for r in items:
                lines.append(f"| `{r['resource']}` | {rule} | {r['prowler_checks']} | {ours} | {theirs} | {why} |")
        lines.append("")
    return "\n".join(lines)


def compare(ours_findings: list[Mapping[str, Any]], prowler_results: list[Mapping[str, Any]],
            entries: Sequence[MapEntry], explanations: Sequence[Explanation]) -> dict[str, Any]:
    results = [ProwlerResult(**r) for r in prowler_results]
    mine, out_of_scope = our_verdicts(ours_findings, entries)
    theirs = prowler_verdicts(results, entries)
    rows, counts = diff_verdicts(mine, theirs, entries, explanations)
    return {
        "pairs": len(set(mine) | set(theirs)),
        "agree": sum(c["agree"] for c in counts.values()),
        "differ": sum(c["differ"] for c in counts.values()),
        "only_ours": sum(c["only_ours"] for c in counts.values()),
        "only_prowler": sum(c["only_prowler"] for c in counts.values()),
        "ours_out_of_scope": out_of_scope,
        "by_rule": counts,
        "rows": [asdict(r) for r in rows],
        "groups": group_rows(rows),
        "map": [asdict(e) for e in entries],
    }


def rerender() -> None:
    """Rewrite prowler.md / prowler-diff.md from prowler.json with the map's current explanations and the
    kept Prowler logs (after an explanation was added, without re-running the tools)."""
    data = json.loads((RESULTS_DIR / "prowler.json").read_text())
    # JSON keys come back sorted; the seeded estate reads first.
    data["estates"] = dict(sorted(data["estates"].items(), key=lambda kv: kv[0] != "seeded"))
    entries, explanations = load_map()
    by_rule = {e.rule: e for e in entries}
    for label, estate in data["estates"].items():
        rows = [DiffRow(**r) for r in estate["comparison"]["rows"]]
        for row in rows:
            row.explanation = next(
                (e.why for e in explanations if e.matches(row.rule, row.resource, row.ours, row.prowler)),
                by_rule[row.rule].note or "UNEXPLAINED" if row.rule in by_rule else "UNEXPLAINED",
            )
        estate["comparison"]["rows"] = [asdict(r) for r in rows]
        estate["comparison"]["groups"] = group_rows(rows)
        for index, run in enumerate(estate["prowler"]):
            log = RESULTS_DIR / f"prowler-{label.replace(' ', '-')}-{index}.log"
            if log.exists():
                errors = prowler_log_errors(log.read_text())
                run["log_errors"], run["log_error_count"] = errors[:50], len(errors)
    (RESULTS_DIR / "prowler.json").write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")
    (RESULTS_DIR / "prowler.md").write_text(render(data["meta"], data["estates"]).rstrip() + "\n")
    (RESULTS_DIR / "prowler-diff.md").write_text(render_diff(data["estates"], data["meta"]) + "\n")


def run(repeats: int | None = None, scale_total: int | None = None) -> dict[str, Any]:
    repeats = repeats or env_int("BENCH_PROWLER_REPEATS", 1)
    scale_total = scale_total or env_int("BENCH_SCALE_RESOURCES", 10_000)
    # Prowler on the scale estate takes tens of minutes here (moto serves ~130 requests/s on 2 cores and
    # Prowler sends ~15 per bucket): opt in with BENCH_PROWLER_SCALE=1.
    with_scale = env_int("BENCH_PROWLER_SCALE", 0) != 0
    entries, explanations = load_map()
    checks = prowler_checks(entries)
    tool = ensure_tool_venv("prowler", [f"prowler=={PROWLER_VERSION}"], "prowler")
    labels = ["seeded"] + ([f"scale {scale_total}"] if with_scale else [])
    estates: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-prowler-") as tmp:
        work = Path(tmp)
        for label in labels:
            emulators = emulators_mod.start(log_dir=work / "emulator-logs", timeout=60)
            try:
                if label == "seeded":
                    setup = seed(ours_env(emulators.environment(), work))
                    print("[bench prowler] warm-up run of each side (not recorded)", file=sys.stderr, flush=True)
                    run_ours(emulators, work, entries, "warmup")
                    run_prowler(tool, emulators, work, checks, "warmup")
                else:
                    spec = scale_estate.spec_for(scale_total)
                    print(f"[bench prowler] building scale estate: {spec}", file=sys.stderr, flush=True)
                    setup = scale_estate.build(emulators, spec, clouds=("aws",))
                ours_runs, peer_runs = [], []
                for i in range(repeats):
                    tag = f"{label.replace(' ', '-')}-{i}"
                    print(f"[bench prowler] {label}: ours {i + 1}/{repeats}", file=sys.stderr, flush=True)
                    ours_runs.append(run_ours(emulators, work, entries, tag))
                    print(f"[bench prowler] {label}: prowler {i + 1}/{repeats}", file=sys.stderr, flush=True)
                    peer_runs.append(run_prowler(tool, emulators, work, checks, tag))
                estates[label] = {
                    "setup": setup,
                    "ours": ours_runs,
                    "prowler": peer_runs,
                    "comparison": compare(ours_runs[0]["findings"], peer_runs[0]["results"], entries, explanations),
                }
                samples = sorted(work.glob("prowler-sample-*.json"))
                if samples:
                    (RESULTS_DIR / "prowler-sample.ocsf.json").parent.mkdir(parents=True, exist_ok=True)
                    (RESULTS_DIR / "prowler-sample.ocsf.json").write_text(samples[0].read_text())
            finally:
                emulators_mod.stop(emulators)
    meta = {
        "machine": machine_info(),
        "repeats": repeats,
        "command": "python -m bench prowler",
        "prowler_version": tool_version(tool, "--version"),
        "rules": [e.rule for e in entries],
        "checks": checks,
        "prowler_flags": "aws --region us-east-1 --checks ... --scan-unused-services -M json-ocsf csv "
                         "--no-banner --no-color --ignore-exit-code-3 --log-level INFO --log-file ...",
    }
    # The big per-resource payloads stay in the JSON; the markdown holds the tables.
    result = {"meta": meta, "estates": {
        label: {**data, "ours": [{k: v for k, v in r.items() if k != "findings"} | {"findings_count": len(r["findings"])}
                                 for r in data["ours"]],
                "prowler": [{k: v for k, v in r.items() if k != "results"} | {"results_count": len(r["results"])}
                            for r in data["prowler"]]}
        for label, data in estates.items()}}
    write_results("prowler", result, render(meta, estates))
    (RESULTS_DIR / "prowler-diff.md").write_text(render_diff(estates, meta) + "\n")
    rows = _ratio_rows(estates)
    print(console_table(
        ["measure", "ours", "Prowler", "ours/Prowler"],
        [[r.label, f"{r.ours:.2f}", "-" if r.peer is None else f"{r.peer:.2f}",
          "-" if r.ratio is None else f"{r.ratio:.2f}"] for r in rows],
    ))
    for label, data in estates.items():
        c = data["comparison"]
        print(f"{label}: {c['pairs']} (rule, resource) pairs: {c['agree']} agree, {c['differ']} differ, "
              f"{c['only_ours']} only ours, {c['only_prowler']} only Prowler -> {RESULTS_DIR / 'prowler-diff.md'}")
    return result


if __name__ == "__main__":  # python -m bench.prowler --rerender
    if sys.argv[1:] == ["--rerender"]:
        rerender()
    else:
        run()
