"""Run a DAG end to end with ``dag.test()`` in a child process under a hard timeout.

``dag.test`` ignores SIGTERM and can wait on retries, so it never runs inside the pytest process:
the child is killed outright on timeout and the test fails with its output.

A fresh interpreter spends 5-8 s importing Airflow, the providers, boto3 and the project before the first
task runs, and the suite starts about thirty DAG runs per session. So each pytest process keeps one
*zygote*: an interpreter that has imported those modules once (and nothing else: no database connection,
no thread) and forks a child per run, exactly as Airflow's own dag-processor forks its file processors
after pre-importing. The child gets the caller's environment and working directory, parses the DAG file
itself and runs ``dag.test``; its output goes to a file the caller reads. Whatever the zygote has imported
reads its settings from the environment when called, except Airflow's configuration (read at import): a run
whose ``AIRFLOW*`` variables differ from the zygote's therefore gets a fresh interpreter, as before.
"""

from __future__ import annotations

import atexit
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import IO, Any

PROJECT_ROOT = Path(__file__).resolve().parents[1]

_CHILD = r"""
import json, sys
from airflow.dag_processing.dagbag import DagBag
dag_id, conf = sys.argv[1], json.loads(sys.argv[2])
bag = DagBag(dag_folder=sys.argv[3])
assert not bag.import_errors, bag.import_errors
dag = bag.dags[dag_id]
run = dag.test(run_conf=conf)
tis = {f"{ti.task_id}[{ti.map_index}]" if ti.map_index >= 0 else ti.task_id: str(ti.state)
       for ti in run.get_task_instances()}
print("DAGRUN-RESULT " + json.dumps({"state": str(run.state), "run_id": run.run_id, "tasks": tis}))
"""

# Modules every dag.test child needs (Airflow's task runner and in-process execution API, the providers'
# hooks, the cloud SDKs, the project's engine); a module that fails to import is simply left to the child.
_WARM_MODULES = (
    "airflow.dag_processing.dagbag", "airflow.models.dagbag", "airflow.sdk", "airflow.sdk.definitions.decorators",
    "airflow.providers.standard.decorators.python", "airflow.sdk.execution_time.supervisor",
    "airflow.sdk.execution_time.task_runner", "airflow.api_fastapi.execution_api.app",
    "airflow.serialization.serialized_objects", "airflow.providers.standard.operators.hitl",
    "boto3", "botocore.session", "airflow.providers.amazon.aws.hooks.base_aws", "airflow.providers.amazon.aws.hooks.s3",
    "airflow.providers.google.cloud.hooks.gcs", "airflow.providers.microsoft.azure.hooks.wasb",
    "include.changes", "include.audit", "include.targets", "include.clouds.aws.clients",
)

#: The cyclic garbage collector's thresholds in test processes (``gc.set_threshold``): a full pass only after 1,000
#: second-generation passes instead of 10. A full pass walks the whole heap (Airflow, the providers, botocore's
#: models, great-expectations): 0.3-0.4 s each, measured at 45 % of a pytest process's CPU and 26 % of a dag.test
#: child's (tests/conftest.py has the figures). The young generations are collected as often as usual.
GC_THRESHOLDS = (700, 10, 1000)

# The zygote: import, say READY, then fork one child per request line. It never touches the database or
# starts a thread, so a fork is as clean as Airflow's own (its ORM disposes inherited pools after a fork).
_ZYGOTE = r"""
import importlib, json, os, sys, traceback
sys.path.insert(0, sys.argv[1])
for name in json.loads(sys.argv[2]):
    try:
        importlib.import_module(name)
    except Exception:
        pass
child_code = compile(sys.argv[3], "<dag.test child>", "exec")
try:
    from tests.dagrun import warm_execution_api
    warm_execution_api()
except Exception:
    traceback.print_exc()  # to /dev/null: each child then builds the routes itself, as dag.test alone does
# What is imported now is never garbage: frozen, the collector never walks it again in a child, and full passes
# are rare (GC_THRESHOLDS). Airflow's own forking processes freeze their imports the same way.
import gc
gc.freeze()
gc.set_threshold(*json.loads(sys.argv[4]))
print("READY", flush=True)
for line in sys.stdin:
    request = json.loads(line)
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.setsid()
            out = os.open(request["output"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.dup2(out, 1)
            os.dup2(out, 2)
            devnull = os.open(os.devnull, os.O_RDONLY)
            os.dup2(devnull, 0)
            os.environ.clear()
            os.environ.update(request["env"])
            os.chdir(request["cwd"])
            sys.argv = ["-c", *request["args"]]
            sys.stdout = os.fdopen(1, "w", buffering=1)
            sys.stderr = os.fdopen(2, "w", buffering=1)
            exec(child_code, {"__name__": "__main__"})
            code = 0
        except SystemExit as stop:
            code = stop.code if isinstance(stop.code, int) else 1
        except BaseException:
            traceback.print_exc()
        finally:
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                os._exit(code)
    print(json.dumps({"pid": pid}), flush=True)
    _, status = os.waitpid(pid, 0)
    print(json.dumps({"status": os.waitstatus_to_exitcode(status)}), flush=True)
"""


def warm_execution_api() -> Any:
    """Build Airflow's in-process execution API app and its routes now (in the zygote, before it forks); the app.

    ``dag.test`` runs each task through that app, a FastAPI (Cadwyn) app that builds its versioned routes on its
    first request: ~0.5 s of CPU per run, measured as 17 s of the 37.6 s the dag.test children of five test files
    spent. Built once in the zygote, every child inherits it. Only the app: no thread, no database connection
    (its event loop thread starts in the child, at the first task), so forking stays clean.
    """
    from airflow.sdk.execution_time.supervisor import in_process_api_server

    app = in_process_api_server().app
    app._cadwyn_initialize()
    return app


def _airflow_settings(env: dict[str, str]) -> dict[str, str]:
    return {key: value for key, value in env.items() if key.startswith("AIRFLOW") and not key.startswith("AIRFLOW_CONN_")}


class _Zygote:
    """One pre-imported interpreter per pytest process (started at the first run, stopped at exit)."""

    def __init__(self) -> None:
        self.env = dict(os.environ)
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _ZYGOTE, str(PROJECT_ROOT), json.dumps(_WARM_MODULES), _CHILD,
             json.dumps(GC_THRESHOLDS)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            cwd=PROJECT_ROOT, env=self.env,
        )
        assert self.proc.stdout is not None
        self._read(self.proc.stdout, time.monotonic() + 300, expect="READY")

    def fits(self, env: dict[str, str]) -> bool:
        return self.proc.poll() is None and _airflow_settings(env) == _airflow_settings(self.env)

    @staticmethod
    def _read(stream: IO[str], deadline: float, expect: str | None = None) -> str:
        ready, _, _ = select.select([stream], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            raise TimeoutError
        line = stream.readline()
        if not line:
            raise RuntimeError("the dag.test zygote exited")
        if expect is not None and line.strip() != expect:
            raise RuntimeError(f"the dag.test zygote said {line!r}")
        return line

    def start(self, args: list[str], env: dict[str, str], output: Path) -> int:
        """Fork a child running ``_CHILD`` with ``args``, its output into ``output``; its pid."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        request = {"args": args, "env": env, "cwd": str(PROJECT_ROOT), "output": str(output)}
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        return int(json.loads(self._read(self.proc.stdout, time.monotonic() + 60))["pid"])

    def wait(self, pid: int, timeout: float) -> int:
        """The child's exit code; on timeout it is killed (dag.test ignores SIGTERM) and TimeoutError raised."""
        assert self.proc.stdout is not None
        try:
            return int(json.loads(self._read(self.proc.stdout, time.monotonic() + timeout))["status"])
        except TimeoutError:
            self.kill(pid)
            raise

    def kill(self, pid: int) -> None:
        """Kill the child and its process group; the zygote reaps it and reports."""
        assert self.proc.stdout is not None
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self._read(self.proc.stdout, time.monotonic() + 60)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


_zygotes: list[_Zygote] = []  # this process's zygote (the newest; replaced if it ever exits)
_lock = threading.Lock()  # one run through the zygote at a time; a second concurrent one gets a fresh interpreter


def _get_zygote() -> _Zygote:
    if not _zygotes or _zygotes[-1].proc.poll() is not None:
        _zygotes.append(_Zygote())
        atexit.register(_zygotes[-1].stop)
    return _zygotes[-1]


def _dag_file(dag_id: str) -> Path:
    """One runbook per file (dags/<dag id>.py): parse only that file; the folder when the convention breaks."""
    path = PROJECT_ROOT / "dags" / f"{dag_id}.py"
    return path if path.is_file() else PROJECT_ROOT / "dags"


class StartedDag:
    """A ``dag.test`` run going on in a child (forked by the zygote, or a fresh interpreter when the
    environment's Airflow settings differ or another run of this process is still going)."""

    def __init__(self, dag_id: str, conf: dict[str, Any] | None = None, env: dict[str, str] | None = None) -> None:
        self.dag_id = dag_id
        args = [dag_id, json.dumps(conf or {}), str(_dag_file(dag_id))]
        env = env or dict(os.environ)
        self._zygote: _Zygote | None = None
        self._proc: subprocess.Popen[str] | None = None
        self._pid = 0
        if _lock.acquire(blocking=False):
            try:
                zygote = _get_zygote()
                if zygote.fits(env):
                    with tempfile.NamedTemporaryFile(prefix="dagrun-", suffix=".log", delete=False) as handle:
                        self._output = Path(handle.name)
                    self._pid = zygote.start(args, env, self._output)
                    self._zygote = zygote
            finally:
                if self._zygote is None:
                    _lock.release()
        if self._zygote is None:
            self._proc = subprocess.Popen([sys.executable, "-c", _CHILD, *args], stdout=subprocess.PIPE,
                                          stderr=subprocess.STDOUT, text=True, cwd=PROJECT_ROOT, env=env,
                                          start_new_session=True)

    def finish(self, timeout: float = 420) -> dict[str, Any]:
        """Wait for the run; {"state", "run_id", "tasks": {task[map index]: state}, "output"}."""
        code, output = self._wait(timeout)
        for line in output.splitlines():
            if line.startswith("DAGRUN-RESULT "):
                parsed: dict[str, Any] = json.loads(line.split(" ", 1)[1])
                parsed["output"] = output
                return parsed
        raise AssertionError(f"dag.test of {self.dag_id} produced no result (exit {code}):\n{output[-5000:]}")

    def kill(self) -> None:
        """Stop the run now (a test that failed while it was going)."""
        if self._zygote is not None:
            try:
                self._zygote.kill(self._pid)
            finally:
                self._release()
        elif self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.communicate()

    def _wait(self, timeout: float) -> tuple[int, str]:
        if self._zygote is not None:
            try:
                code = self._zygote.wait(self._pid, timeout)
            except TimeoutError:
                output = self._output.read_text(errors="replace")
                self._release()
                raise AssertionError(f"dag.test of {self.dag_id} did not finish in {timeout}s:\n{output[-4000:]}") from None
            output = self._output.read_text(errors="replace")
            self._release()
            return code, output
        assert self._proc is not None
        try:
            output, _ = self._proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._proc.kill()  # dag.test ignores SIGTERM
            output, _ = self._proc.communicate()
            raise AssertionError(f"dag.test of {self.dag_id} did not finish in {timeout}s:\n{output[-4000:]}") from None
        return self._proc.returncode, output

    def _release(self) -> None:
        if self._zygote is not None:
            self._output.unlink(missing_ok=True)
            self._zygote = None
            _lock.release()


def start_dag(dag_id: str, conf: dict[str, Any] | None = None, env: dict[str, str] | None = None) -> StartedDag:
    """Start ``dag_id`` with ``dag.test`` in a child; ``.finish(timeout)`` waits for its result."""
    return StartedDag(dag_id, conf, env)


def run_dag(dag_id: str, conf: dict[str, Any] | None = None, timeout: float = 420, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run ``dag_id`` once; return {"state", "run_id", "tasks": {task[map index]: state}, "output"}."""
    return start_dag(dag_id, conf, env).finish(timeout)
