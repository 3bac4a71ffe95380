"""Failover and failback of a service between its primary and standby sides (issue 8).

- :mod:`~include.failover.catalog`: the service catalog (``config/services.yaml``), validated at load.
- :mod:`~include.failover.probes`: real HTTP health probes of a side's endpoints (several attempts).
- :mod:`~include.failover.steps`: change-engine steps (fence, promote, switch DNS, retire, create replica)
  over the ``database_failover`` and ``dns`` capabilities; each declares its permissions.
- :mod:`~include.failover.core`: assess -> decide -> apply -> verify -> record, as plain functions.
- :mod:`~include.failover.history`: the run's result and the history (``data/failover/history.jsonl``).
- :mod:`~include.failover.tasks`: the Airflow task bodies of ``failover_service``, ``failback_service`` and
  ``failover_drill`` (the DAG files call one function per task).

Importing the package is cheap: no cloud SDK, no Airflow at module level.
"""
