"""What each source sends, validated, and the one event shape routing works on.

Each source's payload is a pydantic model (a wrong type or a missing field is a 400 naming it); each is
turned into an :class:`Event` with the incident's **idempotency key**, derived from the event, never
from a hash of the raw body (a re-sent body differs in timestamps and ordering, and two different
incidents can share a body):

=============  ==============================================================================
alertmanager   the group key plus the sorted fingerprints of the group's *firing* alerts
               (``intake__alertmanager__<alertname>__<sha256 of both, 24 hex>``)
pagerduty      the incident id (``intake__pagerduty__<incident id>``); an event that is not about an
               incident uses its event id
generic        the sender's explicit ``event_id`` (``intake__generic__<event_id>``)
=============  ==============================================================================

The key is a valid Airflow run id (``[A-Za-z0-9_.:+-]``, no ``..``, at most 200 characters) and a
valid ``idempotency_key`` parameter (``include.params.idempotency_key_param``): the runbook's run id and
its change ledger key are the same string.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Source = Literal["alertmanager", "pagerduty", "generic"]
SOURCES: tuple[Source, ...] = ("alertmanager", "pagerduty", "generic")
#: firing: a problem starts (or starts again); resolved: it ended; updated: something else happened to a
#: live incident (PagerDuty acknowledged, escalated ...); other: not about an incident at all.
Status = Literal["firing", "resolved", "updated", "other"]

#: A generic sender's event id: what the run id is made of, so it must be usable as one as it is.
EVENT_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:+-]{0,127}$"
_UNSAFE = re.compile(r"[^A-Za-z0-9_.:+-]+")
_KEY_MAX = 200

class _Model(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)


# ---- Alertmanager (webhook payload version 4) ----------------------------------------------------------
class AlertmanagerAlert(_Model):
    status: Literal["firing", "resolved"]
    labels: dict[str, str] = Field(default_factory=dict, max_length=256)
    annotations: dict[str, str] = Field(default_factory=dict, max_length=256)
    startsAt: str | None = None
    endsAt: str | None = None
    generatorURL: str | None = None
    fingerprint: str = Field(pattern=r"^[A-Za-z0-9]{1,64}$")


class AlertmanagerPayload(_Model):
    version: Literal["4"]
    groupKey: str = Field(min_length=1)
    truncatedAlerts: int = Field(default=0, ge=0)
    status: Literal["firing", "resolved"]
    receiver: str = ""
    groupLabels: dict[str, str] = Field(default_factory=dict, max_length=256)
    commonLabels: dict[str, str] = Field(default_factory=dict, max_length=256)
    commonAnnotations: dict[str, str] = Field(default_factory=dict, max_length=256)
    externalURL: str = ""
    alerts: list[AlertmanagerAlert] = Field(min_length=1, max_length=5000)


# ---- PagerDuty (V3 webhooks) ---------------------------------------------------------------------------
class PagerDutyReference(_Model):
    id: str | None = Field(default=None, max_length=256)
    summary: str | None = None
    type: str | None = None


class PagerDutyData(_Model):
    id: str | None = Field(default=None, max_length=256)
    type: str = Field(max_length=256)
    status: str | None = None
    title: str | None = None
    incident_key: str | None = None
    urgency: str | None = None
    service: PagerDutyReference | None = None
    priority: PagerDutyReference | None = None
    incident: PagerDutyReference | None = None


class PagerDutyEvent(_Model):
    id: str = Field(min_length=1, max_length=256)
    event_type: str = Field(min_length=1, max_length=256)
    resource_type: str = Field(default="", max_length=256)
    occurred_at: str | None = None
    data: PagerDutyData


class PagerDutyPayload(_Model):
    event: PagerDutyEvent


# ---- Generic (our own envelope, signed with HMAC) ------------------------------------------------------
class GenericPayload(BaseModel):
    """The generic source's body. Unknown fields are refused (a typo would otherwise be silently dropped)."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    event_id: str = Field(pattern=EVENT_ID_PATTERN, description="The sender's id of the incident / event.")
    status: Literal["firing", "resolved"] = "firing"
    type: str | None = Field(default=None, max_length=256, description="The sender's event type, if any.")
    service: str | None = Field(default=None, max_length=256)
    severity: str | None = Field(default=None, max_length=64)
    summary: str | None = None
    labels: dict[str, str] = Field(default_factory=dict, max_length=256)


# ---- the one event shape -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Event:
    """One delivery, normalised: what routing matches on and what a conf template may use."""

    source: Source
    #: The incident's idempotency key (a valid run id); None when the event cannot start anything.
    key: str | None
    #: The sender's id of this delivery's event (PagerDuty event id, generic event id, Alertmanager group key).
    event_id: str
    status: Status
    event_type: str | None = None
    #: The incident the key stands for (PagerDuty incident id, Alertmanager group key, generic event id).
    incident: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    service: str | None = None
    severity: str | None = None
    summary: str | None = None
    #: Labels of each alert the event carries (Alertmanager: the firing alerts; others: one entry).
    alerts: tuple[Mapping[str, str], ...] = ()

    def field_value(self, name: str) -> str | None:
        """A scalar field by name (for routing and conf templates)."""
        value: Any = {
            "source": self.source, "status": self.status, "event_type": self.event_type, "event_id": self.event_id,
            "incident": self.incident, "service": self.service, "severity": self.severity, "summary": self.summary,
            "idempotency_key": self.key,
        }.get(name)
        return None if value is None else str(value)


#: Names a conf template can take with ``{"$field": name}`` / ``{field}`` in ``$format``.
EVENT_FIELDS = ("source", "status", "event_type", "event_id", "incident", "service", "severity", "summary",
                "idempotency_key")


def safe_token(text: str, max_length: int) -> str:
    """``text`` as run-id characters; when anything had to change, a digest of the original keeps it unique."""
    cleaned = _UNSAFE.sub("-", text)
    while ".." in cleaned:
        cleaned = cleaned.replace("..", ".")
    cleaned = cleaned.strip("-.:+")
    if cleaned == text and cleaned and len(cleaned) <= max_length and cleaned[0].isalnum():
        return cleaned
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    head = cleaned[: max(0, max_length - 17)].rstrip("-.:+")
    return f"{head}-{digest}" if head and head[0].isalnum() else f"h{digest}"


def run_key(source: Source, token: str) -> str:
    key = f"intake__{source}__{token}"
    if len(key) > _KEY_MAX:  # guarded by the callers' lengths; never cut silently
        raise ValueError(f"idempotency key longer than {_KEY_MAX} characters: {key[:60]}...")
    return key


def _common_labels(alerts: list[AlertmanagerAlert]) -> dict[str, str]:
    common = dict(alerts[0].labels)
    for alert in alerts[1:]:
        common = {k: v for k, v in common.items() if alert.labels.get(k) == v}
    return common


def alertmanager_key(group_key: str, fingerprints: list[str], alertname: str | None) -> str:
    """``intake__alertmanager__<alertname>__<digest>``: the digest is over the group key and the sorted
    fingerprints (of the firing alerts): identity fields of the event, not its body."""
    identity = group_key + "\n" + "\n".join(sorted(set(fingerprints)))
    digest = hashlib.sha256(identity.encode()).hexdigest()[:24]
    name = safe_token(alertname or "group", 60)
    return run_key("alertmanager", f"{name}__{digest}")


def from_alertmanager(payload: AlertmanagerPayload) -> Event:
    firing = [a for a in payload.alerts if a.status == "firing"]
    labels = _common_labels(firing) if firing else dict(payload.commonLabels)
    alertname = labels.get("alertname") or payload.groupLabels.get("alertname")
    status: Status = "firing" if payload.status == "firing" and firing else "resolved"
    key = alertmanager_key(payload.groupKey, [a.fingerprint for a in firing], alertname) if firing else None
    summary = payload.commonAnnotations.get("summary") or (firing[0].annotations.get("summary") if firing else None)
    return Event(
        source="alertmanager", key=key, event_id=payload.groupKey, status=status, event_type=None,
        incident=payload.groupKey, labels=labels, service=labels.get("service"), severity=labels.get("severity"),
        summary=summary, alerts=tuple(dict(a.labels) for a in firing),
    )


#: PagerDuty event types that mean "the incident is (again) a problem".
_PD_FIRING = {"incident.triggered", "incident.reopened"}


def from_pagerduty(payload: PagerDutyPayload) -> Event:
    event, data = payload.event, payload.event.data
    if data.type == "incident" and data.id:
        incident: str | None = data.id
    elif data.incident is not None and data.incident.id:
        incident = data.incident.id
    else:
        incident = None
    if incident is None:
        status: Status = "other"
    elif event.event_type in _PD_FIRING:
        status = "firing"
    elif event.event_type == "incident.resolved":
        status = "resolved"
    else:
        status = "updated"
    service = data.service.summary if data.service else None
    priority = data.priority.summary if data.priority else None
    labels = {
        "event_type": event.event_type,
        "incident_id": incident,
        "service": service,
        "service_id": data.service.id if data.service else None,
        "urgency": data.urgency,
        "priority": priority,
        "incident_key": data.incident_key,
    }
    clean = {k: v for k, v in labels.items() if v}
    token = safe_token(incident or event.id, 100)
    return Event(
        source="pagerduty", key=run_key("pagerduty", token), event_id=event.id, status=status,
        event_type=event.event_type, incident=incident, labels=clean, service=service,
        severity=priority or data.urgency, summary=data.title, alerts=(clean,),
    )


def from_generic(payload: GenericPayload) -> Event:
    labels = dict(payload.labels)
    service = payload.service or labels.get("service")
    severity = payload.severity or labels.get("severity")
    if ".." in payload.event_id:
        raise ValueError("event_id must not contain '..'")
    return Event(
        source="generic", key=run_key("generic", payload.event_id), event_id=payload.event_id,
        status=payload.status, event_type=payload.type, incident=payload.event_id, labels=labels,
        service=service, severity=severity, summary=payload.summary, alerts=(labels,),
    )
