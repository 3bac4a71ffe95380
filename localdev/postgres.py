"""A private PostgreSQL server for tests and local runs, from the Debian ``postgresql`` binaries.

    with private_postgres(Path("/tmp/pg")) as pg:
        pg.url          # postgresql+psycopg2://runbooks@127.0.0.1:<port>/runbooks
        pg.connection() # the Airflow connection (JSON) that reaches it

The server listens on 127.0.0.1 on a free port, trusts local connections (it is private to one test
session or one `make` run) and is stopped, with its data folder removed, when the block ends. initdb
refuses to run as root: as root the server runs as the ``postgres`` user.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from localdev.emulators import free_port


class PostgresUnavailable(RuntimeError):
    """The PostgreSQL server binaries are not installed (Debian: ``apt-get install postgresql``)."""


def pg_bin(name: str) -> str:
    """A PostgreSQL server binary (initdb, pg_ctl): PATH first, then Debian's versioned folders."""
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)
    if not candidates:
        raise PostgresUnavailable(f"{name} not found: install Debian's postgresql package")
    return candidates[0]


@dataclass(frozen=True)
class Postgres:
    port: int
    data: Path
    user: str = "runbooks"
    database: str = "runbooks"

    @property
    def url(self) -> str:
        return f"postgresql+psycopg2://{self.user}@127.0.0.1:{self.port}/{self.database}"

    def connection(self) -> dict[str, object]:
        """The Airflow connection (``AIRFLOW_CONN_*`` JSON form) that reaches this server."""
        return {"conn_type": "postgres", "host": "127.0.0.1", "port": self.port, "login": self.user,
                "schema": self.database}


def _as_owner(command: list[str], owner: str | None) -> list[str]:
    return ["runuser", "-u", owner, "--", *command] if owner else command


@contextmanager
def private_postgres(folder: Path | None = None, *, timeout: float = 60.0) -> Iterator[Postgres]:
    """Start a throw-away server (in ``folder``, or a new folder under the temp dir); stop and remove it at the end.

    As root the server runs as ``postgres``, which must reach the folder: it then always gets a fresh folder
    directly under the temp dir (a test's tmp_path sits below a folder only root may enter).
    """
    owner = "postgres" if os.geteuid() == 0 else None
    if folder is None or owner:
        folder = Path(tempfile.mkdtemp(prefix="runbooks-pg-"))
    folder.mkdir(parents=True, exist_ok=True)
    data = folder / "data"
    if owner:
        record = pwd.getpwnam(owner)
        os.chown(folder, record.pw_uid, record.pw_gid)
    port = free_port()
    pg = Postgres(port=port, data=data)
    subprocess.run(_as_owner([pg_bin("initdb"), "-D", str(data), "-U", pg.user, "--auth=trust", "-E", "UTF8",
                              "--no-instructions"], owner),
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=timeout)
    options = f"-p {port} -c listen_addresses=127.0.0.1 -k {folder} -c fsync=off -c full_page_writes=off"
    log = folder / "postgres.log"
    subprocess.run(_as_owner([pg_bin("pg_ctl"), "-D", str(data), "-o", options, "-l", str(log), "-w",
                              "-t", str(int(timeout)), "start"], owner),
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=timeout + 10)
    try:
        deadline = time.monotonic() + timeout
        while True:
            created = subprocess.run(
                _as_owner([pg_bin("createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", pg.user, pg.database], owner),
                capture_output=True, text=True, timeout=timeout, check=False)
            if created.returncode == 0 or "already exists" in created.stderr:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"createdb failed: {created.stderr}")
            time.sleep(0.2)
        yield pg
    finally:
        subprocess.run(_as_owner([pg_bin("pg_ctl"), "-D", str(data), "-m", "immediate", "stop"], owner),
                       check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
        shutil.rmtree(data if not owner else folder, ignore_errors=True)
