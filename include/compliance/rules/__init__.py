"""Compliance rules: one package per cloud with one module per service, plus ``common`` for the
cross-cloud rules::

    rules/aws/s3.py  iam.py  kms.py  ec2.py  rds.py  dynamodb.py  cloudtrail.py  (_helpers.py: shared)
    rules/gcp/storage.py
    rules/azure/storage.py
    rules/common.py

Each module registers its rules with :func:`include.compliance.registry.rule` when imported, and the
registry imports every module of this package (``pkgutil``): a new service file needs no other change.
Rule modules import no cloud SDK: they read normalised records only.
"""
