"""Echo gate benchmark: false and missed barge-ins of voice/echo.py, against real echo cancellers.

Run from the repository root:

    python -m bench.echo_bench                  # 12 answers x 3 echo levels x 3 onsets, seed 1
    python -m bench.echo_bench --answers 24 --seed 7
    python -m bench.echo_bench --methods gate --quick

The corpus (bench/echo_corpus.py) follows from the seed: espeak-ng answers
(three assistant voices, speeds and pitches drawn), each played into a room
(reverb 60-200 ms, low-pass 2.5-6 kHz, high-pass 100-300 Hz, pink noise 30 dB
under a -10 dB echo) at -20, -10 and -6 dB, 30-250 ms late. At onsets spread
over each answer the microphone's 250 ms window (50 ms before the onset) is:
- echo alone: a barge-in here is a false barge-in (the bot interrupts itself);
- a person (another espeak-ng voice, another sentence) starting at the onset
  over the echo, 0, 6 or 12 dB louder than it: no barge-in is a missed one;
and the played position given to the gate is off by up to +-100 ms (reports
come ~100 ms apart). A person speaking while nothing plays is checked too.

Methods:
- `gate`: voice.echo.judge on the window; a barge-in when not echo.
- `speex`, `webrtc`: an echo canceller (speexdsp's MDF, WebRTC's AEC from
  the `webrtc-audio-processing` package) run on the whole stream from the
  answer's start, fed the reference as the server would (shifted by the
  played position's error), then a barge-in when the canceller's output over
  the window is louder than AEC_PERSON_DB below the microphone. Only when the
  package imports (neither is a dependency of the product).
Results: bench/results/echo-<UTC time>.json and echo-latest.json.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from collections import defaultdict
from datetime import UTC, datetime

import numpy as np

from bench import echo_corpus, vad_corpus
from bench.harness import code_version, machine_info, write_json
from voice import audio, echo

RATE = echo_corpus.RATE
WINDOW = audio.ms_to_samples(echo_corpus.WINDOW_MS, RATE)
PREROLL = audio.ms_to_samples(50.0, RATE)
ECHO_LEVELS_DB = (-20.0, -10.0, -6.0)
PERSON_OVER_ECHO_DB = (0.0, 6.0, 12.0)
DELAY_MS = (30.0, 250.0)
PLAYED_ERROR_MS = 100.0
METHODS = ("gate", "speex", "webrtc")
# The canceller's output over the window, against the microphone's: above this is a person.
AEC_PERSON_DB = -10.0
SPEEX_TAIL_MS = 500.0  # the delay range, plus the played position's error
STAMP = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")


def make_cases(rng: np.random.Generator, answers: int, onsets: int) -> list[dict]:
    cases = []
    for index in range(answers):
        voice = vad_corpus.Voice(
            echo_corpus.ASSISTANT_VOICES[index % len(echo_corpus.ASSISTANT_VOICES)],
            int(rng.integers(140, 190)),
            int(rng.integers(35, 65)),
        )
        text = echo_corpus.ANSWERS[index % len(echo_corpus.ANSWERS)]
        sent = echo_corpus.speech(
            text, voice.name, level_dbfs=echo_corpus.ANSWER_DBFS,
            speed_wpm=voice.speed_wpm, pitch=voice.pitch,
        )  # fmt: skip
        for echo_db in ECHO_LEVELS_DB:
            room = echo_corpus.Room(
                reverb_ms=float(rng.uniform(60, 200)),
                reverb_db=float(rng.uniform(-16, -8)),
                lowpass_hz=float(rng.uniform(2500, 6000)),
                highpass_hz=float(rng.uniform(100, 300)),
            )
            delay_ms = float(rng.uniform(*DELAY_MS))
            answer = echo_corpus.play(sent, echo_db=echo_db, delay_ms=delay_ms, room=room, rng=rng)
            for onset in echo_corpus.loud_onsets(answer, onsets, rng):
                error_ms = float(rng.uniform(-PLAYED_ERROR_MS, PLAYED_ERROR_MS))
                common = {"answer": answer, "onset": onset, "error_ms": error_ms}
                cases.append({**common, "kind": "echo", "mic": answer.mic})
                over = float(rng.choice(PERSON_OVER_ECHO_DB))
                person = echo_corpus.speech(
                    str(rng.choice(vad_corpus.SENTENCES)),
                    str(rng.choice(echo_corpus.PERSON_VOICES)),
                    level_dbfs=echo_corpus.ANSWER_DBFS + echo_db + over,
                )
                mic = echo_corpus.with_person(answer, person, at=onset)
                cases.append({**common, "kind": "person", "mic": mic, "over_db": over})
    return cases


def window_of(case: dict) -> tuple[int, int]:
    begin = case["onset"] - PREROLL
    return begin, begin + WINDOW


def played_ms(case: dict) -> float:
    """What the server believes was played when the window's last sample was captured."""
    return audio.samples_to_ms(window_of(case)[1], RATE) + case["error_ms"]


# --- methods: each returns (barge in?, a score, CPU seconds spent) ---------------------
def by_gate(case: dict) -> tuple[bool, float, float]:
    reference = echo.PlaybackReference(RATE)
    if case["answer"] is not None:
        reference.add(case["answer"].pcm16())
    begin, end = window_of(case)
    mic = case["mic"][begin:end]
    started = time.process_time()
    verdict = echo.judge(mic, reference, played_ms=played_ms(case))
    return not verdict.echo, verdict.residual, time.process_time() - started


def far_end(case: dict, size: int) -> np.ndarray:
    """The reference as the server feeds a canceller: placed by the believed played position."""
    far = np.zeros(size, dtype=np.float32)
    if case["answer"] is None:
        return far
    sent = case["answer"].sent
    # Believing the position `error` ahead, the server plays sample k at k - error.
    shift = -audio.ms_to_samples(case["error_ms"], RATE)
    lo, hi = max(shift, 0), min(size, shift + sent.size)
    if hi > lo:
        far[lo:hi] = sent[lo - shift : hi - shift]
    return far


# The cancellers are imported by name: they are compared here, not dependencies (no pin,
# no lock entry); install them by hand to get their rows (docs/benchmarks.md says how).
class Speex:
    frame = 240  # 10 ms at 24 kHz

    def __init__(self) -> None:
        canceller = importlib.import_module("speexdsp").EchoCanceller
        self._make = lambda: canceller.create(
            self.frame, audio.ms_to_samples(SPEEX_TAIL_MS, RATE), RATE
        )

    def cancel(self, mic: np.ndarray, far: np.ndarray) -> np.ndarray:
        canceller, out = self._make(), []
        for i in range(0, mic.size - self.frame + 1, self.frame):
            out.append(
                canceller.process(
                    audio.float_to_pcm16(mic[i : i + self.frame]),
                    audio.float_to_pcm16(far[i : i + self.frame]),
                )
            )
        return audio.pcm16_to_float(b"".join(out))


class Webrtc:
    rate = 16_000  # the module takes 8, 16, 32 or 48 kHz
    frame = 160

    def __init__(self) -> None:
        self._module = importlib.import_module("webrtc_audio_processing").AudioProcessingModule

    def cancel(self, mic: np.ndarray, far: np.ndarray) -> np.ndarray:
        module = self._module(aec_type=1)
        module.set_stream_format(self.rate, 1)
        module.set_reverse_stream_format(self.rate, 1)
        mic, far = audio.resample(mic, RATE, self.rate), audio.resample(far, RATE, self.rate)
        out = []
        for i in range(0, mic.size - self.frame + 1, self.frame):
            module.process_reverse_stream(audio.float_to_pcm16(far[i : i + self.frame]))
            out.append(module.process_stream(audio.float_to_pcm16(mic[i : i + self.frame])))
        return audio.resample(audio.pcm16_to_float(b"".join(out)), self.rate, RATE)


def by_canceller(canceller) -> callable:
    def method(case: dict) -> tuple[bool, float, float]:
        begin, end = window_of(case)
        mic = case["mic"][:end]
        started = time.process_time()
        out = canceller.cancel(mic, far_end(case, mic.size))
        spent = time.process_time() - started
        kept_db = audio.dbfs(out[begin:end]) - audio.dbfs(mic[begin:end])
        # A judgement costs the canceller's run over the window (it runs all along).
        return kept_db > AEC_PERSON_DB, kept_db, spent * WINDOW / mic.size

    return method


def load_methods(names: list[str]) -> tuple[dict, dict]:
    """(name: method) for those that run here, and (name: why not) for the others."""
    methods, missing = {}, {}
    for name in names:
        try:
            if name == "gate":
                methods[name] = by_gate
            elif name == "speex":
                methods[name] = by_canceller(Speex())
            elif name == "webrtc":
                methods[name] = by_canceller(Webrtc())
        except ImportError as exc:
            missing[name] = f"not installed ({exc})"
    return methods, missing


# --- scoring ------------------------------------------------------------------------
def group_of(case: dict) -> str:
    if case["kind"] == "echo":
        return f"echo {case['answer'].echo_db:g} dB"
    if case["answer"] is None:
        return "person, nothing played"
    return f"person +{case['over_db']:g} dB over echo"


def best_threshold_error(echo_scores: list[float], person_scores: list[float]) -> float:
    """The lowest mean of the two error rates over every threshold on the score (an oracle)."""
    scores = sorted(set(echo_scores) | set(person_scores))
    e, p = np.array(echo_scores), np.array(person_scores)
    best = 1.0
    for threshold in scores + [np.inf]:
        false = np.mean(e >= threshold)
        missed = np.mean(p < threshold)
        best = min(best, (false + missed) / 2)
    return float(best)


def run_method(name: str, method, cases: list[dict]) -> dict:
    groups, spent = defaultdict(list), []
    scores = {"echo": [], "person": []}
    for case in cases:
        barge_in, score, seconds = method(case)
        groups[group_of(case)].append(barge_in)
        spent.append(seconds * 1000)
        if case["answer"] is not None:
            scores[case["kind"]].append(score)
    echo_cases = [b for g, v in groups.items() if g.startswith("echo") for b in v]
    person_cases = [
        b for g, v in groups.items() if g.startswith("person +") for b in v
    ]  # over echo
    print(f"  {name:7} done", file=sys.stderr, flush=True)
    return {
        "groups": {
            g: {"cases": len(v), "barge_in_rate": float(np.mean(v))} for g, v in groups.items()
        },
        "false_barge_in": float(np.mean(echo_cases)),
        "missed_barge_in": 1.0 - float(np.mean(person_cases)),
        "oracle_threshold_error": best_threshold_error(scores["echo"], scores["person"]),
        "ms_per_judgement_p50": float(np.percentile(spent, 50)),
        "ms_per_judgement_p99": float(np.percentile(spent, 99)),
        "score_percentiles": {
            kind: [round(float(x), 3) for x in np.percentile(values, [10, 50, 90])]
            for kind, values in scores.items()
        },
    }


def run(args: argparse.Namespace) -> dict:
    rng = np.random.default_rng(args.seed)
    print("making the corpus ...", file=sys.stderr, flush=True)
    cases = make_cases(rng, args.answers, args.onsets)
    for _ in range(args.answers):
        alone = echo_corpus.speech(
            str(rng.choice(vad_corpus.SENTENCES)),
            str(rng.choice(echo_corpus.PERSON_VOICES)),
            level_dbfs=echo_corpus.ANSWER_DBFS - 10.0,
        )
        mic = np.concatenate([np.zeros(RATE, dtype=np.float32), alone])
        cases.append({"kind": "person", "answer": None, "mic": mic, "onset": RATE, "error_ms": 0.0})
    methods, missing = load_methods(args.methods)
    results = {name: run_method(name, method, cases) for name, method in methods.items()}
    return {
        "benchmark": "echo",
        "stamp": STAMP,
        "params": {
            "seed": args.seed,
            "answers": args.answers,
            "onsets": args.onsets,
            "cases": len(cases),
            "echo_levels_db": ECHO_LEVELS_DB,
            "person_over_echo_db": PERSON_OVER_ECHO_DB,
            "delay_ms": DELAY_MS,
            "played_error_ms": PLAYED_ERROR_MS,
            "window_ms": echo_corpus.WINDOW_MS,
            "aec_person_db": AEC_PERSON_DB,
            "speex_tail_ms": SPEEX_TAIL_MS,
            "gate": {
                "max_residual": echo.MAX_RESIDUAL,
                "min_correlation": echo.MIN_CORRELATION,
                "max_delay_ms": echo.MAX_DELAY_MS,
            },
        },
        "machine": machine_info(),
        "code": code_version(),
        "methods": results,
        "missing": missing,
    }


def print_report(report: dict) -> None:
    methods = list(report["methods"])
    params = report["params"]
    print(
        f"\nEcho gate: {params['cases']} cases ({params['answers']} answers x "
        f"{len(params['echo_levels_db'])} echo levels x {params['onsets']} onsets, echo and "
        f"person each, + {params['answers']} with nothing played), seed {params['seed']}"
    )
    print(f"{'barge-in rate':32}" + "".join(f"| {m:>9} " for m in methods))
    print("-" * (32 + 12 * len(methods)))
    groups = list(next(iter(report["methods"].values()))["groups"]) if methods else []
    for group in sorted(groups, key=lambda g: (not g.startswith("echo"), g)):
        cases = report["methods"][methods[0]]["groups"][group]["cases"]
        line = f"{group + f' ({cases})':32}"
        for m in methods:
            line += f"| {report['methods'][m]['groups'][group]['barge_in_rate']:9.3f} "
        print(line)
    print("-" * (32 + 12 * len(methods)))
    for label, key, form in [
        ("false barge-in (echo)", "false_barge_in", "{:9.3f}"),
        ("missed barge-in (over echo)", "missed_barge_in", "{:9.3f}"),
        ("best-threshold error (oracle)", "oracle_threshold_error", "{:9.3f}"),
        ("ms per judgement p50", "ms_per_judgement_p50", "{:9.2f}"),
        ("ms per judgement p99", "ms_per_judgement_p99", "{:9.2f}"),
    ]:
        print(
            f"{label:32}" + "".join(f"| {form.format(report['methods'][m][key])} " for m in methods)
        )
    for name, why in report["missing"].items():
        print(f"{name}: {why}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--answers", type=int, default=12, help="assistant answers")
    parser.add_argument("--onsets", type=int, default=3, help="onsets per answer and echo level")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--methods", type=lambda s: s.split(","), default=list(METHODS), help="comma-separated"
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 answers")
    args = parser.parse_args(argv)
    if args.quick:
        args.answers = 2
    unknown = set(args.methods) - set(METHODS)
    if unknown:
        parser.error(f"unknown methods {sorted(unknown)}: choose among {METHODS}")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    report = run(args)
    print_report(report)
    paths = write_json(report, name="echo", stamp=STAMP, latest=not args.quick)
    print("\nwrote " + ", ".join(str(p.relative_to(p.parents[2])) for p in paths))


if __name__ == "__main__":
    main()
