"""Run one function in a forked child of this process and get its JSON answer back through a pipe.

As Airflow's dag-processor manager forks a file processor: the child starts from exactly the parent's imports,
and whatever it imports or changes dies with it. ``bench._parse_child`` times DAG parses this way, and the
parse-time import checks of the test suite (tests/forkprobe.py) probe each DAG file this way.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any


def in_child(work: Callable[[], Any]) -> tuple[Any, int, Any]:
    """``work()``'s JSON-able result, computed in a forked child (``{"error": ...}`` when it raised or answered
    nothing), with the child's wait status and resource usage (``os.wait4``)."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_fd)
        try:
            payload = work()
        except BaseException as exc:
            payload = {"error": f"{type(exc).__name__}: {exc}"}
        with os.fdopen(write_fd, "w") as out:
            out.write(json.dumps(payload))
        os._exit(0)
    os.close(write_fd)
    with os.fdopen(read_fd) as source:
        data = source.read()
    _, status, usage = os.wait4(pid, 0)
    return (json.loads(data) if data else {"error": f"child exited with status {status}"}), status, usage
