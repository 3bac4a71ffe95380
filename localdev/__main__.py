"""``python -m localdev demo|up|down``: the embedded default stack (see :mod:`localdev.stack`)."""

from localdev.stack import run

raise SystemExit(run())
