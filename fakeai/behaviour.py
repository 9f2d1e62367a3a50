"""Per-request controls: how fast, how long, and how a reply should fail.

Tests steer the fake upstream without restarting it. Each source overrides the
previous one: process defaults (CLI) < model-name suffix < request headers.

Model suffix: ``<any-base>:ttft=200,tps=50,tokens=30,fault=cut-5``.
Headers: ``X-Fakeai-Ttft-Ms``, ``X-Fakeai-Tps``, ``X-Fakeai-Tokens``,
``X-Fakeai-Fault``, ``X-Fakeai-Pace``. ``tps=0`` means no pacing. Fault syntax
(``none`` clears): ``401``, ``429``, ``429-retry=0.1``, ``500``, ``hang``,
``hang-N``, ``cut-N``, ``malformed-N``, ``error-N``, each optionally followed
by ``xK`` (only the first K identical requests fail).

The Realtime endpoint reads the same controls: ``tokens`` is the answer's
length in words, ``ttft`` the wait before its first delta, ``pace`` how fast
its audio streams (1 = real time, 2 = twice as fast, 0 = unpaced; ``tps`` is
not used there), and a fault's N counts audio (or text) deltas.
"""

import dataclasses
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

FaultKind = Literal["401", "429", "500", "hang", "cut", "malformed", "error"]

HEADER_TTFT_MS = "X-Fakeai-Ttft-Ms"
HEADER_TPS = "X-Fakeai-Tps"
HEADER_TOKENS = "X-Fakeai-Tokens"
HEADER_FAULT = "X-Fakeai-Fault"
HEADER_PACE = "X-Fakeai-Pace"

_FAULT_RE = re.compile(
    r"""^(?:
        (?P<rate>429)(?:-retry=(?P<retry>\d+(?:\.\d*)?|\.\d+))?
      | (?P<status>401|500)
      | (?P<hang>hang)(?:-(?P<hang_n>\d+))?
      | (?P<kind>cut|malformed|error)-(?P<n>\d+)
    )(?:x(?P<times>\d+))?$""",
    re.VERBOSE,
)


@dataclass(frozen=True)
class Fault:
    """A scripted failure; ``tokens`` content tokens (or Realtime deltas) are streamed before it.

    ``error``: an error arrives in the stream (an SSE ``error`` chunk; a
    Realtime ``error`` event and a failed response).
    """

    kind: FaultKind
    tokens: int | None = None  # hang/cut/malformed; None for plain "hang"
    retry_after: float = 1.0  # seconds, 429 only
    times: int | None = None  # xK: fail only the first K identical requests


@dataclass(frozen=True)
class Behaviour:
    """Resolved controls for one request (or the process defaults)."""

    ttft_ms: float = 150.0
    tokens_per_second: float = 40.0
    tokens: int = 40
    fault: Fault | None = None
    pace: float = 1.0  # Realtime audio speed: 1 = real time, 0 = unpaced


def parse_fault(spec: str) -> Fault | None:
    """Parse a fault spec such as ``cut-5`` or ``429x2``; ``none``/empty → None."""
    text = spec.strip().lower()
    if text in ("", "none"):
        return None
    match = _FAULT_RE.match(text)
    if match is None:
        raise ValueError(f"invalid fault {spec!r}")
    times = int(match["times"]) if match["times"] is not None else None
    if match["rate"]:
        retry = float(match["retry"]) if match["retry"] is not None else 1.0
        return Fault("429", retry_after=retry, times=times)
    if match["status"]:
        return Fault("401" if match["status"] == "401" else "500", times=times)
    if match["hang"]:
        n = int(match["hang_n"]) if match["hang_n"] is not None else None
        return Fault("hang", tokens=n, times=times)
    kinds: dict[str, FaultKind] = {"cut": "cut", "malformed": "malformed", "error": "error"}
    return Fault(kinds[match["kind"]], tokens=int(match["n"]), times=times)


def _non_negative(name: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number, got {raw!r}") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {raw!r}")
    return value


def _field_value(field: str, raw: str) -> Any:
    if field == "fault":
        return parse_fault(raw)
    if field == "tokens":
        try:
            value = int(raw)
        except ValueError:
            raise ValueError(f"tokens must be an integer, got {raw!r}") from None
        if value < 0:
            raise ValueError(f"tokens must be >= 0, got {raw!r}")
        return value
    return _non_negative(field, raw)


_SUFFIX_FIELDS = {
    "ttft": "ttft_ms",
    "tps": "tokens_per_second",
    "tokens": "tokens",
    "fault": "fault",
    "pace": "pace",
}
_HEADER_FIELDS = {
    HEADER_TTFT_MS.lower(): "ttft_ms",
    HEADER_TPS.lower(): "tokens_per_second",
    HEADER_TOKENS.lower(): "tokens",
    HEADER_FAULT.lower(): "fault",
    HEADER_PACE.lower(): "pace",
}


def parse_model_suffix(model: str) -> dict[str, Any]:
    """Return the Behaviour overrides encoded after the first ':' of ``model``."""
    _, _, suffix = model.partition(":")
    overrides: dict[str, Any] = {}
    for item in filter(None, (part.strip() for part in suffix.split(","))):
        key, eq, raw = item.partition("=")
        field = _SUFFIX_FIELDS.get(key.strip().lower())
        if not eq or field is None:
            raise ValueError(f"invalid model control {item!r} in {model!r}")
        overrides[field] = _field_value(field, raw.strip())
    return overrides


def parse_headers(headers: Mapping[str, str]) -> dict[str, Any]:
    """Return the Behaviour overrides carried by ``X-Fakeai-*`` headers."""
    overrides: dict[str, Any] = {}
    for name, raw in headers.items():
        field = _HEADER_FIELDS.get(name.lower())
        if field is not None:
            overrides[field] = _field_value(field, raw.strip())
    return overrides


def resolve_behaviour(defaults: Behaviour, model: str, headers: Mapping[str, str]) -> Behaviour:
    """Merge defaults < model suffix < headers; raises ValueError on bad input."""
    overrides = parse_model_suffix(model) | parse_headers(headers)
    return dataclasses.replace(defaults, **overrides)
