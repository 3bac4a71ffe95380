"""Notifications for every runbook: a task-log line and a JSON line in a file by default; Slack, e-mail
and PagerDuty through Airflow's own providers when their connections exist.

Channels
- ``log``: one line in the task log (always).
- ``file``: one JSON line appended to ``<RUNBOOKS_DATA_DIR>/notifications/notifications.jsonl`` (always).
- ``slack``: when the connection ``slack_runbooks`` exists: the Slack provider's ``SlackWebhookHook``
  (conn type ``slackwebhook``: the webhook token ``T…/B…/…`` as password with the endpoint as host,
  default ``https://hooks.slack.com/services``, or the full webhook URL as password). The URL and the
  token are secrets: they never appear in a log line (the Slack SDK's own logging goes through a
  redacting logger), the file, the result or an error message.
- ``email``: when the connection ``smtp_runbooks`` exists: the SMTP provider's ``SmtpHook``;
  recipients from the connection extra ``to`` (comma-separated or a list).
- ``pagerduty``: only for a notification about a PagerDuty incident (``pagerduty_incident``: a run the
  intake started from a PagerDuty incident, see :func:`pagerduty_incident_id`) and when the connection
  ``pagerduty_runbooks`` exists: the PagerDuty provider's ``PagerdutyHook`` (REST API v2, the API token
  as password) adds a note to the incident and, when ``resolve_incident`` is set (a verified failover)
  and the connection does not say ``"resolve_on_success": false``, resolves it. Not limited by
  ``channels`` (those choose who is told; this updates the incident the run was started for).

A connection that is not defined means "channel not configured", not an error. A configured channel
that fails never fails the runbook: the failure (without secrets) is in the result
(``"failed: ..."``), the file line and a warning in the task log. ``raise_on_failure=True`` raises
:class:`NotificationError` after every channel was tried, for a caller that wants Airflow's retries.

Use as a callback (``on_failure_callback=RunbookNotifier(severity="critical")``) or from a task
(``notify_new_findings(findings, report_url=...)``).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from airflow.sdk import BaseNotifier

from include.paths import DataPath
from include.redaction import redact, scrub

log = logging.getLogger(__name__)

SLACK_CONN_ID = "slack_runbooks"
SMTP_CONN_ID = "smtp_runbooks"
PAGERDUTY_CONN_ID = "pagerduty_runbooks"
#: The channels ``channels=`` chooses from (PagerDuty follows the notification's incident instead).
CHANNELS = ("slack", "email")
#: How the intake names a run it started from a PagerDuty incident (include/intake/events.py).
PAGERDUTY_KEY_PREFIX = "intake__pagerduty__"
_PAGERDUTY_ID = re.compile(r"[A-Za-z0-9]{1,64}")
#: PagerDuty's limit for a note is 25,000 characters; a runbook's note stays short.
PAGERDUTY_NOTE_MAX = 3000
#: Seconds per PagerDuty request (the client's default is 60; a failover's last task should not wait that).
PAGERDUTY_TIMEOUT = 15
SEVERITIES = ("info", "warning", "critical")
#: Findings severities that page someone when they are new.
NOTIFY_SEVERITIES = ("critical", "high")


class NotificationError(RuntimeError):
    """A configured channel could not deliver (the message says which; never the secret parts)."""


@dataclass(frozen=True)
class Notification:
    """What every channel renders. ``items`` are short dicts (e.g. the top findings)."""

    title: str
    text: str
    severity: str = "info"  # info | warning | critical
    runbook: str | None = None  # DAG id
    run_id: str | None = None
    task_id: str | None = None
    link: str | None = None  # report URL or path
    items: list[dict[str, Any]] = field(default_factory=list)
    fields: dict[str, Any] = field(default_factory=dict)
    #: The PagerDuty incident this notification is about (its id): a note is added to it.
    pagerduty_incident: str | None = None
    #: Resolve that incident too (the runbook fixed what it was about).
    resolve_incident: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def notifications_path(base: DataPath | None = None) -> DataPath:
    """``<RUNBOOKS_DATA_DIR>/notifications/notifications.jsonl`` (data root as the inventory store has it)."""
    from include.paths import data_root

    return (base or data_root()) / "notifications" / "notifications.jsonl"


# ---- connections -------------------------------------------------------------------------------
def get_connection(conn_id: str) -> Any | None:
    """The Airflow connection, or None when it is not defined (channel not configured)."""
    from airflow.sdk import BaseHook

    try:
        return BaseHook.get_connection(conn_id)
    except Exception as exc:
        # airflow.sdk.exceptions.AirflowNotFoundException inside tasks; the core class of the same
        # name elsewhere: match by name so both mean "not configured". Anything else is raised.
        if any(cls.__name__ == "AirflowNotFoundException" for cls in type(exc).__mro__):
            return None
        raise


def pagerduty_incident_id(*keys: str | None) -> str | None:
    """The PagerDuty incident id in the first key (incident id / run id) the intake made from a PagerDuty
    incident (``intake__pagerduty__<incident id>``); None for every other run. A token the intake had to
    rewrite (``<cleaned>-<digest>``) is not an incident id PagerDuty knows, so it is None too."""
    for key in keys:
        if key and key.startswith(PAGERDUTY_KEY_PREFIX):
            token = key[len(PAGERDUTY_KEY_PREFIX):]
            if _PAGERDUTY_ID.fullmatch(token):
                return token
    return None


def _redact(text: str, secrets: Iterable[str] = ()) -> str:
    """The project's one scrubber (:func:`include.redaction.scrub`), plus the secrets this module knows."""
    return scrub(text, secrets)


def _scrub(value: Any) -> Any:
    """:func:`include.redaction.redact` over a JSON-able value (the file line, the log line)."""
    return redact(value)


# ---- channels ----------------------------------------------------------------------------------
def _slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_payload(notification: Notification) -> dict[str, Any]:
    icon = {"critical": ":rotating_light:", "warning": ":warning:"}.get(notification.severity, ":information_source:")
    lines = [f"{icon} *{_slack_escape(notification.title)}*", _slack_escape(notification.text)]
    for item in notification.items[:10]:
        lines.append("• " + _slack_escape(" · ".join(str(v) for v in item.values() if v not in (None, ""))))
    if notification.link:
        lines.append(_slack_escape(f"Report: {notification.link}"))
    text = "\n".join(line for line in lines if line)
    return {"text": text, "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text[:2900]}}]}


class _RedactFilter(logging.Filter):
    """Scrubs ``secrets`` (filled in once the hook knows the URL) out of each record of one logger."""

    def __init__(self, secrets: list[str]) -> None:
        super().__init__()
        self.secrets = secrets

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = _redact(record.getMessage(), self.secrets), None
        return True


def _redacting_logger(secrets: list[str]) -> logging.Logger:
    """The logger handed to the Slack SDK, which logs the webhook URL at DEBUG (and on a retry at INFO): a
    private child of this module's logger (same handlers and level) whose records are scrubbed."""
    logger = logging.Logger(f"{__name__}.slack_sdk")
    logger.parent = log
    logger.addFilter(_RedactFilter(secrets))
    return logger


def send_slack(notification: Notification, *, conn_id: str = SLACK_CONN_ID, secrets: list[str] | None = None) -> None:
    """Post through the Slack provider's ``SlackWebhookHook``. ``secrets`` receives the webhook URL (for the
    caller's redaction of an error)."""
    from airflow.providers.slack.hooks.slack_webhook import SlackWebhookHook

    known = secrets if secrets is not None else []
    hook = SlackWebhookHook(slack_webhook_conn_id=conn_id, logger=_redacting_logger(known))
    known.append(hook.client.url)
    hook.send_dict(slack_payload(notification))


def email_html(notification: Notification) -> str:
    from html import escape

    items = "".join(
        "<li>" + escape(" · ".join(str(v) for v in item.values() if v not in (None, ""))) + "</li>"
        for item in notification.items
    )
    link = f'<p>Report: {escape(notification.link)}</p>' if notification.link else ""
    return (
        f"<h2>{escape(notification.title)}</h2><p>{escape(notification.text)}</p>"
        f"{'<ul>' + items + '</ul>' if items else ''}{link}"
    )


def send_email(conn: Any, notification: Notification, *, conn_id: str = SMTP_CONN_ID) -> None:
    from airflow.providers.smtp.hooks.smtp import SmtpHook

    extra = conn.extra_dejson if hasattr(conn, "extra_dejson") else {}
    recipients = extra.get("to") or extra.get("recipients")
    if isinstance(recipients, str):
        recipients = [r.strip() for r in recipients.split(",") if r.strip()]
    if not recipients:
        raise NotificationError(f"connection {conn_id!r} has no recipients (extra 'to')")
    subject = f"[{notification.severity.upper()}] {notification.title}"
    with SmtpHook(smtp_conn_id=conn_id) as hook:
        hook.send_email_smtp(
            to=list(recipients),
            subject=subject,
            html_content=email_html(notification),
            from_email=extra.get("from_email") or "runbooks@localhost",
        )


def pagerduty_note(notification: Notification) -> str:
    lines = [notification.title, notification.text]
    lines += [f"Run: {notification.runbook} {notification.run_id}" if notification.run_id else ""]
    lines += [f"Result: {notification.link}" if notification.link else ""]
    return _redact("\n".join(line for line in lines if line))[:PAGERDUTY_NOTE_MAX]


def update_pagerduty_incident(conn: Any, notification: Notification, *, conn_id: str = PAGERDUTY_CONN_ID) -> str:
    """Add a note to ``notification.pagerduty_incident`` and resolve it when asked, through the PagerDuty
    provider's ``PagerdutyHook`` (REST API v2). Returns what was done (``noted``, ``noted, resolved``,
    ``noted, already resolved``).

    Connection ``pagerduty_runbooks`` (conn type ``pagerduty``): password = REST API token; extra
    ``from_email`` (or login) = the PagerDuty user the note and the resolve are made as (the ``From``
    header, required with an account-level token); extra ``resolve_on_success`` (default true); host
    (optional) = another API base URL, e.g. ``api.eu.pagerduty.com`` (the EU service region).
    """
    from urllib.parse import quote

    from airflow.providers.pagerduty.hooks.pagerduty import PagerdutyHook

    incident = notification.pagerduty_incident
    if not incident:
        raise ValueError("the notification names no PagerDuty incident")
    extra = conn.extra_dejson if hasattr(conn, "extra_dejson") else {}
    client = PagerdutyHook(pagerduty_conn_id=conn_id).client()
    client.timeout = PAGERDUTY_TIMEOUT
    host = (conn.host or "").strip()
    if host:  # the client's own base-URL property (service regions); it accepts https only
        client.url = (host if "://" in host else f"https://{host}") + (f":{conn.port}" if conn.port else "")
    sender = extra.get("from_email") or conn.login
    if sender:
        client.headers["From"] = str(sender)
    path = f"/incidents/{quote(incident, safe='')}"
    client.rpost(f"{path}/notes", json={"content": pagerduty_note(notification)})
    resolve = extra.get("resolve_on_success", True) not in (False, "false", "False", "0", 0)
    if not (notification.resolve_incident and resolve):
        return "noted"
    current = client.rget(path)
    if isinstance(current, dict) and current.get("status") == "resolved":
        return "noted, already resolved"
    client.rput(path, json={"type": "incident_reference", "status": "resolved"})
    return "noted, resolved"


def _append(path: DataPath, record: Mapping[str, Any]) -> None:
    """One record: one ``O_APPEND`` write on local disk, one object on an object store (include.fileio)."""
    from include.fileio import append_line

    append_line(path, json.dumps(record, sort_keys=True, default=str))


def send(
    notification: Notification,
    *,
    channels: Sequence[str] | None = None,
    slack_conn_id: str = SLACK_CONN_ID,
    smtp_conn_id: str = SMTP_CONN_ID,
    pagerduty_conn_id: str = PAGERDUTY_CONN_ID,
    path: DataPath | None = None,
    logger: logging.Logger | Any = None,
    raise_on_failure: bool = False,
) -> dict[str, str]:
    """Deliver ``notification`` to the log, the file and every configured channel.

    ``channels`` limits the optional channels (``slack``, ``email``); None = every configured one. The
    ``pagerduty`` channel is tried only for a notification with ``pagerduty_incident``.
    Returns ``{"log": "sent", "file": "sent", "slack": "sent" | "not configured" | "disabled" |
    "failed: ...", "email": ..., ["pagerduty": "noted" | "noted, resolved" | "not configured" |
    "failed: ..."]}``. A failed channel is reported there (and logged), never raised unless
    ``raise_on_failure`` (then :class:`NotificationError` after every channel was tried).
    """
    logger = logger or log
    results: dict[str, str] = {}
    failures: list[str] = []
    wanted = set(CHANNELS if channels is None else channels)
    senders: list[tuple[str, str, Callable[[Any, list[str]], str | None]]] = [
        ("slack", slack_conn_id, lambda c, known: send_slack(notification, conn_id=slack_conn_id, secrets=known)),
        ("email", smtp_conn_id, lambda c, known: send_email(c, notification, conn_id=smtp_conn_id)),
    ]
    if notification.pagerduty_incident:
        senders.append(("pagerduty", pagerduty_conn_id,
                        lambda c, known: update_pagerduty_incident(c, notification, conn_id=pagerduty_conn_id)))
    for channel, conn_id, sender in senders:
        if channel in CHANNELS and channel not in wanted:
            results[channel] = "disabled"
            continue
        conn = get_connection(conn_id)
        if conn is None:
            results[channel] = "not configured"
            continue
        extra = conn.extra_dejson if hasattr(conn, "extra_dejson") else {}
        known = [conn.password or "", str(extra.get("routing_key") or "")]
        try:
            results[channel] = sender(conn, known) or "sent"
        except Exception as exc:
            message = _redact(f"{type(exc).__name__}: {exc}", known)[:500]
            results[channel] = f"failed: {message}"
            failures.append(f"{channel}: {message}")

    summary = f"[notify] {notification.severity.upper()} {notification.title}: {notification.text}"
    if notification.link:
        summary += f" ({notification.link})"
    level = logging.WARNING if notification.severity in ("warning", "critical") else logging.INFO
    logger.log(level, "%s", _redact(summary))
    results["log"] = "sent"
    for failure in failures:
        logger.warning("[notify] not delivered to %s", failure)

    record = {
        "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        **notification.to_dict(),
        "channels": dict(results),
    }
    _append(path or notifications_path(), _scrub(record))
    results["file"] = "sent"
    if failures and raise_on_failure:
        raise NotificationError("notification not delivered to " + "; ".join(failures))
    return results


# ---- the Airflow notifier ------------------------------------------------------------------------
class RunbookNotifier(BaseNotifier):
    """Airflow notifier for runbook callbacks (``on_failure_callback``, ``on_success_callback``...).

    ``title``, ``text`` and ``link`` are Jinja templates rendered with the task context. Without a
    title: ``<dag_id>: <task_id> <state>``.
    """

    template_fields = ("title", "text", "link")

    def __init__(
        self,
        *,
        title: str | None = None,
        text: str = "",
        severity: str = "info",
        link: str | None = None,
        channels: Sequence[str] | None = None,
        slack_conn_id: str = SLACK_CONN_ID,
        smtp_conn_id: str = SMTP_CONN_ID,
    ) -> None:
        super().__init__()
        if severity not in SEVERITIES:
            raise ValueError(f"severity must be one of {SEVERITIES}, not {severity!r}")
        self.title = title
        self.text = text
        self.severity = severity
        self.link = link
        self.channels = channels
        self.slack_conn_id = slack_conn_id
        self.smtp_conn_id = smtp_conn_id

    def build(self, context: Mapping[str, Any]) -> Notification:
        dag = context.get("dag")
        ti = context.get("ti") or context.get("task_instance")
        dag_id = getattr(dag, "dag_id", None) or getattr(ti, "dag_id", None)
        task_id = getattr(ti, "task_id", None)
        state = getattr(ti, "state", None)
        state_text = str(getattr(state, "value", state) or "")
        title = self.title or " ".join(p for p in (f"{dag_id}:", task_id, state_text) if p and p != "None:")
        fields: dict[str, Any] = {}
        if state_text:
            fields["state"] = state_text
        exception = context.get("exception")
        if exception is not None:
            fields["error"] = f"{type(exception).__name__}: {exception}"[:500]
        return Notification(
            title=title or "runbook notification",
            text=self.text or "",
            severity=self.severity,
            runbook=dag_id,
            run_id=context.get("run_id") or getattr(ti, "run_id", None),
            task_id=task_id,
            link=self.link,
            fields=fields,
        )

    def notify(self, context: Any) -> None:
        send(
            self.build(context),
            channels=self.channels,
            slack_conn_id=self.slack_conn_id,
            smtp_conn_id=self.smtp_conn_id,
            logger=self.log,
        )


# ---- new findings --------------------------------------------------------------------------------
def new_findings_to_notify(findings: Iterable[Any], severities: Sequence[str] = NOTIFY_SEVERITIES) -> list[Any]:
    """Failing findings first seen in this scan with one of ``severities`` (Finding objects or dicts)."""
    from include.compliance.model import SEVERITIES as FINDING_SEVERITIES
    from include.compliance.model import Finding

    items = [f if isinstance(f, Finding) else Finding.from_dict(dict(f)) for f in findings]
    chosen = [f for f in items if f.status == "fail" and f.lifecycle == "new" and f.severity in severities]
    return sorted(chosen, key=lambda f: (FINDING_SEVERITIES.index(f.severity), f.rule_id, f.resource_id))


def findings_notification(
    new: Sequence[Any], *, scan_id: str | None = None, report_url: str | None = None, top: int = 10,
    runbook: str | None = "compliance_scan", run_id: str | None = None,
) -> Notification:
    counts: dict[str, int] = {}
    for f in new:
        counts[f.severity] = counts.get(f.severity, 0) + 1
    breakdown = ", ".join(f"{n} {s}" for s, n in counts.items())
    clouds = sorted({f.cloud for f in new})
    return Notification(
        title=f"{len(new)} new critical/high compliance finding{'s' if len(new) != 1 else ''}",
        text=f"{breakdown} in {', '.join(clouds)}" + (f" (scan {scan_id})" if scan_id else "") + ".",
        severity="critical" if counts.get("critical") else "warning",
        runbook=runbook,
        run_id=run_id,
        link=report_url,
        items=[
            {"severity": f.severity, "rule": f.rule_id, "resource": f.resource_name or f.resource_id,
             "where": f"{f.cloud}/{f.target}/{f.region}", "finding_id": f.finding_id}
            for f in new[:top]
        ],
        fields={"count": len(new), "by_severity": counts, "scan_id": scan_id},
    )


class FindingsNotifier(RunbookNotifier):
    """Notifier for the new critical/high findings of a scan (see :func:`notify_new_findings`)."""

    def __init__(
        self,
        findings: Iterable[Any],
        *,
        scan_id: str | None = None,
        report_url: str | None = None,
        severities: Sequence[str] = NOTIFY_SEVERITIES,
        top: int = 10,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.new = new_findings_to_notify(findings, severities)
        self.scan_id = scan_id
        self.report_url = report_url
        self.top = top
        self.last_result: dict[str, str] = {}

    def build(self, context: Mapping[str, Any]) -> Notification:
        base = super().build(context)
        return findings_notification(
            self.new, scan_id=self.scan_id, report_url=self.report_url or self.link, top=self.top,
            runbook=base.runbook or "compliance_scan", run_id=base.run_id,
        )

    def notify(self, context: Any) -> None:
        self.deliver(context, logger=self.log)

    def deliver(self, context: Mapping[str, Any], *, logger: logging.Logger | Any = None) -> dict[str, str]:
        """Send when there is something new; ``{}`` (and a log line) when there is not."""
        logger = logger or log
        if not self.new:
            logger.info("[notify] no new critical/high findings%s", f" in scan {self.scan_id}" if self.scan_id else "")
            self.last_result = {}
            return {}
        self.last_result = send(
            self.build(context),
            channels=self.channels,
            slack_conn_id=self.slack_conn_id,
            smtp_conn_id=self.smtp_conn_id,
            logger=logger,
        )
        return self.last_result


def notify_new_findings(
    findings: Iterable[Any] | str | Path,
    *,
    scan_id: str | None = None,
    report_url: str | None = None,
    reports: Mapping[str, str] | None = None,
    severities: Sequence[str] = NOTIFY_SEVERITIES,
    top: int = 10,
    context: Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> dict[str, Any]:
    """Notify only NEW failing findings of the given severities (count, top items, report link).

    ``findings``: Finding objects, their dicts, or the path of a saved scan (``findings.json`` with
    ``scan_id`` and ``findings``). ``reports``: the result of ``reports.write_all`` / ``write_scan``;
    its ``html`` is the link when ``report_url`` is not given. Call it from a task (``context`` = the
    task context, optional). Returns ``{"notified": bool, "count": int, "channels": {...}}``.
    """
    items: Iterable[Any]
    if isinstance(findings, (str, Path)):
        document = json.loads(Path(findings).read_text())
        scan_id = scan_id or document.get("scan_id")
        items = document.get("findings", [])
    else:
        items = findings
    if report_url is None and reports:
        report_url = reports.get("html")
    notifier = FindingsNotifier(
        items, scan_id=scan_id, report_url=report_url, severities=severities, top=top, **kwargs
    )
    # Called from task code: the module logger reaches the task log (stdlib logging is routed there).
    channels = notifier.deliver(dict(context or {}), logger=log)
    return {"notified": bool(notifier.new), "count": len(notifier.new), "channels": channels}
