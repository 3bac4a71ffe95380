"""AWS rules, one module per service (``s3``, ``iam``, ``kms``, ``ec2``, ``rds``, ``dynamodb``,
``cloudtrail``); ``_helpers`` holds what several of them share.

Each function reads one normalised record (attributes documented in ``docs/inventory-records.md``) and
returns a :class:`~include.compliance.model.Verdict`, or ``None`` when the rule does not apply to that
resource (a key the inventory could not read is "not applicable", never a silent pass or fail).
"""
