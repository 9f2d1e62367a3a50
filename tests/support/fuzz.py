"""Hostile frames for fuzzing a JSON protocol: seeded, reproducible, protocol-agnostic.

A protocol hands over its valid frames and its limits; `HostileFrames` makes
what a broken or hostile client sends instead: truncated and invalid JSON,
JSON that is not an object, nesting past the depth limit, duplicate keys,
every field of every valid frame replaced by wrong types, extreme numbers and
odd Unicode (escaped lone surrogates, RTL marks, emoji, NUL), strings just
under and over the length limits, frames just under and over the size limit,
empty and binary frames, and random mixes of those. The chat socket, the SSE
endpoint, rooms and voice all feed it their own valid frames.

The same seed gives the same cases in the same order: `seed_from_env()`
prints the seed, and `FUZZ_SEED=<seed>` replays a failing run.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

FUZZ_SEED_ENV = "FUZZ_SEED"


def seed_from_env() -> int:
    """FUZZ_SEED if set, else a fresh seed; printed so a failing run can be replayed."""
    raw = os.environ.get(FUZZ_SEED_ENV)
    seed = int(raw) if raw else random.SystemRandom().randrange(2**32)
    print(f"fuzz seed: {seed} (replay with {FUZZ_SEED_ENV}={seed})")
    return seed


@dataclass(frozen=True)
class Hostile:
    """One frame to send: text (`str`) or binary (`bytes`).

    `must_refuse` is true when no reading of the protocol could accept it
    (not JSON, not an object, too deep, too large, binary where only text is
    taken); other cases may be accepted or refused, but never crash anything.
    """

    kind: str
    payload: str | bytes
    must_refuse: bool

    @property
    def binary(self) -> bool:
        return isinstance(self.payload, bytes)

    def __str__(self) -> str:
        shown = self.payload[:160]
        more = f"… ({len(self.payload)} long)" if len(self.payload) > 160 else ""
        return f"{self.kind}: {shown!r}{more}"


class Raw(str):
    """A JSON token written as is (NaN, 1e999, a 5,000-digit number): json.dumps cannot."""


# Values of the wrong type for any field.
WRONG_TYPES: tuple[Any, ...] = (
    None,
    True,
    False,
    0,
    1,
    -1,
    1.5,
    "",
    "x",
    "42",
    [],
    [1],
    {},
    {"a": 1},
)
NUMBERS: tuple[Any, ...] = (
    -1, -2, 2**31, 2**53, 2**53 + 1, -(2**53), 2**63, -(2**63), 10**30, -(10**30),
    0.5, -1.5, 1.0, 1e308, Raw("-0"), Raw("1E2"), Raw("1e999"), Raw("-1e999"),
    Raw("NaN"), Raw("Infinity"), Raw("-Infinity"), Raw("9" * 5000),
)  # fmt: skip
ODD_TEXT: tuple[str, ...] = (
    "\ud800",  # lone high surrogate: only expressible escaped in JSON
    "\udfff",  # lone low surrogate
    "a\ud800b",
    "\udc00\ud800",  # a pair in the wrong order
    "\ud83d\ude00",  # a correct pair, escaped: one emoji once decoded
    "😀🏳️‍🌈👩🏽‍💻",
    "\u202eevil\u202c",  # right-to-left override
    "\u200f\u200e\u200b\u2060",  # RTL/LTR marks, zero-width characters
    "\x00",
    "a\x00b",
    "\ufeffbom",
    "\uffff\ufffe",  # noncharacters
    "\U0010ffff",
    "e\u0301" * 40,  # combining marks
    "\r\n\t\x0b\x0c",
    "\u2028\u2029",  # JavaScript line terminators
    "\x1b[31mred\x1b[0m",
    " \u3000 ",  # whitespace only
    "<script>alert(1)</script>",
    "' OR 1=1 --",
    "%s%n{0}{{7*7}}",
)


def encode(frame: Any, *, escape_non_ascii: bool = False) -> str:
    """JSON text for `frame`; `Raw` values are written as is.

    Text with lone surrogates cannot travel as UTF-8, so it is always escaped
    (`\\ud800`), as JavaScript's JSON.stringify does.
    """
    raws: dict[str, str] = {}

    def swap(value: Any) -> Any:
        if isinstance(value, Raw):
            marker = f"@raw{len(raws)}@"
            raws[marker] = str(value)
            return marker
        if isinstance(value, dict):
            return {key: swap(item) for key, item in value.items()}
        if isinstance(value, list):
            return [swap(item) for item in value]
        return value

    text = json.dumps(swap(frame), ensure_ascii=escape_non_ascii)
    try:
        text.encode()
    except UnicodeEncodeError:
        text = json.dumps(swap(frame), ensure_ascii=True)
    for marker, raw in raws.items():
        text = text.replace(json.dumps(marker), raw)
    return text


class HostileFrames:
    """Hostile variations of a protocol's valid frames.

    valid_frames: one example of every client frame (dicts); a field holding
        a string is fuzzed with odd text, every field with wrong types.
    text_limits: longest accepted length per string field (e.g. {"content": 8000}).
    max_frame_bytes, max_json_depth: the protocol's frame size and nesting limits.
    accepts_binary: binary frames are data here (voice audio), not a mistake.
    """

    def __init__(
        self,
        valid_frames: Sequence[dict],
        *,
        max_frame_bytes: int,
        max_json_depth: int,
        text_limits: Mapping[str, int] | None = None,
        accepts_binary: bool = False,
        seed: int,
    ) -> None:
        if not valid_frames:
            raise ValueError("give at least one valid frame")
        self.valid_frames = [dict(frame) for frame in valid_frames]
        self.max_frame_bytes = max_frame_bytes
        self.max_json_depth = max_json_depth
        self.text_limits = dict(text_limits or {})
        self.accepts_binary = accepts_binary
        self.rng = random.Random(seed)
        self._structural: list[Hostile] | None = None

    # --- the run ----------------------------------------------------------------------
    def generate(self, count: int) -> list[Hostile]:
        """Every systematic case once, then random mixes up to `count`, shuffled."""
        cases = self.systematic()
        random_kinds: list[Callable[[], Hostile]] = [
            self.random_mutation,
            self.random_mutation,
            self.random_mutation,
            self.truncated,
            self.duplicate_key,
            self.random_structure,
        ]
        while len(cases) < count:
            cases.append(self.rng.choice(random_kinds)())
        self.rng.shuffle(cases)
        return cases

    def systematic(self) -> list[Hostile]:
        """Each kind of hostility once per frame and field."""
        cases = [*self.structural(), *self.sizes()]
        for frame in self.valid_frames:
            cases.extend(self.field_mutations(frame))
        return cases

    # --- not a frame at all -------------------------------------------------------------
    def structural(self) -> list[Hostile]:
        frame_text = encode(self.valid_frames[0])
        too_deep = self.max_json_depth + 1
        # Deep enough to exhaust a recursive parser, small enough to pass the size check.
        extreme = (self.max_frame_bytes - 64) // 2
        cases = [
            Hostile("empty", "", True),
            Hostile("whitespace", " \n\t ", True),
            Hostile("not_json", "hello", True),
            Hostile("not_json:single_quotes", frame_text.replace('"', "'"), True),
            Hostile("not_json:trailing_comma", frame_text[:-1] + ",}", True),
            Hostile("not_json:bare_nul", "\x00", True),
            Hostile("not_json:js_literal", "undefined", True),
            Hostile("not_json:two_objects", frame_text + frame_text, True),
            Hostile("not_object:array", "[]", True),
            Hostile("not_object:array_of_frame", f"[{frame_text}]", True),
            Hostile("not_object:string", '"message"', True),
            Hostile("not_object:number", "42", True),
            Hostile("not_object:null", "null", True),
            Hostile("not_object:true", "true", True),
            Hostile("too_deep:arrays", self._nested_in_frame("[", "]", too_deep), True),
            Hostile("too_deep:objects", self._nested_in_frame('{"a":', "}", too_deep), True),
            Hostile("too_deep:extreme", "[" * extreme + "]" * extreme, True),
            Hostile("deep_at_limit", self._nested_in_frame("[", "]", self.max_json_depth), False),
        ]
        binary_refused = not self.accepts_binary
        cases += [
            Hostile("binary:empty", b"", binary_refused),
            Hostile("binary:frame_json", frame_text.encode(), binary_refused),
            Hostile("binary:utf16_json", frame_text.encode("utf-16"), binary_refused),
            Hostile("binary:invalid_utf8", b'{"type": "\xff\xfe\xc0"}', binary_refused),
            Hostile("binary:noise", self.rng.randbytes(257), binary_refused),
        ]
        for frame in self.valid_frames:
            cases.append(self.truncated(frame))
        return cases

    def _nested_in_frame(self, opener: str, closer: str, depth: int) -> str:
        """A valid frame with an extra field whose value nests to a total depth of `depth`."""
        text = encode(self.valid_frames[0])
        value = opener * (depth - 1) + "1" + closer * (depth - 1)
        return text[:-1] + (", " if text != "{}" else "") + f'"nested": {value}}}'

    def truncated(self, frame: dict | None = None) -> Hostile:
        text = encode(frame or self.rng.choice(self.valid_frames))
        cut = self.rng.randrange(1, len(text))
        return Hostile("truncated", text[:cut], True)

    def random_structure(self) -> Hostile:
        if self._structural is None:
            self._structural = self.structural()
        return self.rng.choice(self._structural)

    # --- sizes --------------------------------------------------------------------------
    def sizes(self) -> list[Hostile]:
        """Strings at and past their limits; frames at and past the size limit."""
        cases = []
        for frame in self.valid_frames:
            for key, limit in self.text_limits.items():
                if key not in frame:
                    continue
                for label, text, refused in (
                    ("at_limit", "a" * limit, False),
                    ("over_limit", "a" * (limit + 1), True),
                    ("at_limit_4byte", "😀" * limit, False),
                    ("at_limit_padded", " " + "a" * limit + " ", False),
                ):
                    payload = encode({**frame, key: text})
                    if len(payload.encode()) <= self.max_frame_bytes:
                        cases.append(Hostile(f"length:{key}:{label}", payload, refused))
        base = encode(self.valid_frames[0])
        for label, size, refused in (
            ("frame_at_limit", self.max_frame_bytes, False),
            ("frame_over_limit", self.max_frame_bytes + 1, True),
            ("frame_4x_limit", self.max_frame_bytes * 4, True),
        ):
            cases.append(Hostile(f"size:{label}", self._padded(base, size), refused))
        return cases

    @staticmethod
    def _padded(text: str, size: int) -> str:
        """`text` with an extra string field, grown to exactly `size` UTF-8 bytes."""
        head = text[:-1] + (", " if text != "{}" else "") + '"pad": "'
        tail = '"}'
        return head + "p" * (size - len(head.encode()) - len(tail)) + tail

    # --- valid frames, one field wrong ----------------------------------------------------
    def field_mutations(self, frame: dict) -> list[Hostile]:
        cases = []
        for key, value in frame.items():
            replacements = [*WRONG_TYPES, *NUMBERS]
            if isinstance(value, str):
                replacements += [*ODD_TEXT, value.upper(), f" {value} "]
            for replacement in replacements:
                cases.append(self._with(frame, key, replacement, f"field:{key}"))
            cases.append(
                Hostile(
                    f"missing:{key}",
                    encode({k: v for k, v in frame.items() if k != key}),
                    False,
                )
            )
        for text in ODD_TEXT[:6]:
            cases.append(Hostile("odd_key", encode({**frame, text: 1}), False))
        cases.append(Hostile("extra_field", encode({**frame, "extra": {"deep": [1, [2]]}}), False))
        cases.append(self.duplicate_key(frame))
        return cases

    def _with(self, frame: dict, key: str, value: Any, kind: str) -> Hostile:
        escape = self.rng.random() < 0.5
        return Hostile(kind, encode({**frame, key: value}, escape_non_ascii=escape), False)

    def duplicate_key(self, frame: dict | None = None) -> Hostile:
        """The same key twice (JSON parsers differ on which wins)."""
        frame = frame or self.rng.choice(self.valid_frames)
        key = self.rng.choice(list(frame))
        other = encode({key: self._hostile_value()})[1:-1]
        text = encode(frame)
        first = self.rng.random() < 0.5
        payload = "{" + other + ", " + text[1:] if first else text[:-1] + ", " + other + "}"
        return Hostile(f"duplicate_key:{key}", payload, False)

    def random_mutation(self) -> Hostile:
        """A valid frame with one to three fields replaced, removed or added."""
        frame = dict(self.rng.choice(self.valid_frames))
        for _ in range(self.rng.randint(1, 3)):
            action = self.rng.random()
            if action < 0.7 and frame:
                frame[self.rng.choice(list(frame))] = self._hostile_value()
            elif action < 0.85 and frame:
                frame.pop(self.rng.choice(list(frame)))
            else:
                frame[self.rng.choice(["extra", "type", "id", *ODD_TEXT[:3]])] = (
                    self._hostile_value()
                )
        return Hostile(
            "random_mutation", encode(frame, escape_non_ascii=self.rng.random() < 0.5), False
        )

    def _hostile_value(self) -> Any:
        pick = self.rng.random()
        if pick < 0.3:
            return self.rng.choice(WRONG_TYPES)
        if pick < 0.5:
            return self.rng.choice(NUMBERS)
        if pick < 0.8:
            return "".join(self.rng.choice(ODD_TEXT) for _ in range(self.rng.randint(1, 4)))
        if pick < 0.9 and self.text_limits:
            return "x" * (max(self.text_limits.values()) + self.rng.choice([-1, 0, 1]))
        return [self.rng.choice(WRONG_TYPES) for _ in range(self.rng.randint(0, 50))]
