"""Shared harness pieces: measured subprocesses, statistics, ratio tables, results files, tool venvs.

Every figure is taken from a separate OS process so that the measured side and its peer pay the same
costs (interpreter start, imports, their own HTTP clients) and so that the peak memory of one does not
hide in the other's. Peak memory is the kernel's own high-water mark of the measured process
(``ru_maxrss`` from ``wait4`` for exactly that child), cross-checked by polling the resident set of the
whole process tree with psutil.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parents[1]
BENCH_DIR = PROJECT_ROOT / "bench"
RESULTS_DIR = Path(os.environ.get("BENCH_RESULTS_DIR", BENCH_DIR / "results"))

#: Fake credentials every AWS client in a benchmark uses (moto accepts any).
FAKE_AWS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
}
#: Variables that would send a peer somewhere else than the emulators (or break its TLS set-up).
_SCRUBBED = ("AWS_PROFILE", "AWS_CA_BUNDLE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE", "AWS_ROLE_ARN",
             "AWS_WEB_IDENTITY_TOKEN_FILE")


#: Bytecode cache for every process of a benchmark. This sandbox sets PYTHONDONTWRITEBYTECODE=1 and the
#: venvs are installed without .pyc files, so every interpreter would recompile each module it imports
#: (importing Airflow takes ~2x as long). Production installs have bytecode; so do the measured runs:
#: caches go to a private prefix (nothing is written into the shared venvs) and a warm-up run fills it.
PYCACHE_PREFIX = RESULTS_DIR / ".pycache"


def with_bytecode_cache(env: dict[str, str]) -> dict[str, str]:
    """``env`` with bytecode caching on, into :data:`PYCACHE_PREFIX`."""
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(PYCACHE_PREFIX)
    return env


def enable_bytecode_cache() -> None:
    """Turn bytecode caching on for this process's children (emulators, seeding, measured runs)."""
    PYCACHE_PREFIX.mkdir(parents=True, exist_ok=True)
    with_bytecode_cache(os.environ)  # type: ignore[arg-type]


class BenchError(RuntimeError):
    """A benchmark could not be run (tool missing, peer failed, emulator down)."""


# ---- measured subprocesses -------------------------------------------------------------------------


@dataclass
class Measurement:
    """One measured run of one process."""

    argv: list[str]
    wall_s: float
    #: Kernel high-water mark of the process's resident set (bytes), from wait4's rusage.
    peak_rss: int
    #: Highest sum of resident sets over the process and all its descendants seen while polling.
    peak_tree_rss: int
    returncode: int
    user_s: float
    sys_s: float
    stdout: str = ""
    stderr: str = ""

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def brief(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("stdout")
        data.pop("stderr")
        return data

    def tail(self, lines: int = 30) -> str:
        text = (self.stderr or "") + (self.stdout or "")
        return "\n".join(text.splitlines()[-lines:])


def _poll_tree(pid: int, stop: threading.Event, peak: list[int], interval: float) -> None:
    try:
        import psutil
    except ImportError:  # pragma: no cover - psutil is pinned in requirements.txt
        return
    try:
        root = psutil.Process(pid)
    except psutil.Error:
        return
    while not stop.is_set():
        total = 0
        try:
            procs = [root, *root.children(recursive=True)]
        except psutil.Error:
            break
        for proc in procs:
            try:
                total += proc.memory_info().rss
            except psutil.Error:
                continue
        peak[0] = max(peak[0], total)
        stop.wait(interval)


def run_measured(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | str | None = None,
    timeout: float = 1800.0,
    poll_interval: float = 0.25,
    capture: bool = True,
) -> Measurement:
    """Run ``argv`` to completion; return its wall time, peak RSS (kernel and polled) and output.

    The child runs in its own session so that a timeout stops it and everything it started, and
    nothing else. Output goes to temporary files (a pipe could block a chatty peer).
    """
    with tempfile.TemporaryFile(mode="w+b") as out, tempfile.TemporaryFile(mode="w+b") as err:
        started = time.perf_counter()
        proc = subprocess.Popen(
            list(argv),
            env=dict(env) if env is not None else None,
            cwd=str(cwd) if cwd else None,
            stdout=out if capture else None,
            stderr=err if capture else None,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        stop = threading.Event()
        peak = [0]
        poller = threading.Thread(target=_poll_tree, args=(proc.pid, stop, peak, poll_interval), daemon=True)
        poller.start()
        timer = threading.Timer(timeout, _kill_group, args=(proc.pid,))
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
            stop.set()
        wall = time.perf_counter() - started
        poller.join(timeout=2)
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode("utf-8", "replace")
        stderr = err.read().decode("utf-8", "replace")
    return Measurement(
        argv=list(argv),
        wall_s=wall,
        peak_rss=int(usage.ru_maxrss) * 1024,  # Linux reports kilobytes
        peak_tree_rss=peak[0],
        returncode=proc.returncode,
        user_s=usage.ru_utime,
        sys_s=usage.ru_stime,
        stdout=stdout,
        stderr=stderr,
    )


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def last_json_line(text: str) -> dict[str, Any]:
    """The last line of ``text`` that parses as a JSON object (children print their result last)."""
    for raw in reversed(text.strip().splitlines()):
        line = raw.strip()
        if line.startswith("{") and line.endswith("}"):
            try:
                value = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(value, dict):
                return value
    raise BenchError(f"no JSON result in the child's output:\n{text[-2000:]}")


# ---- statistics and ratio tables ------------------------------------------------------------------


def summarize(values: Sequence[float]) -> dict[str, float]:
    """Median, min, max and count of repeated measurements."""
    if not values:
        raise ValueError("no values to summarize")
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "n": len(values),
    }


def ratio(ours: float, peer: float) -> float | None:
    """ours / peer (below 1: we are faster or smaller); None when the peer figure is zero or missing."""
    if not peer:
        return None
    return ours / peer


@dataclass
class RatioRow:
    """One line of a side-by-side table: what, our figure, the peer's, and ours/peer."""

    label: str
    ours: float
    peer: float | None
    unit: str  # "s" or "MiB" or "" (counts)
    ours_spread: tuple[float, float] | None = None
    peer_spread: tuple[float, float] | None = None
    note: str = ""
    ratio: float | None = field(init=False)

    def __post_init__(self) -> None:
        self.ratio = ratio(self.ours, self.peer) if self.peer is not None else None


def _fmt(value: float | None, unit: str, spread: tuple[float, float] | None = None) -> str:
    if value is None:
        return "-"
    digits = 3 if unit == "s" and value < 10 else 1
    text = f"{value:.{digits}f}" if unit else f"{value:.0f}"
    if spread is not None and spread[0] != spread[1]:
        low, high = spread
        text += f" [{low:.{digits}f}-{high:.{digits}f}]" if unit else f" [{low:.0f}-{high:.0f}]"
    return f"{text} {unit}".rstrip()


def ratio_table(rows: Sequence[RatioRow], *, ours: str = "ours", peer: str = "peer") -> str:
    """A markdown table of ``rows`` (median [min-max] when repeated, ratio = ours / peer)."""
    lines = [
        f"| measure | {ours} | {peer} | ratio {ours}/{peer} | note |",
        "|---|---:|---:|---:|---|",
    ]
    for row in rows:
        ratio_text = "-" if row.ratio is None else f"{row.ratio:.2f}"
        lines.append(
            f"| {row.label} | {_fmt(row.ours, row.unit, row.ours_spread)} | "
            f"{_fmt(row.peer, row.unit, row.peer_spread)} | {ratio_text} | {row.note} |"
        )
    return "\n".join(lines)


def console_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain fixed-width table for the terminal."""
    cells = [[str(h) for h in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    out = []
    for index, row in enumerate(cells):
        out.append("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)))
        if index == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def mib(value: float) -> float:
    return value / (1024 * 1024)


# ---- results ---------------------------------------------------------------------------------------


def machine_info() -> dict[str, Any]:
    """What the figures were measured on (they are only comparable within one run)."""
    info: dict[str, Any] = {
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cores": os.cpu_count(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }
    try:
        import psutil

        info["memory_gib"] = round(psutil.virtual_memory().total / 2**30, 1)
    except ImportError:  # pragma: no cover
        pass
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return info


def write_results(name: str, data: Mapping[str, Any], markdown: str) -> tuple[Path, Path]:
    """Write ``bench/results/<name>.json`` and ``<name>.md``; return both paths."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    json_path = RESULTS_DIR / f"{name}.json"
    md_path = RESULTS_DIR / f"{name}.md"
    json_path.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")
    md_path.write_text(markdown.rstrip() + "\n")
    return json_path, md_path


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        return int(value)
    except ValueError as exc:
        raise BenchError(f"{name} must be an integer, got {value!r}") from exc


# ---- environments ----------------------------------------------------------------------------------


def peer_env(aws_endpoint: str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment for a peer tool: the moto endpoint, fake credentials, nothing of the user's AWS set-up."""
    env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED and not k.startswith("AIRFLOW_CONN_")}
    env.update(FAKE_AWS)
    env["AWS_ENDPOINT_URL"] = aws_endpoint
    # A config/credentials file of the user must not leak in: point both at empty files.
    empty = BENCH_DIR / "results" / ".empty-aws-config"
    empty.parent.mkdir(parents=True, exist_ok=True)
    empty.touch()
    env["AWS_CONFIG_FILE"] = str(empty)
    env["AWS_SHARED_CREDENTIALS_FILE"] = str(empty)
    env["AWS_EC2_METADATA_DISABLED"] = "true"
    env["PYTHONUNBUFFERED"] = "1"
    env.pop("PYTHONPATH", None)
    env.pop("VIRTUAL_ENV", None)
    with_bytecode_cache(env)
    if extra:
        env.update(extra)
    return env


def ours_env(emulator_env: Mapping[str, str], work: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment for our own measured children: Airflow home and data dir private to the run."""
    env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED}
    env.update(FAKE_AWS)
    env.update(emulator_env)
    env["AIRFLOW_HOME"] = str(work / "airflow-home")
    env["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
    env["AIRFLOW__LOGGING__LOGGING_LEVEL"] = "WARNING"
    env["RUNBOOKS_DATA_DIR"] = str(work / "data")
    env["AWS_EC2_METADATA_DISABLED"] = "true"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH", "")]))
    with_bytecode_cache(env)
    if extra:
        env.update(extra)
    return env


# ---- peer tools in their own virtualenvs -----------------------------------------------------------


def _uv() -> str | None:
    for candidate in (Path(sys.executable).parent / "uv", PROJECT_ROOT / ".venv" / "bin" / "uv"):
        if candidate.exists():
            return str(candidate)
    return shutil.which("uv")


def ensure_tool_venv(name: str, requirements: Sequence[str], script: str) -> Path:
    """Create ``bench/.venv-<name>`` with exactly ``requirements`` (once); return the path of ``script``.

    The peers pin boto3 / pydantic versions that clash with Airflow's, so each lives in its own venv.
    uv is used when present (seconds), else the stdlib venv + pip.
    """
    venv = BENCH_DIR / f".venv-{name}"
    marker = venv / ".bench-requirements"
    wanted = "\n".join(requirements)
    tool = venv / "bin" / script
    if tool.exists() and marker.exists() and marker.read_text() == wanted:
        return tool
    uv = _uv()
    print(f"[bench] installing {' '.join(requirements)} into {venv} ...", file=sys.stderr, flush=True)
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    if uv:
        subprocess.run([uv, "venv", "-q", "--allow-existing", "--python", python, str(venv)], check=True)
        subprocess.run([uv, "pip", "install", "-q", "--python", str(venv / "bin" / "python"), *requirements],
                       check=True)
    else:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", *requirements], check=True)
    if not tool.exists():
        raise BenchError(f"{script} not found in {venv} after installing {requirements}")
    marker.write_text(wanted)
    return tool


def tool_version(tool: Path, *args: str) -> str:
    try:
        done = subprocess.run([str(tool), *args], capture_output=True, text=True, timeout=120, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unknown ({exc})"
    return (done.stdout or done.stderr).strip().splitlines()[-1] if (done.stdout or done.stderr) else "unknown"
