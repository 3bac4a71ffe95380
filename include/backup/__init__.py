"""Backup and restore: policies (``policies.py``), the backup store and its manifests (``manifest.py``),
the incremental copier, retention, manifest validation, snapshots, restore and drills.

Importing the package is cheap (no cloud SDK): the DAG files import its modules inside their tasks.
"""
