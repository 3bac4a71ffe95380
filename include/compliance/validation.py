"""Validate the normalised inventory facts with great-expectations before any rule reads them.

Rules trust the facts they are given: a bucket whose ``encrypted`` flag is missing or a string would
silently pass or fail a rule. This module runs the expectation suites kept as data files under
``config/expectations/`` (GX 1.x suite JSON, one file per resource-type family) over the records and
returns a :class:`ValidationSummary` the scan and the reports use.

How a suite is applied
- ``meta.applies_to.resource_types`` in the suite file names the record types it validates (``["*"]``
  = every record). A suite with no matching record is reported as skipped, not run.
- The records are flattened into one pandas frame per suite, one column per name the suite's
  expectations use: record fields (``cloud``, ``region``, ``resource_id`` ...), ``tags`` (the tags as
  JSON text), ``tags.<key>``, and attributes by name, nested ones with dots
  (``public_access_block.block_public_acls``). A column no record has is all-null, so a missing fact
  fails ``expect_column_values_to_not_be_null`` instead of being skipped.
- Columns used by ``expect_column_values_to_match_json_schema`` are given as JSON text (GX parses the
  values as JSON), so lists and objects such as ``access_keys`` can be checked against a schema.
- Every frame has dtype ``object``: pandas would otherwise turn ``[3, None]`` into floats and
  ``expect_column_values_to_be_of_type`` would see ``float64`` instead of ints.

Rendering: GX Data Docs, built by an ephemeral context into ``<out_dir>/data_docs`` (a filesystem
site); plus ``validation.json`` (this summary) that ``report.html`` renders as its own section.

great_expectations and pandas are imported inside :func:`validate_inventory` only (about 5 s, more on a
busy machine): DAG files import this module at parse time for free.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from include.fileio import atomic_write_text
from include.paths import CONFIG_DIR
from include.records import ResourceRecord

DEFAULT_SUITES_DIR = CONFIG_DIR / "expectations"

#: Columns that are ResourceRecord fields (everything else is looked up in ``attributes``).
RECORD_FIELDS = ("cloud", "target", "account", "region", "service", "resource_type", "resource_id", "name")
#: How many unexpected examples each failed expectation keeps.
MAX_EXAMPLES = 10
#: The Data Docs site this module builds (the ephemeral context's temp site is not configured).
DOCS_SITE = "runbooks"


class SuiteError(ValueError):
    """An expectation suite file is unreadable or names an expectation GX does not accept."""


@dataclass(frozen=True)
class FailedExpectation:
    """One expectation that did not hold, with up to ``MAX_EXAMPLES`` offending resources."""

    suite: str
    expectation: str  # GX expectation type, e.g. expect_column_values_to_not_be_null
    column: str | None
    kwargs: dict[str, Any]
    description: str  # why the suite expects it (the expectation's meta.notes), may be empty
    element_count: int
    unexpected_count: int
    observed_value: Any = None
    examples: list[dict[str, Any]] = field(default_factory=list)  # [{"resource_id", "value"}]
    exception: str | None = None  # set when GX could not evaluate the expectation at all

    @property
    def label(self) -> str:
        """``suite: expectation(column)``, the name tests and logs use."""
        column = f"({self.column})" if self.column else ""
        return f"{self.suite}: {self.expectation}{column}"


@dataclass(frozen=True)
class SuiteResult:
    suite: str
    file: str
    resource_types: list[str]
    rows: int
    evaluated: int
    successful: int
    unsuccessful: int
    success: bool
    skipped: bool = False  # no record of the suite's resource types
    success_percent: float | None = None
    docs_page: str | None = None  # this suite's Data Docs page, when built


@dataclass(frozen=True)
class ValidationSummary:
    """What :func:`validate_inventory` found; JSON-able through :meth:`to_dict` (XCom, reports)."""

    success: bool
    records: int
    suites: list[SuiteResult]
    failures: list[FailedExpectation]
    html_path: str | None  # Data Docs index (or own rendering when Data Docs could not be built)
    results_path: str | None  # validation.json
    renderer: str  # "gx-data-docs" | "runbooks-html"
    seconds: float
    gx_version: str = ""
    docs_error: str | None = None

    @property
    def statistics(self) -> dict[str, int]:
        evaluated = sum(s.evaluated for s in self.suites)
        successful = sum(s.successful for s in self.suites)
        return {
            "suites": len(self.suites),
            "suites_run": sum(1 for s in self.suites if not s.skipped),
            "suites_failed": sum(1 for s in self.suites if not s.success),
            "evaluated_expectations": evaluated,
            "successful_expectations": successful,
            "unsuccessful_expectations": evaluated - successful,
        }

    def failed_labels(self) -> list[str]:
        return [failure.label for failure in self.failures]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["statistics"] = self.statistics
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ValidationSummary:
        return cls(
            success=bool(data["success"]),
            records=int(data.get("records", 0)),
            suites=[SuiteResult(**s) for s in data.get("suites", [])],
            failures=[FailedExpectation(**f) for f in data.get("failures", [])],
            html_path=data.get("html_path"),
            results_path=data.get("results_path"),
            renderer=str(data.get("renderer", "")),
            seconds=float(data.get("seconds", 0.0)),
            gx_version=str(data.get("gx_version", "")),
            docs_error=data.get("docs_error"),
        )


# ---- suites as data --------------------------------------------------------------------------------
@dataclass(frozen=True)
class SuiteFile:
    name: str
    path: Path
    resource_types: tuple[str, ...]
    data: dict[str, Any]

    def applies_to(self, record: ResourceRecord) -> bool:
        return "*" in self.resource_types or record.resource_type in self.resource_types

    def columns(self) -> list[str]:
        """Every column name the suite's expectations use, in first-use order."""
        names: list[str] = []
        for expectation in self.data.get("expectations", []):
            kwargs = expectation.get("kwargs", {})
            for key in ("column", "column_A", "column_B"):
                if isinstance(kwargs.get(key), str):
                    names.append(kwargs[key])
            for key in ("column_list", "column_set"):
                if isinstance(kwargs.get(key), list):
                    names.extend(str(c) for c in kwargs[key])
        return list(dict.fromkeys(names))

    def json_columns(self) -> set[str]:
        return {
            e["kwargs"]["column"]
            for e in self.data.get("expectations", [])
            if e.get("type") == "expect_column_values_to_match_json_schema" and "column" in e.get("kwargs", {})
        }


def load_suites(suites_dir: Path | str = DEFAULT_SUITES_DIR) -> list[SuiteFile]:
    """Read every ``*.json`` suite under ``suites_dir`` (sorted by name). Raises :class:`SuiteError`."""
    directory = Path(suites_dir)
    files = sorted(directory.glob("*.json"))
    if not files:
        raise SuiteError(f"no expectation suites (*.json) in {directory}")
    suites: list[SuiteFile] = []
    seen: set[str] = set()
    for path in files:
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise SuiteError(f"{path}: not readable JSON: {exc}") from exc
        name = data.get("name")
        if not isinstance(name, str) or not name:
            raise SuiteError(f"{path}: a suite needs a non-empty 'name'")
        if name in seen:
            raise SuiteError(f"{path}: suite name {name!r} is used twice")
        seen.add(name)
        expectations = data.get("expectations")
        if not isinstance(expectations, list) or not expectations:
            raise SuiteError(f"{path}: 'expectations' must be a non-empty list")
        for index, expectation in enumerate(expectations):
            if not isinstance(expectation, dict) or not str(expectation.get("type", "")).startswith("expect_"):
                raise SuiteError(f"{path}: expectation #{index} has no 'type' starting with expect_")
        applies = (data.get("meta") or {}).get("applies_to", {}).get("resource_types")
        if not isinstance(applies, list) or not applies or not all(isinstance(t, str) for t in applies):
            raise SuiteError(f"{path}: meta.applies_to.resource_types must list resource types or ['*']")
        suites.append(SuiteFile(name=name, path=path, resource_types=tuple(applies), data=data))
    return suites


# ---- flattening ------------------------------------------------------------------------------------
_MISSING = object()


def _lookup(mapping: Mapping[str, Any], dotted: str) -> Any:
    if dotted in mapping:
        return mapping[dotted]
    current: Any = mapping
    for part in dotted.split("."):
        if not isinstance(current, Mapping) or part not in current:
            return _MISSING
        current = current[part]
    return current


def column_value(record: ResourceRecord, column: str) -> Any:
    """The value of one suite column for one record (None when the record does not have it)."""
    if column in RECORD_FIELDS:
        return getattr(record, column)
    if column == "tags":
        return record.tags
    if column.startswith("tags."):
        return record.tags.get(column[5:])
    column = column.removeprefix("attributes.")
    value = _lookup(record.attributes, column)
    return None if value is _MISSING else value


def flatten(records: Sequence[ResourceRecord], columns: Sequence[str], json_columns: set[str]) -> dict[str, list[Any]]:
    """Column-oriented data for a DataFrame: ``{column: [value per record]}``."""
    data: dict[str, list[Any]] = {}
    for column in dict.fromkeys(["resource_id", *columns]):
        values = [column_value(record, column) for record in records]
        if column in json_columns or column == "tags":
            values = [None if v is None else json.dumps(v, sort_keys=True) for v in values]
        data[column] = values
    return data


# ---- running -----------------------------------------------------------------------------------------
def _jsonable(value: Any) -> Any:
    try:
        json.dumps(value)
        return value
    except TypeError:
        if isinstance(value, Mapping):
            return {str(k): _jsonable(v) for k, v in value.items()}
        if isinstance(value, (list, tuple, set)):
            return [_jsonable(v) for v in value]
        return str(value)


def _examples(result: Mapping[str, Any], column: str | None) -> list[dict[str, Any]]:
    rows = result.get("partial_unexpected_index_list") or []
    examples: list[dict[str, Any]] = []
    for row in rows[:MAX_EXAMPLES]:
        if isinstance(row, Mapping):
            example = {"resource_id": row.get("resource_id")}
            if column and column != "resource_id" and column in row:
                example["value"] = _jsonable(row[column])
            elif column == "resource_id":
                example["value"] = row.get("resource_id")
            examples.append(example)
    if not examples:  # aggregate expectations report values, not rows
        examples = [{"value": _jsonable(v)} for v in (result.get("partial_unexpected_list") or [])[:MAX_EXAMPLES]]
    return examples


def _failure(suite: str, result: Mapping[str, Any]) -> FailedExpectation:
    config = result.get("expectation_config") or {}
    kwargs = {k: v for k, v in (config.get("kwargs") or {}).items() if k != "batch_id"}
    meta = config.get("meta") or {}
    details = result.get("result") or {}
    exception = result.get("exception_info") or {}
    column = kwargs.get("column") if isinstance(kwargs.get("column"), str) else None
    return FailedExpectation(
        suite=suite,
        expectation=str(config.get("type", "")),
        column=column,
        kwargs=_jsonable(kwargs),
        description=str(meta.get("notes") or config.get("description") or ""),
        element_count=int(details.get("element_count") or 0),
        unexpected_count=int(details.get("unexpected_count") or 0),
        observed_value=_jsonable(details.get("observed_value")),
        examples=_examples(details, column),
        exception=str(exception.get("exception_message")) if exception.get("raised_exception") else None,
    )


def _context(docs_dir: Path | None) -> Any:
    import great_expectations as gx
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    sites: dict[str, Any] = {}
    if docs_dir is not None:
        sites[DOCS_SITE] = {
            "class_name": "SiteBuilder",
            "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir)},
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        }
    config = DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
        data_docs_sites=sites,
        analytics_enabled=False,
        progress_bars=ProgressBarsConfig(globally=False),
    )
    return gx.get_context(mode="ephemeral", project_config=config)


def validate_inventory(
    records: Iterable[ResourceRecord],
    *,
    suites_dir: Path | str = DEFAULT_SUITES_DIR,
    out_dir: Path | str | None = None,
    data_docs: bool = True,
) -> ValidationSummary:
    """Run every suite under ``suites_dir`` over ``records``; write Data Docs and ``validation.json``.

    ``success`` is False when any expectation of any suite fails (the caller's policy decides whether
    that fails the scan). Raises :class:`SuiteError` for a broken suite file.
    """
    started = time.monotonic()
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    # GX logs every registered function at INFO on import: noise in a task log.
    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    records = list(records)
    suites = load_suites(suites_dir)
    out = Path(out_dir) if out_dir is not None else None
    docs_dir = out / "data_docs" if (out is not None and data_docs) else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)

    import great_expectations as gx
    import pandas as pd
    from great_expectations.core.expectation_suite import ExpectationSuite

    context = _context(docs_dir)
    datasource = context.data_sources.add_pandas("inventory")
    result_format = {
        "result_format": "SUMMARY",
        "unexpected_index_column_names": ["resource_id"],
        "partial_unexpected_count": MAX_EXAMPLES,
    }

    suite_results: list[SuiteResult] = []
    failures: list[FailedExpectation] = []
    for suite_file in suites:
        subset = [r for r in records if suite_file.applies_to(r)]
        if not subset:
            suite_results.append(
                SuiteResult(suite_file.name, str(suite_file.path), list(suite_file.resource_types),
                            rows=0, evaluated=0, successful=0, unsuccessful=0, success=True, skipped=True)
            )
            continue
        try:
            suite = ExpectationSuite(**{k: v for k, v in suite_file.data.items() if k != "id"})
        except Exception as exc:
            raise SuiteError(f"{suite_file.path}: {exc}") from exc
        # GX logs and drops an expectation it cannot build; a dropped check must not pass silently.
        if len(suite.expectations) != len(suite_file.data["expectations"]):
            raise SuiteError(
                f"{suite_file.path}: GX accepted {len(suite.expectations)} of "
                f"{len(suite_file.data['expectations'])} expectations (see the log for the invalid one)"
            )
        suite = context.suites.add(suite)
        frame = pd.DataFrame(
            flatten(subset, suite_file.columns(), suite_file.json_columns()), dtype=object
        )
        asset = datasource.add_dataframe_asset(suite_file.name)
        batch_definition = asset.add_batch_definition_whole_dataframe(f"{suite_file.name}-all")
        definition = context.validation_definitions.add(
            gx.ValidationDefinition(name=suite_file.name, data=batch_definition, suite=suite)
        )
        result = definition.run(batch_parameters={"dataframe": frame}, result_format=result_format)
        data = result.to_json_dict()
        stats = data.get("statistics") or {}
        suite_failures = [_failure(suite_file.name, r) for r in data.get("results", []) if not r.get("success")]
        failures.extend(suite_failures)
        suite_results.append(
            SuiteResult(
                suite=suite_file.name,
                file=str(suite_file.path),
                resource_types=list(suite_file.resource_types),
                rows=len(subset),
                evaluated=int(stats.get("evaluated_expectations", 0)),
                successful=int(stats.get("successful_expectations", 0)),
                unsuccessful=int(stats.get("unsuccessful_expectations", 0)),
                success=bool(data.get("success")),
                success_percent=stats.get("success_percent"),
            )
        )

    html_path: str | None = None
    renderer = "runbooks-html"
    docs_error: str | None = None
    if docs_dir is not None and any(not s.skipped for s in suite_results):
        try:
            context.build_data_docs(site_names=[DOCS_SITE])
            index = docs_dir / "index.html"
            if index.exists():
                html_path, renderer = str(index), "gx-data-docs"
                suite_results = [_with_docs_page(s, docs_dir) for s in suite_results]
        except Exception as exc:
            docs_error = f"{type(exc).__name__}: {exc}"

    summary = ValidationSummary(
        success=all(s.success for s in suite_results),
        records=len(records),
        suites=suite_results,
        failures=failures,
        html_path=html_path,
        results_path=str(out / "validation.json") if out is not None else None,
        renderer=renderer,
        seconds=round(time.monotonic() - started, 3),
        gx_version=str(getattr(gx, "__version__", "")),
        docs_error=docs_error,
    )
    if out is not None:
        if renderer != "gx-data-docs":
            own = out / "validation.html"
            atomic_write_text(own, render_html(summary))
            summary = replace(summary, html_path=str(own))
        atomic_write_text(out / "validation.json", json.dumps(summary.to_dict(), indent=2, sort_keys=True, default=str))
    return summary


def _with_docs_page(result: SuiteResult, docs_dir: Path) -> SuiteResult:
    pages = sorted((docs_dir / "validations" / result.suite).glob("**/*.html")) if not result.skipped else []
    return replace(result, docs_page=str(pages[-1]) if pages else None)


# ---- own rendering (used by report.html, and standalone when Data Docs cannot be built) -----------------
def render_section(summary: ValidationSummary | Mapping[str, Any], *, docs_href: str | None = None) -> str:
    """An HTML fragment: per-suite table and failed expectations with examples. Everything escaped."""
    from html import escape

    s = summary if isinstance(summary, ValidationSummary) else ValidationSummary.from_dict(summary)
    verdict = "passed" if s.success else "FAILED"
    parts = [
        (
            f'<p class="gx-verdict {"ok" if s.success else "bad"}">Fact validation {escape(verdict)}: '
            f"{s.statistics['successful_expectations']} of {s.statistics['evaluated_expectations']} expectations "
            f"held over {s.records} records in {s.seconds:.1f} s (great_expectations {escape(s.gx_version)}).</p>"
        )
    ]
    if docs_href:
        parts.append(f'<p><a href="{escape(docs_href, quote=True)}">Great Expectations Data Docs</a></p>')
    parts.append(
        "<table><thead><tr><th>Suite</th><th>Resource types</th><th>Records</th><th>Expectations</th>"
        "<th>Failed</th><th>Result</th></tr></thead><tbody>"
    )
    for suite in s.suites:
        result = "skipped (no records)" if suite.skipped else ("pass" if suite.success else "FAIL")
        parts.append(
            f"<tr><td>{escape(suite.suite)}</td><td>{escape(', '.join(suite.resource_types))}</td>"
            f"<td>{suite.rows}</td><td>{suite.evaluated}</td><td>{suite.unsuccessful}</td>"
            f'<td class="{"ok" if suite.success else "bad"}">{escape(result)}</td></tr>'
        )
    parts.append("</tbody></table>")
    if s.failures:
        parts.append(
            "<table><thead><tr><th>Suite</th><th>Expectation</th><th>Column</th><th>Unexpected</th>"
            "<th>Observed</th><th>Examples (resource: value)</th><th>Why</th></tr></thead><tbody>"
        )
        for failure in s.failures:
            examples = "<br>".join(
                escape(f"{e.get('resource_id', '')}: {json.dumps(e.get('value'), default=str)}")
                if "resource_id" in e
                else escape(json.dumps(e.get("value"), default=str))
                for e in failure.examples
            )
            observed = "" if failure.observed_value is None else json.dumps(failure.observed_value, default=str)
            unexpected = f"{failure.unexpected_count} of {failure.element_count}"
            if failure.exception:
                unexpected = f"error: {failure.exception}"
            parts.append(
                f"<tr><td>{escape(failure.suite)}</td><td>{escape(failure.expectation)}</td>"
                f"<td>{escape(failure.column or '')}</td><td>{escape(unexpected)}</td>"
                f"<td>{escape(observed)}</td><td>{examples}</td><td>{escape(failure.description)}</td></tr>"
            )
        parts.append("</tbody></table>")
    return "\n".join(parts)


def render_html(summary: ValidationSummary) -> str:
    """A standalone page (no external assets) with :func:`render_section`."""
    return (
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Inventory fact validation</title>"
        "<style>body{font-family:system-ui,sans-serif;margin:2rem}table{border-collapse:collapse;margin:1rem 0}"
        "td,th{border:1px solid #ccc;padding:.3rem .5rem;text-align:left;vertical-align:top}"
        ".ok{color:#17622f}.bad{color:#a11}</style></head><body><h1>Inventory fact validation</h1>"
        f"{render_section(summary)}</body></html>"
    )
