"""Plumbing shared by the AWS listers: the connection probe, pagination, tags, "not configured" answers."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from botocore.exceptions import ClientError

from include.clouds.aws.clients import client_for
from include.clouds.errors import error_code
from include.inventory.registry import GLOBAL, ListContext
from include.targets import Target

T = TypeVar("T")


def home(ctx: ListContext) -> str:
    """Region used for a global service's endpoint: the target's first region."""
    return ctx.target.regions[0] if ctx.region == GLOBAL else ctx.region


def unless(codes: Iterable[str], call: Callable[[], T], default: T) -> T:
    """``call()``, or ``default`` when AWS answers with one of ``codes`` ("not configured")."""
    try:
        return call()
    except ClientError as exc:
        if error_code(exc) in set(codes):
            return default
        raise


def paginate(client: Any, operation: str, result_key: str, **kwargs: Any) -> Iterator[Any]:
    """Every item under ``result_key`` of every page of ``operation``."""
    for page in client.get_paginator(operation).paginate(**kwargs):
        yield from page.get(result_key, [])


def tags(tag_list: Iterable[dict[str, Any]] | None) -> dict[str, str]:
    """AWS ``[{"Key": k, "Value": v}]`` (any capitalisation of the keys) -> ``{k: v}``."""
    found: dict[str, str] = {}
    for tag in tag_list or []:
        key = tag.get("Key", tag.get("key", tag.get("TagKey")))
        value = tag.get("Value", tag.get("value", tag.get("TagValue", "")))
        if key is not None:
            found[str(key)] = "" if value is None else str(value)
    return found


def name_tag(resource_tags: dict[str, str], default: str) -> str:
    """The ``Name`` tag, else ``default`` (the resource's id)."""
    return resource_tags.get("Name") or default


def probe(target: Target) -> None:
    """Raise if ``target``'s connection cannot reach AWS or is refused (STS GetCallerIdentity)."""
    client_for(target, "sts", target.regions[0]).get_caller_identity()
