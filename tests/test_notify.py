"""Notifier: log + file by default, only new critical/high findings; Slack (SlackWebhookHook), e-mail (SmtpHook)
and PagerDuty (PagerdutyHook) against real local servers that capture what the providers' hooks send."""

from __future__ import annotations

import datetime
import ipaddress
import json
import logging
import os
import re
import socketserver
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from include.compliance.model import Finding, finding_id
from include.notify import (
    Notification,
    NotificationError,
    RunbookNotifier,
    notifications_path,
    notify_new_findings,
    pagerduty_incident_id,
    send,
)

WEBHOOK_SECRET = "XyZ-s3cr3t-w3bh00k-t0ken"
SMTP_PASSWORD = "smtp-pa55-never-logged"
PAGERDUTY_TOKEN = "u+PdR3stT0kenNeverLogged"
PAGERDUTY_ROUTING_KEY = "R0utingKeyNeverLogged0123456789a"
INCIDENT = "Q1EXAMPLE2PD"


def finding(rule: str, resource: str, *, severity: str, status: str = "fail", lifecycle: str = "new") -> Finding:
    return Finding(
        finding_id=finding_id(rule, "aws-prod", resource), rule_id=rule, title=rule.replace("_", " "),
        severity=severity, status=status, cloud="aws", target="aws-prod",  # type: ignore[arg-type]
        account="123456789012", region="us-east-1", resource_type="aws.s3.bucket", resource_id=resource,
        resource_name=resource.rsplit(":", 1)[-1], detail="breaks the rule", remediation="fix it",
        frameworks={"CIS AWS Foundations v3.0.0": ["2.1.1"]}, lifecycle=lifecycle,  # type: ignore[arg-type]
        waiver={"reason": "accepted", "owner": "o", "expires": "2027-01-01"} if status == "waived" else None,
    )


MIXED = [
    finding("aws_s3_public_access_block", "arn:aws:s3:::new-critical", severity="critical"),
    finding("aws_s3_encryption", "arn:aws:s3:::new-high", severity="high"),
    finding("aws_s3_encryption", "arn:aws:s3:::open-high", severity="high", lifecycle="open"),
    finding("aws_s3_versioning", "arn:aws:s3:::new-medium", severity="medium"),
    finding("aws_s3_public_access_block", "arn:aws:s3:::waived", severity="critical", status="waived"),
    finding("aws_s3_encryption", "arn:aws:s3:::fixed", severity="high", status="pass", lifecycle="resolved"),
    finding("aws_s3_encryption", "arn:aws:s3:::fine", severity="high", status="pass"),
]


def lines(data_dir: Path) -> list[dict[str, Any]]:
    path = notifications_path(data_dir)
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.fixture(autouse=True)
def no_channels(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_SLACK_RUNBOOKS", raising=False)
    monkeypatch.delenv("AIRFLOW_CONN_SMTP_RUNBOOKS", raising=False)
    monkeypatch.delenv("AIRFLOW_CONN_PAGERDUTY_RUNBOOKS", raising=False)


# ---- local Slack webhook ------------------------------------------------------------------------
class _Webhook(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.server.requests.append({"path": self.path, "body": json.loads(body)})  # type: ignore[attr-defined]
        status = self.server.status  # type: ignore[attr-defined]
        self.send_response(status)
        self.end_headers()
        self.wfile.write(b"ok" if status == 200 else b"invalid_token")

    def log_message(self, *args: Any) -> None:  # keep the test output quiet
        pass


@pytest.fixture
def webhook(monkeypatch: pytest.MonkeyPatch) -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Webhook)
    server.requests = []  # type: ignore[attr-defined]
    server.status = 200  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    # The provider's connection form: endpoint (host, schema) + webhook token (password).
    monkeypatch.setenv("AIRFLOW_CONN_SLACK_RUNBOOKS", json.dumps({
        "conn_type": "slackwebhook", "schema": "http", "host": f"127.0.0.1:{server.server_port}/services",
        "password": f"T000/B000/{WEBHOOK_SECRET}"}))
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


# ---- local SMTP sink ------------------------------------------------------------------------------
class _Smtp(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        self.wfile.write(b"220 localhost test smtp\r\n")
        data: list[bytes] | None = None
        while line := self.rfile.readline():
            if data is not None:
                if line in (b".\r\n", b".\n"):
                    self.server.messages.append(b"".join(data).decode())  # type: ignore[attr-defined]
                    data = None
                    self.wfile.write(b"250 OK queued\r\n")
                else:
                    data.append(line)
                continue
            command = line.strip().split(b" ")[0].upper()
            if command == b"DATA":
                data = []
                self.wfile.write(b"354 end with .\r\n")
            elif command == b"QUIT":
                self.wfile.write(b"221 bye\r\n")
                return
            else:
                self.wfile.write(b"250 OK\r\n")


@pytest.fixture
def smtp(monkeypatch: pytest.MonkeyPatch) -> Iterator[socketserver.ThreadingTCPServer]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Smtp)
    server.daemon_threads = True
    server.messages = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    conn = {
        "conn_type": "email", "host": "127.0.0.1", "port": server.server_address[1], "password": SMTP_PASSWORD,
        "extra": {"disable_tls": True, "disable_ssl": True, "to": "oncall@example.com, lead@example.com",
                  "from_email": "runbooks@example.com", "retry_limit": 0, "timeout": 5},
    }
    monkeypatch.setenv("AIRFLOW_CONN_SMTP_RUNBOOKS", json.dumps(conn))
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


# ---- local PagerDuty REST API (HTTPS: the PagerDuty client accepts https base URLs only) ----------------
def self_signed_cert(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 (and its key), trusted by the client through SSL_CERT_FILE."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "pd-cert.pem", directory / "pd-key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


class _PagerDuty(BaseHTTPRequestHandler):
    """REST API v2 answers in PagerDuty's shapes: POST /incidents/{id}/notes (201 {"note"}), GET / PUT
    /incidents/{id} ({"incident"}); an unknown incident is a 404 with PagerDuty's error body."""

    def _answer(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        server: Any = self.server
        server.requests.append({"method": method, "path": self.path, "body": body,
                                "authorization": self.headers.get("Authorization"), "from": self.headers.get("From")})
        match = re.fullmatch(r"/incidents/([A-Za-z0-9]+)(/notes)?", self.path)
        incident = server.incidents.get(match[1]) if match else None
        if incident is None:
            status, answer = 404, {"error": {"message": "Not Found", "code": 2100}}
        elif match and match[2] and method == "POST":
            note = {"id": f"PN{len(server.requests)}", "content": body["note"]["content"],
                    "user": {"summary": self.headers.get("From")}}
            incident.setdefault("notes", []).append(note)
            status, answer = 201, {"note": note}
        elif method == "PUT":
            incident["status"] = body["incident"]["status"]
            status, answer = 200, {"incident": {k: v for k, v in incident.items() if k != "notes"}}
        else:
            status, answer = 200, {"incident": {k: v for k, v in incident.items() if k != "notes"}}
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        self._answer("POST")

    def do_PUT(self) -> None:
        self._answer("PUT")

    def do_GET(self) -> None:
        self._answer("GET")

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def pagerduty(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[ThreadingHTTPServer]:
    """A local PagerDuty REST API on https://127.0.0.1:PORT, reached through the ``pagerduty_runbooks``
    connection's host (the client's base-URL property, as for PagerDuty's EU service region)."""
    cert_file, key_file = self_signed_cert(tmp_path)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _PagerDuty)
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert_file, key_file)
    server.socket = tls.wrap_socket(server.socket, server_side=True)
    server.requests = []  # type: ignore[attr-defined]
    server.incidents = {INCIDENT: {"id": INCIDENT, "type": "incident", "status": "triggered"}}  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("SSL_CERT_FILE", str(cert_file))
    monkeypatch.setenv("AIRFLOW_CONN_PAGERDUTY_RUNBOOKS", json.dumps({
        "conn_type": "pagerduty", "host": "127.0.0.1", "port": server.server_port, "password": PAGERDUTY_TOKEN,
        "extra": {"from_email": "runbooks@example.com", "routing_key": PAGERDUTY_ROUTING_KEY}}))
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


# ---- tests ----------------------------------------------------------------------------------------
def test_default_channels_log_and_file(data_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    notification = Notification(
        title="backup_verify: restore drill passed", text="3 of 3 restores verified",
        runbook="backup_verify", run_id="manual__1", link="https://airflow.example/runs/1",
        fields={"error": "reached postgresql://admin:hunter2@db:5432/x and token=abc123"},
    )
    result = send(notification)
    assert result == {"slack": "not configured", "email": "not configured", "log": "sent", "file": "sent"}
    assert "[notify] INFO backup_verify: restore drill passed: 3 of 3 restores verified" in caplog.text
    [line] = lines(data_dir)
    assert line["title"] == notification.title and line["runbook"] == "backup_verify"
    assert line["channels"]["slack"] == "not configured"
    raw = notifications_path(data_dir).read_text()
    assert "hunter2" not in raw and "abc123" not in raw


def test_runbook_notifier_as_a_callback(data_dir: Path) -> None:
    from airflow.sdk import DAG

    class TI:
        dag_id, task_id, run_id, state = "dr_failover", "promote_standby", "manual__2", "failed"

    dag = DAG("dr_failover", schedule=None)
    notifier = RunbookNotifier(title="{{ dag.dag_id }} needs a human", text="promote_standby failed", severity="critical")
    notifier({"dag": dag, "ti": TI(), "run_id": "manual__2", "exception": RuntimeError("boom")})
    [line] = lines(data_dir)
    assert (line["title"], line["severity"], line["task_id"], line["run_id"]) == (
        "dr_failover needs a human", "critical", "promote_standby", "manual__2",
    )
    assert line["fields"] == {"state": "failed", "error": "RuntimeError: boom"}


def test_only_new_critical_and_high_findings_notify(data_dir: Path) -> None:
    result = notify_new_findings(MIXED, scan_id="scan-1", report_url="file:///reports/latest/report.html")
    assert result["notified"] is True and result["count"] == 2
    [line] = lines(data_dir)
    assert [item["resource"] for item in line["items"]] == ["new-critical", "new-high"]
    assert line["severity"] == "critical" and line["link"] == "file:///reports/latest/report.html"
    assert line["fields"]["by_severity"] == {"critical": 1, "high": 1}
    assert line["title"] == "2 new critical/high compliance findings"


def test_nothing_new_means_no_notification(data_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    quiet = [f for f in MIXED if not (f.lifecycle == "new" and f.status == "fail" and f.severity in ("critical", "high"))]
    assert notify_new_findings(quiet, scan_id="scan-2") == {"notified": False, "count": 0, "channels": {}}
    assert lines(data_dir) == []
    assert "no new critical/high findings in scan scan-2" in caplog.text


def test_findings_from_xcom_dicts(data_dir: Path) -> None:
    result = notify_new_findings([f.to_dict() for f in MIXED], top=1)
    assert result["count"] == 2
    assert len(lines(data_dir)[0]["items"]) == 1


def test_slack_webhook_gets_the_message_and_the_url_stays_secret(
    data_dir: Path, webhook: ThreadingHTTPServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    result = notify_new_findings(MIXED, scan_id="scan-3", report_url="https://reports.example/latest")
    assert result["channels"]["slack"] == "sent"
    [request] = webhook.requests  # type: ignore[attr-defined]
    assert request["path"] == f"/services/T000/B000/{WEBHOOK_SECRET}"
    assert "2 new critical/high compliance findings" in request["body"]["text"]
    assert "new-critical" in request["body"]["text"] and "https://reports.example/latest" in request["body"]["text"]
    assert lines(data_dir)[0]["channels"]["slack"] == "sent"
    assert "Sending a request" in caplog.text  # the Slack SDK's debug line (it names the URL) was logged, scrubbed
    assert WEBHOOK_SECRET not in caplog.text
    assert WEBHOOK_SECRET not in notifications_path(data_dir).read_text()


def test_slack_failure_is_reported_not_raised_and_without_the_url(
    data_dir: Path, webhook: ThreadingHTTPServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    webhook.status = 403  # type: ignore[attr-defined]
    result = notify_new_findings(MIXED)  # a failing channel never fails the task
    slack = result["channels"]["slack"]
    assert slack.startswith("failed:") and "403" in slack and "invalid_token" in slack, slack
    assert result["channels"]["log"] == "sent" and result["channels"]["file"] == "sent"
    assert len(webhook.requests) == 1  # type: ignore[attr-defined]  # it was really posted
    [line] = lines(data_dir)  # the file records the attempt
    assert line["channels"]["slack"] == slack
    assert "[notify] not delivered to slack: " in caplog.text
    assert WEBHOOK_SECRET not in notifications_path(data_dir).read_text() + caplog.text + json.dumps(result)


def test_raise_on_failure_raises_after_every_channel_was_tried(
    data_dir: Path, webhook: ThreadingHTTPServer, smtp: socketserver.ThreadingTCPServer
) -> None:
    webhook.status = 500  # type: ignore[attr-defined]
    with pytest.raises(NotificationError) as raised:
        send(Notification(title="t", text="x"), raise_on_failure=True)
    assert "slack" in str(raised.value) and "500" in str(raised.value)
    assert WEBHOOK_SECRET not in str(raised.value)
    assert len(smtp.messages) == 1  # type: ignore[attr-defined]  # e-mail still went out
    [line] = lines(data_dir)
    assert line["channels"]["email"] == "sent" and line["channels"]["slack"].startswith("failed:")


def test_slack_unreachable_is_reported_without_the_url(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import socket

    caplog.set_level(logging.DEBUG)  # the Slack SDK logs the URL at DEBUG and on its retry at INFO
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/services/T000/B000/{WEBHOOK_SECRET}"  # the full URL as password works too
    monkeypatch.setenv("AIRFLOW_CONN_SLACK_RUNBOOKS", json.dumps({"conn_type": "slackwebhook", "password": url}))
    result = send(Notification(title="t", text="x"), channels=["slack"])
    assert result["email"] == "disabled"
    assert result["slack"].startswith("failed:") and "refused" in result["slack"].lower(), result
    assert WEBHOOK_SECRET not in result["slack"] + caplog.text + notifications_path(data_dir).read_text()
    assert "Sending a request" in caplog.text  # the SDK's own debug line was logged, redacted


def test_email_through_smtp_connection(
    data_dir: Path, smtp: socketserver.ThreadingTCPServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    result = notify_new_findings(MIXED, scan_id="scan-4")
    assert result["channels"] == {"slack": "not configured", "email": "sent", "log": "sent", "file": "sent"}
    [message] = smtp.messages  # type: ignore[attr-defined]
    assert "oncall@example.com" in message and "new critical/high compliance findings" in message
    assert SMTP_PASSWORD not in caplog.text and SMTP_PASSWORD not in notifications_path(data_dir).read_text()


def test_from_a_saved_scan_file(data_dir: Path, tmp_path: Path) -> None:
    scan = tmp_path / "findings.json"
    scan.write_text(json.dumps({"scan_id": "scan-5", "findings": [f.to_dict() for f in MIXED]}))
    result = notify_new_findings(scan, reports={"html": "/data/compliance/scans/scan-5/reports/report.html"})
    assert result["count"] == 2
    [line] = lines(data_dir)
    assert line["fields"]["scan_id"] == "scan-5" and line["link"].endswith("scan-5/reports/report.html")


# ---- PagerDuty ------------------------------------------------------------------------------------------
def test_pagerduty_incident_id_only_for_runs_the_intake_started_from_pagerduty() -> None:
    assert pagerduty_incident_id(f"intake__pagerduty__{INCIDENT}") == INCIDENT
    assert pagerduty_incident_id("INC-1", f"intake__pagerduty__{INCIDENT}") == INCIDENT  # the run id
    assert pagerduty_incident_id("intake__alertmanager__ServiceDown__0123456789abcdef01234567") is None
    assert pagerduty_incident_id("manual__2026-11-30T00:00:00+00:00", None, "") is None
    # a token the intake had to rewrite (cleaned + digest) is not an id PagerDuty knows
    assert pagerduty_incident_id("intake__pagerduty__weird-id-0123456789abcdef") is None


def incident_notification(*, resolve: bool, text: str = "orders now runs on its standby (RTO 9.6s)") -> Notification:
    return Notification(
        title="failover_service orders: failed_over (RTO 9.6s)", text=text, severity="warning",
        runbook="failover_service", run_id=f"intake__pagerduty__{INCIDENT}", link="/data/failover/x/result.json",
        pagerduty_incident=INCIDENT, resolve_incident=resolve,
    )


def test_pagerduty_note_then_resolve_through_the_hook(
    data_dir: Path, pagerduty: ThreadingHTTPServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    result = send(incident_notification(resolve=True))
    assert result == {"slack": "not configured", "email": "not configured", "pagerduty": "noted, resolved",
                      "log": "sent", "file": "sent"}
    requests = pagerduty.requests  # type: ignore[attr-defined]
    assert [(r["method"], r["path"]) for r in requests] == [
        ("POST", f"/incidents/{INCIDENT}/notes"), ("GET", f"/incidents/{INCIDENT}"), ("PUT", f"/incidents/{INCIDENT}")]
    note = requests[0]["body"]["note"]["content"]
    assert "failed_over" in note and "RTO 9.6s" in note and f"intake__pagerduty__{INCIDENT}" in note
    assert requests[2]["body"] == {"incident": {"type": "incident_reference", "status": "resolved"}}
    assert all(r["authorization"] == f"Token token={PAGERDUTY_TOKEN}" for r in requests)
    assert all(r["from"] == "runbooks@example.com" for r in requests)
    assert pagerduty.incidents[INCIDENT]["status"] == "resolved"  # type: ignore[attr-defined]
    [line] = lines(data_dir)
    assert line["pagerduty_incident"] == INCIDENT and line["channels"]["pagerduty"] == "noted, resolved"
    written = notifications_path(data_dir).read_text() + caplog.text
    assert PAGERDUTY_TOKEN not in written and PAGERDUTY_ROUTING_KEY not in written


def test_pagerduty_failure_is_a_note_with_the_cause_and_no_resolve(data_dir: Path, pagerduty: ThreadingHTTPServer) -> None:
    result = send(incident_notification(resolve=False, text="orders: failover_service FAILED: switch_dns: no record"))
    assert result["pagerduty"] == "noted"
    [request] = pagerduty.requests  # type: ignore[attr-defined]
    assert "FAILED: switch_dns: no record" in request["body"]["note"]["content"]
    assert pagerduty.incidents[INCIDENT]["status"] == "triggered"  # type: ignore[attr-defined]


def test_pagerduty_already_resolved_or_resolve_switched_off(
    data_dir: Path, pagerduty: ThreadingHTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    pagerduty.incidents[INCIDENT]["status"] = "resolved"  # type: ignore[attr-defined]
    assert send(incident_notification(resolve=True))["pagerduty"] == "noted, already resolved"
    assert [r["method"] for r in pagerduty.requests] == ["POST", "GET"]  # type: ignore[attr-defined]

    pagerduty.incidents[INCIDENT]["status"] = "acknowledged"  # type: ignore[attr-defined]
    pagerduty.requests.clear()  # type: ignore[attr-defined]
    conn = json.loads(os.environ["AIRFLOW_CONN_PAGERDUTY_RUNBOOKS"])
    conn["extra"]["resolve_on_success"] = False
    monkeypatch.setenv("AIRFLOW_CONN_PAGERDUTY_RUNBOOKS", json.dumps(conn))
    assert send(incident_notification(resolve=True))["pagerduty"] == "noted"
    assert [r["method"] for r in pagerduty.requests] == ["POST"]  # type: ignore[attr-defined]
    assert pagerduty.incidents[INCIDENT]["status"] == "acknowledged"  # type: ignore[attr-defined]


def test_pagerduty_only_for_incidents_and_only_when_configured(
    data_dir: Path, pagerduty: ThreadingHTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    plain = send(Notification(title="backup_verify: passed", text="3 of 3"), channels=[])
    assert "pagerduty" not in plain and pagerduty.requests == []  # type: ignore[attr-defined]
    # `channels` chooses who is told; the incident the run was started for is updated all the same
    assert send(incident_notification(resolve=False), channels=[])["pagerduty"] == "noted"
    monkeypatch.delenv("AIRFLOW_CONN_PAGERDUTY_RUNBOOKS")
    assert send(incident_notification(resolve=True))["pagerduty"] == "not configured"
    assert len(pagerduty.requests) == 1  # type: ignore[attr-defined]


def test_pagerduty_failure_is_reported_not_raised_and_without_the_token(
    data_dir: Path, pagerduty: ThreadingHTTPServer, webhook: ThreadingHTTPServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    pagerduty.incidents.clear()  # type: ignore[attr-defined]  # PagerDuty does not know the incident: 404
    result = send(incident_notification(resolve=True))
    assert result["pagerduty"].startswith("failed:") and "404" in result["pagerduty"], result
    assert result["slack"] == "sent" and result["file"] == "sent"  # the other channels are not held up
    assert lines(data_dir)[0]["channels"]["pagerduty"] == result["pagerduty"]
    written = json.dumps(result) + notifications_path(data_dir).read_text() + caplog.text
    assert PAGERDUTY_TOKEN not in written and WEBHOOK_SECRET not in written
