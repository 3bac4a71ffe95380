"""Dependency order of a change set: every change after the changes it depends on; a cycle is an error."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from include.changes.model import RequestError


class CycleError(RequestError):
    """Changes depend on each other in a circle: no order can apply them."""


def dependency_order(keys: Sequence[str], depends_on: Mapping[str, Iterable[str]]) -> list[str]:
    """``keys`` ordered so each comes after its dependencies; otherwise the given order is kept.

    A dependency on a key not in ``keys`` is an error (the plan would apply a change whose prerequisite it
    does not contain); so is a cycle, which the error names (``a -> b -> a``).
    """
    position = {key: index for index, key in enumerate(keys)}
    if len(position) != len(keys):
        dupes = sorted({k for k in keys if list(keys).count(k) > 1})
        raise RequestError(f"the plan holds the same change twice: {', '.join(dupes)}")
    deps = {key: tuple(dict.fromkeys(depends_on.get(key, ()))) for key in keys}
    for key, needs in deps.items():
        missing = [d for d in needs if d not in position]
        if missing:
            raise RequestError(f"change {key} depends on {', '.join(missing)}, which the plan does not contain")
    ordered: list[str] = []
    state: dict[str, int] = {}  # 1 = visiting, 2 = done

    def visit(key: str, path: list[str]) -> None:
        if state.get(key) == 2:
            return
        if state.get(key) == 1:
            cycle = path[path.index(key):] + [key]
            raise CycleError("changes depend on each other in a cycle: " + " -> ".join(cycle))
        state[key] = 1
        for dep in sorted(deps[key], key=position.__getitem__):
            visit(dep, [*path, key])
        state[key] = 2
        ordered.append(key)

    for key in keys:
        visit(key, [])
    return ordered


def reverse_dependency_order(keys: Sequence[str], depends_on: Mapping[str, Iterable[str]]) -> list[str]:
    """The order for deletions: dependents first (the reverse of :func:`dependency_order`)."""
    return list(reversed(dependency_order(keys, depends_on)))
