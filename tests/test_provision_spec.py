"""Environment specs: the schema, the checks a schema cannot make, references, cycles, the kind registry.

No cloud is called here: a bad spec is refused before anything is read, with every problem naming the
file, the resource and the field.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from include.changes.engine import Item
from include.changes.model import Change
from include.provisioning import kinds
from include.provisioning.base import describe, field_diff, skipped_resources
from include.provisioning.registry import RUNBOOK_CALLS, all_steps, permissions_for
from include.provisioning.render import headline, plan_entries, render_markdown, status_of
from include.provisioning.runbook import build_items
from include.provisioning.spec import SpecError, load_schema, load_spec, parse_spec, schema_path
from include.targets import load_targets, parse_targets
from tests.test_provision_support import DEMO_SPEC, load_yaml, resource, write_spec

SPEC_HEAD = """
environment: {env}
production: false
owner: platform-team
cost_center: cc-1000
targets: {{aws: aws-prod, gcp: gcp-prod, azure: azure-prod}}
resources:
"""


def spec_text(env: str, resources: str) -> str:
    return SPEC_HEAD.format(env=env) + resources


def problems(text: str, source: str = "config/environments/t.yaml") -> list[str]:
    with pytest.raises(SpecError) as caught:
        parse_spec(text, source=source)
    message = str(caught.value)
    assert message.startswith(f"{source}: "), message
    return [line[2:] for line in message.splitlines()[1:]]


# ---- the shipped schema and the demo spec -------------------------------------------------------------------
def test_schema_is_a_valid_draft_2020_12_schema_covering_every_kind() -> None:
    from jsonschema import Draft202012Validator

    schema = json.loads(schema_path().read_text())
    Draft202012Validator.check_schema(schema)
    assert set(schema["$defs"]["resource"]["properties"]["kind"]["enum"]) == set(kinds.KINDS)
    for alias in kinds.KINDS:
        assert alias in schema["$defs"], f"schema.json has no properties for kind {alias}"
    assert load_schema() == schema


def test_demo_spec_is_valid_and_in_dependency_order() -> None:
    spec = load_spec("demo", folder=DEMO_SPEC.parent)
    assert spec.environment == "demo" and spec.production is False
    assert {r.kind for r in spec.resources} == set(kinds.KINDS), "the demo spec shows every kind"
    assert all(r.cloud_name.startswith("rb-demo") or r.kind == "record" for r in spec.resources)
    order = spec.order()
    assert order.index("sg.web") < order.index("ec2.web-1") < order.index("ec2.web-2")  # reference, depends_on
    assert order.index("rds.main") < order.index("rds.replica") and order.index("sg.db") < order.index("rds.main")
    assert order.index("zone.demo") < order.index("record.www") and order.index("ec2.web-2") < order.index("record.www")
    web1 = spec.resource("ec2.web-1")
    assert web1.depends_on == ("sg.web",) and web1.region == "us-east-1" and web1.target == "aws-prod"
    assert spec.resource("ec2.web-2").depends_on == ("ec2.web-1", "sg.web")
    # defaults come from the schema, the spec's tags reach every resource
    logs = spec.resource("s3.logs")
    assert logs.properties["force_destroy"] is False and logs.tags == {"data-classification": "internal",
                                                                       "app": "rb-demo"}
    assert spec.resource("gcs.exports").tags["data-classification"] == "confidential"
    assert spec.ownership_tags() == {"managed-by": "cloud-runbooks", "runbooks-environment": "demo",
                                     "owner": "platform-team", "cost-center": "cc-1000"}


def test_the_local_targets_skip_compute_with_the_reason() -> None:
    spec = load_spec("demo", folder=DEMO_SPEC.parent)
    skipped = skipped_resources(spec, load_targets())
    assert set(skipped) == {"gce.batch", "azure_vm.jump"}
    assert "gcp-prod does not serve compute" in skipped["gce.batch"] and "services: storage" in skipped["gce.batch"]
    items, skipped_again, order = build_items(spec, "provision", load_targets())
    assert skipped_again == skipped
    assert [i.labels["address"] for i in items] == [a for a in order if a not in skipped]
    # a target that serves compute plans them
    config = parse_targets(json.dumps({"targets": [
        {"name": "aws-prod", "cloud": "aws", "conn_id": "a", "account": "123456789012", "regions": ["us-east-1"]},
        {"name": "gcp-prod", "cloud": "gcp", "conn_id": "g", "project": "p", "regions": ["global"]},
        {"name": "azure-prod", "cloud": "azure", "conn_id": "z", "subscription": "s", "storage_account": "x",
         "regions": ["westeurope"]}]}))
    assert skipped_resources(spec, config) == {}


def test_items_carry_dependencies_forward_for_provision_and_reversed_for_teardown() -> None:
    spec = load_spec("demo", folder=DEMO_SPEC.parent)
    provision, _, order = build_items(spec, "provision", load_targets())
    teardown, _, reverse = build_items(spec, "teardown", load_targets())
    assert reverse == list(reversed(order))
    up = {i.labels["address"]: i for i in provision}
    down = {i.labels["address"]: i for i in teardown}
    assert up["ec2.web-1"].depends_on == (up["sg.web"].id,)
    assert set(down["sg.web"].depends_on) == {down["ec2.web-1"].id, down["ec2.web-2"].id}, \
        "a security group is deleted after the instances in it"
    assert down["rds.main"].depends_on and down["rds.replica"].id in down["rds.main"].depends_on
    assert up["s3.logs"].record.resource_id == "demo/s3.logs" and up["s3.logs"].step == "provision.aws.s3.bucket"


# ---- a bad spec names file / resource / field -----------------------------------------------------------------
def test_schema_errors_name_file_resource_and_field() -> None:
    found = problems(spec_text("t", """
  - kind: s3
    name: logs
    properties: {name: rb-t-logs, versioning: "yes", lifecycle: [{id: x}]}
  - kind: sg
    name: web
    properties: {name: rb-t-web, ingress: [{protocol: tcp, from_port: 443, cidrs: [0.0.0.0/0]}]}
  - kind: blob
    name: nope
    properties: {}
  - kind: ec2
    name: app
    properties: {name: rb-t-app, image_id: ami-1234abcd, instance_type: t3.micro, colour: blue}
"""))
    text = "\n".join(found)
    assert "resource s3.logs (resources[0]): properties.versioning: 'yes' is not of type 'boolean'" in text
    assert "resource s3.logs (resources[0]): properties.lifecycle[0]:" in text  # an id alone is no rule
    assert "resource sg.web (resources[1]): properties.ingress[0]: 'to_port' is a required property" in text
    assert "resource blob.nope (resources[2]): kind: 'blob' is not one of" in text
    assert "resource ec2.app (resources[3]): properties: Additional properties are not allowed ('colour'" in text


def test_spec_level_errors_and_file_name() -> None:
    found = problems("environment: Bad_Env\nowner: x\nresources: []\n", source="config/environments/bad.yaml")
    text = "\n".join(found)
    assert "spec: environment: 'Bad_Env' does not match" in text
    assert "spec: (the entry itself): 'cost_center' is a required property" in text
    assert "spec: resources: [] should be non-empty" in text
    mismatch = problems(spec_text("other", "  - {kind: container, name: c, properties: {name: rb-c-1}}\n"),
                        source="config/environments/t.yaml")
    assert mismatch == ["spec: environment: 'other' must match the file name (t.yaml): one spec per environment"]


def test_semantic_errors_name_resource_and_field() -> None:
    found = problems(spec_text("t", """
  - kind: ec2
    name: app
    target: gcp-prod
    properties: {name: rb-t-app, image_id: ami-1234abcd, instance_type: t3.micro}
  - kind: ec2
    name: api
    region: ap-south-1
    depends_on: [s3.missing]
    tags: {owner: me}
    properties: {name: rb-t-api, image_id: ami-1234abcd, instance_type: t3.micro, security_groups: ["${sg.web.id}", "${ec2.app.colour}", "${sg}"]}
  - kind: gcs
    name: data
    tags: {Team: Data}
    properties: {name: rb-t-data}
  - kind: container
    name: files
    properties: {name: rb-t-files, versioning: true}
  - kind: s3
    name: one
    properties: {name: rb-t-same}
  - kind: s3
    name: two
    properties: {name: rb-t-same, encryption: kms}
  - kind: record
    name: www
    properties: {zone: example.com, name: www.other.org, type: CNAME, values: [a., b.]}
  - kind: rds
    name: replica
    properties: {name: rb-t-replica, replica_of: "${rds.main.arn}", engine: postgres, instance_class: db.t3.micro}
"""))
    text = "\n".join(found)
    assert "resource ec2.app (resources[0]): target: gcp-prod is a gcp target; a ec2 (EC2 instance) needs a aws one" in text
    assert "resource ec2.api (resources[1]): region: ap-south-1 is not a region of target aws-prod" in text
    assert "resource ec2.api (resources[1]): tags.owner: reserved: the runbook sets managed-by" in text
    assert "resource ec2.api (resources[1]): properties: ${sg.web.id} refers to sg.web, which the spec does not declare" in text
    assert "resource ec2.api (resources[1]): properties: ${ec2.app.colour}: a ec2 has no output 'colour'" in text
    assert "resource ec2.api (resources[1]): properties.security_groups[2]: ${sg} is not a reference" in text
    assert "resource ec2.api (resources[1]): depends_on: s3.missing is not declared in the spec" in text
    assert "resource gcs.data (resources[2]): tags.Team: Team='Data' is not a valid Google Cloud label" in text
    assert "resource container.files (resources[3]): properties.versioning: not a container setting on Azure" in text
    assert "resource s3.two (resources[5]): properties.name: S3 bucket rb-t-same is also declared by s3.one" in text
    assert "resource s3.two (resources[5]): properties.kms_key: encryption: kms needs kms_key" in text
    assert "resource record.www (resources[6]): properties.name: 'www.other.org' is not inside zone 'example.com'" in text
    assert "resource record.www (resources[6]): properties.values: a CNAME record has exactly one value" in text
    assert "resource rds.replica (resources[7]): properties.engine: a read replica takes it from its source" in text
    assert "resource rds.replica (resources[7]): properties: ${rds.main.arn} refers to rds.main" in text


def test_a_cycle_in_references_is_refused_naming_it() -> None:
    found = problems(spec_text("t", """
  - kind: sg
    name: a
    depends_on: [ec2.b]
    properties: {name: rb-t-a}
  - kind: ec2
    name: b
    properties: {name: rb-t-b, image_id: ami-1234abcd, instance_type: t3.micro, security_groups: ["${sg.a.id}"]}
  - kind: s3
    name: self
    depends_on: [s3.self]
    properties: {name: rb-t-self}
"""))
    assert len(found) == 1, found
    assert re.fullmatch(r"spec: resources: references / depends_on form a cycle: (sg\.a -> ec2\.b -> sg\.a|"
                        r"ec2\.b -> sg\.a -> ec2\.b|s3\.self -> s3\.self)", found[0]), found


def test_duplicate_addresses_and_unknown_environment(tmp_path: Path) -> None:
    found = problems(spec_text("t", """
  - {kind: s3, name: logs, properties: {name: rb-t-logs-1}}
  - {kind: s3, name: logs, properties: {name: rb-t-logs-2}}
"""))
    assert found == ["resource s3.logs (resources[1]): name: address s3.logs is already used by resources[0]"]
    write_spec(tmp_path, {"environment": "qa", "owner": "a", "cost_center": "b",
                          "resources": [{"kind": "s3", "name": "x", "properties": {"name": "rb-qa-x"}}]})
    with pytest.raises(SpecError, match=r"no spec for environment 'prod'.*specs: qa"):
        load_spec("prod", folder=tmp_path)
    with pytest.raises(SpecError, match="not valid YAML"):
        parse_spec("environment: [", source="x.yaml")


def test_demo_variants_with_one_mistake_each_name_it(tmp_path: Path) -> None:
    """Every field the demo uses, broken one at a time, is refused with its own address and field."""
    cases: list[tuple[str, str, Any, str]] = [
        ("s3.logs", "versioning", 3, "properties.versioning: 3 is not of type 'boolean'"),
        ("sg.web", "ingress", [{"protocol": "tcp", "from_port": 500, "to_port": 400, "cidrs": ["0.0.0.0/0"]}],
         "properties.ingress[0]: from_port is above to_port"),
        ("ec2.web-1", "instance_type", "huge", "properties.instance_type: 'huge' does not match"),
        ("rds.main", "backup_retention_days", 99, "properties.backup_retention_days: 99 is greater than the maximum"),
        ("dynamodb.sessions", "read_capacity", 5, "properties.read_capacity: only with billing_mode: PROVISIONED"),
        ("record.www", "type", "ALIAS", "properties.type: 'ALIAS' is not one of"),
        ("gcs.exports", "storage_class", "HOT", "properties.storage_class: 'HOT' is not one of"),
    ]
    for address, key, value, expected in cases:
        document = load_yaml()
        resource(document, address)["properties"][key] = value
        write_spec(tmp_path, document)
        with pytest.raises(SpecError) as caught:
            load_spec("demo", folder=tmp_path)
        index = [f"{r['kind']}.{r['name']}" for r in document["resources"]].index(address)
        assert f"resource {address} (resources[{index}]): {expected}" in str(caught.value), str(caught.value)
        assert str(tmp_path / "demo.yaml") in str(caught.value)


# ---- registry and permissions ---------------------------------------------------------------------------
def test_every_kind_has_a_step_declaring_the_permissions_of_each_call() -> None:
    steps = all_steps()
    assert set(steps) == set(kinds.KINDS)
    for alias, cls in steps.items():
        kind = kinds.get_kind(alias)
        assert cls.id == kind.step_id and cls.resource_types == (kind.resource_type,) and cls.cloud == kind.cloud
        assert set(cls.calls) == {"read", "create", "update", "delete"} and all(cls.calls.values())
        assert set(cls.actions) >= {"create", "update", "delete"}
        assert set(cls.permissions) == {p for perms in cls.calls.values() for p in perms}


def test_least_privilege_per_runbook() -> None:
    drift = permissions_for(["s3", "sg"], RUNBOOK_CALLS["detect_drift"])
    assert "s3:GetBucketVersioning" in drift["aws"] and "ec2:DescribeSecurityGroups" in drift["aws"]
    assert not any(p.startswith(("s3:Put", "s3:Create", "s3:Delete", "ec2:Create", "ec2:Delete"))
                   for p in drift["aws"]), "drift detection only reads"
    teardown = permissions_for(["s3"], RUNBOOK_CALLS["teardown_environment"])["aws"]
    assert "s3:DeleteBucket" in teardown and "s3:PutBucketVersioning" not in teardown
    provision = permissions_for(["gcs", "container"], RUNBOOK_CALLS["provision_environment"])
    assert "storage.buckets.create" in provision["gcp"] and "storage.buckets.delete" in provision["gcp"]  # compensation
    assert set(provision) == {"gcp", "azure"}
    with pytest.raises(ValueError, match="unknown calls"):
        permissions_for(["s3"], ["write"])


# ---- rendering ------------------------------------------------------------------------------------------
def test_field_diff_and_plan_rendering() -> None:
    assert field_diff({"versioning": False, "tags": {"a": "1", "b": "2"}},
                      {"versioning": True, "tags": {"a": "1", "b": "3", "c": "4"}}) == [
        "versioning: False -> True", "tags.b: '2' -> '3'", "tags.c: + '4'"]
    spec = load_spec("demo", folder=DEMO_SPEC.parent)
    items, skipped, order = build_items(spec, "provision", load_targets())
    logs = next(i for i in items if i.labels["address"] == "s3.logs")
    change = Change(step=logs.step, operation="update", resource={"resource_id": logs.resource_id, "target": "aws-prod"},
                    action="s3:PutBucketVersioning", request={}, before={"versioning": False},
                    after={"versioning": True}, summary=describe(spec.resource("s3.logs"), "update",
                                                                 {"versioning": False}, {"versioning": True}))
    assert change.summary == "s3.logs (rb-demo-logs): update versioning: False -> True"
    planned = [Item(step=i.step, record=i.record, labels=i.labels, planned=True,
                    change=change if i is logs else None) for i in items]
    web = planned[[i.labels["address"] for i in planned].index("sg.web")]
    planned[planned.index(web)] = Item(step=web.step, record=web.record, labels=web.labels, planned=True,
                                       plan_error="Conflict: security group rb-demo-web exists and is not managed")
    assert status_of(planned[planned.index(next(p for p in planned if p.labels["address"] == "sg.web"))]) == "conflict"
    entries = plan_entries(planned, spec, skipped, order)
    assert headline(entries) == "Plan: 0 to create, 1 to update, 0 to delete, 12 unchanged (1 conflict, 2 skipped)."
    text = render_markdown(entries, title="t", facts=[])
    assert "~ s3.logs (s3 rb-demo-logs) [aws-prod us-east-1]: update\n      versioning: false -> true" in text
    assert "! sg.web (sg rb-demo-web) [aws-prod us-east-1]: conflict -- Conflict: security group" in text
    assert ". gce.batch (gce rb-demo-batch) [gcp-prod europe-west1]: skipped -- target gcp-prod does not serve" in text


def test_the_benchmark_spec_is_a_valid_spec_of_the_asked_size() -> None:
    import yaml

    from bench.provisioning import shares, spec_document

    for total in (100, 500):
        document = spec_document(total)
        assert len(document["resources"]) == total == sum(shares(total).values())
        spec = parse_spec(yaml.safe_dump(document), source="bench.yaml")
        assert {r.kind for r in spec.resources} == {"s3", "sg", "ec2", "dynamodb", "zone", "record", "gcs", "container"}
        assert spec.resource("ec2.i0").depends_on == ("sg.g0",) and spec.resource("record.r0").depends_on == ("zone.z",)
