"""Real HTTP health probes of a side's application endpoints (never a DNS provider's health-check status).

Each endpoint is probed up to ``attempts`` times (``interval`` apart, each bounded by ``timeout``) and stops
at the first answer with the expected status. A side is

- ``healthy`` when every endpoint answered as expected at least once,
- ``down`` when no endpoint did (every attempt refused, timed out or answered wrongly),
- ``degraded`` otherwise.

A failover needs the primary ``down`` (a primary that answered even once is not failed over unless
forced) and the standby ``healthy``. Endpoints are probed in parallel; nothing here raises for an
unhealthy endpoint: the failure is the observation, recorded per attempt.
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from include.failover.catalog import Probe, ProbeDefaults
from include.redaction import scrub

Health = Literal["healthy", "degraded", "down"]


@dataclass(frozen=True)
class Attempt:
    status: int | None
    error: str | None
    seconds: float


@dataclass(frozen=True)
class ProbeResult:
    url: str
    expected_status: int
    healthy: bool
    attempts: tuple[Attempt, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["attempts"] = [asdict(a) for a in self.attempts]
        return data


def _once(url: str, timeout: float) -> tuple[int | None, str | None]:
    request = urllib.request.Request(url, method="GET", headers={"User-Agent": "runbooks-failover-probe"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read(1024)
            return int(response.status), None
    except urllib.error.HTTPError as exc:
        return int(exc.code), None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return None, scrub(f"{type(reason).__name__}: {reason}")


def probe(spec: Probe, defaults: ProbeDefaults, *, sleep: Callable[[float], None] = time.sleep) -> ProbeResult:
    """Probe one endpoint until it answers ``expected_status`` or the attempts run out."""
    attempts = spec.attempts or defaults.attempts
    timeout = spec.timeout_seconds or defaults.timeout_seconds
    made: list[Attempt] = []
    for number in range(attempts):
        started = time.monotonic()
        status, error = _once(spec.url, timeout)
        made.append(Attempt(status=status, error=error, seconds=round(time.monotonic() - started, 3)))
        if status == spec.expected_status:
            return ProbeResult(spec.url, spec.expected_status, True, tuple(made))
        if number + 1 < attempts:
            sleep(defaults.interval_seconds)
    return ProbeResult(spec.url, spec.expected_status, False, tuple(made))


def probe_side(probes: Sequence[Probe], defaults: ProbeDefaults) -> tuple[Health, list[ProbeResult]]:
    """Probe every endpoint of a side in parallel; the side's health and each endpoint's result."""
    with ThreadPoolExecutor(max_workers=min(8, max(1, len(probes))), thread_name_prefix="probe") as pool:
        results = list(pool.map(lambda p: probe(p, defaults), probes))
    up = sum(1 for r in results if r.healthy)
    health: Health = "healthy" if up == len(results) else "down" if up == 0 else "degraded"
    return health, results


def describe(results: Sequence[ProbeResult]) -> str:
    """``http://a/healthz: 3 attempts, last connection refused`` for each endpoint."""
    parts = []
    for result in results:
        last = result.attempts[-1] if result.attempts else None
        what = "ok" if result.healthy else (
            f"HTTP {last.status} (expected {result.expected_status})" if last and last.status is not None
            else (last.error if last else "not probed"))
        parts.append(f"{result.url}: {len(result.attempts)} attempt(s), {what}")
    return "; ".join(parts)
