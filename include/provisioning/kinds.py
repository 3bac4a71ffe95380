"""The resource kinds an environment spec can declare: one catalogue, as data (no cloud SDK imported here).

A spec names a resource by ``kind`` (a short alias) and ``name``; its **address** is ``<kind>.<name>``
(``sg.web``) and other resources refer to its outputs as ``${sg.web.id}``. Each kind is implemented by one
step class in ``include/provisioning/<cloud>/<module>.py`` (registered with
:func:`include.provisioning.registry.kind_step`), imported only when a runbook task needs it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Kind:
    """One kind of resource: its alias, cloud, inventory resource type, module and outputs."""

    alias: str  # "sg"
    cloud: str  # "aws"
    resource_type: str  # "aws.ec2.security_group" (the inventory record contract's type)
    module: str  # the module that registers its step
    outputs: tuple[str, ...]  # what ``${<address>.<output>}`` may name
    title: str  # "security group"
    #: Whether the resource lives in one region of the target (AWS) rather than a location property.
    regional: bool = True

    @property
    def service(self) -> str:
        """The service part of the resource type (``ec2``), as ``config/targets.yaml`` ``services`` names it."""
        return self.resource_type.split(".")[1]

    @property
    def step_id(self) -> str:
        """The change-engine step id (``provision.aws.ec2.security_group``)."""
        return f"provision.{self.resource_type}"


_P = "include.provisioning"

KINDS: dict[str, Kind] = {
    kind.alias: kind
    for kind in (
        Kind("s3", "aws", "aws.s3.bucket", f"{_P}.aws.s3", ("id", "name", "arn", "region"), "S3 bucket"),
        Kind("sg", "aws", "aws.ec2.security_group", f"{_P}.aws.security_group", ("id", "name", "arn", "vpc_id"),
             "security group"),
        Kind("ec2", "aws", "aws.ec2.instance", f"{_P}.aws.instance",
             ("id", "name", "arn", "private_ip", "public_ip", "subnet_id"), "EC2 instance"),
        Kind("rds", "aws", "aws.rds.instance", f"{_P}.aws.rds", ("id", "name", "arn", "endpoint", "port"),
             "RDS instance"),
        Kind("zone", "aws", "aws.route53.zone", f"{_P}.aws.route53", ("id", "name", "arn"), "Route 53 hosted zone",
             regional=False),
        Kind("record", "aws", "aws.route53.record", f"{_P}.aws.route53", ("id", "name", "fqdn"), "Route 53 record",
             regional=False),
        Kind("dynamodb", "aws", "aws.dynamodb.table", f"{_P}.aws.dynamodb", ("id", "name", "arn"), "DynamoDB table"),
        Kind("gcs", "gcp", "gcp.storage.bucket", f"{_P}.gcp.storage", ("id", "name", "url"), "Cloud Storage bucket",
             regional=False),
        Kind("gce", "gcp", "gcp.compute.instance", f"{_P}.gcp.compute", ("id", "name", "self_link", "private_ip"),
             "Compute Engine instance", regional=False),
        Kind("container", "azure", "azure.storage.container", f"{_P}.azure.storage", ("id", "name", "url"),
             "Blob container", regional=False),
        Kind("azure_vm", "azure", "azure.compute.vm", f"{_P}.azure.compute", ("id", "name", "vm_id"),
             "Azure virtual machine", regional=False),
    )
}


def get_kind(alias: str) -> Kind:
    """The kind of ``alias``; a clear error naming the known ones otherwise."""
    try:
        return KINDS[alias]
    except KeyError:
        raise KeyError(f"unknown kind {alias!r}; known kinds: {', '.join(KINDS)}") from None


def kind_of_step(step_id: str) -> Kind:
    """The kind whose step id is ``step_id``."""
    for kind in KINDS.values():
        if kind.step_id == step_id:
            return kind
    raise KeyError(f"no kind has step {step_id!r}")
