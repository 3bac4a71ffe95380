"""The intake outbox: an accepted incident is one durable row before its 202, its DAG run is created after.

Creating a DAG run (``SerializedDAG.create_dagrun``: the run, its task instances, Airflow's own checks)
costs about 12 ms of CPU; the webhook answer must come within 50 ms at p99 under 100 deliveries/s. So a
new incident is answered once a row keyed by ``(dag_id, run_id)`` (the idempotency key) is committed in
Airflow's metadata database, under that primary key; a *drainer* then creates the DAG run with exactly
that run id and marks the row ``created`` **in the same transaction**. So:

* exactly once: the row's primary key decides between concurrent deliveries (on any api-server worker or
  machine: the database, not process memory, is the arbiter), and ``dag_run``'s unique ``(dag_id, run_id)``
  decides between drainers;
* nothing lost: the row is committed before the 202; a crash between the answer and the run leaves the
  row ``pending``, and the next drainer (started with the receiver) creates the run;
* the run id answered is the run created: the row holds it, and the drainer uses nothing else.

A row is ``pending`` until its run exists (``created``); ``failed`` when Airflow refused to create it
after the 202 (the runbook's params changed in between, or it stopped allowing manual runs): the error is
in the row, the log and the audit trail. A runbook that is not loaded (yet) or a busy database leave the
row ``pending`` and the drainer retries. Rows are kept (they are the dedup record); ``--purge-days``
removes ``created`` ones whose run is older.

The drainer runs in its own process beside each api-server worker (``python -m include.intake.outbox
--follow``, started by the receiver; the worker wakes it through a pipe on every accept, and it exits when
the worker does), so creating runs never competes for the worker's interpreter lock with the answers.

    python -m include.intake.outbox             # drain what is pending now, then print the counts
    python -m include.intake.outbox --status    # counts per status, and the failed rows
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import functools
import json
import logging
import os
import select as io_select
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Column, Float, Index, Integer, MetaData, String, Table, Text, func, select, update

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from include.intake.runs import AirflowLauncher

log = logging.getLogger("runbooks.intake")

PENDING, CREATED, FAILED = "pending", "created", "failed"
#: How often a drainer looks for rows without being woken (rows accepted by another worker, retries).
POLL_S = 1.0
#: The drainer process's niceness (``RUNBOOKS_INTAKE_DRAINER_NICE``, default 0). A niced drainer leaves the
#: CPU to the answers, but holds the database's write turn longer when other processes compete (its
#: transaction runs slower), which the answers then wait for: measured worse on a loaded machine.
NICE = int(os.environ.get("RUNBOOKS_INTAKE_DRAINER_NICE", "0"))
#: Rows one drain pass takes (each run is its own transaction: answers insert between them).
BATCH = 200

OUTBOX = Table(
    "runbooks_intake_outbox",
    MetaData(),
    Column("dag_id", String(250), primary_key=True),
    Column("run_id", String(250), primary_key=True),
    Column("conf", Text, nullable=False),  # JSON, exactly what the run is created with
    Column("actor", String(250), nullable=False),
    Column("status", String(16), nullable=False),
    Column("accepted_at", Float, nullable=False),  # epoch seconds
    Column("done_at", Float, nullable=True),
    Column("attempts", Integer, nullable=False, default=0),
    Column("error", Text, nullable=True),
    Index("idx_runbooks_intake_outbox_status", "status", "accepted_at"),
)

_created_for: set[int] = set()
_create_lock = threading.Lock()


def engine() -> Engine:
    """Airflow's metadata database engine (the outbox lives beside ``dag_run``)."""
    from airflow import settings

    if settings.engine is None:
        raise RuntimeError("Airflow's metadata database is not configured in this process")
    return settings.engine


def ensure_table(bind: Engine | None = None) -> Engine:
    """Create the outbox table when it does not exist (once per engine and process)."""
    bind = bind or engine()
    with _create_lock:
        if id(bind) not in _created_for:
            from sqlalchemy.exc import OperationalError, ProgrammingError

            try:
                OUTBOX.metadata.create_all(bind, checkfirst=True)
            except (OperationalError, ProgrammingError):  # another process created it between check and create
                OUTBOX.metadata.create_all(bind, checkfirst=True)
            _created_for.add(id(bind))
    return bind


_lock_files: dict[str, int] = {}


@contextlib.contextmanager
def file_lock(bind: Engine, wait: float) -> Iterator[bool]:
    """Exclusive ``flock`` beside a SQLite database file for up to ``wait`` seconds (True: held). Waiting
    polls every half millisecond: the turn passes as soon as the holder commits, not after a back-off."""
    database = bind.url.database
    if bind.dialect.name != "sqlite" or not database or database == ":memory:" or database.startswith("file:"):
        yield True
        return
    path = f"{database}.runbooks-intake.lock"
    with _create_lock:
        fd = _lock_files.get(path)
        if fd is None:
            fd = _lock_files[path] = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    deadline = time.monotonic() + wait
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() > deadline:
                yield False
                return
            time.sleep(0.0005)
    try:
        yield True
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)


@dataclass(frozen=True)
class Row:
    """What the outbox (or ``dag_run``) knows of one key."""

    status: str  # pending | created | failed, or the DAG run's state when there is no outbox row
    conf: dict[str, Any]
    run_state: str | None = None


@functools.cache
def _lookups() -> tuple[Any, Any]:
    """The two statements of :func:`lookup`, built once (bound parameters: nothing is rebuilt per delivery)."""
    from airflow.models import DagRun
    from sqlalchemy import and_, bindparam

    runs = DagRun.__table__
    row = (select(OUTBOX.c.status, OUTBOX.c.conf, runs.c.state)
           .select_from(OUTBOX.outerjoin(runs, and_(runs.c.dag_id == OUTBOX.c.dag_id, runs.c.run_id == OUTBOX.c.run_id)))
           .where(OUTBOX.c.dag_id == bindparam("dag_id"), OUTBOX.c.run_id == bindparam("run_id")))
    run = select(runs.c.state, runs.c.conf).where(runs.c.dag_id == bindparam("dag_id"),
                                                  runs.c.run_id == bindparam("run_id"))
    return row, run


def lookup(bind: Engine, dag_id: str, run_id: str) -> Row | None:
    """The key's outbox row (with its run's state once created), else its DAG run; None: never seen.
    One indexed read for a key the outbox knows (every delivery since the outbox exists), two otherwise."""
    by_row, by_run = _lookups()
    key = {"dag_id": dag_id, "run_id": run_id}
    with bind.connect() as conn:
        row = conn.execute(by_row, key).first()
        run = conn.execute(by_run, key).first() if row is None else None
    if row is not None:
        return Row(row[0], json.loads(row[1]), _state(row[2]) if row[2] is not None else None)
    if run is not None:
        return Row(CREATED, dict(run[1] or {}), _state(run[0]))
    return None


def accept(bind: Engine, dag_id: str, run_id: str, conf: Mapping[str, Any], actor: str) -> bool:
    """Insert the key's ``pending`` row; False when a row with that key exists (a concurrent delivery won)."""
    return accept_many(bind, [(dag_id, run_id, conf, actor)])[0]


def accept_many(bind: Engine, rows: list[tuple[str, str, Mapping[str, Any], str]]) -> list[bool]:
    """Insert ``pending`` rows in ONE transaction (one commit, one turn at the SQLite writer); per row, False
    when its key exists already (inserted earlier, or earlier in ``rows``): the primary key decides."""
    from sqlalchemy.exc import IntegrityError

    now = time.time()
    values = [{"dag_id": dag_id, "run_id": run_id, "actor": actor, "status": PENDING, "accepted_at": now,
               "attempts": 0, "conf": json.dumps(dict(conf), sort_keys=True, separators=(",", ":"))}
              for dag_id, run_id, conf, actor in rows]
    dialect = bind.dialect.name
    if dialect in ("sqlite", "postgresql"):
        statement = _insert_or_nothing(dialect)
        with bind.begin() as conn:
            return [conn.execute(statement, value).rowcount == 1 for value in values]
    inserted = []
    for value in values:  # other databases: one transaction per row, the key error is the answer
        try:
            with bind.begin() as conn:
                conn.execute(OUTBOX.insert().values(**value))
            inserted.append(True)
        except IntegrityError:
            inserted.append(False)
    return inserted


@functools.cache
def _insert_or_nothing(dialect: str) -> Any:
    from sqlalchemy.dialects import postgresql, sqlite

    insert = sqlite.insert(OUTBOX) if dialect == "sqlite" else postgresql.insert(OUTBOX)
    return insert.on_conflict_do_nothing(index_elements=["dag_id", "run_id"])


def pending(bind: Engine, limit: int = BATCH) -> list[tuple[str, str, dict[str, Any], str]]:
    """The oldest ``pending`` rows: (dag_id, run_id, conf, actor)."""
    with bind.connect() as conn:
        rows = conn.execute(
            select(OUTBOX.c.dag_id, OUTBOX.c.run_id, OUTBOX.c.conf, OUTBOX.c.actor)
            .where(OUTBOX.c.status == PENDING).order_by(OUTBOX.c.accepted_at).limit(limit)
        ).all()
    return [(r[0], r[1], json.loads(r[2]), r[3]) for r in rows]


def mark(conn: Any, dag_id: str, run_id: str, status: str, error: str | None = None) -> None:
    """Set the row's status (``conn``: a connection or session inside the caller's transaction)."""
    conn.execute(update(OUTBOX).where(OUTBOX.c.dag_id == dag_id, OUTBOX.c.run_id == run_id, OUTBOX.c.status == PENDING)
                 .values(status=status, done_at=time.time(), error=error, attempts=OUTBOX.c.attempts + 1))


def note_retry(bind: Engine, dag_id: str, run_id: str, error: str) -> None:
    with bind.begin() as conn:
        conn.execute(update(OUTBOX).where(OUTBOX.c.dag_id == dag_id, OUTBOX.c.run_id == run_id)
                     .values(attempts=OUTBOX.c.attempts + 1, error=error[:2000]))


def counts(bind: Engine) -> dict[str, int]:
    with bind.connect() as conn:
        rows = conn.execute(select(OUTBOX.c.status, func.count()).group_by(OUTBOX.c.status)).all()
    return {str(status): int(n) for status, n in rows}


def purge(bind: Engine, days: float) -> int:
    """Delete ``created`` rows done more than ``days`` ago (their run answers repeats from then on)."""
    from sqlalchemy import delete

    with bind.begin() as conn:
        done = conn.execute(delete(OUTBOX).where(OUTBOX.c.status == CREATED,
                                                 OUTBOX.c.done_at < time.time() - days * 86400))
    return int(done.rowcount or 0)


def _state(value: Any) -> str:
    return str(getattr(value, "value", value))


# ---- drainers -----------------------------------------------------------------------------------------------
class ThreadDrainer:
    """Drains in a daemon thread of this process (tests, ``RUNBOOKS_INTAKE_DRAINER=thread``)."""

    def __init__(self, launcher: AirflowLauncher, poll: float = POLL_S) -> None:
        self.launcher = launcher
        self.poll = poll
        self._event = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="intake-outbox-drainer", daemon=True)

    def start(self) -> ThreadDrainer:
        self._thread.start()
        return self

    def wake(self) -> None:
        self._event.set()

    def stop(self) -> None:
        self._stop.set()
        self._event.set()
        self._thread.join(timeout=30)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.launcher.drain()
            except Exception:  # never let the loop die: the rows stay pending and are retried
                log.exception("intake: outbox drain failed")
            self._event.wait(self.poll)
            self._event.clear()


class ProcessDrainer:
    """Drains in a child process (``python -m include.intake.outbox --follow``), woken through its stdin.

    The child exits when this process does (its stdin closes); a child that died is started again on the
    next wake-up (at most every few seconds).
    """

    RESTART_S = 5.0

    def __init__(self) -> None:
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        self._started_at = 0.0

    def start(self) -> ProcessDrainer:
        with self._lock:
            self._spawn()
        return self

    def _spawn(self) -> None:
        self._started_at = time.monotonic()
        root = str(Path(__file__).resolve().parents[2])  # where `include` is imported from, here and there
        path = os.environ.get("PYTHONPATH", "")
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "include.intake.outbox", "--follow"], stdin=subprocess.PIPE, close_fds=True,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, path]))},
        )
        assert self._proc.stdin is not None
        fd = self._proc.stdin.fileno()
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_NONBLOCK)

    def wake(self) -> None:
        with self._lock:
            proc = self._proc
            if proc is None or proc.poll() is not None:
                if time.monotonic() - self._started_at < self.RESTART_S:
                    return  # it polls on its own too; do not fork-bomb on a crash loop
                log.warning("intake: outbox drainer exited (%s); starting it again",
                            None if proc is None else proc.returncode)
                self._spawn()
                proc = self._proc
            assert proc is not None and proc.stdin is not None
            try:
                os.write(proc.stdin.fileno(), b".")
            except (BlockingIOError, BrokenPipeError):  # already has wake-ups queued / just exited
                pass

    def stop(self) -> None:
        with self._lock:
            if self._proc is not None and self._proc.stdin is not None:
                self._proc.stdin.close()
                try:
                    self._proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    self._proc.kill()


def _wake_ups(fd: int, poll: float) -> Iterator[bool]:
    """Yield after every wake-up byte(s) or ``poll`` seconds; stop at end of input (the parent is gone)."""
    while True:
        ready, _, _ = io_select.select([fd], [], [], poll)
        if ready:
            data = os.read(fd, 65536)
            if not data:
                return
        yield bool(ready)


def follow(poll: float = POLL_S) -> None:
    """The child's loop: drain now, then again on every wake-up or poll, until stdin closes."""
    from include.intake.runs import AirflowLauncher

    if NICE:
        with contextlib.suppress(OSError):
            os.nice(NICE)
    launcher = AirflowLauncher(drainer="none")
    fd = sys.stdin.fileno()
    launcher.drain()
    for _ in _wake_ups(fd, poll):
        try:
            launcher.drain()
        except Exception:
            log.exception("intake: outbox drain failed")
    launcher.drain()  # what the parent accepted last


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m include.intake.outbox", description=__doc__.split("\n\n")[0])
    parser.add_argument("--follow", action="store_true", help="keep draining until stdin closes (the receiver's child)")
    parser.add_argument("--status", action="store_true", help="print the counts and the failed rows, drain nothing")
    parser.add_argument("--purge-days", type=float, default=None, help="delete created rows done longer ago than this")
    args = parser.parse_args(argv)
    if args.follow:
        follow()
        return 0
    from include.intake.runs import AirflowLauncher

    bind = ensure_table()
    if args.purge_days is not None:
        print(f"purged {purge(bind, args.purge_days)} created row(s)")
    if not args.status:
        created = AirflowLauncher(drainer="none").drain()
        print(f"created {created} run(s)")
    print(json.dumps(counts(bind), sort_keys=True))
    with bind.connect() as conn:
        for row in conn.execute(select(OUTBOX.c.dag_id, OUTBOX.c.run_id, OUTBOX.c.error)
                                .where(OUTBOX.c.status == FAILED).order_by(OUTBOX.c.accepted_at)):
            print(f"failed: {row[0]} {row[1]}: {row[2]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
