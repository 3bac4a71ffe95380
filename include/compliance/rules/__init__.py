"""Compliance rules, one module per cloud plus ``common`` for the cross-cloud ones.

Each module registers its rules with :func:`include.compliance.registry.rule` when imported. Rule
modules import no cloud SDK: they read normalised records only.
"""
