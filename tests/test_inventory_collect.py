"""The collector: bounded concurrency, one failing lister never hides the others, errors classified."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from include.clouds.errors import classify
from include.inventory import collect as collect_mod
from include.inventory import registry
from include.inventory.collect import collect_target
from include.records import ResourceRecord
from include.targets import parse_targets

TARGET = parse_targets(
    "targets:\n  - {name: t1, cloud: aws, conn_id: none, account: '1', regions: [r1, r2, r3]}"
).targets[0]


class _Denied(Exception):
    def __init__(self) -> None:
        super().__init__("denied")
        self.response = {"Error": {"Code": "AccessDenied"}, "ResponseMetadata": {"HTTPStatusCode": 403}}


class EndpointConnectionError(Exception):
    """Same name as botocore's: classification goes by the exception's class names."""


@pytest.fixture
def fake_listers(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Replace the aws listers with three fakes; count concurrency."""
    state = {"in_flight": 0, "peak": 0}
    lock = threading.Lock()

    def ok(ctx: registry.ListContext) -> Iterator[ResourceRecord]:
        with lock:
            state["in_flight"] += 1
            state["peak"] = max(state["peak"], state["in_flight"])
        time.sleep(0.05)
        with lock:
            state["in_flight"] -= 1
        yield ctx.record(service="ok", resource_type="aws.ok.thing", resource_id=f"id-{ctx.region}", name="x")

    def denied(ctx: registry.ListContext) -> Iterator[ResourceRecord]:
        raise _Denied()

    def down(ctx: registry.ListContext) -> Iterator[ResourceRecord]:
        raise EndpointConnectionError("could not connect")

    fakes = {
        "aws.ok": registry.Lister("aws", "ok", ("aws.ok.thing",), True, ok),
        "aws.denied": registry.Lister("aws", "denied", ("aws.denied.thing",), False, denied),
        "aws.down": registry.Lister("aws", "down", ("aws.down.thing",), True, down),
    }
    monkeypatch.setattr(registry, "_LISTERS", fakes)
    monkeypatch.setattr(registry, "_CLOUD_MODULES", {"aws": "include.records"})
    monkeypatch.setattr(collect_mod, "probe", lambda target: None)
    return state


def test_failures_are_recorded_and_the_rest_completes(fake_listers: dict[str, int]) -> None:
    result = collect_target(TARGET, max_workers=2)
    assert sorted(r.resource_id for r in result.records) == ["id-r1", "id-r2", "id-r3"]
    kinds = sorted((e.service, e.region, e.kind) for e in result.errors)
    assert kinds == [
        ("denied", "global", "access_denied"),
        ("down", "r1", "unreachable"), ("down", "r2", "unreachable"), ("down", "r3", "unreachable"),
    ]
    assert result.complete is False
    assert result.summary()["by_type"] == {"aws.ok.thing": 3}
    assert fake_listers["peak"] <= 2, "never more calls in flight than max_workers"


def test_services_filter_and_unknown_service(fake_listers: dict[str, int]) -> None:
    result = collect_target(TARGET, services=["ok"])
    assert result.complete and len(result.records) == 3
    with pytest.raises(ValueError, match=r"^unknown services: nope; known: aws: denied, down, ok$"):
        collect_target(TARGET, services=["nope"])
    # A known service next to an unknown one does not make the unknown one pass unnoticed.
    with pytest.raises(ValueError, match=r"^unknown services: nope; known: aws: denied, down, ok$"):
        collect_target(TARGET, services=["ok", "nope"])


def test_an_empty_service_list_lists_nothing(fake_listers: dict[str, int], monkeypatch: pytest.MonkeyPatch) -> None:
    """Only these services, and there are none: nothing is listed (never "everything"), not even the probe."""
    probed: list[str] = []
    monkeypatch.setattr(collect_mod, "probe", lambda target: probed.append(target.name))
    result = collect_target(TARGET, services=[])
    assert (result.records, result.errors, result.calls, probed) == ([], [], 0, [])
    assert result.complete


def test_the_targets_own_services_apply_when_none_are_passed(fake_listers: dict[str, int]) -> None:
    target = TARGET.model_copy(update={"services": ("ok",)})
    assert {r.service for r in collect_target(target).records} == {"ok"}
    broken = TARGET.model_copy(update={"services": ("gcs",)})
    with pytest.raises(ValueError, match="unknown services: gcs"):
        collect_target(broken)


def test_probe_failure_reports_the_target_once(fake_listers: dict[str, int], monkeypatch: pytest.MonkeyPatch) -> None:
    def unreachable(target: object) -> None:
        raise EndpointConnectionError("no route")

    monkeypatch.setattr(collect_mod, "probe", unreachable)
    result = collect_target(TARGET)
    assert result.records == []
    assert [(e.service, e.kind) for e in result.errors] == [("*", "unreachable")]


def test_classify_by_chained_cause() -> None:
    try:
        try:
            raise ConnectionRefusedError("refused")
        except ConnectionRefusedError as inner:
            raise RuntimeError("wrapped") from inner
    except RuntimeError as exc:
        assert classify(exc) == "unreachable"
    assert classify(ValueError("x")) == "error"
