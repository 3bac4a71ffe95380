"""Starting a runbook from inside Airflow's API server, exactly once per idempotency key.

The same path as the REST API's ``POST /api/v2/dags/{dag_id}/dagRuns`` (Airflow 3.3's
``trigger_dag_run``): the latest serialized DAG from the metadata database, then
``SerializedDAG.create_dagrun`` with a MANUAL run type, which validates the conf against the runbook's
params (the Param schemas the trigger form uses) before it inserts anything, then inserts the run and its
task instances in one transaction (all or nothing). A conf key the runbook does not declare is refused
here first (Airflow would accept and ignore it; the runbook's first task would then fail).

Exactly once: the run id *is* the idempotency key, and the metadata database holds ``(dag_id, run_id)``
unique. A repeat finds the run and starts nothing; concurrent first deliveries race to the insert, one
wins, the others get the unique-constraint error and answer with the winner's run. This holds across
api-server workers and machines, because the database decides, not this process.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from airflow.models.dagbag import DBDagBag
    from sqlalchemy.orm import Session

log = logging.getLogger("runbooks.intake")
#: How long a new incident waits for SQLite's single writer before it is answered 503 (senders retry;
#: PagerDuty gives up on an answer after 5 s, Alertmanager after its http_config timeout).
WRITE_WAIT_S = 4.0


class ConfRejected(ValueError):
    """The runbook's params refuse the conf (answered 400: retrying cannot help)."""


class RunbookUnavailable(RuntimeError):
    """Airflow cannot start the runbook right now (not parsed yet, import errors, database busy): 503."""


@dataclass(frozen=True)
class Launched:
    """The run an idempotency key stands for."""

    dag_id: str
    run_id: str
    created: bool  # False: the run existed already (a repeat delivery, or a concurrent one won)
    state: str
    dry_run: bool | None = None  # the run's effective dry_run parameter (None: the runbook has none)
    warning: str | None = None


class Launcher(Protocol):
    """Finds or starts the run ``run_id`` of ``dag_id``."""

    def launch(self, dag_id: str, run_id: str, conf: Mapping[str, Any], *, actor: str) -> Launched: ...


def _state(value: Any) -> str:
    return str(getattr(value, "value", value))


def _dry_run_of(conf: Any) -> bool | None:
    value = conf.get("dry_run") if isinstance(conf, Mapping) else None
    return value if isinstance(value, bool) else None


class AirflowLauncher:
    """:class:`Launcher` on Airflow's metadata database (inside the API server, or a test's migrated DB)."""

    def __init__(self) -> None:
        self._bag: DBDagBag | None = None
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()

    @contextmanager
    def _writer(self) -> Iterator[None]:
        """SQLite has one writer at a time: serialize this process's inserts instead of letting threads
        spin in SQLite's busy handler (which backs off in growing sleeps and collapses the throughput).
        A delivery that cannot get its turn within :data:`WRITE_WAIT_S` is answered 503 (the sender
        retries) rather than queued past the sender's own timeout. Other databases insert concurrently;
        their unique (dag_id, run_id) settles any race."""
        from airflow import settings

        engine = getattr(settings, "engine", None)
        if engine is None or engine.dialect.name != "sqlite":
            yield
            return
        if not self._write_lock.acquire(timeout=WRITE_WAIT_S):
            raise RunbookUnavailable(f"too many new incidents at once (waited {WRITE_WAIT_S:.0f} s for the database): retry")
        try:
            yield
        finally:
            self._write_lock.release()

    def _dag_bag(self) -> DBDagBag:
        with self._lock:
            if self._bag is None:
                from airflow.api_fastapi.common.dagbag import create_dag_bag

                self._bag = create_dag_bag()  # the API server's own cache settings ([api] dag_cache_*)
            return self._bag

    @staticmethod
    def _find(session: Session, dag_id: str, run_id: str) -> Launched | None:
        from airflow.models import DagRun
        from sqlalchemy import select

        row = session.execute(
            select(DagRun.state, DagRun.conf).where(DagRun.dag_id == dag_id, DagRun.run_id == run_id)
        ).first()
        if row is None:
            return None
        return Launched(dag_id, run_id, created=False, state=_state(row[0]), dry_run=_dry_run_of(row[1]))

    def existing(self, dag_id: str, run_id: str) -> Launched | None:
        """The run ``run_id`` of ``dag_id`` when it exists."""
        from airflow.utils.session import create_session

        with create_session() as session:
            return self._find(session, dag_id, run_id)

    def launch(self, dag_id: str, run_id: str, conf: Mapping[str, Any], *, actor: str) -> Launched:
        from sqlalchemy.exc import IntegrityError, OperationalError

        try:
            found = self.existing(dag_id, run_id)  # a repeat delivery: one indexed read, no lock
            if found is not None:
                return found
            with self._writer():
                return self._find_or_create(dag_id, run_id, dict(conf), actor)
        except IntegrityError:
            # A concurrent delivery of the same incident inserted the run first: that run is the answer.
            found = self.existing(dag_id, run_id)
            if found is None:
                raise RunbookUnavailable(f"could not create or find run {run_id} of {dag_id}") from None
            return found
        except OperationalError as exc:  # e.g. SQLite "database is locked", a lost connection
            log.warning("intake: metadata database unavailable: %s", type(exc).__name__)
            raise RunbookUnavailable("the metadata database is busy or unavailable; retry") from None

    def _find_or_create(self, dag_id: str, run_id: str, conf: dict[str, Any], actor: str) -> Launched:
        from airflow._shared.timezones import timezone
        from airflow.exceptions import ParamValidationError
        from airflow.models import DagModel
        from airflow.models.dag_version import DagVersion
        from airflow.utils.session import create_session
        from airflow.utils.state import DagRunState
        from airflow.utils.types import DagRunTriggeredByType, DagRunType
        from sqlalchemy import select

        with create_session() as session:
            found = self._find(session, dag_id, run_id)
            if found is not None:  # a repeat delivery: one indexed lookup, nothing else
                return found
            model = session.scalar(select(DagModel).where(DagModel.dag_id == dag_id).limit(1))
            if model is None or model.is_stale:
                raise RunbookUnavailable(f"runbook {dag_id} is not loaded in Airflow (yet): retry once it is parsed")
            if model.has_import_errors:
                raise RunbookUnavailable(f"runbook {dag_id} has import errors in Airflow and cannot be started")
            if model.allowed_run_types is not None and DagRunType.MANUAL not in model.allowed_run_types:
                raise ConfRejected(f"runbook {dag_id} does not allow manual runs")
            version = DagVersion.get_latest_version(dag_id, session=session)
            dag = self._dag_bag().get_dag(version.id, session=session) if version is not None else None
            if dag is None:
                raise RunbookUnavailable(f"runbook {dag_id} is not serialized in Airflow (yet): retry")
            conf = self._with_key(dag, conf, run_id)
            try:
                # Validates the conf against the runbook's params first (as the REST API's trigger does),
                # then inserts the run and its task instances; a refusal inserts nothing.
                run = dag.create_dagrun(
                    run_id=run_id,
                    logical_date=None,
                    run_after=timezone.utcnow(),
                    conf=conf,
                    run_type=DagRunType.MANUAL,
                    triggered_by=DagRunTriggeredByType.REST_API,
                    triggering_user_name=actor,
                    state=DagRunState.QUEUED,
                    session=session,
                )
            except ParamValidationError as exc:
                raise ConfRejected(f"runbook {dag_id} refuses the conf: {exc}") from None
            except ValueError as exc:  # a run id Airflow refuses (never one of ours: events.run_key)
                raise ConfRejected(f"runbook {dag_id} refuses the run: {exc}") from None
            session.flush()  # the unique (dag_id, run_id) is checked here, inside this transaction
            created = Launched(dag_id, run_id, created=True, state=_state(run.state),
                               dry_run=self._effective_dry_run(dag, conf),
                               warning=f"runbook {dag_id} is paused: the run waits until it is unpaused"
                               if model.is_paused else None)
        return created

    @staticmethod
    def _with_key(dag: Any, conf: dict[str, Any], run_id: str) -> dict[str, Any]:
        """The conf with the idempotency key; ``ConfRejected`` for a key the runbook does not declare."""
        declared = set(dag.params.keys())
        if "idempotency_key" in declared:
            conf["idempotency_key"] = run_id
        unknown = sorted(set(conf) - declared)
        if unknown:
            raise ConfRejected(f"runbook {dag.dag_id} has no parameter(s) {', '.join(unknown)}; "
                               f"allowed: {', '.join(sorted(declared))}")
        return conf

    @staticmethod
    def _effective_dry_run(dag: Any, conf: Mapping[str, Any]) -> bool | None:
        if "dry_run" not in set(dag.params.keys()):
            return None
        value = conf.get("dry_run", dag.params.get_param("dry_run").value)
        return value if isinstance(value, bool) else None
