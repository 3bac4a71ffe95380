"""Azure rules, one module per service (``storage``: Blob containers of storage accounts)."""
