"""Provisioning steps for azure: one module per kind (registered with include.provisioning.registry)."""
