"""Approval gate for mutating runbooks: Airflow's ``ApprovalOperator`` that always records the decision.

On *Reject* (or the timeout default) the stock operator skips its downstream tasks and leaves no
return value, so a later task cannot tell a rejection from a crash or say who rejected. This subclass
pushes the decision to XCom key ``decision`` first, for every answer:
``{"chosen_options": [...], "approved": bool, "responded_by": name | None, "responded_at": iso | None,
"timed_out": bool}``. Everything else (options, defaults, skipping, the awaiting_input state, the
Required Actions UI and HITL API) is the stock operator's.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from airflow.providers.standard.operators.hitl import ApprovalOperator

DECISION_KEY = "decision"


def decision_from_event(event: dict[str, Any]) -> dict[str, Any]:
    """The JSON-able decision recorded for one HITL resume event."""
    user = event.get("responded_by_user")
    name = (user.get("name") or user.get("id")) if isinstance(user, dict) else None
    at = event.get("responded_at")
    chosen = [str(option) for option in event.get("chosen_options") or []]
    return {
        "chosen_options": chosen,
        "approved": chosen == [ApprovalOperator.APPROVE],
        "responded_by": str(name) if name else None,
        "responded_at": at.isoformat() if isinstance(at, datetime) else (str(at) if at else None),
        "timed_out": bool(event.get("timedout", False)),
    }


class RecordedApprovalOperator(ApprovalOperator):
    """``ApprovalOperator`` that pushes the decision (also a rejection or timeout) to XCom ``decision``."""

    def execute_complete(self, context: Any, event: dict[str, Any]) -> Any:
        if "error" not in event:
            context["ti"].xcom_push(key=DECISION_KEY, value=decision_from_event(event))
        return super().execute_complete(context, event)


def approval_gate(task_id: str, *, subject: str, body: str, response_timeout: timedelta, doc_md: str) -> RecordedApprovalOperator:
    """The approval task of a mutating runbook. ``subject`` and ``body`` are templates the DAG writes (it names
    the task that planned); no answer before ``response_timeout`` is *Reject* (the safe outcome); the
    decision is recorded for the tasks after it."""
    return RecordedApprovalOperator(
        task_id=task_id,
        subject=subject,
        body=body,
        defaults="Reject",
        response_timeout=response_timeout,
        retries=2,  # Airflow 3.3.2 can fail a HITL task answered within ~1 s of waiting: retry re-asks
        retry_delay=timedelta(seconds=5),
        execution_timeout=None,
        doc_md=doc_md,
    )
