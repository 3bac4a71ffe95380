"""The change engine: every runbook that changes a cloud goes read -> plan -> approve -> apply -> verify -> report.

One package, no runbook knowledge:

- :mod:`~include.changes.model`: a change as data (operation, resource, the exact API call and request,
  before / after, destructive, dependencies, a deterministic key) and the errors the engine raises.
- :mod:`~include.changes.step`: a :class:`~include.changes.step.Step` reads live state, computes the desired
  state (``None``: the resource should not exist), writes, and verifies with a bounded wait; it declares the
  permissions it needs. Remediation fixers are steps; restore, failover and provisioning add their own.
- :mod:`~include.changes.waiting`: bounded polling for long operations (never an unbounded sleep).
- :mod:`~include.changes.ordering`: dependency order of a plan (a cycle is an error naming it).
- :mod:`~include.changes.rate`: rate control as AWS SSM Automation defines it (``max_concurrency``,
  ``max_errors``: a number or a percentage), or stop-on-first-error.
- :mod:`~include.changes.ledger`: the ledger keyed by idempotency key (an incident or request id) in a
  database every worker reaches; a rerun for the same key resumes and never repeats a completed change, and
  two runs for one key never apply at once.
- :mod:`~include.changes.engine`: plan / apply / verify over a list of items, with audit records.
- :mod:`~include.changes.report`: plan lines, approval text, result document, all worded by the runbook.
- :mod:`~include.changes.airflow`: the little Airflow glue a runbook's tasks call (context -> audit, the
  approval decision, the final report). Nothing here knows a DAG's task ids: the DAG passes data in.

Importing the package is cheap: no cloud SDK, no Airflow import at module level except in ``airflow.py``
(imported inside tasks only).
"""
