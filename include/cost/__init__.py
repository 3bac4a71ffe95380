"""Cost hygiene: waste found in the latest inventory, priced from tables kept as data, cleaned up on the
change engine.

- :mod:`~include.cost.pricing`: ``config/pricing/<cloud>.yaml`` (source and date recorded in each table);
- :mod:`~include.cost.hygiene`: the categories of waste and their monthly estimates, totals per target / owner;
- :mod:`~include.cost.cleanup`: the change-engine steps that clean each category up;
- :mod:`~include.cost.runbook`: the cost_hygiene runbook's request, report and cleanup change set.

See docs/cost.md.
"""
