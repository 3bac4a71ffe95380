"""Start, stop and reset the local cloud emulators (moto server, GCS emulator, Azurite blob).

One module serves ``make up`` / ``make demo`` (a long-lived set recorded in a state file) and the test
fixtures (a private set on free ports per test session). Each emulator binds to 127.0.0.1 only.

    python -m localdev.emulators start   # start all three, write .local/emulators.json, print env
    python -m localdev.emulators env     # print the AIRFLOW_CONN_* lines for the running set
    python -m localdev.emulators stop    # stop what ``start`` started
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

from include.paths import PROJECT_ROOT

STATE_DIR = PROJECT_ROOT / ".local"
STATE_FILE = STATE_DIR / "emulators.json"

#: The well-known, public Azurite development account key (documented by Microsoft; not a secret).
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
#: azure-storage-blob 12.31 sends an API version Azurite 3.37 refuses; pin one it accepts.
AZURITE_API_VERSION = "2026-06-06"
#: Project id the local GCS estate lives in.
GCP_LOCAL_PROJECT = "runbooks-local"
#: Account id moto uses for the default (testing) credentials.
AWS_LOCAL_ACCOUNT = "123456789012"

# Connection ids the local estate is reached through (config/targets.yaml names the same ids).
AWS_CONN_ID = "aws_estate"
GCP_CONN_ID = "gcp_estate"
AZURE_CONN_ID = "azure_estate"


class EmulatorError(RuntimeError):
    """An emulator could not be started or did not answer in time."""


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _bin(name: str) -> str:
    """Find an executable: the project's venv and node_modules first, then PATH."""
    candidates = [
        Path(sys.executable).parent / name,
        PROJECT_ROOT / ".venv" / "bin" / name,
        PROJECT_ROOT / "node_modules" / ".bin" / name,
    ]
    for candidate in candidates:
        if candidate.exists():
            return str(candidate)
    found = shutil.which(name)
    if not found:
        raise EmulatorError(f"{name} not found: run `make venv` (Python tools) or `npm ci` (Azurite)")
    return found


@dataclass
class Emulators:
    """Ports and process ids of one running set of emulators."""

    aws_port: int
    gcs_port: int
    azure_port: int
    pids: dict[str, int] = field(default_factory=dict)

    # ---- endpoints -------------------------------------------------------------------------------
    @property
    def aws_endpoint(self) -> str:
        """moto server's base URL."""
        return f"http://127.0.0.1:{self.aws_port}"

    @property
    def gcs_endpoint(self) -> str:
        """The GCS emulator's base URL (``STORAGE_EMULATOR_HOST``)."""
        return f"http://127.0.0.1:{self.gcs_port}"

    @property
    def azure_endpoint(self) -> str:
        """Azurite's blob endpoint of the development account."""
        return f"http://127.0.0.1:{self.azure_port}/{AZURITE_ACCOUNT}"

    # ---- connections -----------------------------------------------------------------------------
    def connections(self) -> dict[str, dict[str, object]]:
        """Airflow connections (as JSON-able dicts) that reach this set of emulators."""
        return {
            AWS_CONN_ID: {
                "conn_type": "aws",
                "login": "testing",
                "password": "testing",
                "extra": {"endpoint_url": self.aws_endpoint, "region_name": "us-east-1"},
            },
            GCP_CONN_ID: {
                "conn_type": "google_cloud_platform",
                "extra": {"is_anonymous": True, "project": GCP_LOCAL_PROJECT},
            },
            AZURE_CONN_ID: {
                "conn_type": "wasb",
                "extra": {
                    "connection_string": (
                        f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};"
                        f"AccountKey={AZURITE_KEY};BlobEndpoint={self.azure_endpoint};"
                    ),
                    "api_version": AZURITE_API_VERSION,
                },
            },
        }

    def environment(self) -> dict[str, str]:
        """Environment variables a process needs to reach this set: connections plus GCS redirect."""
        env = {
            f"AIRFLOW_CONN_{conn_id.upper()}": json.dumps(conn)
            for conn_id, conn in self.connections().items()
        }
        # GCSHook honours STORAGE_EMULATOR_HOST only with an anonymous connection; without this
        # variable calls go to the real endpoint and hang.
        env["STORAGE_EMULATOR_HOST"] = self.gcs_endpoint
        # Plain boto3 clients (peers such as Prowler) and moto's own clients find the server here.
        env["AWS_ENDPOINT_URL"] = self.aws_endpoint
        return env

    def apply_environment(self, environ: os._Environ[str] | dict[str, str] = os.environ) -> None:
        """Set :meth:`environment` in ``environ`` (this process's environment by default)."""
        environ.update(self.environment())

    # ---- state ---------------------------------------------------------------------------------
    def reset(self) -> None:
        """Empty every emulator (used between tests)."""
        _http("POST", f"{self.aws_endpoint}/moto-api/reset")
        _http("GET", f"{self.gcs_endpoint}/wipe")
        _wipe_azurite(self)

    def save(self, path: Path = STATE_FILE) -> None:
        """Record this set (ports, pids) in ``path`` for a later ``load`` / ``stop``."""
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, path: Path = STATE_FILE) -> Emulators:
        """The set recorded by :meth:`save` (``EmulatorError`` when none is recorded)."""
        if not path.exists():
            raise EmulatorError(f"no running emulators recorded in {path}: run `make up` first")
        return cls(**json.loads(path.read_text()))


def _http(method: str, url: str, timeout: float = 5.0) -> int:
    request = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return int(response.status)


def _answers(url: str) -> bool:
    try:
        _http("GET", url, timeout=1.0)
        return True
    except urllib.error.HTTPError:
        return True  # any HTTP answer means the server is up (Azurite answers 400 on /)
    except (urllib.error.URLError, OSError):
        return False


def _wipe_azurite(emulators: Emulators) -> None:
    from azure.storage.blob import BlobServiceClient  # imported lazily: heavy SDK

    conn = emulators.connections()[AZURE_CONN_ID]["extra"]
    assert isinstance(conn, Mapping)
    client = BlobServiceClient.from_connection_string(
        str(conn["connection_string"]), api_version=AZURITE_API_VERSION
    )
    for container in client.list_containers():
        client.delete_container(container.name)


def _wait(name: str, url: str, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise EmulatorError(f"{name} exited with code {proc.returncode} before answering on {url}")
        if _answers(url):
            return
        time.sleep(0.1)
    raise EmulatorError(f"{name} did not answer on {url} within {timeout:.0f}s")


def moto_command(port: int) -> list[str]:
    """moto server on ``port`` (``moto_server``'s arguments), through localdev/moto_server.py."""
    return [sys.executable, "-m", "localdev.moto_server", "-H", "127.0.0.1", "-p", str(port)]


def _with_project_path(env: dict[str, str]) -> dict[str, str]:
    """``env`` with the project first on PYTHONPATH (moto runs as ``python -m localdev.moto_server``)."""
    env["PYTHONPATH"] = os.pathsep.join([str(PROJECT_ROOT), *filter(None, [env.get("PYTHONPATH")])])
    return env


def start_moto(log: Path, env: Mapping[str, str] | None = None, timeout: float = 30.0) -> tuple[subprocess.Popen[bytes], str]:
    """A private moto server (:func:`moto_command`) on a free port, its output into ``log``, ``env`` added to the
    environment (moto's own settings, such as ``INITIAL_NO_AUTH_ACTION_COUNT``); (process, endpoint) once it answers.
    The caller stops the process."""
    port = free_port()
    full_env = _with_project_path({**os.environ, **(env or {})})
    with log.open("ab") as out:
        proc = subprocess.Popen(moto_command(port), stdout=out, stderr=subprocess.STDOUT, env=full_env)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        _wait("moto server", f"{endpoint}/moto-api/", proc, timeout)
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    return proc, endpoint


def _commands(emulators: Emulators) -> dict[str, list[str]]:
    return {
        "aws": moto_command(emulators.aws_port),
        "gcs": [
            _bin("gcp-storage-emulator"), "start", "--host", "127.0.0.1",
            "--port", str(emulators.gcs_port), "--in-memory", "--quiet",
        ],
        "azure": [
            _bin("azurite-blob"), "--blobHost", "127.0.0.1", "--blobPort", str(emulators.azure_port),
            "--inMemoryPersistence", "--disableTelemetry", "--extentMemoryLimit", "512",
            "--silent",
        ],
    }


def _health(emulators: Emulators) -> dict[str, str]:
    return {
        "aws": f"{emulators.aws_endpoint}/moto-api/",
        "gcs": f"{emulators.gcs_endpoint}/",
        "azure": f"http://127.0.0.1:{emulators.azure_port}/",
    }


def _spawn(emulators: Emulators, name: str, log_dir: Path) -> subprocess.Popen[bytes]:
    env = _with_project_path(dict(os.environ))
    env.pop("AWS_CA_BUNDLE", None)
    log = open(log_dir / f"{name}-{getattr(emulators, name + '_port')}.log", "ab")
    proc = subprocess.Popen(_commands(emulators)[name], stdout=log, stderr=subprocess.STDOUT, env=env,
                            start_new_session=True)
    emulators.pids[name] = proc.pid
    return proc


def start(
    *,
    aws_port: int | None = None,
    gcs_port: int | None = None,
    azure_port: int | None = None,
    log_dir: Path | None = None,
    timeout: float = 30.0,
) -> Emulators:
    """Start the three emulators (free ports unless given), wait until each answers, return them."""
    emulators = Emulators(
        aws_port=aws_port or free_port(),
        gcs_port=gcs_port or free_port(),
        azure_port=azure_port or free_port(),
    )
    log_dir = log_dir or (STATE_DIR / "logs")
    log_dir.mkdir(parents=True, exist_ok=True)
    procs: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for name in ("aws", "gcs", "azure"):
            procs[name] = _spawn(emulators, name, log_dir)
        health = _health(emulators)
        for name, proc in procs.items():
            _wait(name, health[name], proc, timeout)
    except BaseException:
        stop(emulators)
        raise
    return emulators


def stop_one(emulators: Emulators, name: str, timeout: float = 10.0) -> None:
    """Stop one emulator of the set (``aws``, ``gcs`` or ``azure``), as an outage would; its state is lost."""
    stop(Emulators(emulators.aws_port, emulators.gcs_port, emulators.azure_port,
                   {name: emulators.pids[name]}), timeout)


def start_one(emulators: Emulators, name: str, log_dir: Path | None = None, timeout: float = 30.0) -> None:
    """Start one emulator of the set again on its port (empty: seed it again) and wait until it answers."""
    log_dir = log_dir or (STATE_DIR / "logs")
    log_dir.mkdir(parents=True, exist_ok=True)
    proc = _spawn(emulators, name, log_dir)
    _wait(name, _health(emulators)[name], proc, timeout)


def stop(emulators: Emulators, timeout: float = 10.0) -> None:
    """Stop every process of the set (whole process groups: Azurite runs under node)."""
    for pid in emulators.pids.values():
        try:
            os.killpg(pid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            continue
    deadline = time.monotonic() + timeout
    for pid in emulators.pids.values():
        while time.monotonic() < deadline:
            _reap(pid)  # a dead child we started stays a zombie (and "alive" to killpg) until reaped
            try:
                os.killpg(pid, 0)
            except (ProcessLookupError, PermissionError):
                break
            time.sleep(0.05)
        else:
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            _reap(pid)


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass  # not our child (started by another process, e.g. `make up` then `make down`)


def env_lines(emulators: Emulators) -> list[str]:
    """``KEY='value'`` lines for a dotenv file / shell ``export``."""
    return [f"{key}='{value}'" for key, value in sorted(emulators.environment().items())]


def main(argv: list[str] | None = None) -> int:
    """``python -m localdev.emulators start|stop|env|status``."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("command", choices=["start", "stop", "env", "status"])
    parser.add_argument("--aws-port", type=int, default=int(os.environ.get("AWS_EMULATOR_PORT", "0")) or None)
    parser.add_argument("--gcs-port", type=int, default=int(os.environ.get("GCS_EMULATOR_PORT", "0")) or None)
    parser.add_argument("--azure-port", type=int, default=int(os.environ.get("AZURE_EMULATOR_PORT", "0")) or None)
    args = parser.parse_args(argv)
    if args.command == "start":
        if STATE_FILE.exists():
            try:
                running = Emulators.load()
                if all(_answers(u) for u in (f"{running.aws_endpoint}/moto-api/", f"{running.gcs_endpoint}/")):
                    print(f"emulators already running: {STATE_FILE}", file=sys.stderr)
                    return 0
            except (EmulatorError, json.JSONDecodeError, TypeError):
                pass
            stop(Emulators.load()) if STATE_FILE.exists() else None
        emulators = start(aws_port=args.aws_port, gcs_port=args.gcs_port, azure_port=args.azure_port)
        emulators.save()
        print(
            f"emulators up: aws {emulators.aws_endpoint}  gcs {emulators.gcs_endpoint}  "
            f"azure {emulators.azure_endpoint}",
            file=sys.stderr,
        )
        return 0
    if args.command == "stop":
        if STATE_FILE.exists():
            stop(Emulators.load())
            STATE_FILE.unlink()
        return 0
    emulators = Emulators.load()
    if args.command == "env":
        print("\n".join(env_lines(emulators)))
    else:
        print(json.dumps(asdict(emulators), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
