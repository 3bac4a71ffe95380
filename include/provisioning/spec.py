"""Environment specs: YAML files in ``config/environments/``, validated against ``schema.json`` and checked.

One file per environment, ``config/environments/<environment>.yaml`` (the folder can be moved with
``RUNBOOKS_ENVIRONMENTS_DIR``)::

    environment: demo
    production: false              # true (the default): a plan that changes it waits for approval
    owner: platform-team
    cost_center: cc-1000
    targets: {aws: aws-prod, gcp: gcp-prod, azure: azure-prod}
    regions: {aws: us-east-1}
    tags: {data-classification: internal}
    resources:
      - kind: sg
        name: web                  # address sg.web
        properties: {name: rb-demo-web, ingress: [...]}
      - kind: ec2
        name: app
        properties: {name: rb-demo-app, security_groups: ["${sg.web.id}"], ...}

A value ``${<kind>.<name>.<output>}`` refers to another resource's output (its id, ARN, endpoint...);
``depends_on`` adds an explicit ordering. Both make the referring resource wait for the other one (apply
in dependency order, teardown in reverse); a cycle is refused, naming it.

Validation happens in two passes, and every problem names the file, the resource and the field:

1. the JSON schema (``config/environments/schema.json``, with :mod:`jsonschema`);
2. what a schema cannot say: the file name matches ``environment``, addresses are unique, targets exist
   and serve the kind's cloud, references and ``depends_on`` name existing resources and outputs, no
   cycle, no two resources with one cloud name, no reserved tag, labels valid on Google Cloud...
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from include.changes.model import RequestError
from include.changes.ordering import CycleError, dependency_order
from include.paths import CONFIG_DIR
from include.provisioning.kinds import KINDS, Kind, get_kind
from include.provisioning.ownership import RESERVED_KEYS, ownership_tags
from include.targets import Target, TargetsConfig, TargetsError, load_targets

DEFAULT_ENVIRONMENTS_DIR = CONFIG_DIR / "environments"
SCHEMA_FILE = "schema.json"
#: ``${sg.web.id}``: a reference to the output ``id`` of the resource at address ``sg.web``.
REFERENCE = re.compile(r"\$\{([a-z][a-z0-9_]*)\.([a-z][a-z0-9_-]{0,62})\.([a-z][a-z0-9_]*)\}")
_ANY_PLACEHOLDER = re.compile(r"\$\{[^}]*\}")
#: Google Cloud label keys and values (every label of a gcs / gce resource must fit).
_GCP_LABEL_KEY = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
_GCP_LABEL_VALUE = re.compile(r"^[a-z0-9_-]{0,63}$")
#: Settings of an Azure storage *account*, not of a container: refused with the reason.
_AZURE_ACCOUNT_LEVEL = {
    "encryption": "Azure encrypts every blob at rest; encryption keys are a storage-account setting",
    "versioning": "blob versioning is a storage-account setting (blob service properties)",
    "lifecycle": "lifecycle management is a storage-account policy (management policies)",
    "public_access": "containers are always created private (public access off)",
}


class SpecError(RequestError):
    """A spec cannot be used: the message lists every problem, each naming file, resource and field."""


def environments_dir() -> Path:
    """Where the specs live: ``RUNBOOKS_ENVIRONMENTS_DIR``, default ``config/environments``."""
    return Path(os.environ.get("RUNBOOKS_ENVIRONMENTS_DIR", DEFAULT_ENVIRONMENTS_DIR))


def schema_path() -> Path:
    """The JSON schema shipped with the project (always the one in ``config/environments``)."""
    return DEFAULT_ENVIRONMENTS_DIR / SCHEMA_FILE


@lru_cache(maxsize=1)
def load_schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(schema_path().read_text())
    return schema


# ---- the validated model -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Reference:
    """``${<address>.<output>}`` found in a resource's properties."""

    address: str
    output: str

    @property
    def text(self) -> str:
        return f"${{{self.address}.{self.output}}}"


@dataclass(frozen=True)
class SpecResource:
    """One resource of a spec, with its defaults filled in and its target / region settled."""

    kind: str
    name: str
    target: str
    region: str
    properties: dict[str, Any]
    tags: dict[str, str]  # the spec's tags + the resource's own (never the ownership tags)
    depends_on: tuple[str, ...] = ()  # explicit depends_on + every referenced address, sorted
    prevent_destroy: bool = False
    index: int = 0  # position in the file (for messages)

    @property
    def address(self) -> str:
        return f"{self.kind}.{self.name}"

    @property
    def kind_info(self) -> Kind:
        return get_kind(self.kind)

    @property
    def cloud_name(self) -> str:
        """The resource's name in its cloud (bucket, group, identifier...)."""
        return str(self.properties["name"])

    def references(self) -> list[Reference]:
        return list(_references(self.properties))

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "target": self.target, "region": self.region,
                "properties": self.properties, "tags": self.tags, "depends_on": list(self.depends_on),
                "prevent_destroy": self.prevent_destroy, "index": self.index}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SpecResource:
        return cls(kind=data["kind"], name=data["name"], target=data["target"], region=data["region"],
                   properties=dict(data["properties"]), tags=dict(data.get("tags") or {}),
                   depends_on=tuple(data.get("depends_on") or ()), prevent_destroy=bool(data.get("prevent_destroy")),
                   index=int(data.get("index", 0)))


@dataclass(frozen=True)
class Spec:
    """A validated environment spec (what travels between tasks: :meth:`to_dict` / :meth:`from_dict`)."""

    environment: str
    owner: str
    cost_center: str
    production: bool
    resources: tuple[SpecResource, ...]
    description: str = ""
    path: str = ""
    _by_address: dict[str, SpecResource] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        self._by_address.update({r.address: r for r in self.resources})

    def resource(self, address: str) -> SpecResource:
        try:
            return self._by_address[address]
        except KeyError:
            raise KeyError(f"environment {self.environment} declares no resource {address}") from None

    @property
    def addresses(self) -> list[str]:
        return [r.address for r in self.resources]

    def ownership_tags(self) -> dict[str, str]:
        """The tags that mark a resource as managed by this environment."""
        return ownership_tags(self.environment, self.owner, self.cost_center)

    def order(self) -> list[str]:
        """Addresses in dependency order (a resource after everything it refers to)."""
        return dependency_order(self.addresses, {r.address: r.depends_on for r in self.resources})

    def dependents(self) -> dict[str, list[str]]:
        """address -> the addresses that depend on it (what must go first in a teardown)."""
        found: dict[str, list[str]] = {a: [] for a in self.addresses}
        for res in self.resources:
            for dep in res.depends_on:
                found[dep].append(res.address)
        return found

    def to_dict(self) -> dict[str, Any]:
        return {"environment": self.environment, "owner": self.owner, "cost_center": self.cost_center,
                "production": self.production, "description": self.description, "path": self.path,
                "resources": [r.to_dict() for r in self.resources]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Spec:
        return cls(environment=data["environment"], owner=data["owner"], cost_center=data["cost_center"],
                   production=bool(data["production"]), description=str(data.get("description") or ""),
                   path=str(data.get("path") or ""),
                   resources=tuple(SpecResource.from_dict(r) for r in data["resources"]))


# ---- references ---------------------------------------------------------------------------------------
def _strings(value: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """(field path, string) for every string inside ``value``."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from _strings(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _strings(item, f"{path}[{index}]")


def _references(value: Any) -> Iterator[Reference]:
    for _, text in _strings(value):
        for match in REFERENCE.finditer(text):
            yield Reference(f"{match.group(1)}.{match.group(2)}", match.group(3))


def substitute(value: Any, lookup: Any) -> Any:
    """``value`` with every reference replaced by ``lookup(Reference)``.

    A string that is exactly one reference takes the referenced value as it is (a list stays a list); a
    reference inside a longer string is interpolated as text.
    """
    if isinstance(value, str):
        whole = REFERENCE.fullmatch(value)
        if whole:
            return lookup(Reference(f"{whole.group(1)}.{whole.group(2)}", whole.group(3)))
        return REFERENCE.sub(lambda m: str(lookup(Reference(f"{m.group(1)}.{m.group(2)}", m.group(3)))), value)
    if isinstance(value, Mapping):
        return {key: substitute(item, lookup) for key, item in value.items()}
    if isinstance(value, list):
        return [substitute(item, lookup) for item in value]
    return value


# ---- loading ----------------------------------------------------------------------------------------------
def spec_path(environment: str, folder: Path | None = None) -> Path:
    return (folder or environments_dir()) / f"{environment}.yaml"


def list_environments(folder: Path | None = None) -> list[str]:
    """The environments that have a spec file (sorted)."""
    base = folder or environments_dir()
    return sorted(p.stem for p in base.glob("*.yaml")) if base.exists() else []


def load_spec(environment: str, *, folder: Path | None = None, targets: TargetsConfig | None = None) -> Spec:
    """Load and validate ``<folder>/<environment>.yaml``; :class:`SpecError` lists every problem."""
    path = spec_path(environment, folder)
    if not path.exists():
        known = ", ".join(list_environments(folder)) or "none"
        raise SpecError(f"no spec for environment {environment!r}: {path} does not exist (specs: {known})")
    return parse_spec(path.read_text(), source=str(path), targets=targets)


def parse_spec(text: str, *, source: str = "<spec>", targets: TargetsConfig | None = None) -> Spec:
    """Validate a spec document (schema, then the checks a schema cannot make) and return the model."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SpecError(f"{source}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise SpecError(f"{source}: expected a mapping with environment, owner, cost_center and resources")
    account_level = _account_level_problems(raw, source)
    raw = _without_account_level(raw)  # reported once, clearly; the other checks still run
    problems = account_level + _schema_problems(raw, source)
    if len(problems) > len(account_level):
        raise SpecError(_listing(source, problems))
    try:
        config = targets or load_targets()
    except TargetsError as exc:
        raise SpecError(f"{source}: {exc}") from None
    checker = _Checker(raw, source, config)
    spec = checker.build()
    if account_level or checker.problems:
        raise SpecError(_listing(source, account_level + checker.problems))
    return spec


def _listing(source: str, problems: list[str]) -> str:
    unique = list(dict.fromkeys(problems))
    return f"{source}: {len(unique)} problem(s):\n- " + "\n- ".join(unique)


def _where(raw: Mapping[str, Any], path: Iterable[Any], source: str) -> tuple[str, str]:
    """(resource label, field path) of a JSON path into the document."""
    parts = list(path)
    if len(parts) >= 2 and parts[0] == "resources" and isinstance(parts[1], int):
        index = parts[1]
        items = raw.get("resources") or []
        entry = items[index] if index < len(items) and isinstance(items[index], Mapping) else {}
        label = f"resource {entry.get('kind', '?')}.{entry.get('name', '?')} (resources[{index}])"
        rest = parts[2:]
    else:
        label, rest = "spec", parts
    text = ""
    for part in rest:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return label, text or "(the entry itself)"


def _schema_problems(raw: Mapping[str, Any], source: str) -> list[str]:
    from jsonschema import Draft202012Validator  # type: ignore[import-untyped]  # no type information shipped

    validator = Draft202012Validator(load_schema())
    problems = []
    for error in sorted(validator.iter_errors(raw), key=lambda e: [str(p) for p in e.absolute_path]):
        label, where = _where(raw, error.absolute_path, source)
        problems.append(f"{label}: {where}: {_error_message(error)}")
    return problems


def _error_message(error: Any) -> str:
    """jsonschema's message, with the long ones (a whole sub-schema) cut to what is useful."""
    if error.validator == "pattern":
        return f"{error.instance!r} does not match {error.validator_value}"
    if error.validator == "enum":
        return f"{error.instance!r} is not one of {', '.join(map(repr, error.validator_value))}"
    message = str(error.message)
    return message if len(message) <= 300 else message[:297] + "..."


def _account_level_problems(raw: Mapping[str, Any], source: str) -> list[str]:
    problems = []
    for index, entry in enumerate(raw.get("resources") or []):
        if isinstance(entry, Mapping) and entry.get("kind") == "container":
            found = entry.get("properties")
            props: Mapping[str, Any] = found if isinstance(found, Mapping) else {}
            for key, why in _AZURE_ACCOUNT_LEVEL.items():
                if key in props:
                    label = f"resource container.{entry.get('name', '?')} (resources[{index}])"
                    problems.append(f"{label}: properties.{key}: not a container setting on Azure: {why}")
    return problems


def _without_account_level(raw: dict[str, Any]) -> dict[str, Any]:
    resources = []
    for entry in raw.get("resources") or []:
        if isinstance(entry, Mapping) and entry.get("kind") == "container" and isinstance(entry.get("properties"),
                                                                                          Mapping):
            resources.append({**entry, "properties": {k: v for k, v in entry["properties"].items()
                                                      if k not in _AZURE_ACCOUNT_LEVEL}})
        else:
            resources.append(entry)
    return {**raw, "resources": resources} if "resources" in raw else raw


def _defaults(schema: Mapping[str, Any]) -> dict[str, Any]:
    return {key: sub["default"] for key, sub in (schema.get("properties") or {}).items()
            if isinstance(sub, Mapping) and "default" in sub}


class _Checker:
    """The second pass: builds the model and collects every problem the schema cannot see."""

    def __init__(self, raw: Mapping[str, Any], source: str, targets: TargetsConfig) -> None:
        self.raw = raw
        self.source = source
        self.targets = targets
        self.problems: list[str] = []
        self.schema = load_schema()

    def problem(self, index: int | None, entry: Mapping[str, Any] | None, where: str, message: str) -> None:
        if index is None or entry is None:
            self.problems.append(f"spec: {where}: {message}")
        else:
            self.problems.append(f"resource {entry.get('kind')}.{entry.get('name')} (resources[{index}]): "
                                 f"{where}: {message}")

    def build(self) -> Spec:
        raw = self.raw
        stem = Path(self.source).stem
        if self.source.endswith((".yaml", ".yml")) and stem != raw["environment"]:
            self.problem(None, None, "environment", f"{raw['environment']!r} must match the file name "
                                                    f"({stem}.yaml): one spec per environment")
        spec_tags = {str(k): str(v) for k, v in (raw.get("tags") or {}).items()}
        for key in spec_tags:
            if key.lower() in RESERVED_KEYS:
                self.problem(None, None, f"tags.{key}", f"reserved: the runbook sets {', '.join(RESERVED_KEYS)}")
        resources = []
        for index, entry in enumerate(raw["resources"]):
            resources.append(self.resource(index, entry, spec_tags))
        self.check_graph(resources)
        self.check_unique_names(resources)
        return Spec(environment=raw["environment"], owner=raw["owner"], cost_center=raw["cost_center"],
                    production=bool(raw.get("production", True)), description=str(raw.get("description") or ""),
                    path=self.source, resources=tuple(resources))

    def target_for(self, index: int, entry: Mapping[str, Any], kind: Kind) -> Target | None:
        name = entry.get("target") or (self.raw.get("targets") or {}).get(kind.cloud)
        if not name:
            same = [t for t in self.targets.targets if t.cloud == kind.cloud]
            if len(same) != 1:
                self.problem(index, entry, "target", f"name a {kind.cloud} target (here, or in the spec's "
                                                     f"targets.{kind.cloud}); known: "
                                                     f"{', '.join(t.name for t in same) or 'none'}")
                return None
            return same[0]
        try:
            target = self.targets.get(str(name))
        except TargetsError as exc:
            self.problem(index, entry, "target", str(exc))
            return None
        if target.cloud != kind.cloud:
            self.problem(index, entry, "target", f"{target.name} is a {target.cloud} target; a {kind.alias} "
                                                 f"({kind.title}) needs a {kind.cloud} one")
            return None
        return target

    def region_for(self, index: int, entry: Mapping[str, Any], kind: Kind, target: Target,
                   props: Mapping[str, Any]) -> str:
        if kind.cloud == "aws" and kind.regional:
            region = str(entry.get("region") or (self.raw.get("regions") or {}).get("aws") or target.regions[0])
            if region not in target.regions:
                self.problem(index, entry, "region", f"{region} is not a region of target {target.name} "
                                                     f"({', '.join(target.regions)})")
            return region
        if entry.get("region"):
            self.problem(index, entry, "region", f"only AWS regional kinds take a region; a {kind.alias} is placed "
                                                 "by its properties (location / zone) or is global")
        if kind.alias == "gcs":
            return str(props.get("location", "US")).upper()
        if kind.alias == "gce":
            return str(props["zone"]).rsplit("-", 1)[0]
        if kind.alias == "azure_vm":
            return str(props.get("location") or target.regions[0])
        if kind.alias == "container":
            return target.regions[0]
        return "global"

    def resource(self, index: int, entry: Mapping[str, Any], spec_tags: dict[str, str]) -> SpecResource:
        kind = KINDS[entry["kind"]]
        target = self.target_for(index, entry, kind)
        props = {**_defaults(self.schema["$defs"][kind.alias]), **dict(entry["properties"])}
        tags = {**spec_tags, **{str(k): str(v) for k, v in (entry.get("tags") or {}).items()}}
        for key in entry.get("tags") or {}:
            if str(key).lower() in RESERVED_KEYS:
                self.problem(index, entry, f"tags.{key}", f"reserved: the runbook sets {', '.join(RESERVED_KEYS)}")
        self.check_kind(index, entry, kind, props, tags)
        self.check_placeholders(index, entry)
        deps = set(entry.get("depends_on") or ()) | {ref.address for ref in _references(props)}
        # A resource whose target is wrong is kept (the spec is refused anyway) so that its references and
        # the references to it are still checked.
        region = self.region_for(index, entry, kind, target, props) if target is not None else ""
        return SpecResource(kind=kind.alias, name=entry["name"], target=target.name if target else "",
                            region=region, properties=props, tags=tags,
                            depends_on=tuple(sorted(deps)), prevent_destroy=bool(entry.get("prevent_destroy")),
                            index=index)

    def check_placeholders(self, index: int, entry: Mapping[str, Any]) -> None:
        for where, text in _strings(entry.get("properties") or {}, "properties"):
            for placeholder in _ANY_PLACEHOLDER.findall(text):
                if not REFERENCE.fullmatch(placeholder):
                    self.problem(index, entry, where, f"{placeholder} is not a reference: write "
                                                      "${<kind>.<name>.<output>}, e.g. ${sg.web.id}")

    def check_kind(self, index: int, entry: Mapping[str, Any], kind: Kind, props: dict[str, Any],
                   tags: dict[str, str]) -> None:
        """Rules of one kind that JSON schema cannot express clearly."""
        self.check_labels(index, entry, kind, tags)
        checks = {"s3": self.check_s3, "rds": self.check_rds, "dynamodb": self.check_dynamodb,
                  "record": self.check_record, "sg": self.check_sg}
        if kind.alias in checks:
            checks[kind.alias](index, entry, props)

    def check_labels(self, index: int, entry: Mapping[str, Any], kind: Kind, tags: dict[str, str]) -> None:
        if kind.cloud == "gcp":
            for key, value in {**tags, **self.spec_owner_labels()}.items():
                if not _GCP_LABEL_KEY.match(key) or not _GCP_LABEL_VALUE.match(value):
                    self.problem(index, entry, f"tags.{key}", f"{key}={value!r} is not a valid Google Cloud label "
                                                              "(lowercase letters, digits, '_' and '-', <= 63)")
        if kind.alias == "container":
            for key in tags:
                if not re.fullmatch(r"[A-Za-z][A-Za-z0-9-]*", key):
                    self.problem(index, entry, f"tags.{key}", "on a container, tag keys become metadata names: "
                                                              "letters, digits and '-' (stored as '_')")

    def check_s3(self, index: int, entry: Mapping[str, Any], props: Mapping[str, Any]) -> None:
        if props.get("encryption") == "kms" and not props.get("kms_key"):
            self.problem(index, entry, "properties.kms_key", "encryption: kms needs kms_key")
        if props.get("kms_key") and props.get("encryption") != "kms":
            self.problem(index, entry, "properties.kms_key", "kms_key is only used with encryption: kms")

    def check_rds(self, index: int, entry: Mapping[str, Any], props: Mapping[str, Any]) -> None:
        if "replica_of" in entry["properties"]:
            for key in ("engine", "engine_version", "storage_gb", "master_username", "backup_retention_days"):
                if key in entry["properties"]:
                    self.problem(index, entry, f"properties.{key}", "a read replica takes it from its source "
                                                                    "(replica_of): leave it out")

    def check_dynamodb(self, index: int, entry: Mapping[str, Any], props: Mapping[str, Any]) -> None:
        if props.get("billing_mode") != "PROVISIONED":
            for key in ("read_capacity", "write_capacity"):
                if key in props:
                    self.problem(index, entry, f"properties.{key}", "only with billing_mode: PROVISIONED")

    def check_sg(self, index: int, entry: Mapping[str, Any], props: Mapping[str, Any]) -> None:
        for rules in ("ingress", "egress"):
            for number, rule in enumerate(props.get(rules) or []):
                if rule["protocol"] in ("tcp", "udp") and rule["from_port"] > rule["to_port"]:
                    self.problem(index, entry, f"properties.{rules}[{number}]", "from_port is above to_port")

    def check_record(self, index: int, entry: Mapping[str, Any], props: Mapping[str, Any]) -> None:
        zone = str(props["zone"])
        name = str(props["name"]).rstrip(".")
        if not REFERENCE.fullmatch(zone) and not (name == zone.rstrip(".") or name.endswith("." + zone.rstrip("."))):
            self.problem(index, entry, "properties.name", f"{props['name']!r} is not inside zone {zone!r}")
        if props["type"] == "CNAME" and len(props["values"]) != 1:
            self.problem(index, entry, "properties.values", "a CNAME record has exactly one value")

    def spec_owner_labels(self) -> dict[str, str]:
        return {"owner": str(self.raw["owner"]), "cost-center": str(self.raw["cost_center"]),
                "runbooks-environment": str(self.raw["environment"])}

    def check_graph(self, resources: list[SpecResource]) -> None:
        by_address: dict[str, SpecResource] = {}
        for res in resources:
            if res.address in by_address:
                self.problem(res.index, {"kind": res.kind, "name": res.name}, "name",
                             f"address {res.address} is already used by resources[{by_address[res.address].index}]")
            by_address.setdefault(res.address, res)
        ok = True
        for res in resources:
            entry = {"kind": res.kind, "name": res.name}
            for ref in res.references():
                other = by_address.get(ref.address)
                if other is None:
                    ok = False
                    self.problem(res.index, entry, "properties", f"{ref.text} refers to {ref.address}, which the spec "
                                                                 "does not declare")
                elif ref.output not in other.kind_info.outputs:
                    self.problem(res.index, entry, "properties", f"{ref.text}: a {other.kind} has no output "
                                                                 f"{ref.output!r}; outputs: "
                                                                 f"{', '.join(other.kind_info.outputs)}")
            explicit = set(res.depends_on) - {r.address for r in res.references()}
            for dep in sorted(explicit):
                if dep not in by_address:
                    ok = False
                    self.problem(res.index, entry, "depends_on", f"{dep} is not declared in the spec")
        if not ok or len(by_address) != len(resources):
            return
        try:
            dependency_order([r.address for r in resources], {r.address: r.depends_on for r in resources})
        except CycleError as exc:
            cycle = str(exc).split(": ", 1)[-1]
            self.problems.append(f"spec: resources: references / depends_on form a cycle: {cycle}")

    def check_unique_names(self, resources: list[SpecResource]) -> None:
        seen: dict[tuple[str, ...], SpecResource] = {}
        for res in resources:
            # Bucket and zone names are global to the account (S3, GCS: to the world): not per region.
            region = "*" if res.kind in ("s3", "gcs", "zone") else res.region
            key = (res.kind, res.target, region, *_identity_parts(res))
            if key in seen:
                self.problem(res.index, {"kind": res.kind, "name": res.name}, "properties.name",
                             f"{res.kind_info.title} {'/'.join(key[3:])} is also declared by "
                             f"{seen[key].address}")
            seen.setdefault(key, res)


def _identity_parts(res: SpecResource) -> tuple[str, ...]:
    props = res.properties
    if res.kind == "record":
        return (str(props["zone"]).rstrip(".").lower(), str(props["name"]).rstrip(".").lower(), str(props["type"]),
                str(props.get("set_identifier") or ""))
    if res.kind == "azure_vm":
        return (str(props["resource_group"]).lower(), str(props["name"]).lower())
    if res.kind == "gce":
        return (str(props["zone"]), str(props["name"]))
    if res.kind in ("s3", "gcs", "zone"):  # global names
        return (str(props["name"]).rstrip(".").lower(),)
    return (str(props["name"]),)
