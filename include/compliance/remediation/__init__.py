"""Remediation: a registry of idempotent fixers (read -> plan -> apply -> verify) and the runner.

Import the pieces from their modules (``registry``, ``runner``); the cloud modules (``aws``, ``gcp``,
``azure``) are imported by the registry on first use, so importing this package stays SDK-free.
"""
