"""The distributed topology of docker-compose.yaml, run without Docker: PostgreSQL, Redis and Airflow with the
CeleryExecutor as separate processes (api-server, scheduler, dag-processor, triggerer, N Celery workers).

    with distributed(Path("/tmp/dist"), workers=2) as stack:
        stack.api            # REST API client (admin)
        stack.kill("worker-1"); stack.restart("scheduler")

PostgreSQL and Redis: the servers on the standard local ports when they answer (Redis without a password;
PostgreSQL as ``postgres`` over TCP trust, in a database of its own), otherwise private instances from
Debian's ``postgresql`` and ``redis-server`` binaries on free ports. Every Airflow process gets its own
working folder: nothing on disk is shared between them except the project's code.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from include.paths import PROJECT_ROOT
from localdev.emulators import free_port
from localdev.postgres import private_postgres
from localdev.stack import Api, LocalError, wait_for


def component_hostname() -> str:
    """The hostname Airflow records for a task (``[core] hostname_callable``): the component's name, so that
    each try of a task shows which of the workers on this one machine ran it."""
    from airflow.utils.net import getfqdn

    component = os.environ.get("RUNBOOKS_COMPONENT")
    return f"{component}.{getfqdn()}" if component else getfqdn()


def _answers(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@contextmanager
def redis_server(folder: Path) -> Iterator[str]:
    """A Redis URL: the server on 6379 when it answers PING, else a private one (redis-server) on a free port."""
    if _answers(6379):
        with socket.create_connection(("127.0.0.1", 6379), timeout=2) as sock:
            sock.sendall(b"PING\r\n")
            if sock.recv(64).startswith(b"+PONG"):
                yield "redis://127.0.0.1:6379/9"
                return
    binary = shutil.which("redis-server")
    if not binary:
        raise LocalError("redis-server not found: apt-get install redis-server")
    port = free_port()
    folder.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                             "--dir", str(folder)], stdout=open(folder / "redis.log", "wb"), stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        wait_for("redis", lambda: _answers(port), timeout=20)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


@contextmanager
def postgres_database(folder: Path) -> Iterator[str]:
    """A PostgreSQL URL: a new database on the server of port 5432 when it answers, else a private server."""
    if _answers(5432):
        import psycopg2

        name = f"runbooks_dist_{uuid.uuid4().hex[:8]}"
        try:
            admin = psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname="postgres", connect_timeout=3)
        except psycopg2.Error:
            admin = None
        if admin is not None:
            admin.autocommit = True
            with admin.cursor() as cur:
                cur.execute(f'CREATE DATABASE "{name}"')
            try:
                yield f"postgresql+psycopg2://postgres@127.0.0.1:5432/{name}"
            finally:
                with admin.cursor() as cur:
                    cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                admin.close()
            return
    with private_postgres(folder) as pg:
        yield pg.url


def _postgres_connection(url: str) -> str:
    """An Airflow connection (JSON) for a ``postgresql+psycopg2://`` URL."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    return json.dumps({"conn_type": "postgres", "host": parsed.host, "port": parsed.port, "login": parsed.username,
                       "password": parsed.password, "schema": parsed.database})


@dataclass
class Distributed:
    """A running distributed topology."""

    home: Path
    env: dict[str, str]
    base_url: str
    password: str
    workers: int
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def api(self) -> Api:
        return Api(self.base_url, "admin", self.password)

    def command(self, name: str) -> list[str]:
        airflow = [sys.executable, "-m", "airflow"]
        if name == "api-server":
            return [*airflow, "api-server", "--port", self.base_url.rsplit(":", 1)[1]]
        if name.startswith("worker-"):
            return [*airflow, "celery", "worker", "--concurrency", "2", "--celery-hostname", f"{name}@%h",
                    "--skip-serve-logs"]
        return [*airflow, name]

    def start(self, name: str) -> None:
        """Start one component (in its own folder and process group; output to logs/<name>.log)."""
        folder = self.home / "procs" / name
        folder.mkdir(parents=True, exist_ok=True)
        env = {**self.env, "AIRFLOW_HOME": str(folder / "airflow"),  # no shared disk between components
               "RUNBOOKS_COMPONENT": name}
        if name.startswith("worker-"):
            env["AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT"] = str(free_port())
        log = open(self.home / "logs" / f"{name}.log", "ab")
        self.procs[name] = subprocess.Popen(self.command(name), env=env, cwd=folder, stdout=log,
                                            stderr=subprocess.STDOUT, start_new_session=True)

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Kill one component's whole process group (SIGKILL: as a crashed machine would)."""
        proc = self.procs[name]
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        proc.wait(timeout=30)

    def component_of(self, pid: int) -> str | None:
        """The component whose process tree holds ``pid`` (a task's process: which worker runs it), or None."""
        roots = {proc.pid: name for name, proc in self.procs.items() if proc.poll() is None}
        while pid > 1:
            if pid in roots:
                return roots[pid]
            try:
                stat = Path(f"/proc/{pid}/stat").read_text()
            except OSError:
                return None
            pid = int(stat.rsplit(")", 1)[1].split()[1])  # field 4: the parent's pid
        return None

    def descendants(self, name: str) -> list[int]:
        """Every process below component ``name`` (a task process may leave the component's process group)."""
        children: dict[int, list[int]] = {}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                except (OSError, ValueError, IndexError):
                    continue
                children.setdefault(parent, []).append(int(entry.name))
        found, todo = [], [self.procs[name].pid]
        while todo:
            pid = todo.pop()
            for child in children.get(pid, []):
                found.append(child)
                todo.append(child)
        return found

    def crash(self, name: str) -> None:
        """SIGKILL a component and everything below it at once, as a machine that dies would."""
        below = self.descendants(name)
        self.kill(name)
        for pid in below:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def restart(self, name: str) -> None:
        self.kill(name, signal.SIGTERM)
        self.start(name)

    def stop(self) -> None:
        for name in list(self.procs):
            proc = self.procs.pop(name)
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
        deadline = time.monotonic() + 30
        for proc in list(self.procs.values()):
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


@contextmanager
def distributed(home: Path, *, workers: int = 2, extra_env: dict[str, str] | None = None) -> Iterator[Distributed]:
    """Start PostgreSQL, Redis and the Airflow components (CeleryExecutor); stop everything at the end."""
    home.mkdir(parents=True, exist_ok=True)
    (home / "logs").mkdir(exist_ok=True)
    with ExitStack() as stack:
        db_url = stack.enter_context(postgres_database(home / "postgres"))
        broker = stack.enter_context(redis_server(home / "redis"))
        port = free_port()
        base_url = f"http://127.0.0.1:{port}"
        password = secrets.token_urlsafe(12)
        (home / "passwords.json").write_text(json.dumps({"admin": password}))
        env = dict(os.environ)
        for key in list(env):  # this topology's own settings only
            if key.startswith("AIRFLOW__") or key == "AIRFLOW_HOME":
                env.pop(key)
        env.update({
            "AIRFLOW_HOME": str(home / "migrate"),
            "PYTHONPATH": str(PROJECT_ROOT),
            "PATH": os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]),
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(PROJECT_ROOT / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__PARALLELISM": "8",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": db_url,
            "AIRFLOW__CELERY__BROKER_URL": broker,
            "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + db_url.replace("+psycopg2", ""),
            "AIRFLOW__CELERY__WORKER_CONCURRENCY": "2",
            # A task whose worker died is handed to another worker instead of waiting out the visibility timeout.
            "AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__VISIBILITY_TIMEOUT": "60",
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "30",
            # a Celery slot is free <= 1 s after its task ends, not up to 5 s (see localdev/stack.py)
            "AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL": "1",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(64),
            "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(32),
            "AIRFLOW__API__PORT": str(port),
            "AIRFLOW__API__BASE_URL": base_url,
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{base_url}/execution/",
            "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__CORE__HOSTNAME_CALLABLE": "localdev.distributed.component_hostname",
            # The change engine's ledger in the metadata database: every worker reaches it.
            "AIRFLOW_CONN_RUNBOOKS_STATE": _postgres_connection(db_url),
            **(extra_env or {}),
        })
        subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], env=env, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=600)
        topology = Distributed(home=home, env=env, base_url=base_url, password=password, workers=workers)
        stack.callback(topology.stop)
        for name in ("api-server", "scheduler", "dag-processor", "triggerer",
                     *(f"worker-{n}" for n in range(1, workers + 1))):
            topology.start(name)
        api = topology.api
        wait_for("the distributed api-server and scheduler", api.healthy, timeout=300)
        yield topology
