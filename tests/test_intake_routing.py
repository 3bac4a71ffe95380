"""The routing file (validated at load, errors naming route and field), matching, conf templates, keys and
the signature checks: pure logic, no Airflow."""

from __future__ import annotations

import hashlib
import hmac
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from include.intake import events, signatures
from include.intake.events import Event, safe_token
from include.intake.routing import (
    RouteStore,
    RoutingError,
    TemplateError,
    choose,
    known_runbooks,
    load_routes,
    render_conf,
)
from include.params import idempotency_key_param
from tests.test_intake_payloads import pd_payload, public_bucket_alert

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHIPPED = PROJECT_ROOT / "config" / "intake" / "routes.yaml"
RUNBOOKS = {"inventory_estate", "compliance_scan", "remediate_findings"}


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "routes.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def refused(tmp_path: Path, text: str) -> str:
    with pytest.raises(RoutingError) as error:
        load_routes(write(tmp_path, text), RUNBOOKS)
    return str(error.value)


# ---- the shipped file -----------------------------------------------------------------------------------
def test_the_shipped_routes_load_and_name_existing_runbooks(tmp_path: Path) -> None:
    assert known_runbooks(PROJECT_ROOT / "dags") >= RUNBOOKS
    table = load_routes(SHIPPED)  # the real dags/ folder
    assert [r.name for r in table.routes] == ["public-bucket", "pagerduty-compliance-finding",
                                              "generic-compliance-finding", "service-down-failover"]
    assert all(r.on == ["firing"] for r in table.routes), "a resolved event never starts a runbook"
    remediation = [r for r in table.routes if r.runbook == "remediate_findings"]
    assert len(remediation) == 3 and all(r.conf["dry_run"] is True for r in remediation), "remediation routes only plan"
    [failover] = [r for r in table.routes if r.runbook == "failover_service"]
    assert (failover.source, failover.match.labels, failover.match.severity) == (
        ["alertmanager"], {"alertname": ["ServiceDown"]}, ["critical"])
    # the incident's key is the failover's ledger key: a re-sent alert can never fail over twice
    assert failover.conf["incident_id"] == {"$field": "idempotency_key"}
    assert failover.conf["service"] == {"$label": "service"}
    # the same route is refused while its runbook does not exist
    with pytest.raises(RoutingError, match="'failover_service' does not exist in dags/"):
        load_routes(SHIPPED, RUNBOOKS)


def test_the_validator_command(tmp_path: Path) -> None:
    ok = subprocess.run([sys.executable, "-m", "include.intake.routing", str(SHIPPED)], capture_output=True, text=True,
                        cwd=PROJECT_ROOT, timeout=120, check=False)
    assert ok.returncode == 0 and "public-bucket: alertmanager on firing -> remediate_findings" in ok.stdout
    bad = write(tmp_path, "version: 1\nroutes:\n  - {name: x, runbook: nope}\n")
    failed = subprocess.run([sys.executable, "-m", "include.intake.routing", str(bad)], capture_output=True, text=True,
                            cwd=PROJECT_ROOT, timeout=120, check=False)
    assert failed.returncode == 1 and "route 'x', field runbook: 'nope' does not exist in dags/" in failed.stderr


# ---- validation errors name the route and the field ------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("""
         version: 1
         routes:
           - name: db-down
             runbook: failover_service
         """, "route 'db-down', field runbook: 'failover_service' does not exist in dags/ (known: compliance_scan, "
              "inventory_estate, remediate_findings)"),
        ("""
         version: 1
         routes:
           - name: fix
             runbook: remediate_findings
             on: [firing, resolved]
         """, "route 'fix' (routes[0]), field on: a resolved event never starts a runbook"),
        ("""
         version: 1
         routes:
           - name: ok
             runbook: remediate_findings
           - name: typo
             runbook: remediate_findings
             matches: {labels: {a: b}}
         """, "route 'typo' (routes[1]), field matches: Extra inputs are not permitted"),
        ("""
         version: 1
         routes:
           - name: regex
             runbook: remediate_findings
             match: {labels_regex: {x: "(unclosed"}}
         """, "route 'regex' (routes[0]), field match.labels_regex: labels_regex.x: not a regular expression"),
        ("""
         version: 1
         routes:
           - name: field
             runbook: remediate_findings
             conf: {reason: {$field: colour}}
         """, "route 'field' (routes[0]), field conf: reason: unknown event field 'colour'"),
        ("""
         version: 1
         routes:
           - name: fmt
             runbook: remediate_findings
             conf: {reason: {$format: "alert {alertname}"}}
         """, "route 'fmt' (routes[0]), field conf: reason: unknown placeholder '{alertname}'"),
        ("""
         version: 1
         routes:
           - name: key
             runbook: remediate_findings
             conf: {idempotency_key: mine}
         """, "route 'key' (routes[0]), field conf: 'idempotency_key' is set by the receiver"),
        ("""
         version: 1
         routes:
           - name: two
             runbook: remediate_findings
             conf: {resources: {$label: a, $labels: b}}
         """, "route 'two' (routes[0]), field conf: resources: a template is one of"),
        ("""
         version: 1
         routes:
           - name: src
             source: nagios
             runbook: remediate_findings
         """, "route 'src' (routes[0]), field source.0: Input should be 'alertmanager', 'pagerduty' or 'generic'"),
        ("""
         version: 1
         routes:
           - {name: same, runbook: remediate_findings}
           - {name: same, runbook: compliance_scan}
         """, "route name 'same' is used twice"),
        ("""
         version: 1
         routes:
           - name: cut
             runbook: remediate_findings
             conf: {reason: {$format: "x", max_length: 0}}
         """, "route 'cut' (routes[0]), field conf: reason: max_length must be a positive integer"),
        ("""
         version: 1
         routes:
           - name: cut
             runbook: remediate_findings
             conf: {resources: {$labels: b, max_length: 3}}
         """, "route 'cut' (routes[0]), field conf: resources: a template is one of"),
        ("""
         routes: []
         """, "version: Field required"),
        ("""
         version: 1
         routes:
           - name: x
             runbook: remediate_findings
             conf: [unclosed
         """, "not valid YAML"),
    ],
)
def test_bad_routing_files_are_refused_naming_route_and_field(tmp_path: Path, text: str, expected: str) -> None:
    assert expected in refused(tmp_path, text)


def test_yaml_reads_a_bare_on_as_true_and_it_still_works(tmp_path: Path) -> None:
    table = load_routes(write(tmp_path, """
        version: 1
        routes:
          - name: updates
            source: pagerduty
            on: [updated]
            runbook: remediate_findings
        """), RUNBOOKS)
    assert table.routes[0].on == ["updated"]


def test_a_store_reloads_a_changed_file_and_holds_an_invalid_one_as_its_error(tmp_path: Path) -> None:
    path = write(tmp_path, "version: 1\nroutes:\n  - {name: a, runbook: remediate_findings}\n")
    store = RouteStore(path, RUNBOOKS)
    assert [r.name for r in store.get().routes] == ["a"]
    path.write_text("version: 1\nroutes:\n  - {name: a, runbook: nope_nope}\n")
    with pytest.raises(RoutingError, match="nope_nope"):
        store.get()
    path.write_text("version: 1\nroutes:\n  - {name: b, runbook: compliance_scan}\n  - {name: c, runbook: compliance_scan}\n")
    assert [r.name for r in store.get().routes] == ["b", "c"]
    missing = RouteStore(tmp_path / "absent.yaml", RUNBOOKS)
    with pytest.raises(RoutingError, match="cannot be read"):
        missing.get()


# ---- matching and templates -------------------------------------------------------------------------------
def test_first_matching_route_wins_and_resolved_never_starts(tmp_path: Path) -> None:
    table = load_routes(write(tmp_path, """
        version: 1
        routes:
          - name: critical
            runbook: remediate_findings
            match: {severity: critical, labels: {alertname: [PublicBucket, OpenBucket]}}
          - name: any-bucket
            runbook: compliance_scan
            match: {labels_regex: {alertname: ".*Bucket"}}
        """), RUNBOOKS)
    firing = events.from_alertmanager(events.AlertmanagerPayload.model_validate(
        public_bucket_alert("g1", ["rb-a", "rb-b"])))
    assert firing.severity == "critical" and choose(table, firing).route is not None
    assert choose(table, firing).reason == "route critical"
    resolved = events.from_alertmanager(events.AlertmanagerPayload.model_validate(
        public_bucket_alert("g1", ["rb-a"], status="resolved")))
    decision = choose(table, resolved)
    assert decision.route is None and decision.reason == "resolved: a resolved event never starts a runbook"
    other = Event(source="generic", key="intake__generic__x", event_id="x", status="firing",
                  labels={"alertname": "TinyBucket"})
    assert choose(table, other).reason == "route any-bucket"
    none = Event(source="generic", key="intake__generic__y", event_id="y", status="firing", labels={"alertname": "Cpu"})
    assert choose(table, none).reason == ("no route matches (critical: severity is None, not critical; any-bucket: "
                                          "label alertname is 'Cpu', not matching '.*Bucket')")


def test_conf_templates_render_from_the_event(tmp_path: Path) -> None:
    table = load_routes(write(tmp_path, """
        version: 1
        routes:
          - name: t
            runbook: remediate_findings
            conf:
              dry_run: true
              rule: {$label: rule, default: aws_s3_bucket_versioning}
              resources: {$labels: bucket}
              tag_values: {owner: {$label: team}}
              reason: {$format: "{source} {labels.alertname} on {service}: {summary}"}
              finding_ids: [{$field: event_id}]
        """), RUNBOOKS)
    route = table.routes[0]
    alerts = [events.AlertmanagerAlert.model_validate({"status": "firing", "fingerprint": f"f{i}",
                                                       "labels": {"alertname": "A", "team": "sec", "bucket": b}})
              for i, b in enumerate(["b2", "b1", "b2"])]
    event = Event(source="alertmanager", key="k", event_id="gk", status="firing",
                  labels={"alertname": "A", "team": "sec"}, summary="sum", alerts=tuple(dict(a.labels) for a in alerts))
    assert render_conf(route, event) == {
        "dry_run": True, "rule": "aws_s3_bucket_versioning", "resources": ["b1", "b2"],
        "tag_values": {"owner": "sec"}, "reason": "alertmanager A on : sum", "finding_ids": ["gk"],
    }
    no_team = Event(source="generic", key="k", event_id="e", status="firing", labels={}, alerts=({"bucket": "b"},))
    with pytest.raises(TemplateError, match="route t: conf needs the event has no label 'team'"):
        render_conf(route, no_team)


# ---- idempotency keys -------------------------------------------------------------------------------------
def test_keys_are_valid_run_ids_and_idempotency_keys() -> None:
    run_id_pattern = re.compile(r"^[A-Za-z0-9_.~:+-]+$")  # [scheduler] allowed_run_id_pattern (3.3.2 default)
    param_pattern = re.compile(idempotency_key_param().schema["pattern"])
    awkward = ['{}/{team="security"}:{alertname="Public Bucket/../x"}', "a" * 5000, "ünïcödé", "..", "-", ""]
    keys = [events.alertmanager_key(group, ["f2", "f1"], name) for group in awkward for name in awkward]
    keys += [events.run_key("pagerduty", safe_token(text, 100)) for text in awkward]
    for key in keys:
        assert run_id_pattern.match(key) and ".." not in key and len(key) <= 200, key
        assert param_pattern.match(key), key
    # distinct inputs stay distinct, equal identities are equal (order of fingerprints does not matter)
    assert events.alertmanager_key("g", ["a", "b"], "X") == events.alertmanager_key("g", ["b", "a", "a"], "X")
    assert events.alertmanager_key("g", ["a"], "X") != events.alertmanager_key("g", ["a", "b"], "X")
    assert events.alertmanager_key("g1", ["a"], "X") != events.alertmanager_key("g2", ["a"], "X")
    assert safe_token("a/b", 50) != safe_token("a b", 50) and safe_token("PGR0VU2", 50) == "PGR0VU2"


def test_pagerduty_statuses() -> None:
    def status(event_type: str) -> str:
        return events.from_pagerduty(events.PagerDutyPayload.model_validate(pd_payload(event_type, "PX"))).status

    assert [status(t) for t in ("incident.triggered", "incident.reopened", "incident.resolved",
                                "incident.acknowledged", "incident.escalated", "incident.priority_updated")] == [
        "firing", "firing", "resolved", "updated", "updated", "updated"]
    note = pd_payload("incident.annotated", "PX")
    note["event"]["data"] = {"type": "incident_note", "id": "N1", "content": "hi",
                             "incident": {"id": "PX", "type": "incident_reference"}}
    event = events.from_pagerduty(events.PagerDutyPayload.model_validate(note))
    assert event.incident == "PX" and event.key == "intake__pagerduty__PX" and event.status == "updated"


# ---- signatures ---------------------------------------------------------------------------------------------
def test_secret_parsing_rotation_and_weak_secrets() -> None:
    parsed = signatures.parse_secrets("  first-secret-0123456789,\nsecond-secret-0123456789 short ")
    assert parsed.values == ("first-secret-0123456789", "second-secret-0123456789")
    assert parsed.problems == ("secret #3 is shorter than 16 characters and is not used",)
    assert signatures.parse_secrets("").problems == ("no secret is set (the connection's password is empty)",)
    assert signatures.parse_secrets(None).values == ()


def test_pagerduty_signature_as_pagerduty_documents_it() -> None:
    # PagerDuty's docs: HMAC-SHA256 of the raw body with the signing secret, hex, "v1=" prefixed,
    # several comma-separated while PagerDuty rotates.
    secret = "pagerduty-doc-secret-000000"
    body = b'{"event":{"id":"01","event_type":"incident.triggered"}}'
    expected = "v1=" + hmac.new(secret.encode("ASCII"), body, hashlib.sha256).hexdigest()
    secrets = signatures.parse_secrets(secret)
    signatures.check_pagerduty(expected, body, secrets)
    signatures.check_pagerduty(f"v1={'0' * 64},{expected}", body, secrets)
    signatures.check_pagerduty(expected.upper().replace("V1=", "v1="), body, secrets)  # hex case does not matter
    for header in (None, "", "v1=", "v0=" + "a" * 64, "v1=" + "0" * 64, expected + "00"):
        with pytest.raises(signatures.AuthError):
            signatures.check_pagerduty(header, body, secrets)


def test_generic_signature_window() -> None:
    secret = signatures.parse_secrets("generic-secret-0123456789")
    body = b'{"event_id":"e1"}'
    good = "v1=" + signatures.sign("generic-secret-0123456789", b"1000." + body)
    signatures.check_generic("1000", good, body, secret, now=1000 + 300)
    signatures.check_generic("1000", good, body, secret, now=1000 - 300)
    with pytest.raises(signatures.AuthError, match="stale timestamp: 301 s"):
        signatures.check_generic("1000", good, body, secret, now=1301)
    for stamp in (None, "", "-5", "1e3", "10.5", "1" * 13):
        with pytest.raises(signatures.AuthError):
            signatures.check_generic(stamp, good, body, secret, now=1000)
    with pytest.raises(signatures.AuthError, match="does not match"):  # a forged body never learns about the clock
        signatures.check_generic("1", "v1=" + "a" * 64, body, secret, now=1000)
