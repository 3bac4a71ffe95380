"""Payload builders and signing helpers shared by the intake tests (this module holds no tests).

The shapes are the senders' own: Alertmanager's webhook message version 4 (notify/webhook/webhook.go:
``version``, ``groupKey``, ``truncatedAlerts`` + template.Data), PagerDuty's V3 webhook envelope
(``event`` with ``id``, ``event_type``, ``resource_type``, ``occurred_at``, ``agent``, ``client``, ``data``;
an ``incident`` data object as in PagerDuty's developer docs), and the generic envelope of docs/intake.md.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from typing import Any

#: Test secrets (>= 16 characters, as the receiver requires).
AM_TOKEN = "am-token-0123456789abcdef"
AM_TOKEN_NEXT = "am-token-next-0123456789"
PD_SECRET = "pd-secret-0123456789abcdefghij"
PD_SECRET_OLD = "pd-secret-old-0123456789abcdef"
GENERIC_SECRET = "generic-secret-0123456789abcdef"

CONNECTIONS = {
    "AIRFLOW_CONN_RUNBOOKS_INTAKE_ALERTMANAGER": {"conn_type": "generic", "password": f"{AM_TOKEN},{AM_TOKEN_NEXT}"},
    "AIRFLOW_CONN_RUNBOOKS_INTAKE_PAGERDUTY": {"conn_type": "generic", "password": f"{PD_SECRET}\n{PD_SECRET_OLD}"},
    "AIRFLOW_CONN_RUNBOOKS_INTAKE_GENERIC": {"conn_type": "generic", "password": GENERIC_SECRET},
}
ALL_SECRETS = (AM_TOKEN, AM_TOKEN_NEXT, PD_SECRET, PD_SECRET_OLD, GENERIC_SECRET)


def connection_env() -> dict[str, str]:
    return {key: json.dumps(value) for key, value in CONNECTIONS.items()}


def unique(prefix: str = "t") -> str:
    return f"{prefix}{uuid.uuid4().hex[:12]}"


def am_alert(fingerprint: str, labels: dict[str, str], status: str = "firing", summary: str = "") -> dict[str, Any]:
    return {
        "status": status,
        "labels": labels,
        "annotations": {"summary": summary} if summary else {},
        "startsAt": "2026-11-30T08:00:00.000Z",
        "endsAt": "0001-01-01T00:00:00Z" if status == "firing" else "2026-11-30T08:10:00.000Z",
        "generatorURL": "http://prometheus:9090/graph?g0.expr=up",
        "fingerprint": fingerprint,
    }


def am_payload(group: str, alerts: list[dict[str, Any]], alertname: str = "PublicBucket",
               summary: str = "S3 bucket is public") -> dict[str, Any]:
    """An Alertmanager v4 message for the group ``group`` (group_by: alertname)."""
    firing = [a for a in alerts if a["status"] == "firing"]
    common = dict(alerts[0]["labels"])
    for alert in alerts[1:]:
        common = {k: v for k, v in common.items() if alert["labels"].get(k) == v}
    return {
        "receiver": "runbooks",
        "status": "firing" if firing else "resolved",
        "alerts": alerts,
        "groupLabels": {"alertname": alertname},
        "commonLabels": common,
        "commonAnnotations": {"summary": summary},
        "externalURL": "http://alertmanager:9093",
        "version": "4",
        "groupKey": f'{{}}/{{team="security"}}:{{alertname="{alertname}", group="{group}"}}',
        "truncatedAlerts": 0,
    }


def public_bucket_alert(group: str, buckets: list[str], status: str = "firing") -> dict[str, Any]:
    alerts = [am_alert(hashlib.sha256(f"{group}{b}".encode()).hexdigest()[:16],
                       {"alertname": "PublicBucket", "bucket": b, "severity": "critical", "team": "security"}, status)
              for b in buckets]
    return am_payload(group, alerts)


def pd_payload(event_type: str, incident_id: str, *, service: str = "Cloud compliance",
               incident_key: str | None = None, event_id: str | None = None, title: str = "Public bucket") -> dict[str, Any]:
    return {
        "event": {
            "id": event_id or str(uuid.uuid4()),
            "event_type": event_type,
            "resource_type": "incident",
            "occurred_at": "2026-11-30T08:00:01.000Z",
            "agent": {"html_url": "https://acme.pagerduty.com/users/PLH1HKV", "id": "PLH1HKV",
                      "self": "https://api.pagerduty.com/users/PLH1HKV", "summary": "Tenex Engineer",
                      "type": "user_reference"},
            "client": {"name": "PagerDuty"},
            "data": {
                "id": incident_id,
                "type": "incident",
                "self": f"https://api.pagerduty.com/incidents/{incident_id}",
                "html_url": f"https://acme.pagerduty.com/incidents/{incident_id}",
                "number": 2,
                "status": {"incident.resolved": "resolved", "incident.acknowledged": "acknowledged"}.get(
                    event_type, "triggered"),
                "incident_key": incident_key,
                "created_at": "2026-11-30T08:00:00Z",
                "title": title,
                "service": {"html_url": "https://acme.pagerduty.com/services/PF9KMXH", "id": "PF9KMXH",
                            "self": "https://api.pagerduty.com/services/PF9KMXH", "summary": service,
                            "type": "service_reference"},
                "assignees": [],
                "escalation_policy": {"id": "PUS0KTE", "summary": "Default", "type": "escalation_policy_reference"},
                "teams": [],
                "priority": {"id": "PSO75BM", "summary": "P1", "type": "priority_reference"},
                "urgency": "high",
                "conference_bridge": None,
                "resolve_reason": None,
            },
        }
    }


def generic_payload(event_id: str, **fields: Any) -> dict[str, Any]:
    return {"event_id": event_id, **fields}


def body_of(payload: Any) -> bytes:
    return json.dumps(payload).encode()


def hmac_hex(secret: str, message: bytes) -> str:
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def am_headers(token: str = AM_TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}


def pd_headers(body: bytes, *secrets: str) -> dict[str, str]:
    signatures = ",".join(f"v1={hmac_hex(s, body)}" for s in (secrets or (PD_SECRET,)))
    return {"X-PagerDuty-Signature": signatures, "Content-Type": "application/json",
            "X-Webhook-Id": str(uuid.uuid4()), "X-Webhook-Subscription": "PSUB123"}


def generic_headers(body: bytes, secret: str = GENERIC_SECRET, timestamp: int | None = None) -> dict[str, str]:
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    return {"X-Runbooks-Timestamp": stamp, "X-Runbooks-Signature": f"v1={hmac_hex(secret, stamp.encode() + b'.' + body)}",
            "Content-Type": "application/json"}


def signed(source: str, payload: Any) -> tuple[bytes, dict[str, str]]:
    """The body and the headers that authenticate it, for ``source``."""
    body = payload if isinstance(payload, bytes) else body_of(payload)
    if source == "alertmanager":
        return body, am_headers()
    if source == "pagerduty":
        return body, pd_headers(body)
    return body, generic_headers(body)
