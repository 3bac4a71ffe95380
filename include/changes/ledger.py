"""The change ledger: what each idempotency key (an incident id, a request id) has already applied.

A runbook applies a change set under a key. The ledger makes that safe to repeat:

- every change applied is recorded under ``(key, change key)``; a rerun for the same key skips the changes
  recorded as done and resumes with the rest, so a completed change is never repeated;
- a lease on the key (a row with a holder and an expiry, renewed by a heartbeat while the apply runs)
  makes two runs for one key never apply at once; a lease whose holder died expires and can be taken over,
  and the same holder (the same DAG run, retried) takes its own lease back at once.

Where it lives: a SQL database that every worker of a deployment reaches, named by the Airflow connection
``runbooks_state``: the Airflow metadata database's server (PostgreSQL) in docker-compose and Helm, a
SQLite file on the embedded single-machine default (`make up` / `make demo` define it). Airflow 3 forbids
task code from using Airflow's own ORM session, so the ledger has its own two tables
(``runbooks_change_lease``, ``runbooks_change_ledger``) reached through that connection.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Column,
    Engine,
    Float,
    MetaData,
    String,
    Table,
    Text,
    and_,
    create_engine,
    delete,
    event,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.engine import URL
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

from include.changes.model import ChangeError

LEDGER_CONN_ID = "runbooks_state"
#: Outcomes that count as "done": a rerun for the same key does not apply these changes again.
DONE = ("changed", "unchanged")

_metadata = MetaData()
_leases = Table(
    "runbooks_change_lease", _metadata,
    Column("key", String(512), primary_key=True),
    Column("holder", String(512), nullable=False),
    Column("host", String(255), nullable=False),
    Column("acquired_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
)
_entries = Table(
    "runbooks_change_ledger", _metadata,
    Column("key", String(512), primary_key=True),
    Column("change_key", String(64), primary_key=True),
    Column("outcome", String(16), nullable=False),
    Column("holder", String(512), nullable=False),
    Column("recorded_at", String(32), nullable=False),
    Column("detail", Text, nullable=False),
)


class LedgerBusy(ChangeError):
    """Another run holds the key: two runs for one key never apply at once."""


class LedgerUnavailable(ChangeError):
    """The ledger's connection is not defined or its database cannot be used."""


@dataclass(frozen=True)
class LedgerEntry:
    """One change recorded under a key."""

    key: str
    change_key: str
    outcome: str
    holder: str
    recorded_at: str
    detail: dict[str, Any]

    @property
    def done(self) -> bool:
        return self.outcome in DONE


_ENGINES: dict[str, Engine] = {}
_ENGINES_LOCK = threading.Lock()
_CREATE_LOCK = threading.Lock()


def sqlalchemy_url(conn: Any) -> URL:
    """The SQLAlchemy URL of an Airflow connection of type ``postgres`` or ``sqlite`` (host = the file)."""
    kind = str(conn.conn_type or "").lower()
    if kind == "sqlite":
        path = conn.host or (conn.extra_dejson or {}).get("path")
        if not path:
            raise LedgerUnavailable(f"connection {conn.conn_id!r} (sqlite) names no database file in host")
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        return URL.create("sqlite", database=str(path))
    if kind in ("postgres", "postgresql"):
        return URL.create("postgresql+psycopg2", username=conn.login or None, password=conn.password or None,
                          host=conn.host or None, port=conn.port or None, database=conn.schema or None)
    raise LedgerUnavailable(f"connection {conn.conn_id!r} has type {conn.conn_type!r}: the change ledger needs "
                            "a postgres or sqlite connection")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    """WAL with synchronous=NORMAL: a commit no longer waits for several fsyncs (about 13 ms -> 2 ms each, and
    an apply records every change). Still safe if a process dies; only an OS crash or power cut may lose the
    last commits, after which a rerun re-reads the clouds and converges. Readers no longer block the writer."""
    import sqlite3

    cursor = dbapi_connection.cursor()
    try:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
        except sqlite3.OperationalError:
            pass  # another process holds the file in a transaction: keep its journal mode (still correct)
        cursor.execute("PRAGMA synchronous=NORMAL")
    finally:
        cursor.close()


def _engine(url: URL) -> Engine:
    rendered = url.render_as_string(hide_password=False)
    with _ENGINES_LOCK:
        engine = _ENGINES.get(rendered)
        if engine is None:
            args: dict[str, Any] = {"timeout": 30} if url.drivername == "sqlite" else {"connect_timeout": 10}
            engine = create_engine(url, connect_args=args, pool_pre_ping=True)
            if url.drivername == "sqlite":
                event.listen(engine, "connect", _sqlite_pragmas)
            _ENGINES[rendered] = engine
        return engine


class Ledger:
    """Leases and recorded changes per idempotency key, in one SQL database."""

    def __init__(self, engine: Engine, *, clock: Any = time.time) -> None:
        self.engine = engine
        self._clock = clock
        self._ready = False

    @classmethod
    def from_connection(cls, conn_id: str = LEDGER_CONN_ID) -> Ledger:
        """The ledger behind Airflow connection ``conn_id`` (a clear error when it is not defined)."""
        from airflow.sdk import BaseHook

        try:
            conn = BaseHook.get_connection(conn_id)
        except Exception as exc:
            if any(cls_.__name__ == "AirflowNotFoundException" for cls_ in type(exc).__mro__):
                raise LedgerUnavailable(
                    f"the connection {conn_id!r} is not defined: the change ledger needs a database every worker "
                    "reaches (PostgreSQL in a distributed deployment; `make up` defines a local SQLite one)"
                ) from None
            raise
        return cls(_engine(sqlalchemy_url(conn)))

    @classmethod
    def from_url(cls, url: str) -> Ledger:
        from sqlalchemy.engine import make_url

        return cls(_engine(make_url(url)))

    def _ensure_tables(self) -> None:
        if self._ready:
            return
        # Threads of one process take turns; processes (two workers creating the tables at once) race, one wins
        # each table, and the loser checks again: a few rounds settle it whatever the interleaving.
        with _CREATE_LOCK:
            for attempt in range(5):
                try:
                    _metadata.create_all(self.engine, checkfirst=True)
                    break
                except (OperationalError, ProgrammingError, IntegrityError):
                    if attempt == 4:
                        raise
                    time.sleep(0.05 * (attempt + 1))
        self._ready = True

    # ---- leases --------------------------------------------------------------------------------
    def acquire(self, key: str, holder: str, ttl: float = 120.0) -> None:
        """Take the lease on ``key`` for ``ttl`` seconds; :class:`LedgerBusy` when another live holder has it."""
        self._ensure_tables()
        now = self._clock()
        values = {"holder": holder, "host": socket.gethostname()[:255], "acquired_at": now, "expires_at": now + ttl}
        try:
            with self.engine.begin() as db:
                db.execute(insert(_leases).values(key=key, **values))
            return
        except IntegrityError:
            pass
        with self.engine.begin() as db:
            taken = db.execute(
                update(_leases)
                .where(and_(_leases.c.key == key, or_(_leases.c.holder == holder, _leases.c.expires_at < now)))
                .values(**values)
            ).rowcount
            if taken == 1:
                return
            row = db.execute(select(_leases).where(_leases.c.key == key)).first()
        if row is None:  # released between our two statements: try once more
            return self.acquire(key, holder, ttl)
        raise LedgerBusy(
            f"another run is applying changes for key {key!r}: {row.holder} on {row.host}, lease until "
            f"{datetime.fromtimestamp(row.expires_at, UTC):%Y-%m-%dT%H:%M:%SZ}. Two runs for one key never apply at "
            "once: wait for it, or retry after it ends"
        )

    def renew(self, key: str, holder: str, ttl: float = 120.0) -> bool:
        """Extend our lease; False when it is no longer ours (it expired and another run took it)."""
        with self.engine.begin() as db:
            return bool(db.execute(
                update(_leases).where(and_(_leases.c.key == key, _leases.c.holder == holder))
                .values(expires_at=self._clock() + ttl)
            ).rowcount)

    def release(self, key: str, holder: str) -> None:
        """Give the lease up (only ours)."""
        with self.engine.begin() as db:
            db.execute(delete(_leases).where(and_(_leases.c.key == key, _leases.c.holder == holder)))

    def lease_holder(self, key: str) -> tuple[str, float] | None:
        """``(holder, expires_at)`` of the live lease on ``key``, or None (free, or expired). Reads only."""
        self._ensure_tables()
        with self.engine.connect() as db:
            row = db.execute(select(_leases).where(_leases.c.key == key)).first()
        if row is None or row.expires_at < self._clock():
            return None
        return str(row.holder), float(row.expires_at)

    @contextmanager
    def lease(self, key: str, holder: str, ttl: float = 120.0) -> Iterator[Lease]:
        """Hold the lease on ``key`` while the block runs, renewed every ``ttl / 3`` seconds."""
        self.acquire(key, holder, ttl)
        held = Lease(self, key, holder, ttl)
        held.start()
        try:
            yield held
        finally:
            held.stop()
            self.release(key, holder)

    # ---- recorded changes ----------------------------------------------------------------------
    def entries(self, key: str) -> dict[str, LedgerEntry]:
        """Every change recorded under ``key``, by change key."""
        self._ensure_tables()
        with self.engine.connect() as db:
            rows = db.execute(select(_entries).where(_entries.c.key == key)).all()
        return {row.change_key: LedgerEntry(row.key, row.change_key, row.outcome, row.holder, row.recorded_at,
                                            json.loads(row.detail)) for row in rows}

    def done(self, key: str) -> dict[str, LedgerEntry]:
        """The changes already applied (or found in place) under ``key``: a rerun does not repeat them."""
        return {k: e for k, e in self.entries(key).items() if e.done}

    def record(self, key: str, change_key: str, *, holder: str, outcome: str, detail: dict[str, Any]) -> None:
        """Record (or overwrite) what happened to one change under ``key``."""
        self._ensure_tables()
        values = {"outcome": outcome, "holder": holder, "detail": json.dumps(detail, sort_keys=True, default=str),
                  "recorded_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")}
        with self.engine.begin() as db:
            updated = db.execute(
                update(_entries).where(and_(_entries.c.key == key, _entries.c.change_key == change_key)).values(**values)
            ).rowcount
            if not updated:
                db.execute(insert(_entries).values(key=key, change_key=change_key, **values))


class Lease:
    """A held lease, renewed by a daemon thread; ``lost`` turns true if renewing ever fails."""

    def __init__(self, ledger: Ledger, key: str, holder: str, ttl: float) -> None:
        self.ledger, self.key, self.holder, self.ttl = ledger, key, holder, ttl
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"lease-{key[:40]}", daemon=True)
        self.lost: str | None = None

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _beat(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            try:
                if not self.ledger.renew(self.key, self.holder, self.ttl):
                    self.lost = f"the lease on {self.key!r} was lost (it expired and another run took it)"
                    return
            except Exception as exc:  # the database is unreachable: stop dispatching, say why
                self.lost = f"the lease on {self.key!r} could not be renewed: {type(exc).__name__}: {exc}"
                return
