"""Google Cloud rules, one module per service (``storage``: Cloud Storage)."""
