"""Starting a runbook from inside Airflow's API server, exactly once per idempotency key.

A delivery is answered from the metadata database in a few milliseconds; the DAG run is created right
after by the outbox drainer (:mod:`include.intake.outbox`), with exactly the run id answered:

1. a repeat: one indexed read (the outbox row by its primary key, else ``dag_run`` by ``(dag_id,
   run_id)``) answers ``duplicate`` with the run, before anything else is looked at;
2. a new key: the runbook must be loaded (the latest serialized DAG, as the REST API's ``POST
   /api/v2/dags/{dag_id}/dagRuns`` uses) and its params must accept the conf: the same JSON-schema check
   ``SerializedDAG.create_dagrun`` makes, with validators built once per DAG version instead of once per
   request. A conf key the runbook does not declare is refused too (Airflow would accept and ignore it;
   the runbook's first task would then fail). A refusal is a 400 and nothing is written;
3. the outbox row (primary key ``(dag_id, run_id)``) is inserted: of concurrent first deliveries on any
   api-server worker or machine, exactly one insert succeeds (``started``); the others hit the key and
   answer ``duplicate``. The database decides, not this process.

The drainer creates the run through ``SerializedDAG.create_dagrun`` (MANUAL run type, the run and its
task instances in one transaction, the params validated again by Airflow itself) and marks the row
``created`` in the same transaction; ``dag_run``'s unique ``(dag_id, run_id)`` settles two drainers.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

from include.intake import outbox

if TYPE_CHECKING:
    from airflow.models.dagbag import DBDagBag
    from sqlalchemy.orm import Session

log = logging.getLogger("runbooks.intake")
#: How long a new incident waits for SQLite's single writer before it is answered 503 (senders retry;
#: PagerDuty gives up on an answer after 5 s, Alertmanager after its http_config timeout).
WRITE_WAIT_S = 4.0
#: How long the drainer waits for its turn to write (it has no sender waiting on it).
DRAIN_WAIT_S = 60.0
#: The drainer's pause after each run it creates, so that a waiting answer gets the database first.
DRAIN_PAUSE_S = 0.001
#: How long the runbook's state (loaded, paused, latest DAG version) read for an answer is reused. The
#: drainer reads it again before it creates the run, so a runbook removed meanwhile only delays the run.
RUNBOOK_TTL_S = 1.0
#: The ``state`` answered for a new incident: accepted (durably), its DAG run being created.
ACCEPTED = "pending"

Drainer = Literal["process", "thread", "none"]


class ConfRejected(ValueError):
    """The runbook's params refuse the conf (answered 400: retrying cannot help)."""


class RunbookUnavailable(RuntimeError):
    """Airflow cannot start the runbook right now (not parsed yet, import errors, database busy): 503."""


@dataclass(frozen=True)
class Launched:
    """The run an idempotency key stands for."""

    dag_id: str
    run_id: str
    created: bool  # False: the key was known already (a repeat delivery, or a concurrent one won)
    state: str  # the DAG run's state; "pending" while the outbox has not created it yet; "failed": it could not
    dry_run: bool | None = None  # the run's effective dry_run parameter (None: the runbook has none)
    warning: str | None = None


class Launcher(Protocol):
    """Finds or starts the run ``run_id`` of ``dag_id``."""

    def launch(self, dag_id: str, run_id: str, conf: Mapping[str, Any], *, actor: str) -> Launched: ...


def _busy(waited: float) -> RunbookUnavailable:
    """The 503 of a delivery (or drain) that did not get its turn at the database within ``waited`` seconds."""
    return RunbookUnavailable(f"too many new incidents at once (waited {waited:.0f} s for the database): retry")


def _dry_run_of(conf: Any) -> bool | None:
    value = conf.get("dry_run") if isinstance(conf, Mapping) else None
    return value if isinstance(value, bool) else None


class ParamCheck:
    """The runbook's params check of one DAG version (what ``create_dagrun`` runs), built once.

    Airflow's ``SerializedParam.resolve`` calls ``jsonschema.validate``, which checks each schema against
    its meta-schema on every call; here each param's validator is built (and its schema checked) once.
    The values, the order and the message are Airflow's: the first param whose value fails, as
    ``Invalid input for param <name>: <jsonschema's best match>``.
    """

    def __init__(self, dag: Any) -> None:
        from jsonschema import FormatChecker  # type: ignore[import-untyped]  # no type information shipped
        from jsonschema.exceptions import SchemaError  # type: ignore[import-untyped]
        from jsonschema.validators import validator_for  # type: ignore[import-untyped]

        self.dag_id: str = dag.dag_id
        self.declared: tuple[str, ...] = tuple(dag.params.keys())
        self.defaults: dict[str, Any] = {}
        self.validators: dict[str, Any] = {}
        for name in self.declared:
            param = dag.params.get_param(name)
            self.defaults[name] = param.value
            cls = validator_for(param.schema)
            try:
                cls.check_schema(param.schema)
                self.validators[name] = cls(param.schema, format_checker=FormatChecker())
            except SchemaError as exc:  # Airflow would refuse every conf for this param
                self.validators[name] = exc

    def conf_with_key(self, conf: Mapping[str, Any], run_id: str) -> dict[str, Any]:
        """The conf with the idempotency key; ``ConfRejected`` for an undeclared key or a refused value."""
        from airflow.serialization.definitions.notset import is_arg_set
        from jsonschema.exceptions import best_match

        conf = dict(conf)
        if "idempotency_key" in self.declared:
            conf["idempotency_key"] = run_id
        unknown = sorted(set(conf) - set(self.declared))
        if unknown:
            raise ConfRejected(f"runbook {self.dag_id} has no parameter(s) {', '.join(unknown)}; "
                               f"allowed: {', '.join(sorted(self.declared))}")
        for name in self.declared:
            value = conf[name] if name in conf else self.defaults[name]
            validator = self.validators[name]
            if not is_arg_set(value):
                error: Any = "No value passed"
            elif isinstance(validator, Exception):
                error = validator
            else:
                error = best_match(validator.iter_errors(value))
            if error is not None:
                raise ConfRejected(f"runbook {self.dag_id} refuses the conf: Invalid input for param {name}: {error}")
        return conf

    def effective_dry_run(self, conf: Mapping[str, Any]) -> bool | None:
        if "dry_run" not in self.declared:
            return None
        value = conf.get("dry_run", self.defaults["dry_run"])
        return value if isinstance(value, bool) else None


class _Queued:
    """A delivery's outbox row waiting for a turn at the database, and the answer it gets."""

    def __init__(self, row: tuple[str, str, dict[str, Any], str]) -> None:
        self.row = row
        self.done = threading.Event()
        self.inserted = False
        self.error: Exception | None = None


@dataclass(frozen=True)
class Runbook:
    """A runbook as Airflow has it now: its latest serialized DAG and whether it can be triggered."""

    dag: Any
    version_id: Any
    paused: bool
    check: ParamCheck
    read_at: float = field(default_factory=time.monotonic)

    @property
    def warning(self) -> str | None:
        return f"runbook {self.dag.dag_id} is paused: the run waits until it is unpaused" if self.paused else None


class AirflowLauncher:
    """:class:`Launcher` on Airflow's metadata database (inside the API server, or a test's migrated DB).

    ``drainer``: who creates the accepted runs: ``process`` (a child process, the receiver's default),
    ``thread`` (a thread of this process) or ``none`` (whoever calls :meth:`drain`). A started drainer
    first creates what an earlier process accepted and did not create (a crash, a restart).
    """

    def __init__(self, drainer: Drainer = "none", *, audit_base: Any = None) -> None:
        self.audit_base = audit_base  # where a run that fails after its 202 is recorded (default: the data root)
        self._bag: DBDagBag | None = None
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._queue: list[_Queued] = []
        self._queue_lock = threading.Lock()
        self._runbooks: dict[str, Runbook] = {}
        self._checks: dict[Any, ParamCheck] = {}
        self._engine: Any = None
        self._drainer: outbox.ThreadDrainer | outbox.ProcessDrainer | None = None
        if drainer == "thread":
            self._drainer = outbox.ThreadDrainer(self).start()
        elif drainer == "process":
            outbox.ensure_table()
            self._drainer = outbox.ProcessDrainer().start()

    def close(self) -> None:
        """Stop this launcher's drainer (what it has not created stays pending for the next one)."""
        if self._drainer is not None:
            self._drainer.stop()
            self._drainer = None

    @property
    def engine(self) -> Any:
        if self._engine is None:
            self._engine = outbox.ensure_table()
        return self._engine

    @contextmanager
    def _writer(self, wait: float | None = None) -> Iterator[None]:
        """SQLite has one writer at a time: take turns instead of spinning in SQLite's busy handler (which
        backs off in growing sleeps, 1, 2, 5, 10 ... 100 ms, and collapses the throughput). The turn is a
        thread lock in this process and an ``flock`` on ``<database>.runbooks-intake.lock`` between
        processes (the api-server workers and their outbox drainers). A delivery that cannot get its turn
        within :data:`WRITE_WAIT_S` is answered 503 (the sender retries) rather than queued past the
        sender's own timeout. Other databases write concurrently; the primary keys settle any race."""
        if self.engine.dialect.name != "sqlite":
            yield
            return
        limit = WRITE_WAIT_S if wait is None else wait
        if not self._write_lock.acquire(timeout=limit):
            raise _busy(limit)
        try:
            with outbox.file_lock(self.engine, limit) as locked:
                if not locked:
                    raise _busy(limit)
                yield
        finally:
            self._write_lock.release()

    def _dag_bag(self) -> DBDagBag:
        with self._lock:
            if self._bag is None:
                from airflow.api_fastapi.common.dagbag import create_dag_bag

                self._bag = create_dag_bag()  # the API server's own cache settings ([api] dag_cache_*)
            return self._bag

    # ---- the answer ----------------------------------------------------------------------------------------
    def existing(self, dag_id: str, run_id: str) -> Launched | None:
        """What the key stands for when it is known: its run (or its pending / failed outbox row)."""
        row = outbox.lookup(self.engine, dag_id, run_id)
        if row is None:
            return None
        warning = None
        if row.status == outbox.PENDING:
            state = ACCEPTED
        elif row.status == outbox.FAILED:
            state = "failed"
            warning = "the run could not be created after it was accepted: see `python -m include.intake.outbox --status`"
        elif row.run_state is None:
            state = "removed"
            warning = "the incident's run was created and has since been deleted from Airflow: nothing started"
        else:
            state = row.run_state
        return Launched(dag_id, run_id, created=False, state=state, dry_run=_dry_run_of(row.conf), warning=warning)

    def launch(self, dag_id: str, run_id: str, conf: Mapping[str, Any], *, actor: str) -> Launched:
        from sqlalchemy.exc import OperationalError

        try:
            found = self.existing(dag_id, run_id)  # a repeat delivery: one indexed read, nothing else
            if found is not None:
                return found
            runbook = self.runbook(dag_id, max_age=RUNBOOK_TTL_S)
            full = runbook.check.conf_with_key(conf, run_id)  # ConfRejected: 400, nothing written
            inserted = self._accept((dag_id, run_id, full, actor))
            if not inserted:  # a concurrent delivery of the same incident inserted first: that is the answer
                found = self.existing(dag_id, run_id)
                if found is None:
                    raise RunbookUnavailable(f"could not accept or find run {run_id} of {dag_id}")
                return found
        except OperationalError as exc:  # e.g. SQLite "database is locked", a lost connection
            log.warning("intake: metadata database unavailable: %s", type(exc).__name__)
            raise RunbookUnavailable("the metadata database is busy or unavailable; retry") from None
        if self._drainer is not None:
            self._drainer.wake()
        return Launched(dag_id, run_id, created=True, state=ACCEPTED, dry_run=runbook.check.effective_dry_run(full),
                        warning=runbook.warning)

    def _accept(self, row: tuple[str, str, dict[str, Any], str]) -> bool:
        """Insert the row, together with every row queued meanwhile (group commit).

        Each delivery queues its row, then waits for its turn to write; whoever gets the turn inserts all
        queued rows in one transaction and hands each its result. Under load, one turn at the database
        (between two runs the drainer creates) admits every delivery waiting, instead of one.
        """
        item = _Queued(row)
        with self._queue_lock:
            self._queue.append(item)
        sqlite = self.engine.dialect.name == "sqlite"
        held = not sqlite or self._write_lock.acquire(timeout=WRITE_WAIT_S)
        if not held:
            self._give_up(item)  # raises, unless a turn in progress took the row: then wait for its answer
        try:
            if held and not item.done.is_set():  # else an earlier turn inserted it with its own batch
                with outbox.file_lock(self.engine, WRITE_WAIT_S) if sqlite else contextlib.nullcontext(True) as turn:
                    if turn:
                        self._write_batch()
                    else:
                        self._give_up(item)
        finally:
            if sqlite and held:
                self._write_lock.release()
        item.done.wait()
        if item.error is not None:
            raise item.error
        return item.inserted

    def _write_batch(self) -> None:
        with self._queue_lock:
            batch, self._queue = self._queue, []
        if not batch:
            return
        try:
            results = outbox.accept_many(self.engine, [q.row for q in batch])
        except Exception as exc:  # every delivery of the batch is answered with it (OperationalError: 503)
            results = [False] * len(batch)
            for queued in batch:
                queued.error = exc
        for queued, inserted in zip(batch, results, strict=True):
            queued.inserted = inserted
            queued.done.set()

    def _give_up(self, item: _Queued) -> None:
        """No turn at the database within :data:`WRITE_WAIT_S`: 503, unless a turn already took the row."""
        with self._queue_lock:
            if item in self._queue:
                self._queue.remove(item)
                raise _busy(WRITE_WAIT_S)

    def runbook(self, dag_id: str, max_age: float = 0.0) -> Runbook:
        """The runbook's latest DAG version and state (reused for ``max_age`` seconds); raises
        ``RunbookUnavailable`` (not loaded, import errors) or ``ConfRejected`` (no manual runs)."""
        cached = self._runbooks.get(dag_id)
        if cached is not None and time.monotonic() - cached.read_at < max_age:
            return cached
        from airflow.models import DagModel
        from airflow.models.dag_version import DagVersion
        from airflow.utils.session import create_session
        from airflow.utils.types import DagRunType
        from sqlalchemy import select

        with create_session() as session:
            model = session.execute(
                select(DagModel.is_stale, DagModel.has_import_errors, DagModel.allowed_run_types, DagModel.is_paused)
                .where(DagModel.dag_id == dag_id).limit(1)
            ).first()
            if model is None or model[0]:
                raise RunbookUnavailable(f"runbook {dag_id} is not loaded in Airflow (yet): retry once it is parsed")
            if model[1]:
                raise RunbookUnavailable(f"runbook {dag_id} has import errors in Airflow and cannot be started")
            if model[2] is not None and DagRunType.MANUAL not in model[2]:
                raise ConfRejected(f"runbook {dag_id} does not allow manual runs")
            version = DagVersion.get_latest_version(dag_id, session=session)
            dag = self._dag_bag().get_dag(version.id, session=session) if version is not None else None
            if dag is None or version is None:
                raise RunbookUnavailable(f"runbook {dag_id} is not serialized in Airflow (yet): retry")
            version_id = version.id
        check = self._checks.get(version_id)
        if check is None:
            check = self._checks[version_id] = ParamCheck(dag)
        runbook = Runbook(dag, version_id, bool(model[3]), check)
        self._runbooks[dag_id] = runbook
        return runbook

    # ---- the drainer's side --------------------------------------------------------------------------------
    def drain(self, limit: int = outbox.BATCH) -> int:
        """Create the DAG run of every ``pending`` outbox row (oldest first); return how many were created.

        Each run is its own transaction (the run, its task instances and the row's ``created``), so an
        answer's insert waits at most for one run. A runbook that cannot be started now keeps its rows
        pending (retried on the next pass); one whose params now refuse the conf fails them (recorded).
        """
        from sqlalchemy.exc import OperationalError

        created = 0
        while True:
            rows = outbox.pending(self.engine, limit)
            runbooks: dict[str, Runbook | Exception] = {}
            progress = False
            for dag_id, run_id, conf, actor in rows:
                if dag_id not in runbooks:
                    try:
                        runbooks[dag_id] = self.runbook(dag_id)
                    except (RunbookUnavailable, ConfRejected) as exc:
                        runbooks[dag_id] = exc
                try:
                    done = self._drain_one(runbooks[dag_id], dag_id, run_id, conf, actor)
                except OperationalError as exc:
                    log.warning("intake: outbox: metadata database unavailable (%s); retrying", type(exc).__name__)
                    return created
                created += done == "created"
                progress = progress or done != "waits"
                time.sleep(DRAIN_PAUSE_S)
            if not progress or len(rows) < limit:
                return created

    def _drain_one(self, runbook: Runbook | Exception, dag_id: str, run_id: str, conf: dict[str, Any],
                   actor: str) -> Literal["created", "exists", "failed", "waits"]:
        from sqlalchemy.exc import IntegrityError

        try:
            if isinstance(runbook, Exception):
                raise runbook
            self._create(runbook, run_id, conf, actor)
            return "created"
        except ConfRejected as exc:
            self._fail(dag_id, run_id, conf, actor, str(exc))
            return "failed"
        except RunbookUnavailable as exc:
            log.warning("intake: outbox: run %s of %s waits: %s", run_id, dag_id, exc)
            outbox.note_retry(self.engine, dag_id, run_id, str(exc))
            return "waits"
        except IntegrityError:  # another drainer created it first (or a run with this id exists)
            return "exists" if self._settle(dag_id, run_id) else "waits"

    def _create(self, runbook: Runbook, run_id: str, conf: dict[str, Any], actor: str) -> None:
        from airflow._shared.timezones import timezone
        from airflow.exceptions import ParamValidationError
        from airflow.utils.session import create_session
        from airflow.utils.state import DagRunState
        from airflow.utils.types import DagRunTriggeredByType, DagRunType
        from sqlalchemy import event

        dag = runbook.dag
        with contextlib.ExitStack() as turn, create_session() as session:
            # The turn to write is taken at the first flush (the run's INSERT, where SQLite takes its write
            # lock), not before: Airflow's checks and reads before it leave the database to the answers.
            # It is released after the commit (the ExitStack closes after the session).
            taken: list[bool] = []

            def take_turn(*_: Any) -> None:
                if not taken:
                    turn.enter_context(self._writer(DRAIN_WAIT_S))
                    taken.append(True)

            event.listen(session, "before_flush", take_turn)
            try:
                # Validates the conf against the runbook's params (Airflow's own check, again), then inserts
                # the run and its task instances; a refusal inserts nothing.
                dag.create_dagrun(
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
                raise ConfRejected(f"runbook {dag.dag_id} refuses the conf: {exc}") from None
            except ValueError as exc:  # a run id Airflow refuses (never one of ours: events.run_key)
                raise ConfRejected(f"runbook {dag.dag_id} refuses the run: {exc}") from None
            session.flush()  # the unique (dag_id, run_id) is checked here, inside this transaction
            take_turn()  # (taken at the flush already; a no-op then)
            outbox.mark(session, dag.dag_id, run_id, outbox.CREATED)

    def _settle(self, dag_id: str, run_id: str) -> bool:
        """After a unique-key error: the run exists, so the row is ``created``."""
        from airflow.utils.session import create_session

        with self._writer(DRAIN_WAIT_S), create_session() as session:
            if self._find(session, dag_id, run_id) is None:
                log.error("intake: outbox: run %s of %s could not be created (integrity error) and does not exist",
                          run_id, dag_id)
                return False
            outbox.mark(session, dag_id, run_id, outbox.CREATED)
        return True

    def _fail(self, dag_id: str, run_id: str, conf: Mapping[str, Any], actor: str, error: str) -> None:
        """Airflow refuses a run accepted earlier (the runbook changed in between): recorded, never silent."""
        from include.audit import AuditRecord, write_audit

        log.error("intake: outbox: run %s of %s was accepted but cannot be created: %s", run_id, dag_id, error)
        with self._writer(DRAIN_WAIT_S), self.engine.begin() as conn:
            outbox.mark(conn, dag_id, run_id, outbox.FAILED, error[:2000])
        try:
            write_audit(AuditRecord(runbook=dag_id, run_id=run_id, actor=actor, step="intake", action="failed",
                                    outcome="failed", dry_run=_dry_run_of(conf) is True, params=dict(conf),
                                    idempotency_key=run_id, error=error[:1000]), self.audit_base)
        except OSError:
            log.exception("intake: could not write the audit record of the failed run %s", run_id)

    @staticmethod
    def _find(session: Session, dag_id: str, run_id: str) -> Any:
        from airflow.models import DagRun
        from sqlalchemy import select

        return session.execute(
            select(DagRun.state).where(DagRun.dag_id == dag_id, DagRun.run_id == run_id)
        ).first()
