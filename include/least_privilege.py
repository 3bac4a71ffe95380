"""Least privilege per runbook, generated from the permissions the code declares.

Every cloud call site declares the permissions it needs (style rule 7): change-engine steps
(``Step.permissions``), inventory listers (``@lister(..., permissions=)``), remediation fixers
(``@fixer(..., permissions=)``), provisioning kinds (``@provisions(read=, create=, update=, delete=)``),
capabilities (``PERMISSIONS`` per method, ``ObjectStore.permissions``) and the restore engine. This module
turns those declarations into one policy per runbook and writes them under ``deploy/iam/``:

- ``<dag_id>.aws.json``: an IAM policy document (one statement per service, actions sorted);
- ``<dag_id>.gcp.txt``: the permissions of a GCP custom role, one per line;
- ``<dag_id>.azure.json``: an Azure custom role definition (control-plane ``Actions``, blob ``DataActions``);
- ``index.json`` and ``README.md``: every runbook, with "none" for a runbook that touches no cloud.

**Runbook -> declarations comes from code, not from a hand list.** Each DAG file is parsed (``ast``, nothing
is imported) for the ``include.*`` modules its tasks import and the names they use from them. Each such
module is either a *source* below (a function that asks the module's own registry what it declares) or
*cloud-free*. A DAG that imports a module this file does not know fails the generator, naming it, so a
runbook added later cannot silently get an empty policy. Where several runbooks share a module, the names a
DAG uses (``tasks.failback_step``), the step ids it names (``"failover.fence"``) or the runbook's own entry
in a registry (``RUNBOOK_CALLS[dag_id]``) say which part applies.

Usage::

    python -m include.least_privilege          # (re)write deploy/iam/
    python -m include.least_privilege --check  # exit 1 when deploy/iam/ differs from what the code declares
"""

from __future__ import annotations

import argparse
import ast
import importlib
import importlib.util
import json
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from include.paths import PROJECT_ROOT

DAGS_DIR = PROJECT_ROOT / "dags"
OUT_DIR = PROJECT_ROOT / "deploy" / "iam"
CLOUDS = ("aws", "gcp", "azure")
COMMAND = "python -m include.least_privilege"

Permissions = dict[str, set[str]]


class LeastPrivilegeError(RuntimeError):
    """A runbook's permissions cannot be derived (an unknown module, a declaration missing)."""


@dataclass(frozen=True)
class DagUse:
    """What one DAG file uses from ``include``: module -> names, and the string literals it contains."""

    dag_id: str
    path: Path
    modules: dict[str, set[str]]
    literals: frozenset[str]


@dataclass
class RunbookPolicy:
    """One runbook's permissions per cloud, and the declarations they came from."""

    dag_id: str
    permissions: dict[str, list[str]] = field(default_factory=dict)
    sources: list[str] = field(default_factory=list)


# ---- reading the DAG files -------------------------------------------------------------------------------------
def _is_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


def _dag_id(tree: ast.Module, path: Path) -> str:
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            for keyword in node.keywords:
                if (keyword.arg == "dag_id" and isinstance(keyword.value, ast.Constant)
                        and isinstance(keyword.value.value, str)
                        and not (isinstance(node.func, ast.Name) and node.func.id == "TriggerDagRunOperator")):
                    return keyword.value.value
    return path.stem


def read_dag(path: Path) -> DagUse:
    """The ``include`` modules (with the names used from each) and the string literals of one DAG file."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    modules: dict[str, set[str]] = {}
    aliases: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "include":
            for alias in node.names:
                submodule = f"{node.module}.{alias.name}"
                if _is_module(submodule):
                    modules.setdefault(submodule, set())
                    aliases[alias.asname or alias.name] = submodule
                else:
                    modules.setdefault(node.module, set()).add(alias.name)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "include":
                    modules.setdefault(alias.name, set())
                    aliases[alias.asname or alias.name] = alias.name
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases:
            modules[aliases[node.value.id]].add(node.attr)
    literals = frozenset(n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str))
    return DagUse(_dag_id(tree, path), path, modules, literals)


def dag_files(dags_dir: Path = DAGS_DIR) -> list[Path]:
    """Every runbook file (one DAG per file)."""
    return sorted(p for p in dags_dir.glob("*.py") if not p.name.startswith("_"))


# ---- the declarations, asked from each module's own registry ----------------------------------------------------
def _merge(into: Permissions, more: Mapping[str, Iterable[str]]) -> None:
    for cloud, perms in more.items():
        into.setdefault(cloud, set()).update(perms)


def _registry_class(capability: str, cloud: str) -> type:
    from include.capabilities import REGISTRY

    module_name, name = REGISTRY[capability][cloud].split(":")
    cls: type = getattr(importlib.import_module(module_name), name)
    return cls


def _object_stores(locks: bool = True) -> Permissions:
    """Every object-store implementation's permissions (plus, with ``locks``, S3 Object Lock for immutable backups)."""
    from include.capabilities import REGISTRY

    found: Permissions = {}
    for cloud in REGISTRY["object_store"]:
        cls: Any = _registry_class("object_store", cloud)
        _merge(found, {cloud: (*cls.permissions, *(getattr(cls, "lock_permissions", ()) if locks else ()))})
    return found


def _restores() -> Permissions:
    """The restore step of each destination cloud plus reading that cloud's backup store."""
    from include.backup.restore import BACKUP_STORE_PERMISSIONS, STEPS

    found: Permissions = {}
    for cloud, cls in STEPS.items():
        _merge(found, {cloud: cls.permissions})
    _merge(found, BACKUP_STORE_PERMISSIONS)
    return found


def _backup(use: DagUse) -> tuple[Permissions, str]:
    return _object_stores(), "object_store capability (every cloud; S3 Object Lock for immutable policies)"


def _snapshots(use: DagUse) -> tuple[Permissions, str]:
    from include.backup.snapshots_steps import all_permissions

    return {"aws": set(all_permissions())}, "backup_snapshots steps + snapshots capability listing"


def _restore(use: DagUse) -> tuple[Permissions, str]:
    return _restores(), "restore steps + backup store reads"


def _drill(use: DagUse) -> tuple[Permissions, str]:
    found = _restores()
    # The scratch prefix is never under Object Lock (a drill refuses one that would be): no lock permissions.
    _merge(found, _object_stores(locks=False))
    return found, "restore steps + backup store reads + object_store capability (scratch prefix)"


def _inventory(use: DagUse) -> tuple[Permissions, str]:
    from include.inventory.registry import listers_for

    found: Permissions = {}
    for cloud in CLOUDS:
        _merge(found, {cloud: [p for entry in listers_for(cloud) for p in entry.permissions]})
    return found, "inventory listers"


def _remediation(use: DagUse) -> tuple[Permissions, str]:
    from include.compliance.remediation.registry import all_fixers

    found: Permissions = {}
    for entry in all_fixers():
        _merge(found, {entry.cloud: entry.permissions})
    return found, "remediation fixers"


def _cost(use: DagUse) -> tuple[Permissions, str]:
    from include.compliance.remediation.registry import all_fixers
    from include.cost.cleanup import all_steps
    from include.cost.hygiene import TAGS_STEP

    found: Permissions = {}
    for cls in all_steps().values():
        _merge(found, {cls.cloud: cls.permissions})
    for entry in all_fixers():
        if entry.id == TAGS_STEP:
            _merge(found, {entry.cloud: entry.permissions})
    return found, f"cost cleanup steps + fixer {TAGS_STEP}"


def _provisioning(use: DagUse) -> tuple[Permissions, str]:
    from include.provisioning.kinds import KINDS
    from include.provisioning.registry import RUNBOOK_CALLS, permissions_for

    if use.dag_id not in RUNBOOK_CALLS:
        raise LeastPrivilegeError(f"{use.path.name}: include.provisioning.registry.RUNBOOK_CALLS names no calls for "
                                  f"runbook {use.dag_id} (read / create / update / delete)")
    calls = RUNBOOK_CALLS[use.dag_id]
    found: Permissions = {}
    _merge(found, permissions_for(KINDS, calls))
    return found, f"provisioning kinds ({', '.join(calls)})"


def _failover(use: DagUse) -> tuple[Permissions, str]:
    """Assessment reads always; the failover steps the DAG (or the drill) names; every failback step."""
    from include.capabilities import REGISTRY
    from include.capabilities.database_failover import permissions_for as db_permissions
    from include.capabilities.dns import permissions_for as dns_permissions
    from include.failover.steps import STEPS, step_class

    names = use.modules.get("include.failover.tasks", set())
    steps = {s for s in use.literals if s in STEPS} if "apply" in names else set()
    parts = ["database_failover.status + dns.read (assessment, verification)"]
    if "drill_stage" in names:
        drill = PROJECT_ROOT / "include" / "failover" / "drill.py"
        steps |= {s for s in read_dag(drill).literals if s in STEPS}
    if names & {"failback_step", "drill_stage"}:
        from include.failover.failback import STEP_ORDER

        steps |= {step for _, step, _ in STEP_ORDER}
    clouds = sorted(set(REGISTRY["database_failover"]) | set(REGISTRY["dns"]))
    found: Permissions = {}
    for cloud in clouds:
        _merge(found, {cloud: (*db_permissions(cloud, "status"), *dns_permissions(cloud, "read"))})
        for step in sorted(steps):
            _merge(found, {cloud: step_class(step, cloud).permissions})
    if steps:
        parts.append(f"failover steps {', '.join(sorted(steps))}")
    return found, "; ".join(parts)


Source = Callable[[DagUse], tuple[Permissions, str]]

#: include module a DAG imports -> the declarations its work needs.
SOURCES: dict[str, Source] = {
    "include.backup.runbook": _backup,
    "include.backup.snapshots": _snapshots,
    "include.backup.restore": _restore,
    "include.backup.drill": _drill,
    "include.inventory.collect": _inventory,
    "include.compliance.remediation.runner": _remediation,
    "include.cost.runbook": _cost,
    "include.provisioning.runbook": _provisioning,
    "include.provisioning.drift": _provisioning,
    "include.failover.tasks": _failover,
}
#: include modules a DAG may import that make no call to the runbooks' clouds (files, XCom, params, approvals,
#: notifications). The data root (``include.paths`` / ``include.fileio``, and the stores) may be an object-store
#: URL: the permissions on that bucket belong to the data-root connection, not to a runbook's policy.
CLOUD_FREE = frozenset({
    "include.approval", "include.assets", "include.params", "include.targets", "include.notify",
    "include.paths", "include.fileio",
    "include.backup.policies", "include.changes.runbook",
    "include.compliance.registry", "include.compliance.store", "include.compliance.engine",
    "include.compliance.policy", "include.compliance.waivers", "include.compliance.validation",
    "include.compliance.reports", "include.inventory.store", "include.inventory.registry",
})


def cloud_of(permission: str) -> str:
    """Which cloud a permission belongs to, from its form (``svc:Action``, ``svc.res.verb``, ``Microsoft.*``)."""
    if permission.startswith("Microsoft."):
        return "azure"
    if ":" in permission:
        return "aws"
    if permission.count(".") >= 2:
        return "gcp"
    raise LeastPrivilegeError(f"{permission!r} is not an AWS action, GCP permission or Azure operation")


def policy_for(use: DagUse) -> RunbookPolicy:
    """The runbook's permissions per cloud, from the declarations of the modules its DAG file uses."""
    unknown = sorted(m for m in use.modules if m not in SOURCES and m not in CLOUD_FREE)
    if unknown:
        raise LeastPrivilegeError(
            f"{use.path.name} ({use.dag_id}) imports {', '.join(unknown)}: include/least_privilege.py knows no "
            "permission source for it; add it to SOURCES (asking its registry for what it declares) or, when it "
            "makes no cloud call, to CLOUD_FREE")
    found: Permissions = {}
    sources = []
    for module in sorted(use.modules):
        if module in SOURCES:
            perms, where = SOURCES[module](use)
            _merge(found, perms)
            if where not in sources:
                sources.append(where)
    result = RunbookPolicy(use.dag_id, sources=sources)
    for cloud in CLOUDS:
        declared = {p for p in found.get(cloud, set()) if p}
        wrong = sorted(p for p in declared if cloud_of(p) != cloud)
        if wrong:
            raise LeastPrivilegeError(f"{use.dag_id}: {cloud} declarations hold {', '.join(wrong)}")
        if declared:
            result.permissions[cloud] = sorted(declared)
    return result


def all_policies(dags_dir: Path = DAGS_DIR) -> list[RunbookPolicy]:
    """One policy per DAG file, sorted by dag id."""
    policies = [policy_for(read_dag(path)) for path in dag_files(dags_dir)]
    return sorted(policies, key=lambda p: p.dag_id)


# ---- rendering -------------------------------------------------------------------------------------------------
def _sid(service: str) -> str:
    return "".join(part.capitalize() for part in service.replace("-", " ").split()) or "All"


def aws_policy(actions: Iterable[str]) -> dict[str, object]:
    """An IAM policy document: one Allow statement per service, actions sorted, on every resource.

    The declarations name actions, not resources (which bucket, instance or zone a runbook touches is data in
    config/, not code), hence ``"Resource": "*"``; scope it further with conditions when you deploy.
    """
    by_service: dict[str, list[str]] = {}
    for action in sorted(set(actions)):
        by_service.setdefault(action.split(":", 1)[0], []).append(action)
    return {
        "Version": "2012-10-17",
        "Statement": [{"Sid": _sid(service), "Effect": "Allow", "Action": acts, "Resource": "*"}
                      for service, acts in sorted(by_service.items())],
    }


def azure_role(dag_id: str, operations: Iterable[str]) -> dict[str, object]:
    """An Azure custom role definition (blob reads / writes are data actions, the rest control-plane actions)."""
    ops = sorted(set(operations))
    return {
        "Name": f"runbooks-{dag_id}",
        "IsCustom": True,
        "Description": f"Least privilege for the {dag_id} runbook (generated by `{COMMAND}`; do not edit).",
        "Actions": [op for op in ops if "/blobs/" not in op],
        "NotActions": [],
        "DataActions": [op for op in ops if "/blobs/" in op],
        "NotDataActions": [],
        "AssignableScopes": ["/subscriptions/<subscription-id>"],
    }


def gcp_role(dag_id: str, permissions: Iterable[str]) -> str:
    lines = [f"# GCP custom role permissions for the {dag_id} runbook (generated by `{COMMAND}`; do not edit).",
             *sorted(set(permissions))]
    return "\n".join(lines) + "\n"


def _json(data: object) -> str:
    return json.dumps(data, indent=2) + "\n"


FILE_SUFFIX = {"aws": "aws.json", "gcp": "gcp.txt", "azure": "azure.json"}


def file_name(dag_id: str, cloud: str) -> str:
    return f"{dag_id}.{FILE_SUFFIX[cloud]}"


def render(policies: list[RunbookPolicy]) -> dict[str, str]:
    """Every file of ``deploy/iam/`` by name."""
    files: dict[str, str] = {}
    index: dict[str, dict[str, object]] = {}
    for policy in policies:
        perms = policy.permissions
        if "aws" in perms:
            files[file_name(policy.dag_id, "aws")] = _json(aws_policy(perms["aws"]))
        if "gcp" in perms:
            files[file_name(policy.dag_id, "gcp")] = gcp_role(policy.dag_id, perms["gcp"])
        if "azure" in perms:
            files[file_name(policy.dag_id, "azure")] = _json(azure_role(policy.dag_id, perms["azure"]))
        index[policy.dag_id] = {
            "clouds": {cloud: {"file": file_name(policy.dag_id, cloud), "count": len(perms[cloud])}
                       for cloud in CLOUDS if cloud in perms} or "none",
            "sources": policy.sources,
        }
    files["index.json"] = _json(index)
    files["README.md"] = readme(policies)
    return files


def readme(policies: list[RunbookPolicy]) -> str:
    rows = []
    for policy in policies:
        cells = [f"[`{file_name(policy.dag_id, c)}`]({file_name(policy.dag_id, c)}) ({len(policy.permissions[c])})"
                 if c in policy.permissions else "-" for c in CLOUDS]
        if not policy.permissions:
            cells = ["none", "none", "none"]
        rows.append(f"| `{policy.dag_id}` | {' | '.join(cells)} | {'; '.join(policy.sources) or 'touches no cloud'} |")
    table = "\n".join(rows)
    return _README.format(command=COMMAND, table=table)


_README = """# Least-privilege permissions per runbook

Generated by `{command}` from the permissions the code declares at every cloud call site; do not edit these
files by hand. `{command} --check` (and `tests/test_least_privilege.py`) fails when a declaration changed and
the files were not regenerated, and when a runbook in `dags/` has no entry here.

| runbook | AWS IAM policy (actions) | GCP custom role (permissions) | Azure custom role (operations) | declared by |
|---|---|---|---|---|
{table}

"none": the runbook makes no cloud call (it reads the inventory and results the other runbooks wrote).

## How the mapping is made

Each DAG file is parsed (not imported) for the `include` modules its tasks import and the names it uses; each
module is either a permission source in `include/least_privilege.py` (which asks that module's registry: listers,
fixers, steps, provisioning kinds, capabilities) or listed as making no cloud call. A DAG importing a module the
generator does not know makes the generator fail, naming the module.

## Using the files

- **AWS**: `<runbook>.aws.json` is an IAM policy document. Create it as a customer-managed policy
  (`aws iam create-policy --policy-document file://deploy/iam/<runbook>.aws.json`) and attach it to the role or
  user behind that runbook's Airflow connection. Every statement says `"Resource": "*"`: the declarations name
  actions, while which buckets, instances and zones a runbook touches is data (`config/targets.yaml`, the
  policies and catalogs under `config/`), not code. Narrow the resources with your account's ARNs or tag
  conditions (`aws:ResourceTag/...`) when you deploy.
- **GCP**: `<runbook>.gcp.txt` lists the permissions of a custom role
  (`gcloud iam roles create runbooks_<runbook> --project=<project> --permissions=$(grep -v '^#' <file> | paste -sd,)`).
- **Azure**: `<runbook>.azure.json` is a custom role definition; replace `<subscription-id>` in
  `AssignableScopes` and run `az role definition create --role-definition @<file>`.

A runbook that spans clouds (backup, restore, inventory) needs each file's role on that cloud's connection.
A connection shared by several runbooks needs the union of their policies.

## Proven on the AWS emulator, and where the emulator cannot prove it

`tests/test_least_privilege.py` starts its own moto server with IAM enforcement
(`INITIAL_NO_AUTH_ACTION_COUNT`), creates an IAM user holding exactly a runbook's generated policy and puts
that user's access keys into the Airflow `aws` connection. It then runs the runbook's cloud work through the
same `include/` functions its tasks call against a seeded estate: the run succeeds. Then, for every action of
the policy, a run without that one action (a new policy version of a second user) fails with an access-denied
error naming that action (the product's message, see `include/clouds/errors.py`). An action a run cannot make
fail on moto is listed in the test with the reason, and one run without all of them must still succeed, so
the list is exact. Where the code under test takes its targets as an argument (inventory, snapshots, drift),
the removals run in two threads, each as its own IAM user through its own connection and on its own resources.

| runbook | run under the generated policy (moto, IAM enforced) | actions not proven by a removal, and why |
|---|---|---|
| `inventory_estate` | every AWS lister (Route 53 left out) | `route53:*`; the S3 calls moto checks under another name (below) |
| `remediate_findings` | every AWS fixer, planned and applied | the S3 calls moto checks under another name |
| `backup_object_stores` | `back_up` of an S3 -> S3 (other region) policy with Object Lock: copy, locked point, prune | `s3:AbortMultipartUpload` (aborts a failed multipart upload only); `s3:GetObjectRetention` (read from HeadObject's headers, which moto checks as `s3:GetObject`); `s3:PutObjectRetention` (moto checks it as `s3:PutObject`); `s3:GetBucketObjectLockConfiguration` and `s3:ListBucket` (moto name). The Cloud Storage / Azure sides: no emulator enforces permissions |
| `restore_objects` | resolve -> plan -> apply -> verify from that S3 store into an S3 scratch prefix | `s3:AbortMultipartUpload`; `kms:Decrypt`, `kms:GenerateDataKey` (SSE-KMS buckets only; moto's S3 calls no KMS) |
| `restore_drill` | resolve -> scratch -> restore -> verify -> remove the scratch, on that S3 store | as `restore_objects` |
| `backup_snapshots` | select -> find -> plan -> apply -> verify on an encrypted EBS volume, an RDS instance and a DynamoDB table: create, copy to a second region, delete the expired | `ec2:CreateTags`, `rds:AddTagsToResource` (tags on create: AWS authorizes them, moto does not); `kms:*` (copies of encrypted snapshots; moto calls no KMS) |
| `cost_hygiene` | every AWS cleanup step on fresh waste (volume, snapshot, stopped instance, bucket) and the `tags.required` fixer | none |
| `provision_environment` | create, and update of every field, per kind: S3 bucket, security group, EC2 instance, RDS instance + read replica, DynamoDB table | `route53:*` (zones and records are left out of the proof's specs); `s3:DeleteBucket` (create's compensation only); `secretsmanager:CreateSecret` (RDS creates the managed master password's secret; moto does not authorize it); `kms:DescribeKey` (only for a spec naming `kms_key`); the S3 calls moto checks under another name |
| `teardown_environment` | teardown per kind (a bucket holding objects, `force_destroy`) | `route53:*`; `rds:CreateDBSnapshot` (the final snapshot goes with DeleteDBInstance); `s3:DeleteObjectVersion` (moto checks DeleteObjects as `s3:DeleteObject`); the S3 calls moto checks under another name |
| `detect_drift` | the drift check of an environment of every kind but Route 53's: no finding | `route53:*`; the S3 calls moto checks under another name |
| `failover_service` | its RDS part on a fresh primary / replica pair: the assessment's database reads of both sides (`status`), then the fence and promote steps planned and applied | `route53:*` (the DNS reads and the switch_dns step are left out); the HTTP probes are not cloud calls |
| `failback_service` | its RDS part after a failover: rebuild the primary as a replica of the standby (retiring the fenced old primary), fence the standby, promote the primary | `route53:*`; `kms:CreateGrant`, `kms:DescribeKey` (the rebuilt replica's key: moto's RDS calls no KMS) |
| `failover_drill` | its RDS part: the failover, then the failback, as above | as `failback_service` |

Two gaps the proof found were mended (`include/provisioning/aws/s3.py`): an AccessDenied on GetBucketLocation
was read as "the name belongs to another account" (teardown then left the bucket without an error); now a
bucket HeadBucket reaches is ours and the run fails naming `s3:GetBucketLocation`. DeleteObjects' per-key errors
inside a 200 answer were not read (teardown then failed with `BucketNotEmpty`); now they fail the step naming
`s3:DeleteObjectVersion` / `s3:DeleteObject`.

What moto 5.2.5 enforces, read from its source (`moto/core/responses.py` `call_action`,
`moto/iam/access_control.py`, `moto/s3/responses.py` `ACTION_MAP`) and seen in the test:

- Services answered through moto's generic `call_action` (EC2, RDS, IAM, KMS, DynamoDB, CloudTrail) are
  checked action by action under the action's real IAM name, on resource `*` (so resource scoping
  is not tested). `sts:GetCallerIdentity` is always allowed (as on AWS). A call AWS authorizes against a second
  action (tags on create, a final snapshot, KMS for encrypted copies) is checked only under its own action.
- **Route 53 cannot be checked**: with enforcement on, moto answers every signed Route 53 request with
  `SignatureDoesNotMatch`, whatever the policy. The `route53:*` actions are generated from the declarations
  but not proven.
- **S3 is checked under moto's own action names**, which differ from AWS's for some calls: bucket
  encryption (GET is checked as `s3:ListBucket`, PUT as `s3:CreateBucket`; AWS: `s3:GetEncryptionConfiguration`
  / `s3:PutEncryptionConfiguration`), public access block (GET as `s3:ListBucket`, PUT as `s3:CreateBucket`;
  AWS: `s3:GetBucketPublicAccessBlock` / `s3:PutBucketPublicAccessBlock`), object lock configuration (GET as
  `s3:ListBucket`), object retention (PUT as `s3:PutObject`), HeadObject of a version (as `s3:GetObject`; AWS:
  `s3:GetObjectVersion`). For those calls the test grants moto's name alongside (`MOTO_S3_ALIASES` in the test)
  and cannot make the removal check for them, nor for `s3:ListBucket` / `s3:CreateBucket` when they stand in for
  one of them. Every other S3 call is checked under its AWS name. S3 itself answers a denial with a bare
  "Access Denied" (a denied HEAD with a bare 403); the runbooks' AWS clients add the permission the call needs
  to that message, the version-specific one (`s3:GetObjectVersion`, `s3:DeleteObjectVersion`) when the call
  names a `VersionId`.
- GCP (Cloud Storage emulator) and Azure (Azurite) emulators enforce no permissions: the `.gcp.txt` and
  `.azure.json` files are generated from the same declarations but are not proven by a test.
- The data root (`RUNBOOKS_DATA_DIR`, possibly an `s3://` URL) is reached through its own connection: the
  permissions on that bucket are not part of a runbook's policy.
"""


# ---- writing / checking ----------------------------------------------------------------------------------------
def differences(out_dir: Path = OUT_DIR, dags_dir: Path = DAGS_DIR) -> list[str]:
    """Files under ``out_dir`` that differ from, are missing from, or are not in what the code declares now."""
    files = render(all_policies(dags_dir))
    problems = []
    for name, text in sorted(files.items()):
        path = out_dir / name
        if not path.exists():
            problems.append(f"missing: {path}")
        elif path.read_text(encoding="utf-8") != text:
            problems.append(f"out of date: {path}")
    if out_dir.exists():
        problems += [f"not generated (stale): {p}" for p in sorted(out_dir.iterdir()) if p.name not in files]
    return problems


def write(out_dir: Path = OUT_DIR, dags_dir: Path = DAGS_DIR) -> list[Path]:
    """(Re)write every file, removing stale ones; return the paths written."""
    files = render(all_policies(dags_dir))
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in out_dir.iterdir():
        if stale.name not in files and stale.is_file():
            stale.unlink()
    written = []
    for name, text in sorted(files.items()):
        path = out_dir / name
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=COMMAND, description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="compare deploy/iam/ with the code; write nothing")
    parser.add_argument("--out", type=Path, default=OUT_DIR, help="output directory (default: deploy/iam)")
    args = parser.parse_args(argv)
    try:
        if args.check:
            problems = differences(args.out)
            for problem in problems:
                print(problem, file=sys.stderr)
            if problems:
                print(f"run `{COMMAND}` and commit the result", file=sys.stderr)
                return 1
            print(f"{args.out}: up to date")
            return 0
        paths = write(args.out)
    except LeastPrivilegeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {len(paths)} files under {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
