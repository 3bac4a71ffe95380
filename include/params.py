"""Runbook form parameters shared by several DAGs (light: imported at DAG parse time).

Nothing heavy is imported at module level: include/targets.py shares the pattern constant without
paying for ``airflow.sdk``, and DAG files pull in no cloud SDK.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from airflow.sdk import Param

#: A target's name in config/targets.yaml; include/targets.py validates the file with the same pattern.
TARGET_NAME_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}$"


def targets_param() -> Param:
    """The ``targets`` form field: target names from config/targets.yaml, empty for all."""
    from airflow.sdk import Param

    return Param(
        [],
        type="array",
        items={"type": "string", "pattern": TARGET_NAME_PATTERN},
        title="Targets",
        description="Target names from config/targets.yaml. Empty: every target.",
    )
