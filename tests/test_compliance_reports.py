"""Compliance reports: SARIF against the official 2.1.0 schema, OCSF required fields, CSV, JSON, HTML."""

from __future__ import annotations

import copy
import csv
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from include.compliance.model import Finding, finding_id
from include.compliance.reports import FILES, compute_totals, history_entry, write_all

FIXTURES = Path(__file__).parent / "fixtures"
SCAN_ID = "scan_2026-11-28T06-00-00"
SCANNED_AT = "2026-11-28T06:00:00Z"

CIS_AWS = "CIS AWS Foundations v3.0.0"
CIS_GCP = "CIS Google Cloud v3.0.0"
CIS_AZURE = "CIS Azure v2.1.0"


def make(
    rule_id: str,
    *,
    cloud: str,
    resource_id: str,
    name: str,
    severity: str = "high",
    status: str = "fail",
    lifecycle: str = "new",
    frameworks: dict[str, list[str]] | None = None,
    waiver: dict[str, str] | None = None,
    resource_type: str = "aws.s3.bucket",
    region: str = "us-east-1",
    evidence: dict[str, Any] | None = None,
) -> Finding:
    target = {"aws": "aws-prod", "gcp": "gcp-prod", "azure": "azure-prod"}[cloud]
    account = {"aws": "123456789012", "gcp": "runbooks-local", "azure": "00000000-0000-0000-0000-000000000000"}[cloud]
    return Finding(
        finding_id=finding_id(rule_id, target, resource_id),
        rule_id=rule_id,
        title=rule_id.replace("_", " ").capitalize(),
        severity=severity,  # type: ignore[arg-type]
        status=status,  # type: ignore[arg-type]
        cloud=cloud,
        target=target,
        account=account,
        region=region,
        resource_type=resource_type,
        resource_id=resource_id,
        resource_name=name,
        detail=f"{name} breaks {rule_id}" if status != "pass" else f"{name} complies",
        remediation=f"Fix {name}: see the runbook remediate_findings ({rule_id}).",
        frameworks=frameworks or {},
        evidence=evidence or {},
        waiver=waiver,
        lifecycle=lifecycle,  # type: ignore[arg-type]
        first_seen="2026-11-20T06:00:00Z" if lifecycle != "new" else SCANNED_AT,
        fixer="s3_block_public_access" if rule_id == "aws_s3_public_access_block" else None,
    )


@pytest.fixture
def findings() -> list[Finding]:
    return [
        make("aws_s3_public_access_block", cloud="aws", resource_id="arn:aws:s3:::public-assets", name="public-assets",
             severity="critical", frameworks={CIS_AWS: ["2.1.4"], "GDPR": ["Art.32"]},
             evidence={"public_access_block": {"block_public_acls": False}, "session_token": "never-written"}),
        make("aws_s3_versioning", cloud="aws", resource_id="arn:aws:s3:::logs-archive", name="logs-archive",
             severity="medium", lifecycle="open", frameworks={CIS_AWS: ["2.1.3"]}),
        make("aws_s3_encryption", cloud="aws", resource_id="arn:aws:s3:::<script>alert(1)</script>",
             name="<script>alert(1)</script>", severity="high", frameworks={CIS_AWS: ["2.1.1"], "HIPAA": ["164.312(a)(2)(iv)"]}),
        make("aws_s3_encryption", cloud="aws", resource_id="arn:aws:s3:::finance-reports", name="finance-reports",
             status="pass", frameworks={CIS_AWS: ["2.1.1"]}),
        make("aws_s3_versioning", cloud="aws", resource_id="arn:aws:s3:::was-fixed", name="was-fixed",
             severity="medium", status="pass", lifecycle="resolved", frameworks={CIS_AWS: ["2.1.3"]}),
        make("aws_iam_root_mfa", cloud="aws", resource_id="arn:aws:iam::123456789012:root", name="root",
             severity="critical", status="waived", lifecycle="open", frameworks={CIS_AWS: ["1.5"]},
             resource_type="aws.iam.account", region="global",
             waiver={"rule": "aws_iam_root_mfa", "resource": "arn:aws:iam::*:root", "reason": "Break-glass <root> kept in a safe",
                     "owner": "secops@example.com", "expires": "2027-01-31"}),
        make("gcp_storage_uniform_access", cloud="gcp", resource_id="//storage.googleapis.com/projects/_/buckets/eu-data",
             name="eu-data", severity="high", frameworks={CIS_GCP: ["5.2"]}, resource_type="gcp.storage.bucket", region="EU"),
        make("gcp_storage_public_access_prevention", cloud="gcp", resource_id="//storage.googleapis.com/projects/_/buckets/eu-data",
             name="eu-data", severity="high", status="pass", frameworks={CIS_GCP: ["5.1"]}, resource_type="gcp.storage.bucket", region="EU"),
        make("azure_container_public_access", cloud="azure",
             resource_id="https://devstoreaccount1.blob.core.windows.net/public-web", name="public-web",
             severity="high", lifecycle="open", frameworks={CIS_AZURE: ["3.7"]},
             resource_type="azure.storage.container", region="westeurope"),
        make("required_tags", cloud="azure", resource_id="https://devstoreaccount1.blob.core.windows.net/scratch",
             name="scratch", severity="low", resource_type="azure.storage.container", region="westeurope"),
    ]


@pytest.fixture
def history(findings: list[Finding]) -> list[dict[str, Any]]:
    previous = [
        {"scan_id": "scan_2026-11-25", "scanned_at": "2026-11-25T06:00:00Z",
         "totals": {"by_status": {"fail": 9, "pass": 2, "waived": 1}, "by_severity": {"critical": 3, "high": 4}}},
        {"scan_id": "scan_2026-11-26", "scanned_at": "2026-11-26T06:00:00Z",
         "totals": {"by_status": {"fail": 7, "pass": 3, "waived": 1}, "by_severity": {"critical": 2, "high": 3}}},
        {"scan_id": "scan_2026-11-27", "scanned_at": "2026-11-27T06:00:00Z",
         "totals": {"by_status": {"fail": 6, "pass": 3, "waived": 1}, "by_severity": {"critical": 1, "high": 3}}},
    ]
    return [*previous, history_entry(findings, scan_id=SCAN_ID, scanned_at=SCANNED_AT)]


@pytest.fixture
def written(tmp_path: Path, findings: list[Finding], history: list[dict[str, Any]]) -> dict[str, str]:
    validation = {
        "success": False, "records": 12, "seconds": 1.2, "renderer": "gx-data-docs", "gx_version": "1.24.1",
        "html_path": str(tmp_path / "runs" / SCAN_ID / "validation" / "data_docs" / "index.html"),
        "results_path": None,
        "suites": [{"suite": "aws_s3_bucket", "file": "config/expectations/aws_s3_bucket.json",
                    "resource_types": ["aws.s3.bucket"], "rows": 4, "evaluated": 20, "successful": 19,
                    "unsuccessful": 1, "success": False}],
        "failures": [{"suite": "aws_s3_bucket", "expectation": "expect_column_values_to_not_be_null",
                      "column": "encrypted", "kwargs": {"column": "encrypted"}, "description": "Default encryption rule.",
                      "element_count": 4, "unexpected_count": 1,
                      "examples": [{"resource_id": "arn:aws:s3:::<b>bad</b>", "value": None}]}],
    }
    return write_all(findings, scan_id=SCAN_ID, scanned_at=SCANNED_AT, out_dir=tmp_path / "runs" / SCAN_ID,
                     history=history, validation=validation)


# ---- SARIF ----------------------------------------------------------------------------------------
def sarif_validator() -> jsonschema.protocols.Validator:
    schema = json.loads((FIXTURES / "sarif-schema-2.1.0.json").read_text())
    cls = jsonschema.validators.validator_for(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def test_schema_copy_is_complete() -> None:
    schema = json.loads((FIXTURES / "sarif-schema-2.1.0.json").read_text())
    assert schema["$schema"].startswith("https://json-schema.org/")
    assert schema["properties"]["version"]["enum"] == ["2.1.0"]
    for definition in ("run", "result", "reportingDescriptor", "logicalLocation", "suppression", "toolComponent"):
        assert definition in schema["definitions"], definition
    refs = set(re.findall(r'"\$ref": "#/definitions/([A-Za-z]+)"', (FIXTURES / "sarif-schema-2.1.0.json").read_text()))
    assert refs and refs <= set(schema["definitions"]), refs - set(schema["definitions"])


def test_sarif_is_valid_against_the_official_schema(written: dict[str, str]) -> None:
    log = json.loads(Path(written["sarif"]).read_text())
    errors = sorted(sarif_validator().iter_errors(log), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors[:10])


@pytest.mark.parametrize(
    "breakage",
    [
        lambda log: log.pop("version"),
        lambda log: log["runs"][0]["results"][0].__setitem__("level", "fatal"),
        lambda log: log["runs"][0]["results"][0].__setitem__("locations", [{"logicalLocations": "arn:aws:s3:::x"}]),
        lambda log: log["runs"][0]["results"][0]["suppressions"].__setitem__(0, {"justification": "no kind"})
        if "suppressions" in log["runs"][0]["results"][0] else log["runs"][0]["tool"].pop("driver"),
        lambda log: log["runs"][0]["results"][0].__setitem__("unknownProperty", 1),
    ],
)
def test_broken_sarif_fails_the_schema(written: dict[str, str], breakage: Any) -> None:
    log = json.loads(Path(written["sarif"]).read_text())
    broken = copy.deepcopy(log)
    breakage(broken)
    assert list(sarif_validator().iter_errors(broken)), "the schema accepted a broken log: the test could not fail"


def test_sarif_content(written: dict[str, str], findings: list[Finding]) -> None:
    run = json.loads(Path(written["sarif"]).read_text())["runs"][0]
    rules = {rule["id"]: rule for rule in run["tool"]["driver"]["rules"]}
    assert set(rules) == {f.rule_id for f in findings}
    pab = rules["aws_s3_public_access_block"]
    assert pab["help"]["text"].startswith("Fix public-assets")
    assert f"{CIS_AWS}:2.1.4" in pab["properties"]["tags"] and "GDPR:Art.32" in pab["properties"]["tags"]
    assert pab["defaultConfiguration"]["level"] == "error"

    results = {r["partialFingerprints"]["findingId/v1"]: r for r in run["results"]}
    by_id = {f.finding_id: f for f in findings}
    # failing + waived + resolved are results; passes that never failed are only counted
    expected = {f.finding_id for f in findings if f.status != "pass" or f.lifecycle == "resolved"}
    assert set(results) == expected
    for fid, result in results.items():
        finding = by_id[fid]
        assert run["tool"]["driver"]["rules"][result["ruleIndex"]]["id"] == result["ruleId"] == finding.rule_id
        location = result["locations"][0]["logicalLocations"][0]
        assert location == location | {"fullyQualifiedName": finding.resource_id, "kind": "resource"}
    root = next(r for fid, r in results.items() if by_id[fid].status == "waived")
    assert root["suppressions"][0]["justification"] == "Break-glass <root> kept in a safe"
    assert root["suppressions"][0]["kind"] == "external"
    resolved = next(r for fid, r in results.items() if by_id[fid].lifecycle == "resolved")
    assert resolved["kind"] == "pass" and resolved["baselineState"] == "absent" and resolved["level"] == "none"
    levels = {by_id[fid].severity: r["level"] for fid, r in results.items() if by_id[fid].status == "fail"}
    assert levels == {"critical": "error", "high": "error", "medium": "warning", "low": "note"}
    assert "never-written" not in Path(written["sarif"]).read_text()


# ---- OCSF -----------------------------------------------------------------------------------------
# Required attributes of a Compliance Finding (class_uid 2003) in OCSF 1.3.0, from the schema
# (github.com/ocsf/ocsf-schema, tag v1.3.0; browsable at schema.ocsf.io/1.3.0/classes/compliance_finding):
# - events/base_event.json + traits: activity_id, category_uid, class_uid, type_uid, severity_id, time,
#   metadata; events/findings/finding.json: finding_info; events/findings/compliance_finding.json:
#   compliance; profiles/cloud.json (we declare the "cloud" profile): cloud.
# - objects/metadata.json: product, version; objects/product.json: vendor_name (name recommended, we
#   require it anyway); objects/finding_info.json: uid, title (1.3.0; later versions relax title to
#   recommended); objects/compliance.json: standards; objects/cloud.json: provider.
OCSF_EVENT_REQUIRED = (
    "activity_id", "category_uid", "class_uid", "type_uid", "severity_id", "time", "metadata",
    "finding_info", "compliance", "cloud",
)
OCSF_OBJECT_REQUIRED = {
    "metadata": ("product", "version"),
    "finding_info": ("uid", "title"),
    "compliance": ("standards",),
    "cloud": ("provider",),
}
OCSF_ENUMS = {
    "activity_id": {0, 1, 2, 3, 99},
    "severity_id": {0, 1, 2, 3, 4, 5, 6, 99},
    "status_id": {0, 1, 2, 3, 4, 5, 6, 99},
}


def ocsf_problems(event: dict[str, Any]) -> list[str]:
    problems = [f"missing {key}" for key in OCSF_EVENT_REQUIRED if event.get(key) in (None, "", [], {})]
    for obj, keys in OCSF_OBJECT_REQUIRED.items():
        problems += [f"missing {obj}.{k}" for k in keys if not (event.get(obj) or {}).get(k)]
    if not ((event.get("metadata") or {}).get("product") or {}).get("vendor_name"):
        problems.append("missing metadata.product.vendor_name")
    if event.get("class_uid") != 2003 or event.get("category_uid") != 2:
        problems.append("not a compliance finding (2003 / 2)")
    if event.get("type_uid") != 2003 * 100 + int(event.get("activity_id", -1)):
        problems.append("type_uid != class_uid * 100 + activity_id")
    for key, allowed in OCSF_ENUMS.items():
        if key in event and event[key] not in allowed:
            problems.append(f"{key}={event[key]} not in the enum")
    if not isinstance(event.get("time"), int):
        problems.append("time is not epoch milliseconds")
    if not re.fullmatch(r"1\.\d+\.\d+", str((event.get("metadata") or {}).get("version", ""))):
        problems.append("metadata.version is not OCSF 1.x")
    return problems


def test_ocsf_required_fields(written: dict[str, str], findings: list[Finding]) -> None:
    events = json.loads(Path(written["ocsf"]).read_text())
    assert len(events) == len(findings)
    for event in events:
        assert not ocsf_problems(event), (event["finding_info"]["uid"], ocsf_problems(event))
    by_uid = {e["finding_info"]["uid"]: e for e in events}
    critical = next(f for f in findings if f.rule_id == "aws_s3_public_access_block")
    event = by_uid[critical.finding_id]
    assert event["severity_id"] == 5 and event["compliance"]["status"] == "Fail"
    assert f"{CIS_AWS} 2.1.4" in event["compliance"]["requirements"]
    assert event["resources"][0]["uid"] == critical.resource_id
    assert event["cloud"] == event["cloud"] | {"provider": "AWS", "region": "us-east-1"}
    assert event["cloud"]["account"]["uid"] == "123456789012"
    waived = by_uid[next(f.finding_id for f in findings if f.status == "waived")]
    assert waived["status"] == "Suppressed" and waived["unmapped"]["waiver"]["owner"] == "secops@example.com"
    resolved = by_uid[next(f.finding_id for f in findings if f.lifecycle == "resolved")]
    assert (resolved["activity_id"], resolved["status_id"], resolved["compliance"]["status"]) == (3, 4, "Pass")
    assert "never-written" not in Path(written["ocsf"]).read_text()


def test_ocsf_check_catches_a_broken_event(written: dict[str, str]) -> None:
    event = json.loads(Path(written["ocsf"]).read_text())[0]
    for breakage in ("finding_info", "compliance", "time"):
        broken = copy.deepcopy(event)
        broken.pop(breakage)
        assert ocsf_problems(broken)
    broken = copy.deepcopy(event)
    broken["compliance"].pop("standards")
    assert "missing compliance.standards" in ocsf_problems(broken)


# ---- JSON / CSV -----------------------------------------------------------------------------------
def test_json_has_scan_metadata_and_totals(written: dict[str, str], findings: list[Finding]) -> None:
    document = json.loads(Path(written["json"]).read_text())
    assert document["scan"]["scan_id"] == SCAN_ID and document["scan"]["scanned_at"] == SCANNED_AT
    totals = document["totals"]
    assert totals == compute_totals(findings)
    assert totals["by_status"] == {"fail": 6, "pass": 3, "waived": 1}
    assert totals["by_severity"]["critical"] == 1 and totals["by_severity"]["high"] == 3
    assert totals["lifecycle"] == {"new": 4, "open": 2, "resolved": 1}
    assert totals["by_cloud"]["gcp"] == {"fail": 1, "pass": 1, "waived": 0}
    assert totals["by_framework"][CIS_AWS] == {"fail": 3, "pass": 2, "waived": 1}
    assert len(document["findings"]) == len(findings)
    assert document["validation"]["success"] is False
    assert Finding.from_dict(document["findings"][1]) == findings[1]
    assert document["findings"][0]["evidence"]["session_token"] == "***"


def test_csv_round_trip(written: dict[str, str], findings: list[Finding]) -> None:
    with open(written["csv"], newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == len(findings)
    assert {r["finding_id"] for r in rows} == {f.finding_id for f in findings}
    counts = {s: sum(1 for r in rows if r["status"] == s) for s in ("fail", "pass", "waived")}
    assert counts == {"fail": 6, "pass": 3, "waived": 1}
    waived = next(r for r in rows if r["status"] == "waived")
    assert (waived["waiver_owner"], waived["waiver_expires"]) == ("secops@example.com", "2027-01-31")
    assert any(f"{CIS_AWS}: 2.1.4" in r["frameworks"] for r in rows)


def test_csv_neutralises_formulas(tmp_path: Path) -> None:
    evil = make("required_tags", cloud="aws", resource_id="arn:aws:s3:::x", name="=HYPERLINK(\"http://x\")")
    paths = write_all([evil], scan_id="s", scanned_at=SCANNED_AT, out_dir=tmp_path / "s", history=[])
    with open(paths["csv"], newline="") as handle:
        row = next(csv.DictReader(handle))
    assert row["resource_name"].startswith("'=")


# ---- HTML -----------------------------------------------------------------------------------------
def test_html_report(written: dict[str, str], history: list[dict[str, Any]]) -> None:
    page = Path(written["html"]).read_text()
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<script" not in page.lower()  # no JavaScript at all
    assert not re.search(r'(src|href)="(https?:)?//', page), "external asset referenced"
    # headline totals
    assert re.search(r'<div class="n bad">6</div><div class="l">failing</div>', page)
    assert re.search(r'<div class="n bad">4</div><div class="l">critical \+ high</div>', page)
    assert re.search(r'<div class="n ok">1</div><div class="l">resolved</div>', page)
    for cloud in ("aws", "gcp", "azure"):
        assert f"<td>{cloud}</td>" in page
    for framework in (CIS_AWS, CIS_GCP, CIS_AZURE, "GDPR", "HIPAA"):
        assert f"<td>{framework}</td>" in page
    # trend: one point per history entry on each series
    svg = page[page.index("<svg"): page.index("</svg>")]
    assert svg.count('class="pt pt-fail"') == len(history) == 4
    assert svg.count('class="pt pt-ch"') == len(history)
    # waivers with reason / owner / expiry, escaped
    assert "Break-glass &lt;root&gt; kept in a safe" in page
    assert "secops@example.com" in page and "2027-01-31" in page
    # remediation text and the validation section with a relative link to Data Docs
    assert "Fix public-assets: see the runbook remediate_findings" in page
    assert "expect_column_values_to_not_be_null" in page and "arn:aws:s3:::&lt;b&gt;bad&lt;/b&gt;" in page
    assert 'href="validation/data_docs/index.html"' in page
    assert "never-written" not in page


def test_latest_folder_and_trend_without_current_scan(tmp_path: Path, findings: list[Finding]) -> None:
    out = tmp_path / "reports" / "run-1"
    paths = write_all(findings, scan_id="run-1", scanned_at=SCANNED_AT, out_dir=out,
                      history=[{"scan_id": "run-0", "scanned_at": "2026-11-27T06:00:00Z", "fail": 3}])
    latest = Path(paths["latest"])
    assert latest == tmp_path / "reports" / "latest"
    for name in FILES.values():
        assert (out / name).is_file() and (latest / name).is_file(), name
    assert (out / "findings.sarif").read_text() == (latest / "findings.sarif").read_text()
    page = (latest / "report.html").read_text()
    assert page.count('class="pt pt-fail"') == 2  # the flat history line + this scan, appended


def test_empty_scan_writes_valid_reports(tmp_path: Path) -> None:
    paths = write_all([], scan_id="empty", scanned_at=SCANNED_AT, out_dir=tmp_path / "empty", history=[])
    assert not list(sarif_validator().iter_errors(json.loads(Path(paths["sarif"]).read_text())))
    assert json.loads(Path(paths["ocsf"]).read_text()) == []
    assert "No failing findings" in Path(paths["html"]).read_text()


# ---- framework control titles, redaction ------------------------------------------------------------
def test_reports_show_catalogued_control_titles(tmp_path: Path) -> None:
    finding = make(
        "aws_s3_bucket_public_access_block", cloud="aws", resource_id="arn:aws:s3:::open", name="open",
        frameworks={"CIS-AWS-3.0": ["2.1.4"], "AWS-FSBP": ["S3.8"], "Local-Policy": ["LP-1"]},
    )
    paths = write_all([finding], scan_id="titles", scanned_at=SCANNED_AT, out_dir=tmp_path / "titles", history=[])
    cis_title = "Ensure that S3 Buckets are configured with 'Block public access (bucket settings)'"
    fsbp_title = "S3 Block Public Access setting should be enabled at the bucket-level"
    sarif = json.loads(Path(paths["sarif"]).read_text())
    assert not list(sarif_validator().iter_errors(sarif))
    descriptor = sarif["runs"][0]["tool"]["driver"]["rules"][0]
    assert descriptor["properties"]["controls"] == [
        {"framework": "AWS-FSBP", "id": "S3.8", "title": fsbp_title},
        {"framework": "CIS-AWS-3.0", "id": "2.1.4", "title": cis_title},
        {"framework": "Local-Policy", "id": "LP-1"},  # no catalogue: shown without a title
    ]
    assert f"- CIS-AWS-3.0 2.1.4: {cis_title}" in descriptor["help"]["markdown"]
    page = Path(paths["html"]).read_text()
    escaped = cis_title.replace("'", "&#x27;")
    assert f'<span title="{escaped}">CIS-AWS-3.0 2.1.4</span>' in page
    assert f"<td>CIS-AWS-3.0</td><td>2.1.4</td><td>{escaped}</td>" in page  # failing-controls table
    assert "<td>Local-Policy</td><td>LP-1</td><td></td>" in page


def test_reports_redact_secret_evidence_keys_and_url_credentials(tmp_path: Path) -> None:
    finding = make(
        "aws_s3_bucket_access_logging", cloud="aws", resource_id="arn:aws:s3:::logs", name="logs",
        evidence={"endpoint": "https://admin:hunter2@db.internal:5432/x", "client_secret": "s3cr3t-value",
                  "nested": [{"password": "pw-123456"}], "kms_key_id": "alias/keep-me"},
    )
    paths = write_all([finding], scan_id="redact", scanned_at=SCANNED_AT, out_dir=tmp_path / "redact", history=[])
    for key in ("json", "csv", "sarif", "ocsf", "html"):
        text = Path(paths[key]).read_text()
        for secret in ("hunter2", "s3cr3t-value", "pw-123456"):
            assert secret not in text, (key, secret)
    evidence = json.loads(Path(paths["json"]).read_text())["findings"][0]["evidence"]
    assert evidence == {"endpoint": "https://admin:***@db.internal:5432/x", "client_secret": "***",
                        "nested": [{"password": "***"}], "kms_key_id": "alias/keep-me"}
    assert json.loads(Path(paths["ocsf"]).read_text())[0]["resources"][0]["data"]["evidence"] == evidence
    sarif = json.loads(Path(paths["sarif"]).read_text())
    assert sarif["runs"][0]["results"][0]["properties"]["evidence"] == evidence


# ---- with the compliance store (engineer C's history.jsonl shape) ----------------------------------
def test_write_scan_from_the_store(tmp_path: Path, findings: list[Finding]) -> None:
    from datetime import UTC, datetime, timedelta

    from include.compliance.reports import write_scan
    from include.compliance.store import save_scan

    first = datetime(2026, 11, 27, 6, tzinfo=UTC)
    save_scan(findings[:4], scanned_at=first, scan_id="scan-a", base=tmp_path)
    saved = save_scan(findings, scanned_at=first + timedelta(days=1), scan_id="scan-b", base=tmp_path)
    save_scan(findings[:2], scanned_at=first + timedelta(days=2), scan_id="scan-c", base=tmp_path)  # later scan

    paths = write_scan(saved["path"], validation=None)
    scan_reports = Path(saved["path"]).parent / "reports"
    assert Path(paths["html"]).parent == scan_reports
    assert Path(paths["latest"]) == tmp_path / "compliance" / "reports" / "latest"
    page = Path(paths["html"]).read_text()
    # the trend shows the scans up to this one (a, b), read from the store's history lines
    assert page.count('class="pt pt-fail"') == 2
    critical_high = re.findall(r'class="pt pt-ch"[^>]*><title>[^:]+:\d\d:\d\dZ: (\d+) critical', page)
    assert critical_high == ["2", "4"]
    assert not list(sarif_validator().iter_errors(json.loads(Path(paths["sarif"]).read_text())))
