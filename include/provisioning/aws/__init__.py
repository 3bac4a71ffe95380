"""Provisioning steps for aws: one module per kind (registered with include.provisioning.registry)."""
