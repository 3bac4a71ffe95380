"""Plumbing shared by the AWS seed modules: clients through the provider hooks, tags, references."""

from __future__ import annotations

import threading
from typing import Any

from include.clouds.aws.clients import client_for
from include.targets import Target
from localdev.seed import SEED_TAG, SeedError


class Clients:
    """One boto3 client per (service, region), built once through the provider hooks (thread-safe)."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self._clients: dict[tuple[str, str], Any] = {}
        self._locks: dict[tuple[str, str], threading.Lock] = {}
        self._lock = threading.Lock()

    def __call__(self, service: str, region: str) -> Any:
        key = (service, region)
        with self._lock:  # one lock per client, so building different clients overlaps
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            if key not in self._clients:
                self._clients[key] = client_for(self.target, service, region)
            return self._clients[key]


def tag_list(spec: dict[str, Any], key: str = "Key", value: str = "Value") -> list[dict[str, str]]:
    """An entry's ``tags`` plus ``seed-id`` in AWS's list form (``key`` / ``value`` name the fields)."""
    tags = {str(k): str(v) for k, v in (spec.get("tags") or {}).items()}
    tags[SEED_TAG] = str(spec["seed_id"])
    return [{key: k, value: v} for k, v in tags.items()]


def tag_spec(resource_type: str, spec: dict[str, Any]) -> list[dict[str, Any]]:
    """EC2 ``TagSpecifications`` for one resource created from ``spec``."""
    return [{"ResourceType": resource_type, "Tags": tag_list(spec)}]


def by_region(items: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Entries grouped by their ``region``."""
    grouped: dict[str, list[dict[str, Any]]] = {}
    for item in items:
        grouped.setdefault(str(item["region"]), []).append(item)
    return grouped


def by_seed_id(items: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """API items (with ``Tags``) by the value of their ``seed-id`` tag."""
    found = {}
    for item in items:
        for tag in item.get("Tags", []):
            if tag["Key"] == SEED_TAG:
                found[tag["Value"]] = item
    return found


def need(mapping: dict[str, str], seed_id: str, what: str) -> str:
    """``mapping[seed_id]``, or a clear ``SeedError`` naming ``what`` refers to it."""
    if seed_id not in mapping:
        raise SeedError(f"aws estate: {what} refers to unknown seed_id {seed_id!r}")
    return mapping[seed_id]
