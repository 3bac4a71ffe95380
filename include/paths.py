"""Where things are: the project root and the runbooks' data root (one definition of each).

The data root is ``RUNBOOKS_DATA_DIR``: a local folder (the default, ``<project>/data``), a ``file://`` URL
(the same local folder), or an object-store URL served by Airflow's ``ObjectStoragePath`` with an Airflow
connection in the URL's user part: ``s3://<aws conn>@<bucket>/<prefix>``, ``gs://<gcp conn>@<bucket>/<prefix>``,
``abfs://<azure conn>@<container>/<prefix>``. See docs/data-root.md.
"""

from __future__ import annotations

import importlib.util
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias
from urllib.parse import unquote, urlsplit

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath

#: The repository root (the folder holding ``dags/``, ``include/``, ``config/``).
PROJECT_ROOT = Path(__file__).resolve().parents[1]
#: Configuration files shipped with the project (targets, compliance policy, expectations...).
CONFIG_DIR = PROJECT_ROOT / "config"

#: A place under the data root: a local :class:`Path`, or an ``ObjectStoragePath`` on an object store.
DataPath: TypeAlias = "Path | ObjectStoragePath"

_LOCAL_SCHEMES = ("file", "local")


def _setting() -> str:
    return os.environ.get("RUNBOOKS_DATA_DIR") or str(PROJECT_ROOT / "data")


def data_root() -> DataPath:
    """The runbooks' data root: ``RUNBOOKS_DATA_DIR`` (a folder or a URL), default ``<project>/data``."""
    return as_data_path(_setting())


def data_dir() -> Path:
    """The data root when it is on local disk (a folder or ``file://``); a ValueError for an object store.

    For code that needs a real folder (local-only tooling, file modification times). Runbook code uses
    :func:`data_root`, which serves both.
    """
    root = data_root()
    if not isinstance(root, Path):
        raise ValueError(f"RUNBOOKS_DATA_DIR={_setting()} is an object store, not a local folder: use data_root()")
    return root


def is_url(value: object) -> bool:
    return isinstance(value, str) and re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", value) is not None


def as_data_path(value: DataPath | str | os.PathLike[str]) -> DataPath:
    """A data path from what a pointer file or a setting holds.

    A plain path or ``file://`` URL gives a :class:`Path` (local disk keeps atomic renames and appends);
    any other URL gives an ``ObjectStoragePath`` whose connection is the URL's user part.
    ``str()`` of the result gives back a value this function accepts (pointers store it).
    """
    if isinstance(value, Path):
        return value
    if not isinstance(value, str | os.PathLike):  # an ObjectStoragePath
        return Path(value.path) if (value.protocol or "file") in _LOCAL_SCHEMES else value
    text = os.fspath(value)
    if not is_url(text):
        return Path(text)
    parsed = urlsplit(text)
    if parsed.scheme.lower() in _LOCAL_SCHEMES:
        if parsed.netloc not in ("", "localhost"):
            raise ValueError(f"{text}: a file:// data root must be local (file:///absolute/path)")
        return Path(unquote(parsed.path))
    return object_path(text)


def object_path(url: str) -> ObjectStoragePath:
    """``ObjectStoragePath(url)``, with the project's ``s3://`` file system attached when ``s3fs`` is missing."""
    from airflow.sdk import ObjectStoragePath

    parsed = urlsplit(url)
    scheme = parsed.scheme.lower()
    conn_id = parsed.netloc.rpartition("@")[0] or None
    if scheme in ("s3", "s3a") and not _have_s3fs():
        _attach_s3_hook_fs(scheme, conn_id)
    return ObjectStoragePath(url)


def _have_s3fs() -> bool:
    return importlib.util.find_spec("s3fs") is not None


def _attach_s3_hook_fs(scheme: str, conn_id: str | None) -> None:
    from airflow.sdk.io.store import attach

    from include.s3_hook_fs import S3HookFileSystem

    store = attach(scheme, conn_id)
    if not isinstance(store.__dict__.get("fs"), S3HookFileSystem):
        # ``fs`` is a cached property: set on the (cached) store, every ObjectStoragePath of this
        # protocol and connection uses it.
        store.fs = S3HookFileSystem(conn_id)


def safe_segment(value: str) -> str:
    """``value`` usable as one path segment (run ids contain ``:`` and ``+``; never ``/``)."""
    return re.sub(r"[^A-Za-z0-9_.+=-]", "_", value)
