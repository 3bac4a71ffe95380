"""Framework catalogues (``config/compliance/frameworks/``) and the rules' mappings to them.

Every control a rule cites must be in its framework's catalogue, with the title the source gives; the
catalogues say where they were read and when. The mappings corrected in issue 6 are pinned here so a
later edit cannot quietly bring back a Security Hub id labelled as FSBP, or a CIS id for another check.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import yaml

from include.compliance import registry
from include.compliance.frameworks import (
    FRAMEWORKS_DIR,
    CatalogueError,
    catalogues,
    control_title,
    load_catalogues,
)
from include.compliance.registry import all_rules, get_rule, rule_modules

#: Security Hub controls that are not in the FSBP standard (AWS's FSBP list; they belong to Security
#: Hub's CIS / PCI DSS / NIST standards). They were once cited as AWS-FSBP.
NOT_FSBP = ("EC2.13", "EC2.14", "IAM.9", "IAM.15", "IAM.16", "IAM.22", "KMS.4", "S3.14")


def _cited() -> Iterator[tuple[str, str, str]]:
    for rule in all_rules():
        for framework, controls in rule.meta.frameworks.items():
            for control in controls:
                yield rule.id, framework, control


# ---- the catalogues ---------------------------------------------------------------------------------------


def test_every_cited_control_is_in_its_catalogue_with_a_title() -> None:
    missing = [(rule_id, fw, c) for rule_id, fw, c in _cited() if not (control_title(fw, c) or "").strip()]
    assert not missing
    assert len(set(_cited())) >= 100  # 47 rules, most cite several controls


def test_each_framework_has_one_catalogue_file_that_records_its_source() -> None:
    files = sorted(p.name for p in FRAMEWORKS_DIR.glob("*.yaml"))
    assert files == sorted(f"{name.lower()}.yaml" for name in catalogues())
    for name, catalogue in catalogues().items():
        source = catalogue.source
        assert source.document and source.read_from, name
        assert source.url.startswith("https://") or name == "Internal", name
        assert date(2026, 1, 1) <= source.checked <= date.today(), name
        assert catalogue.title and catalogue.controls, name
        for control, title in catalogue.controls.items():
            assert catalogue.id_pattern.match(control) and title.strip(), (name, control)


def test_every_catalogued_control_is_cited_by_some_rule() -> None:
    cited = {(fw, c) for _, fw, c in _cited()}
    unused = [(name, c) for name, cat in catalogues().items() for c in cat.controls if (name, c) not in cited]
    assert not unused, "a catalogue lists only controls that rules cite"


def test_cis_catalogues_apply_to_their_own_cloud_only() -> None:
    assert catalogues()["CIS-AWS-3.0"].clouds == ("aws",)
    assert catalogues()["CIS-GCP-3.0"].clouds == ("gcp",)
    assert catalogues()["CIS-Azure-2.1"].clouds == ("azure",)
    assert catalogues()["AWS-FSBP"].clouds == catalogues()["AWS-SecurityHub"].clouds == ("aws",)
    assert catalogues()["GDPR"].clouds == ()  # regulations apply to every cloud


# ---- the corrected mappings ------------------------------------------------------------------------------


def test_no_aws_fsbp_citation_outside_the_fsbp_catalogue() -> None:
    fsbp = catalogues()["AWS-FSBP"].controls
    security_hub = catalogues()["AWS-SecurityHub"].controls
    assert not set(fsbp) & set(security_hub)
    for control in NOT_FSBP:
        assert control not in fsbp and control in security_hub, control
    cited_as_fsbp = {c for _, fw, c in _cited() if fw == "AWS-FSBP"}
    assert cited_as_fsbp <= set(fsbp)
    assert not cited_as_fsbp & set(NOT_FSBP)


@pytest.mark.parametrize(
    ("rule_id", "expected"),
    [
        # CIS AWS 3.0 5.2 is 0.0.0.0/0, 5.3 is ::/0: the rules check both. FSBP has EC2.19 (high-risk ports,
        # 22 and 3389 among them); EC2.13 / EC2.14 are Security Hub CIS-standard controls.
        ("aws_ec2_security_group_ssh_open",
         {"CIS-AWS-3.0": ["5.2", "5.3"], "AWS-FSBP": ["EC2.19"], "AWS-SecurityHub": ["EC2.13"]}),
        ("aws_ec2_security_group_rdp_open",
         {"CIS-AWS-3.0": ["5.2", "5.3"], "AWS-FSBP": ["EC2.19"], "AWS-SecurityHub": ["EC2.14"]}),
        ("aws_ec2_security_group_all_ports_open", {"CIS-AWS-3.0": ["5.2", "5.3"], "AWS-FSBP": ["EC2.18", "EC2.19"]}),
        # CIS AWS 3.0 2.1.4 is the Block Public Access setting, not "no public policy / ACL".
        ("aws_s3_bucket_public_access_block", {"CIS-AWS-3.0": ["2.1.4"], "AWS-FSBP": ["S3.8"], "Internal": ["PUB-1"]}),
        ("aws_s3_bucket_not_public",
         {"AWS-FSBP": ["S3.2", "S3.3"], "GDPR": ["Art.32"], "HIPAA": ["164.312(a)(1)"]}),
        ("aws_s3_bucket_versioning", {"AWS-SecurityHub": ["S3.14"], "HIPAA": ["164.308(a)(7)(ii)(A)"]}),
        ("aws_iam_root_mfa_enabled", {"CIS-AWS-3.0": ["1.5"], "AWS-SecurityHub": ["IAM.9"], "HIPAA": ["164.312(d)"]}),
        ("aws_iam_password_policy_min_length",
         {"CIS-AWS-3.0": ["1.8"], "AWS-FSBP": ["IAM.7"], "AWS-SecurityHub": ["IAM.15"]}),
        ("aws_iam_password_policy_reuse_prevention", {"CIS-AWS-3.0": ["1.9"], "AWS-SecurityHub": ["IAM.16"]}),
        ("aws_iam_credentials_unused", {"CIS-AWS-3.0": ["1.12"], "AWS-FSBP": ["IAM.8"], "AWS-SecurityHub": ["IAM.22"]}),
        ("aws_kms_key_rotation", {"CIS-AWS-3.0": ["3.6"], "AWS-SecurityHub": ["KMS.4"]}),
        # CIS GCP 3.0 5.1 audits allUsers / allAuthenticatedUsers members, not public access prevention.
        ("gcp_storage_bucket_public_access_prevention", {"Internal": ["PUB-1"]}),
        ("gcp_storage_bucket_not_public", {"CIS-GCP-3.0": ["5.1"], "GDPR": ["Art.32"], "HIPAA": ["164.312(a)(1)"]}),
    ],
)
def test_corrected_mappings(rule_id: str, expected: dict[str, list[str]]) -> None:
    assert get_rule(rule_id).meta.frameworks_dict() == expected


def test_catalogue_titles_are_the_sources_wording() -> None:
    assert control_title("CIS-AWS-3.0", "2.1.4") == (
        "Ensure that S3 Buckets are configured with 'Block public access (bucket settings)'"
    )
    assert control_title("CIS-AWS-3.0", "5.3") == (
        "Ensure no security groups allow ingress from ::/0 to remote server administration ports"
    )
    assert control_title("CIS-GCP-3.0", "5.1") == "Ensure That Cloud Storage Bucket Is Not Anonymously or Publicly Accessible"
    assert control_title("AWS-FSBP", "EC2.19") == "Security groups should not allow unrestricted access to ports with high risk"
    assert control_title("HIPAA", "164.312(b)") == "Standard: Audit controls"
    assert control_title("GDPR", "Art.44") == "General principle for transfers"
    assert control_title("AWS-FSBP", "IAM.9") is None
    assert control_title("CIS AWS Foundations v3.0.0", "2.1.4") is None  # not a catalogued framework name


def test_the_mapping_table_in_the_docs_matches_the_registry() -> None:
    doc = (Path(registry.__file__).parents[2] / "docs" / "compliance.md").read_text()
    table = doc[doc.index("| rule | controls |"):]
    documented = {}
    for line in table.splitlines()[2:]:
        if not line.startswith("| `"):
            break
        rule_id, controls = (cell.strip() for cell in line.strip("|").split("|"))
        documented[rule_id.strip("`")] = {
            part.split(" ", 1)[0]: part.split(" ", 1)[1].split(", ") for part in controls.split("; ")
        }
    assert documented == {rule.id: rule.meta.frameworks_dict() for rule in all_rules()}


# ---- the loader refuses broken catalogues ---------------------------------------------------------------


def _catalogue(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "framework": "Test-1.0",
        "title": "A test framework",
        "id_pattern": r"^\d+(\.\d+)*$",
        "source": {"document": "doc", "url": "https://example.org/doc", "read_from": "doc v1", "checked": date(2026, 11, 30)},
        "controls": {"1.1": "First control", "1.10": "Tenth control"},
    }
    data.update(changes)
    return data


def _write(directory: Path, data: dict[str, Any], name: str | None = None) -> Path:
    path = directory / (name or f"{str(data['framework']).lower()}.yaml")
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_a_valid_catalogue_loads(tmp_path: Path) -> None:
    _write(tmp_path, _catalogue())
    loaded = load_catalogues(tmp_path)["Test-1.0"]
    assert loaded.controls == {"1.1": "First control", "1.10": "Tenth control"}
    assert loaded.source.checked == date(2026, 11, 30) and loaded.applies_to("gcp")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        # YAML reads an unquoted 1.10 as the float 1.1: that must be an error, not another control.
        ("controls:\n  1.10: Tenth control\n", "must be a quoted string"),
        ("controls:\n  'x.1': Bad id\n", "does not match id_pattern"),
        ("controls:\n  '1.2': ''\n", "has no title"),
        ("controls: {}\n", "'controls' must map control ids to titles"),
        ("clouds: [aws, oracle]\n", "unknown cloud 'oracle'"),
        ("id_pattern: '(['\n", "id_pattern is not a regular expression"),
        ("surprise: 1\n", "unknown keys surprise"),
        ("source: {document: d, url: u, read_from: r, checked: soon}\n", "'checked' must be a date"),
        ("source: {document: d, url: u, checked: 2026-11-30}\n", "'read_from' must be a non-empty string"),
    ],
)
def test_a_broken_catalogue_is_an_error_naming_the_file(tmp_path: Path, text: str, message: str) -> None:
    base = yaml.safe_dump({k: v for k, v in _catalogue().items() if f"{k}:" not in text.split("\n")[0]})
    path = tmp_path / "test-1.0.yaml"
    path.write_text(base + text)
    with pytest.raises(CatalogueError) as info:
        load_catalogues(tmp_path)
    assert message in str(info.value) and str(path) in str(info.value)


def test_catalogue_file_must_be_named_after_its_framework(tmp_path: Path) -> None:
    _write(tmp_path, _catalogue(), name="other.yaml")
    with pytest.raises(CatalogueError, match=r"framework 'Test-1.0' belongs in test-1.0.yaml"):
        load_catalogues(tmp_path)


def test_disjoint_catalogues_may_not_share_a_control(tmp_path: Path) -> None:
    _write(tmp_path, _catalogue())
    _write(tmp_path, _catalogue(framework="Test-2.0", disjoint_from=["Test-1.0"], controls={"1.10": "Again"}))
    with pytest.raises(CatalogueError, match=r"1\.10 also in Test-1\.0; cite them as Test-1\.0 only"):
        load_catalogues(tmp_path)
    _write(tmp_path, _catalogue(framework="Test-2.0", disjoint_from=["Test-9"], controls={"2.1": "New"}))
    with pytest.raises(CatalogueError, match=r"disjoint_from names unknown framework 'Test-9'"):
        load_catalogues(tmp_path)


def test_an_empty_catalogue_folder_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(CatalogueError, match="no framework catalogue"):
        load_catalogues(tmp_path)


# ---- rule modules: one per service, discovered, no cloud SDK ---------------------------------------------


def test_every_rule_module_is_discovered_and_each_rule_lives_in_its_service_file() -> None:
    package = Path(registry.__file__).parent / "rules"
    on_disk = set()
    for path in package.rglob("*.py"):
        parts = path.relative_to(package).with_suffix("").parts
        parts = parts[:-1] if parts[-1] == "__init__" else parts
        if parts and not any(part.startswith("_") for part in parts):
            on_disk.add(".".join(("include", "compliance", "rules", *parts)))
    assert set(rule_modules()) == on_disk
    assert {"include.compliance.rules.aws.s3", "include.compliance.rules.gcp.storage",
            "include.compliance.rules.azure.storage", "include.compliance.rules.common"} <= on_disk
    for rule in all_rules():
        module = rule.func.__module__
        if module == "include.compliance.rules.common":
            continue  # the cross-cloud rules
        cloud, service = module.rsplit(".", 2)[-2:]
        assert rule.id.startswith(f"{cloud}_{service}_"), (rule.id, module)


def test_a_new_rule_file_is_found_without_registering_it_anywhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "extra_rules"
    (root / "aws").mkdir(parents=True)
    for path in (root / "__init__.py", root / "aws" / "__init__.py", root / "aws" / "_shared.py"):
        path.write_text("")
    (root / "aws" / "newservice.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(registry, "RULES_PACKAGE", "extra_rules")
    registry.rule_modules.cache_clear()
    try:
        assert registry.rule_modules() == ("extra_rules.aws", "extra_rules.aws.newservice")
    finally:
        registry.rule_modules.cache_clear()


def test_loading_every_rule_imports_no_cloud_sdk() -> None:
    code = textwrap.dedent(
        """
        import sys
        before = set(sys.modules)  # namespace-package .pth files pre-load empty "google.cloud" stubs
        from include.compliance.registry import all_rules
        assert len(all_rules()) >= 30
        heavy = ("boto3", "botocore", "google.", "googleapiclient", "azure", "airflow.providers",
                 "pandas", "great_expectations")
        print(sorted(m for m in set(sys.modules) - before if m.startswith(heavy)))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True, timeout=120,
        cwd=Path(registry.__file__).parents[2],
    )
    assert out.stdout.strip() == "[]"
