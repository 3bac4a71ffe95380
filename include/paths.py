"""Where things are: the project root and the runbooks' data directory (one definition of each)."""

from __future__ import annotations

import os
import re
from pathlib import Path

#: The repository root (the folder holding ``dags/``, ``include/``, ``config/``).
PROJECT_ROOT = Path(__file__).resolve().parents[1]
#: Configuration files shipped with the project (targets, compliance policy, expectations...).
CONFIG_DIR = PROJECT_ROOT / "config"


def data_dir() -> Path:
    """The runbooks' data root: ``RUNBOOKS_DATA_DIR``, default ``<project>/data``."""
    return Path(os.environ.get("RUNBOOKS_DATA_DIR", PROJECT_ROOT / "data"))


def safe_segment(value: str) -> str:
    """``value`` usable as one path segment (run ids contain ``:`` and ``+``; never ``/``)."""
    return re.sub(r"[^A-Za-z0-9_.+=-]", "_", value)
