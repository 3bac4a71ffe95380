"""EC2 instances: image and subnet (fixed at launch), type, security groups, IMDSv2, termination protection, state.

An instance is known by its ``Name`` tag (instances have no unique name): the one tagged for this
environment is the spec's; an instance with that name but without the ownership tags is a conflict.
"""

from __future__ import annotations

from typing import Any

from include.changes.model import ChangeError
from include.changes.waiting import poll_until
from include.clouds.aws.ids import ec2_arn
from include.provisioning.aws.common import AwsStep, tag_dict, tag_list
from include.provisioning.base import Live, State
from include.provisioning.ownership import ownership
from include.provisioning.registry import provisions
from include.provisioning.spec import SpecResource
from include.records import ResourceRecord

_ALIVE = ["pending", "running", "stopping", "stopped"]
#: Bounded waits for a state change (stop before a type change, termination before a group is deleted).
STATE_WAIT = 600.0


@provisions(
    "ec2",
    read=("ec2:DescribeInstances", "ec2:DescribeInstanceAttribute"),
    create=("ec2:RunInstances", "ec2:CreateTags", "ec2:ModifyInstanceAttribute", "ec2:StopInstances",
            "ec2:DescribeInstances"),
    update=("ec2:ModifyInstanceAttribute", "ec2:ModifyInstanceMetadataOptions", "ec2:StartInstances",
            "ec2:StopInstances", "ec2:CreateTags", "ec2:DeleteTags", "ec2:DescribeInstances"),
    delete=("ec2:TerminateInstances", "ec2:DescribeInstances"),
    actions={"create": "ec2:RunInstances (with tags, security groups, metadata options)",
             "update": "ec2:ModifyInstanceAttribute / ModifyInstanceMetadataOptions / Start|StopInstances / "
                       "CreateTags|DeleteTags",
             "delete": "ec2:TerminateInstances"},
)
class Ec2Instance(AwsStep):
    """An EC2 instance. Changing ``instance_type`` stops a running instance, changes it, and starts it again."""

    immutable = ("image_id", "subnet_id")
    verify_wait = 600.0
    verify_interval = 10.0

    def tags_for(self, res: SpecResource) -> dict[str, str]:
        return {**super().tags_for(res), "Name": str(res.properties["name"])}

    def wanted(self, res: SpecResource, props: dict[str, Any]) -> dict[str, Any]:
        want: dict[str, Any] = {
            "image_id": props["image_id"], "instance_type": props["instance_type"],
            "imdsv2_required": bool(props.get("imdsv2_required", True)),
            "termination_protection": bool(props.get("termination_protection", False)),
            "state": props.get("state", "running"),
        }
        if "security_groups" in props:  # not given: the VPC's default group, which is not managed here
            want["security_groups"] = sorted(props["security_groups"])
        if props.get("subnet_id"):
            want["subnet_id"] = props["subnet_id"]
        return want

    def fetch(self, res: SpecResource, props: dict[str, Any]) -> Live | None:
        ec2 = self.aws(res, "ec2")
        found = [i for r in ec2.describe_instances(Filters=[
            {"Name": "tag:Name", "Values": [str(props["name"])]},
            {"Name": "instance-state-name", "Values": _ALIVE}])["Reservations"] for i in r["Instances"]]
        if not found:
            return None
        env = self.session.spec.environment
        ours = [i for i in found if ownership(tag_dict(i.get("Tags")), env).status == "managed"]
        if len(ours) > 1:
            raise ChangeError(f"{res.address}: {len(ours)} instances named {props['name']} are tagged for environment "
                              f"{env} ({', '.join(i['InstanceId'] for i in ours)}): terminate the extra one(s)")
        inst = ours[0] if ours else found[0]
        tags = tag_dict(inst.get("Tags"))
        state = inst["State"]["Name"]
        outputs = {"id": inst["InstanceId"], "name": str(props["name"]), "private_ip": inst.get("PrivateIpAddress"),
                   "public_ip": inst.get("PublicIpAddress"), "subnet_id": inst.get("SubnetId"),
                   "arn": ec2_arn(res.region, self.target_of(res).account, "instance", inst["InstanceId"])}
        if not ours:
            return Live(fields={"tags": tags}, outputs=outputs, tags=tags)
        protected = ec2.describe_instance_attribute(InstanceId=inst["InstanceId"], Attribute="disableApiTermination")
        fields = {
            "image_id": inst.get("ImageId"), "instance_type": inst.get("InstanceType"),
            "subnet_id": inst.get("SubnetId"),
            "security_groups": sorted(g["GroupId"] for g in inst.get("SecurityGroups", [])),
            "imdsv2_required": (inst.get("MetadataOptions") or {}).get("HttpTokens") == "required",
            "termination_protection": bool(protected["DisableApiTermination"]["Value"]),
            "state": {"pending": "running", "stopping": "stopped"}.get(state, state),
            "tags": tags,
        }
        live = Live(fields=fields, outputs=outputs, tags=tags, ready=state in ("running", "stopped"),
                    detail={"instance_id": inst["InstanceId"], "state": state})
        if fields["termination_protection"]:
            live.protected = "termination protection (disableApiTermination) is on"
        return live

    def read_before_create(self, record: ResourceRecord, res: SpecResource, props: dict[str, Any]) -> State | None:
        """One DescribeInstances per apply for every instance name of the spec, not one per instance.

        The names alive when the apply's first instance create runs are read once (a filter on the Name tag
        scans every instance, so a read per instance grows with the estate); a name found there gets the full
        read (ours from an earlier try: no second instance; somebody else's: a conflict). Instances this apply
        creates have other names than the ones still to come, so the batch stays right for the whole apply.
        """
        name = str(props["name"])
        names, taken = self.session.memo(("ec2-names-taken", self.target_of(res).conn_id, res.region),
                                         lambda: self._names_taken(res))
        if name in names and name not in taken:
            return None
        return self.read(record)

    def _names_taken(self, res: SpecResource) -> tuple[frozenset[str], frozenset[str]]:
        """(the spec's literal instance names in this target and region, those an alive instance carries)."""
        names = sorted({str(r.properties["name"]) for r in self.session.spec.resources
                        if r.kind == "ec2" and r.target == res.target and r.region == res.region
                        and "${" not in str(r.properties["name"])})
        taken: set[str] = set()
        pages = self.aws(res, "ec2").get_paginator("describe_instances")
        for start in range(0, len(names), 200):  # at most 200 values in one filter
            for page in pages.paginate(Filters=[{"Name": "tag:Name", "Values": names[start:start + 200]},
                                                {"Name": "instance-state-name", "Values": _ALIVE}]):
                for reservation in page["Reservations"]:
                    for inst in reservation["Instances"]:
                        taken.update(str(t.get("Value")) for t in inst.get("Tags", []) if t.get("Key") == "Name")
        return frozenset(names), frozenset(taken)

    def create(self, res: SpecResource, props: dict[str, Any], want: dict[str, Any]) -> dict[str, Any]:
        ec2 = self.aws(res, "ec2")
        request: dict[str, Any] = {
            "ImageId": want["image_id"], "InstanceType": want["instance_type"], "MinCount": 1, "MaxCount": 1,
            "MetadataOptions": {"HttpTokens": "required" if want["imdsv2_required"] else "optional",
                                "HttpEndpoint": "enabled"},
            "DisableApiTermination": want["termination_protection"],
            # The root volume carries the ownership tags too (cost allocation, cost_hygiene).
            "TagSpecifications": [{"ResourceType": "instance", "Tags": tag_list(want["tags"])},
                                  {"ResourceType": "volume", "Tags": tag_list(want["tags"])}],
        }
        if want.get("security_groups"):
            request["SecurityGroupIds"] = list(want["security_groups"])
        if want.get("subnet_id"):
            request["SubnetId"] = want["subnet_id"]
        inst = ec2.run_instances(**request)["Instances"][0]
        if want["termination_protection"]:
            # Set again explicitly: the local emulator (moto) ignores RunInstances' DisableApiTermination.
            ec2.modify_instance_attribute(InstanceId=inst["InstanceId"], DisableApiTermination={"Value": True})
        if want["state"] == "stopped":
            ec2.stop_instances(InstanceIds=[inst["InstanceId"]])
        return {"id": inst["InstanceId"], "name": str(props["name"]), "private_ip": inst.get("PrivateIpAddress"),
                "public_ip": inst.get("PublicIpAddress"), "subnet_id": inst.get("SubnetId"),
                "arn": ec2_arn(res.region, self.target_of(res).account, "instance", inst["InstanceId"])}

    def _wait_state(self, ec2: Any, instance_id: str, wanted: str) -> None:
        def state() -> str:
            found = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"]
            return str(found[0]["Instances"][0]["State"]["Name"]) if found else "terminated"

        poll_until(state, lambda s: s == wanted, timeout=STATE_WAIT, interval=5.0,
                   what=f"instance {instance_id} to be {wanted}", clock=self.clock, sleep=self.sleep)

    def update(self, res: SpecResource, props: dict[str, Any], live: Live, want: dict[str, Any],
               changed: list[str]) -> None:
        ec2 = self.aws(res, "ec2")
        instance_id = live.detail["instance_id"]
        if "instance_type" in changed:
            if live.detail["state"] != "stopped":  # the type of a running instance cannot change
                ec2.stop_instances(InstanceIds=[instance_id])
                self._wait_state(ec2, instance_id, "stopped")
            ec2.modify_instance_attribute(InstanceId=instance_id, InstanceType={"Value": want["instance_type"]})
            if want["state"] == "running":
                ec2.start_instances(InstanceIds=[instance_id])
        elif "state" in changed:
            if want["state"] == "running":
                ec2.start_instances(InstanceIds=[instance_id])
            else:
                ec2.stop_instances(InstanceIds=[instance_id])
        if "security_groups" in changed:
            ec2.modify_instance_attribute(InstanceId=instance_id, Groups=list(want["security_groups"]))
        if "imdsv2_required" in changed:
            ec2.modify_instance_metadata_options(
                InstanceId=instance_id, HttpTokens="required" if want["imdsv2_required"] else "optional")
        if "termination_protection" in changed:
            ec2.modify_instance_attribute(InstanceId=instance_id,
                                          DisableApiTermination={"Value": want["termination_protection"]})
        if "tags" in changed:
            to_set, to_remove = self.tag_changes(live.fields["tags"], want["tags"])
            if to_set:
                ec2.create_tags(Resources=[instance_id], Tags=tag_list(to_set))
            if to_remove:
                ec2.delete_tags(Resources=[instance_id], Tags=[{"Key": k} for k in to_remove])

    def destroy(self, res: SpecResource, props: dict[str, Any], live: Live) -> None:
        ec2 = self.aws(res, "ec2")
        instance_id = live.detail["instance_id"]
        ec2.terminate_instances(InstanceIds=[instance_id])
        # Its security groups can only be deleted once it is gone: wait here (bounded), not in the next step.
        self._wait_state(ec2, instance_id, "terminated")
