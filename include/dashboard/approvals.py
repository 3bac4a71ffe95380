"""Pending approvals: Airflow's human-in-the-loop requests nobody has answered yet, from its metadata DB.

Read inside the API server through Airflow's own session (the same rows ``GET /api/v2/dags/~/dagRuns/~/
hitlDetails?response_received=false`` returns), each with the link to the task's *Required Actions* page.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any
from urllib.parse import quote


def required_actions_url(ui_root: str, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> str:
    """The UI page where a request is answered (Approve / Reject)."""
    parts = [quote(p, safe="") for p in (dag_id, run_id, task_id)]
    mapped = f"/mapped/{map_index}" if map_index >= 0 else ""
    return f"{ui_root.rstrip('/')}/dags/{parts[0]}/runs/{parts[1]}/tasks/{parts[2]}{mapped}/required_actions"


def pending(allowed: Collection[str] | None, *, ui_root: str = "", limit: int = 100) -> list[dict[str, Any]]:
    """Unanswered HITL requests, oldest first, of the DAGs in ``allowed`` (None: all)."""
    from airflow.models.hitl import HITLDetail
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import select

    query = (
        select(TaskInstance.dag_id, TaskInstance.run_id, TaskInstance.task_id, TaskInstance.map_index,
               TaskInstance.state, HITLDetail.subject, HITLDetail.created_at, HITLDetail.assignees,
               HITLDetail.options)
        .join(TaskInstance, HITLDetail.ti_id == TaskInstance.id)
        .where(HITLDetail.responded_at.is_(None))
        .order_by(HITLDetail.created_at)
    )
    if allowed is not None:
        query = query.where(TaskInstance.dag_id.in_(sorted(allowed)))
    with create_session() as session:
        rows = session.execute(query.limit(limit)).all()
    return [{
        "dag_id": row.dag_id, "run_id": row.run_id, "task_id": row.task_id, "map_index": row.map_index,
        "state": getattr(row.state, "value", row.state), "subject": row.subject,
        "waiting_since": row.created_at.isoformat() if row.created_at else None,
        "assignees": [str(a.get("name") or a.get("id")) for a in row.assignees or []],
        "options": list(row.options or []),
        "url": required_actions_url(ui_root, row.dag_id, row.run_id, row.task_id, row.map_index),
    } for row in rows]
