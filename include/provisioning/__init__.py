"""Provisioning from declarative environment specs, on the change engine (:mod:`include.changes`).

- :mod:`~include.provisioning.spec`: the YAML specs in ``config/environments/`` (schema, references, checks);
- :mod:`~include.provisioning.kinds`: the resource kinds a spec can declare (data, SDK-free);
- :mod:`~include.provisioning.ownership`: the tags that say which environment manages a resource;
- :mod:`~include.provisioning.base`: the step every kind is (plan create / update / delete, conflicts,
  protection, references) and the run's :class:`~include.provisioning.base.Session`;
- :mod:`~include.provisioning.registry`: kind -> step class, with the permissions of each call;
- ``aws/``, ``gcp/``, ``azure/``: one module per kind and cloud (imported on first use);
- :mod:`~include.provisioning.runbook`: the provision and teardown runbooks' task bodies;
- :mod:`~include.provisioning.render`: the readable plan file; :mod:`~include.provisioning.drift`: drift.

Importing this package imports no cloud SDK. See docs/provisioning.md.
"""
