"""Property-based fuzzing of every intake endpoint (hypothesis): no input yields a 5xx or a partial run.

Bodies are signed with the right secret, so the fuzzing reaches past authentication into parsing,
validation, routing, templating and the creation of runs in Airflow's database. For every answer:
a 202 that started a run left a whole run (the run and all its task instances); any 4xx started nothing.
"""

from __future__ import annotations

import json
import string
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from include.intake.app import create_app
from include.intake.credentials import SecretStore
from include.intake.routing import RouteStore
from include.intake.runs import AirflowLauncher
from include.intake.service import Intake
from tests.test_intake import intake_db, runs_of, task_count  # noqa: F401  (intake_db is a fixture)
from tests.test_intake_payloads import (
    am_alert,
    am_payload,
    generic_payload,
    pd_payload,
    public_bucket_alert,
    signed,
)

SOURCES = ("alertmanager", "pagerduty", "generic")
FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_scalars = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | st.text(max_size=40)
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=5) | st.dictionaries(
    st.text(max_size=12), inner, max_size=5), max_leaves=25)
label_text = st.text(string.ascii_letters + string.digits + "_-./:{}\"' ", min_size=0, max_size=30)
labels = st.dictionaries(label_text, label_text, max_size=6)


@pytest.fixture(scope="module")
def fuzz_client(intake_db: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:  # noqa: F811
    intake = Intake(RouteStore(), SecretStore(), AirflowLauncher(), audit_base=tmp_path_factory.mktemp("fuzz-data"))
    with TestClient(create_app(intake)) as client:
        yield client


def deliver(client: TestClient, source: str, payload: Any) -> Any:
    body, headers = signed(source, payload)
    answer = client.post(f"/hooks/{source}", content=body, headers=headers)
    assert answer.status_code < 500, (source, answer.status_code, answer.text[:500], body[:300])
    assert answer.headers["content-type"] == "application/json"
    result = answer.json()
    if answer.status_code == 202:
        assert result["decision"] in ("started", "duplicate", "ignored")
        if result["decision"] != "ignored":
            client.app.state.intake.launcher.drain()  # what the receiver's drainer does right after the answer
            [run] = runs_of(result["dag_id"], result["run_id"])
            assert task_count(result["dag_id"], result["run_id"]) == 8  # whole, never partial
            assert run.conf["idempotency_key"] == result["run_id"]
    else:
        assert answer.status_code in (400, 413), (answer.status_code, result)
        assert result["decision"] in ("rejected", "too_large")
    return answer


@FUZZ
@given(source=st.sampled_from(SOURCES), body=st.binary(max_size=2000))
def test_any_bytes_signed(fuzz_client: TestClient, source: str, body: bytes) -> None:
    answer = deliver(fuzz_client, source, body)
    assert answer.status_code == 400 or body.strip().startswith(b"{")


@FUZZ
@given(source=st.sampled_from(SOURCES), value=json_values)
def test_any_json_signed(fuzz_client: TestClient, source: str, value: Any) -> None:
    deliver(fuzz_client, source, json.dumps(value).encode())


def _mutate(payload: Any, path: list[int], value: Any) -> Any:
    """Replace the node reached by walking ``path`` (indices into each container's keys) with ``value``."""
    if not path or not isinstance(payload, (dict, list)) or not payload:
        return value
    if isinstance(payload, dict):
        key = list(payload)[path[0] % len(payload)]
        return {**payload, key: _mutate(payload[key], path[1:], value)}
    index = path[0] % len(payload)
    return [*payload[:index], _mutate(payload[index], path[1:], value), *payload[index + 1:]]


@st.composite
def near_valid(draw: st.DrawFn) -> tuple[str, Any]:
    source = draw(st.sampled_from(SOURCES))
    suffix = draw(st.text(string.ascii_lowercase + string.digits, min_size=6, max_size=10))
    if source == "alertmanager":
        buckets = draw(st.lists(st.sampled_from(["rb-a", "rb-b", "rb c", "", "rb/../d"]), min_size=1, max_size=3))
        payload = public_bucket_alert("fz" + suffix, buckets)
        if draw(st.booleans()):
            payload = am_payload("fz" + suffix, [am_alert(suffix[:8], draw(labels))], alertname=draw(label_text))
    elif source == "pagerduty":
        event_type = draw(st.sampled_from(["incident.triggered", "incident.resolved", "incident.acknowledged",
                                           "incident.reopened", "service.updated", "x"]))
        key = draw(st.sampled_from(["aws_s3_bucket_versioning:0123456789abcdef", "", None, "free text"]))
        payload = pd_payload(event_type, "P" + suffix.upper(), incident_key=key)
    else:
        payload = generic_payload(draw(st.sampled_from(["e" + suffix, suffix + "..x", "e " + suffix, "-" + suffix])),
                                  type=draw(st.sampled_from(["compliance.finding", None, "other"])),
                                  labels={"rule": draw(st.sampled_from(["aws_s3_bucket_versioning", "Bad Rule", ""])),
                                          "resource": draw(label_text)})
    if draw(st.booleans()):
        payload = _mutate(payload, draw(st.lists(st.integers(0, 50), max_size=5)), draw(json_values))
    return source, payload


@FUZZ
@given(case=near_valid())
def test_near_valid_payloads_signed(fuzz_client: TestClient, case: tuple[str, Any]) -> None:
    source, payload = case
    answer = deliver(fuzz_client, source, payload)
    event(f"{source} {answer.status_code} {answer.json()['decision']}")


@FUZZ
@given(
    source=st.text(string.printable, max_size=30),
    headers=st.dictionaries(st.sampled_from(["authorization", "x-pagerduty-signature", "x-runbooks-signature",
                                             "x-runbooks-timestamp", "content-type", "content-length-x"]),
                            st.text(string.ascii_letters + string.digits + "=,. -", max_size=80), max_size=4),
    body=st.binary(max_size=500),
)
def test_unauthenticated_or_unknown_never_5xx(fuzz_client: TestClient, source: str, headers: dict[str, str],
                                              body: bytes) -> None:
    from urllib.parse import quote

    answer = fuzz_client.post(f"/hooks/{quote(source, safe='')}", content=body, headers=headers)
    assert answer.status_code in ((401,) if source in SOURCES else (404, 405)), (source, answer.status_code, answer.text)
