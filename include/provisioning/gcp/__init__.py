"""Provisioning steps for gcp: one module per kind (registered with include.provisioning.registry)."""
