"""Framework catalogues: the control ids a rule may cite, with their titles and where they come from.

Catalogues are data, one YAML file per framework in ``config/compliance/frameworks/``::

    framework: CIS-AWS-3.0                      # the name rules use in ``frameworks={...}``
    title: CIS Amazon Web Services Foundations Benchmark v3.0.0
    clouds: [aws]                               # optional: only rules of these clouds may cite it
    id_pattern: '^\\d+(\\.\\d+){1,2}$'           # shape of a control id (catches "CIS 2.1.4", "2,1,4")
    disjoint_from: [AWS-FSBP]                   # optional: no id may also be in these catalogues
    source:                                     # where ids and titles were read, and when
      document: ...
      url: ...
      read_from: ...                            # the exact copy read (release, commit)
      checked: 2026-11-30
      notes: ...                                # optional
    controls:                                   # control id -> title, as in the source
      "2.1.4": Ensure that S3 Buckets are configured with 'Block public access (bucket settings)'

Only controls some rule cites need to be listed, but every entry is real. The registry checks every
rule's mapping against the catalogues when the rule is registered (``validate_meta``): an unknown
framework or a control id missing from its catalogue is a ``RuleDefinitionError`` naming the rule.

Two AWS catalogues, on purpose: ``AWS-FSBP`` holds only controls of Security Hub's Foundational
Security Best Practices standard; ``AWS-SecurityHub`` holds Security Hub controls that are *not* in
FSBP (Security Hub runs them for its CIS, PCI DSS and NIST standards). A Security Hub control id is
not an FSBP id, and citing one as FSBP mislabels the finding; the two catalogues are disjoint, so a
rule's Security Hub ids are the union of what it cites under both.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import date
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from include.paths import CONFIG_DIR
from include.targets import CLOUDS

#: Where the catalogues live (one ``<framework, lower case>.yaml`` per framework).
FRAMEWORKS_DIR = CONFIG_DIR / "compliance" / "frameworks"
_TOP_KEYS = {"framework", "title", "clouds", "id_pattern", "disjoint_from", "source", "controls"}
_SOURCE_KEYS = {"document", "url", "read_from", "checked", "notes"}
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9.-]*$")


class CatalogueError(ValueError):
    """A catalogue file is missing, malformed or inconsistent (names the file)."""


@dataclass(frozen=True)
class Source:
    """Where a catalogue's ids and titles were read, and when they were last checked."""

    document: str
    url: str
    read_from: str
    checked: date
    notes: str = ""


@dataclass(frozen=True)
class Catalogue:
    """One framework: its name, what it is, which clouds may cite it, and its known controls."""

    name: str
    title: str
    clouds: tuple[str, ...]
    id_pattern: re.Pattern[str]
    source: Source
    controls: Mapping[str, str]
    disjoint_from: tuple[str, ...] = ()
    path: Path | None = None

    def applies_to(self, cloud: str) -> bool:
        """Whether rules of ``cloud`` may cite this framework (no ``clouds`` = every cloud)."""
        return not self.clouds or cloud in self.clouds

    def title_of(self, control: str) -> str | None:
        """The control's title, or None when the catalogue does not list it."""
        return self.controls.get(control)


def _text(data: Mapping[str, Any], key: str, where: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value.strip():
        raise CatalogueError(f"{where}: '{key}' must be a non-empty string")
    return value.strip()


def _names(data: Mapping[str, Any], key: str, where: str) -> tuple[str, ...]:
    value = data.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise CatalogueError(f"{where}: '{key}' must be a list of names")
    return tuple(value)


def _source(data: Any, where: str) -> Source:
    if not isinstance(data, dict):
        raise CatalogueError(f"{where}: 'source' must be a mapping with {', '.join(sorted(_SOURCE_KEYS))}")
    unknown = set(data) - _SOURCE_KEYS
    if unknown:
        raise CatalogueError(f"{where}: unknown source keys {', '.join(sorted(unknown))}")
    checked = data.get("checked")
    if not isinstance(checked, date):
        raise CatalogueError(f"{where}: source 'checked' must be a date (YYYY-MM-DD), got {checked!r}")
    notes = data.get("notes", "")
    if not isinstance(notes, str):
        raise CatalogueError(f"{where}: source 'notes' must be text")
    return Source(
        document=_text(data, "document", f"{where} source"),
        url=_text(data, "url", f"{where} source"),
        read_from=_text(data, "read_from", f"{where} source"),
        checked=checked,
        notes=notes.strip(),
    )


def parse_catalogue(data: Any, where: str = "<catalogue>") -> Catalogue:
    """Validate one catalogue's parsed YAML; raise :class:`CatalogueError` naming ``where``."""
    if not isinstance(data, dict):
        raise CatalogueError(f"{where}: a catalogue is a mapping with {', '.join(sorted(_TOP_KEYS))}")
    unknown = set(data) - _TOP_KEYS
    if unknown:
        raise CatalogueError(f"{where}: unknown keys {', '.join(sorted(map(str, unknown)))}")
    name = _text(data, "framework", where)
    if not _NAME.match(name):
        raise CatalogueError(f"{where}: framework name {name!r} must be letters, digits, '.' and '-'")
    clouds = _names(data, "clouds", where)
    for cloud in clouds:
        if cloud not in CLOUDS:
            raise CatalogueError(f"{where}: unknown cloud {cloud!r} (known: {', '.join(CLOUDS)})")
    try:
        pattern = re.compile(_text(data, "id_pattern", where))
    except re.error as exc:
        raise CatalogueError(f"{where}: id_pattern is not a regular expression: {exc}") from exc
    controls = data.get("controls")
    if not isinstance(controls, dict) or not controls:
        raise CatalogueError(f"{where}: 'controls' must map control ids to titles")
    checked: dict[str, str] = {}
    for control, title in controls.items():
        if not isinstance(control, str):
            # YAML reads 1.10 as the float 1.1: an unquoted id would silently become another control.
            raise CatalogueError(f"{where}: control id {control!r} must be a quoted string")
        if not pattern.match(control):
            raise CatalogueError(f"{where}: control id {control!r} does not match id_pattern {pattern.pattern!r}")
        if not isinstance(title, str) or not title.strip():
            raise CatalogueError(f"{where}: control {control!r} has no title")
        checked[control] = title.strip()
    return Catalogue(
        name=name,
        title=_text(data, "title", where),
        clouds=clouds,
        id_pattern=pattern,
        source=_source(data.get("source"), where),
        controls=checked,
        disjoint_from=_names(data, "disjoint_from", where),
    )


def load_catalogue(path: Path) -> Catalogue:
    """Read and validate one catalogue file; its name must be ``<framework in lower case>.yaml``."""
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise CatalogueError(f"{path}: cannot read the catalogue: {exc}") from exc
    catalogue = parse_catalogue(data, str(path))
    if path.name != f"{catalogue.name.lower()}.yaml":
        raise CatalogueError(f"{path}: framework {catalogue.name!r} belongs in {catalogue.name.lower()}.yaml")
    return replace(catalogue, path=path)


def load_catalogues(directory: Path) -> dict[str, Catalogue]:
    """Every catalogue of ``directory`` by framework name, checked against each other."""
    files = sorted(directory.glob("*.yaml"))
    if not files:
        raise CatalogueError(f"{directory}: no framework catalogue (*.yaml) found")
    found: dict[str, Catalogue] = {}
    for path in files:
        catalogue = load_catalogue(path)
        found[catalogue.name] = catalogue
    for catalogue in found.values():
        for other in catalogue.disjoint_from:
            if other not in found:
                raise CatalogueError(f"{catalogue.path}: disjoint_from names unknown framework {other!r}")
            both = sorted(set(catalogue.controls) & set(found[other].controls))
            if both:
                raise CatalogueError(
                    f"{catalogue.path}: {', '.join(both)} also in {other}; cite them as {other} only"
                )
    return dict(sorted(found.items()))


@lru_cache(maxsize=1)
def catalogues() -> Mapping[str, Catalogue]:
    """The project's catalogues (``config/compliance/frameworks/``), read once per process."""
    return load_catalogues(FRAMEWORKS_DIR)


def get_catalogue(framework: str) -> Catalogue | None:
    """The catalogue of ``framework``, or None when no catalogue has that name."""
    return catalogues().get(framework)


def framework_titles() -> dict[str, str]:
    """Framework name -> what it is (e.g. ``CIS-AWS-3.0`` -> the benchmark's full name)."""
    return {name: catalogue.title for name, catalogue in catalogues().items()}


def cis_benchmarks() -> dict[str, str]:
    """Cloud -> the CIS benchmark its rules cite (reports group by it)."""
    return {
        cloud: name
        for name, catalogue in catalogues().items()
        if name.startswith("CIS-")
        for cloud in catalogue.clouds
    }


def control_title(framework: str, control: str) -> str | None:
    """Title of ``control`` in ``framework``'s catalogue; None for a framework or id not catalogued."""
    catalogue = get_catalogue(framework)
    return None if catalogue is None else catalogue.title_of(control)


def check_citation(framework: str, controls: tuple[str, ...], cloud: str) -> str | None:
    """What is wrong with citing ``controls`` of ``framework`` from a ``cloud`` rule, or None if nothing.

    The message is phrased to follow "rule '<id>': " (the registry prefixes it).
    """
    catalogue = get_catalogue(framework)
    if catalogue is None:
        return f"unknown framework {framework!r} (known: {', '.join(catalogues())})"
    if not catalogue.applies_to(cloud):
        if framework.startswith("CIS-"):
            return f"framework {framework!r} is not the CIS benchmark of {cloud}"
        return f"framework {framework!r} applies to {', '.join(catalogue.clouds)} rules only, not {cloud}"
    if not controls:
        return f"framework {framework!r} lists no control id"
    for control in controls:
        if not isinstance(control, str) or not catalogue.id_pattern.match(control):
            return f"control id {control!r} is not a valid {framework} id"
        if control not in catalogue.controls:
            where = catalogue.path.name if catalogue.path else framework
            return (
                f"control {control!r} is not in the {framework} catalogue ({where}); check the id against "
                f"{catalogue.source.url} and add it with its title there if it is real"
            )
    return None
