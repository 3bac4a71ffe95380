"""The targets file: validated on load, clear errors, selection by name."""

from __future__ import annotations

import pytest

from include.targets import TargetsError, load_targets, parse_targets

GOOD = """
targets:
  - {name: aws-a, cloud: aws, conn_id: aws_a, account: "111111111111", regions: [us-east-1]}
  - {name: gcp-a, cloud: gcp, conn_id: gcp_a, project: proj-a, regions: [global]}
  - {name: az-a, cloud: azure, conn_id: az_a, subscription: sub-a, storage_account: acct, regions: [westeurope]}
"""


def test_project_targets_file_loads() -> None:
    config = load_targets()
    assert {t.cloud for t in config.targets} == {"aws", "gcp", "azure"}
    for target in config.targets:
        assert config.concurrency(target) >= 1


def test_scope_keys_per_cloud() -> None:
    config = parse_targets(GOOD)
    assert [t.account for t in config.targets] == ["111111111111", "proj-a", "sub-a"]
    assert [t.scope_kind for t in config.targets] == ["account", "project", "subscription"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("targets: []", "targets"),
        ("nope: 1", "nope"),
        ("targets:\n  - {name: x, cloud: aws, conn_id: c, account: '1'}", "regions"),
        ("targets:\n  - {name: x, cloud: oracle, conn_id: c, account: '1', regions: [r]}", "cloud"),
        ("targets:\n  - {name: x, cloud: gcp, conn_id: c, account: p, regions: [r]}", "project"),
        ("targets:\n  - {name: x, cloud: azure, conn_id: c, subscription: s, regions: [r]}", "storage_account"),
        ("targets:\n  - {name: Bad Name, cloud: aws, conn_id: c, account: '1', regions: [r]}", "name"),
        (GOOD + "  - {name: aws-a, cloud: aws, conn_id: x, account: '2', regions: [r]}", "duplicate"),
        ("targets: [", "YAML"),
    ],
)
def test_malformed_targets_are_clear_errors(text: str, message: str) -> None:
    with pytest.raises(TargetsError, match=message):
        parse_targets(text)


def test_unknown_target_names_the_known_ones() -> None:
    config = parse_targets(GOOD)
    with pytest.raises(TargetsError, match="unknown target 'nope'.*aws-a, gcp-a, az-a"):
        config.select(["nope"])
    assert [t.name for t in config.select(["gcp-a"])] == ["gcp-a"]
    assert [t.name for t in config.select(cloud="azure")] == ["az-a"]
