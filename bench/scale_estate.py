"""Build a large estate on fresh emulators, fast: plain SDK clients straight at the endpoints.

This is benchmark SET-UP, not product code: it uses boto3 / google-cloud-storage / azure-storage-blob
directly (no hooks, no idempotency, no ``seed-id``) with a few threads, because the point is to get
10,000 resources in well under a minute, not to show how runbooks talk to clouds.

Composition for ``total`` resources as our inventory counts them (default 10,000, env
``BENCH_SCALE_RESOURCES``), all AWS resources in us-east-1 (peers scan one region):

======================  =======  ==================================================================
S3 buckets              40 %     1/3 default-encrypted (AES256), 1/2 tagged, 1/4 versioned,
                                 1/2 with a full public access block
EC2 instances           25 %     ``run_instances`` batches of up to 500; 1/2 of the batches tagged,
                                 1/4 with IMDSv2 required
  their root volumes    25 %     moto attaches one EBS root volume per instance (counted: our inventory
                                 lists them as ``aws.ec2.volume``)
EBS volumes             2 %      unattached, 1/2 encrypted
EBS snapshots           1 %      of those volumes
security groups         1 %      in the default VPC, 1/10 open to 0.0.0.0/0 on 22
GCS buckets             3 %      1/2 labelled
Azure containers        3 %      1/2 with metadata, 1/10 with public (blob) access
======================  =======  ==================================================================
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

from localdev.emulators import (
    AZURITE_ACCOUNT,
    AZURITE_API_VERSION,
    AZURITE_KEY,
    GCP_LOCAL_PROJECT,
    Emulators,
)

REGION = "us-east-1"
BUCKET_PREFIX = "bench-scale-"
INSTANCE_BATCH = 500
TAGS = [{"Key": "owner", "Value": "bench-team"}, {"Key": "cost-center", "Value": "cc-9000"}]


@dataclass(frozen=True)
class ScaleSpec:
    buckets: int
    instances: int
    volumes: int
    snapshots: int
    security_groups: int
    gcs_buckets: int
    azure_containers: int

    @property
    def aws_resources(self) -> int:
        """AWS resources as our inventory counts them (each instance brings its root volume)."""
        return self.buckets + 2 * self.instances + self.volumes + self.snapshots + self.security_groups

    @property
    def total(self) -> int:
        return self.aws_resources + self.gcs_buckets + self.azure_containers


def spec_for(total: int) -> ScaleSpec:
    """The composition above for ``total`` resources (rounded; ``spec.total`` is the exact figure)."""
    if total < 100:
        raise ValueError("a scale estate needs at least 100 resources")
    return ScaleSpec(
        buckets=round(total * 0.40),
        instances=round(total * 0.25),
        volumes=round(total * 0.02),
        snapshots=round(total * 0.01),
        security_groups=round(total * 0.01),
        gcs_buckets=round(total * 0.03),
        azure_containers=round(total * 0.03),
    )


def _parallel(func: Callable[[int], Any], count: int, workers: int) -> list[Any]:
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="scale") as pool:
        return list(pool.map(func, range(count)))


def _boto(emulators: Emulators, service: str) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client(
        service,
        region_name=REGION,
        endpoint_url=emulators.aws_endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(max_pool_connections=32, retries={"max_attempts": 5, "mode": "standard"}),
    )


def build_aws(emulators: Emulators, spec: ScaleSpec, workers: int = 8) -> dict[str, float]:
    s3 = _boto(emulators, "s3")
    ec2 = _boto(emulators, "ec2")
    timings: dict[str, float] = {}
    started = time.perf_counter()
    _build_s3_buckets(s3, spec, workers)
    timings["s3_buckets_s"] = time.perf_counter() - started
    started = time.perf_counter()
    _build_ec2_instances(ec2, spec, workers)
    timings["ec2_instances_s"] = time.perf_counter() - started
    started = time.perf_counter()
    _build_ec2_others(ec2, spec, workers)
    timings["ec2_other_s"] = time.perf_counter() - started
    return timings


def _build_s3_buckets(s3: Any, spec: ScaleSpec, workers: int) -> None:
    def bucket(i: int) -> None:
        name = f"{BUCKET_PREFIX}{i:06d}"
        s3.create_bucket(Bucket=name)
        if i % 3 == 0:
            s3.put_bucket_encryption(
                Bucket=name,
                ServerSideEncryptionConfiguration={
                    "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
                },
            )
        if i % 2 == 0:
            s3.put_bucket_tagging(Bucket=name, Tagging={"TagSet": TAGS})
            s3.put_public_access_block(
                Bucket=name,
                PublicAccessBlockConfiguration={
                    "BlockPublicAcls": True,
                    "IgnorePublicAcls": True,
                    "BlockPublicPolicy": True,
                    "RestrictPublicBuckets": True,
                },
            )
        if i % 4 == 0:
            s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})

    _parallel(bucket, spec.buckets, workers)


def _build_ec2_instances(ec2: Any, spec: ScaleSpec, workers: int) -> None:
    image = ec2.describe_images(Owners=["amazon"], MaxResults=5)["Images"][0]["ImageId"]
    batches = []
    left = spec.instances
    while left > 0:
        batches.append(min(INSTANCE_BATCH, left))
        left -= batches[-1]

    def instances(index: int) -> None:
        kwargs: dict[str, Any] = {
            "ImageId": image,
            "MinCount": batches[index],
            "MaxCount": batches[index],
            "InstanceType": "t3.micro" if index % 2 else "m5.large",
        }
        if index % 2 == 0:
            kwargs["TagSpecifications"] = [{"ResourceType": "instance", "Tags": TAGS}]
        if index % 4 == 0:
            kwargs["MetadataOptions"] = {"HttpTokens": "required", "HttpEndpoint": "enabled"}
        ec2.run_instances(**kwargs)

    _parallel(instances, len(batches), min(workers, 2))


def _build_ec2_others(ec2: Any, spec: ScaleSpec, workers: int) -> None:
    """Unattached volumes, snapshots of them, security groups."""

    def volume(i: int) -> str:
        return str(
            ec2.create_volume(AvailabilityZone=f"{REGION}a", Size=8, Encrypted=i % 2 == 0)["VolumeId"]
        )

    volume_ids = _parallel(volume, spec.volumes, workers)

    def snapshot(i: int) -> None:
        ec2.create_snapshot(VolumeId=volume_ids[i % len(volume_ids)], Description=f"bench snapshot {i}")

    if volume_ids:
        _parallel(snapshot, spec.snapshots, workers)
    vpc = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"][0]["VpcId"]

    def group(i: int) -> None:
        group_id = ec2.create_security_group(
            GroupName=f"bench-sg-{i:05d}", Description="bench", VpcId=vpc
        )["GroupId"]
        if i % 10 == 0:
            ec2.authorize_security_group_ingress(
                GroupId=group_id,
                IpPermissions=[
                    {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}
                ],
            )

    _parallel(group, spec.security_groups, workers)


def build_gcs(emulators: Emulators, spec: ScaleSpec, workers: int = 4) -> dict[str, float]:
    os.environ["STORAGE_EMULATOR_HOST"] = emulators.gcs_endpoint
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    client = storage.Client(project=GCP_LOCAL_PROJECT, credentials=AnonymousCredentials())
    started = time.perf_counter()

    def bucket(i: int) -> None:
        created = client.create_bucket(f"bench-scale-gcs-{i:05d}")
        if i % 2 == 0:
            created.labels = {"owner": "bench-team", "cost-center": "cc-9000"}
            created.patch()

    _parallel(bucket, spec.gcs_buckets, workers)
    return {"gcs_buckets_s": time.perf_counter() - started}


def build_azure(emulators: Emulators, spec: ScaleSpec, workers: int = 4) -> dict[str, float]:
    from azure.storage.blob import BlobServiceClient

    client = BlobServiceClient.from_connection_string(
        f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
        f"BlobEndpoint={emulators.azure_endpoint};",
        api_version=AZURITE_API_VERSION,
    )
    started = time.perf_counter()

    def container(i: int) -> None:
        metadata = {"owner": "bench-team", "costcenter": "cc-9000"} if i % 2 == 0 else None
        client.create_container(
            f"bench-scale-{i:05d}", metadata=metadata, public_access="blob" if i % 10 == 0 else None
        )

    _parallel(container, spec.azure_containers, workers)
    return {"azure_containers_s": time.perf_counter() - started}


def build(emulators: Emulators, spec: ScaleSpec, clouds: Iterable[str] = ("aws", "gcp", "azure")) -> dict[str, Any]:
    """Create ``spec`` on ``emulators`` (expected empty); return the composition and set-up timings."""
    started = time.perf_counter()
    timings: dict[str, float] = {}
    clouds = tuple(clouds)
    if "aws" in clouds:
        timings.update(build_aws(emulators, spec))
    if "gcp" in clouds and spec.gcs_buckets:
        timings.update(build_gcs(emulators, spec))
    if "azure" in clouds and spec.azure_containers:
        timings.update(build_azure(emulators, spec))
    timings["total_s"] = time.perf_counter() - started
    return {"spec": asdict(spec), "expected_resources": spec.total, "setup": timings}
