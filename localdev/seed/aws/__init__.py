"""Seed the AWS part of the local estate (the ``aws:`` section of ``config/estate.yaml``): one module per service.

Idempotent: each resource is looked up first, by its ``seed-id`` tag where the service has tags and
lookups by tag, otherwise by its name (bucket, IAM user, table, trail, DB instance, KMS alias, record
set), and only what is missing is created. A bucket whose ``seed-id`` tag is missing is (re)configured:
the tag is written last, so it marks a completed bucket. Nothing is reconciled on existing resources:
the seed builds an estate, runbooks change it afterwards.

All calls go through the Airflow amazon provider hooks (:func:`include.clouds.aws.clients.client_for`)
built from the target's connection id; ARNs come from :mod:`include.clouds.aws.ids`. Independent services
are seeded in parallel (KMS first: buckets, volumes and RDS use its keys; CloudTrail last: it needs its
bucket) so the whole AWS estate seeds in a few seconds on moto. The order lives here, in :func:`seed`.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from include.targets import Target
from localdev.seed import SeedReport
from localdev.seed.aws.cloudtrail import seed_cloudtrail
from localdev.seed.aws.common import Clients
from localdev.seed.aws.dynamodb import seed_dynamodb
from localdev.seed.aws.ec2 import ec2_regions, seed_ec2_region
from localdev.seed.aws.iam import seed_iam
from localdev.seed.aws.kms import seed_kms
from localdev.seed.aws.rds import seed_rds
from localdev.seed.aws.route53 import seed_route53
from localdev.seed.aws.s3 import seed_s3


def seed(target: Target, section: dict[str, Any], report: SeedReport) -> None:
    """Apply the ``aws:`` section of the estate description to ``target`` (idempotent).

    Services run in parallel; buckets, volumes and RDS wait for the KMS keys, CloudTrail for its bucket.
    """
    clients = Clients(target)
    account = target.account
    ec2 = section.get("ec2") or {}
    regions = ec2_regions(ec2)
    names = ["kms", "s3", "rds", "route53", "iam", "dynamodb", *(f"ec2-{r}" for r in regions), "cloudtrail"]
    parts = {name: SeedReport() for name in names}

    with ThreadPoolExecutor(max_workers=8, thread_name_prefix="seed-aws") as pool:
        kms = pool.submit(seed_kms, clients, section.get("kms_keys", []), parts["kms"])

        def s3_job() -> None:
            seed_s3(clients, account, section.get("s3_buckets", []), kms.result(), parts["s3"])

        def rds_job() -> None:
            seed_rds(clients, account, section.get("rds_instances", []), kms.result(), parts["rds"])

        def ec2_job(region: str) -> None:
            seed_ec2_region(clients, region, ec2, kms.result(), parts[f"ec2-{region}"])

        s3 = pool.submit(s3_job)

        def cloudtrail_job() -> None:
            s3.result()
            seed_cloudtrail(clients, section.get("cloudtrail", []), parts["cloudtrail"])

        # Jobs wait only for jobs submitted before them, so the FIFO pool cannot deadlock.
        jobs: list[Future[Any]] = [
            kms,
            s3,
            pool.submit(rds_job),
            pool.submit(seed_route53, clients, section.get("route53") or {}, parts["route53"]),
            pool.submit(seed_iam, clients, section.get("iam") or {}, parts["iam"]),
            pool.submit(seed_dynamodb, clients, section.get("dynamodb", []), parts["dynamodb"]),
            *(pool.submit(ec2_job, region) for region in regions),
            pool.submit(cloudtrail_job),
        ]
        for job in jobs:
            job.result()  # re-raises the first failure
    report.merge([parts[name] for name in names])
