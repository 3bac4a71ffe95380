"""Notifier: log + file by default, only new critical/high findings, Slack webhook and SMTP on localhost."""

from __future__ import annotations

import json
import logging
import socketserver
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
    send,
)

WEBHOOK_SECRET = "XyZ-s3cr3t-w3bh00k-t0ken"
SMTP_PASSWORD = "smtp-pa55-never-logged"


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
    url = f"http://127.0.0.1:{server.server_port}/services/T000/B000/{WEBHOOK_SECRET}"
    monkeypatch.setenv("AIRFLOW_CONN_SLACK_RUNBOOKS", json.dumps({"conn_type": "slackwebhook", "password": url}))
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
    assert WEBHOOK_SECRET not in caplog.text
    assert WEBHOOK_SECRET not in notifications_path(data_dir).read_text()


def test_slack_failure_is_raised_without_the_url(
    data_dir: Path, webhook: ThreadingHTTPServer, caplog: pytest.LogCaptureFixture
) -> None:
    webhook.status = 403  # type: ignore[attr-defined]
    with pytest.raises(NotificationError) as raised:
        notify_new_findings(MIXED)
    assert "slack" in str(raised.value) and "403" in str(raised.value)
    assert WEBHOOK_SECRET not in str(raised.value)
    [line] = lines(data_dir)  # the file still records the attempt
    assert line["channels"]["slack"].startswith("failed:")
    assert WEBHOOK_SECRET not in notifications_path(data_dir).read_text() + caplog.text


def test_slack_unreachable_is_raised_without_the_url(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/services/T000/B000/{WEBHOOK_SECRET}"
    monkeypatch.setenv("AIRFLOW_CONN_SLACK_RUNBOOKS", json.dumps({"conn_type": "slackwebhook", "password": url}))
    with pytest.raises(NotificationError) as raised:
        send(Notification(title="t", text="x"), channels=["slack"])
    assert "unreachable" in str(raised.value) and WEBHOOK_SECRET not in str(raised.value)
    assert WEBHOOK_SECRET not in notifications_path(data_dir).read_text()


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
