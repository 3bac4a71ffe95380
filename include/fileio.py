"""Writes a reader never sees half of, and append-only logs, on local disk or on an object store.

Local disk (a :class:`~pathlib.Path`): every write goes to a temporary file in the same folder, is flushed,
then renamed over the target (``os.replace`` is atomic on POSIX within one file system). A write that
fails part-way removes its temporary file and leaves the target as it was.

Object store (an ``ObjectStoragePath``, see :func:`include.paths.data_root`): the content is built in
memory and stored with ONE put, which is atomic per object; a write that fails before the put stores
nothing.

Append-only logs (the audit trail, histories): on local disk one line per record, appended with ONE
``write`` on an ``O_APPEND`` file, so concurrent writers never interleave. An object store cannot append,
so there each record is its own object under ``<log name>.d/`` (``<UTC time>-<random>.json``: unique,
sorted by time), and :func:`read_lines` gives the lines of both forms, oldest first.
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO, TextIO

from include.paths import DataPath

#: Suffix of the folder holding an object-store log's records (``history.jsonl`` -> ``history.jsonl.d/``).
RECORDS_SUFFIX = ".d"


@contextmanager
def _temp_beside(path: Path) -> Iterator[tuple[int, str]]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        yield fd, tmp
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


@contextmanager
def atomic_text_writer(path: DataPath) -> Iterator[TextIO]:
    """A text handle that replaces ``path`` on a clean exit and leaves it as it was otherwise."""
    if not isinstance(path, Path):
        buffer = io.StringIO()
        yield buffer
        path.write_bytes(buffer.getvalue().encode())
        return
    with _temp_beside(path) as (fd, _), os.fdopen(fd, "w") as handle:
        yield handle
        handle.flush()
        os.fsync(handle.fileno())


@contextmanager
def atomic_binary_writer(path: DataPath) -> Iterator[BinaryIO]:
    """Like :func:`atomic_text_writer`, in binary mode."""
    if not isinstance(path, Path):
        buffer = io.BytesIO()
        yield buffer
        path.write_bytes(buffer.getvalue())
        return
    with _temp_beside(path) as (fd, _), os.fdopen(fd, "wb") as handle:
        yield handle
        handle.flush()
        os.fsync(handle.fileno())


def atomic_write_text(path: DataPath, text: str) -> None:
    """Replace ``path`` with ``text`` atomically."""
    if not isinstance(path, Path):
        path.write_bytes(text.encode())
        return
    with atomic_text_writer(path) as handle:
        handle.write(text)


def atomic_write_bytes(path: DataPath, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically."""
    if not isinstance(path, Path):
        path.write_bytes(data)
        return
    with atomic_binary_writer(path) as handle:
        handle.write(data)


# ---- append-only logs ---------------------------------------------------------------------------------------
def records_dir(log: DataPath) -> DataPath:
    """Where an object-store log keeps its records: ``<log>.d/`` beside the log's name."""
    return log.parent / f"{log.name}{RECORDS_SUFFIX}"


def append_line(log: DataPath, line: str) -> DataPath:
    """Append one record (one line of text, no newline inside) to ``log``; return what was written.

    Local disk: one ``write`` on an ``O_APPEND`` file (returns ``log``). Object store: one new object
    under :func:`records_dir` (returns that object), never a rewrite of anything already there.
    """
    if "\n" in line.rstrip("\n"):
        raise ValueError("a log record is one line")
    data = (line.rstrip("\n") + "\n").encode()
    if not isinstance(log, Path):
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        record = records_dir(log) / f"{stamp}-{uuid.uuid4().hex[:16]}.json"
        record.write_bytes(data)
        return record
    log.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
    try:
        written = os.write(fd, data)
    finally:
        os.close(fd)
    if written != len(data):  # a short write on a local file means the disk is full: say so
        raise OSError(f"append to {log} wrote {written} of {len(data)} bytes")
    return log


def log_exists(log: DataPath) -> bool:
    """``log`` has a record (in either form)."""
    if log.exists():
        return True
    return not isinstance(log, Path) and records_dir(log).exists()


def read_lines(log: DataPath) -> list[str]:
    """The non-empty lines of ``log``, oldest first: the file's lines, then the record objects by name."""
    lines: list[str] = []
    if log.is_file():
        lines += [line for line in log.read_text().splitlines() if line.strip()]
    if not isinstance(log, Path):
        folder = records_dir(log)
        if folder.exists():
            records: list[DataPath] = list(folder.iterdir())
            for record in sorted(records, key=lambda p: p.name):
                lines += [line for line in record.read_text().splitlines() if line.strip()]
    return lines


def log_names(folder: DataPath, suffix: str = ".jsonl") -> list[str]:
    """The names of the logs in ``folder`` whose name ends with ``suffix`` (either form), sorted."""
    if not folder.exists():
        return []
    names: set[str] = set()
    for child in folder.iterdir():
        name = child.name
        if name.endswith(suffix + RECORDS_SUFFIX) and not isinstance(folder, Path):
            names.add(name[: -len(RECORDS_SUFFIX)])
        elif name.endswith(suffix) and child.is_file():
            names.add(name)
    return sorted(names)


@contextmanager
def local_folder(dest: DataPath) -> Iterator[Path]:
    """A local folder whose files end up under ``dest``: for tools that can only write to disk (GX Data Docs).

    On local disk that is ``dest`` itself. For an object store it is a temporary folder whose files are
    uploaded under ``dest`` (one put each) on a clean exit, and removed either way; map the tool's paths
    to their published place with :func:`published`.
    """
    if isinstance(dest, Path):
        dest.mkdir(parents=True, exist_ok=True)
        yield dest
        return
    with tempfile.TemporaryDirectory(prefix="runbooks-data-") as tmp:
        yield Path(tmp)
        upload_tree(Path(tmp), dest)


def upload_tree(local: Path, dest: DataPath) -> list[DataPath]:
    """Copy every file under ``local`` to the same relative place under ``dest``; return the copies."""
    copies: list[DataPath] = []
    for file in sorted(p for p in local.rglob("*") if p.is_file()):
        target = dest.joinpath(*file.relative_to(local).parts)
        atomic_write_bytes(target, file.read_bytes())
        copies.append(target)
    return copies


def published(path: str | Path, folder: Path, dest: DataPath) -> str:
    """Where ``path`` (a file written inside :func:`local_folder`'s ``folder``) is once published under ``dest``."""
    relative = Path(path).relative_to(folder)
    return str(dest.joinpath(*relative.parts))


def remove_tree(folder: DataPath) -> None:
    """Delete ``folder`` and everything under it (nothing to do when it does not exist)."""
    if isinstance(folder, Path):
        shutil.rmtree(folder, ignore_errors=True)
        return
    if folder.exists():
        folder.fs.rm(folder.path, recursive=True)
