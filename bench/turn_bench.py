"""End-of-turn benchmark: does Smart Turn v3.2 tell a finished sentence from a pause mid-sentence?

Run from the repository root:

    python -m bench.turn_bench                  # 60 turns (20 of each kind), clean and in noise
    python -m bench.turn_bench --turns 90 --seed 3

Smart Turn v3.2 (a Whisper-encoder classifier: the last 8 s of 16 kHz audio ->
the probability that the turn is complete) is read from the pipecat-ai wheel,
installed without its dependencies (requirements-dev-nodeps.txt): its CPU
ONNX file and its numpy log-mel feature module, loaded by file path so that
no pipecat package (and none of its dependencies) is imported.

The turns are espeak-ng speech (bench/vad_corpus.py's sentences of 5 words or
more, its voices), of three kinds in turn: `complete`, a whole sentence;
`comma`, a prefix of a sentence ending on a comma, which espeak-ng speaks with
a continuation intonation; `cut`, a whole sentence's audio cut at its quietest
20 ms between 40 and 70 % of its length, as a person pausing mid-sentence.
Each is followed by 200 ms of silence, where a VAD stop would ask the model,
and is run clean and in white noise at 10 dB SNR. Measured: accuracy, and for
each kind the share the model calls complete (probability > 0.5); CPU time
per prediction (features and model, one thread). Results:
bench/results/turn-<UTC time>.json and turn-latest.json.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from datetime import UTC, datetime
from functools import cache
from importlib import metadata

import numpy as np
import psutil

from bench import vad_corpus
from bench.harness import ResourceSampler, code_version, machine_info, write_json
from voice import audio

RATE = 16_000
SILENCE_AFTER_MS = 200
WINDOW_S = 8
MODEL_FILE = "smart-turn-v3.2-cpu.onnx"
FEATURES_FILE = "_whisper_features.py"
STAMP = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")


def _wheel_file(name: str) -> str:
    """A file of pipecat's smart_turn folder (or its data/) in the installed wheel."""
    for entry in metadata.distribution("pipecat-ai").files or []:
        if entry.parts[:4] == ("pipecat", "audio", "turn", "smart_turn") and entry.name == name:
            return str(entry.locate())
    raise FileNotFoundError(f"the pipecat-ai wheel has no {name}: make install")


@cache
def _features_module():
    """pipecat's numpy log-mel module by path: importing `pipecat` would need its dependencies."""
    spec = importlib.util.spec_from_file_location("smart_turn_features", _wheel_file(FEATURES_FILE))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class SmartTurn:
    """P(turn complete) for the audio of a turn so far, at 16 kHz."""

    def __init__(self) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self._session = onnxruntime.InferenceSession(
            _wheel_file(MODEL_FILE), sess_options=options, providers=["CPUExecutionProvider"]
        )
        self._features = _features_module().compute_whisper_log_mel_features

    def probability(self, samples: np.ndarray) -> float:
        window = WINDOW_S * RATE
        samples = samples[-window:]
        samples = np.pad(samples, (window - samples.size, 0))  # the model reads the end
        features = self._features(samples, do_normalize=True)[None]
        return float(self._session.run(None, {"input_features": features})[0].ravel()[0])


KINDS = ("complete", "comma", "cut")


def comma_text(sentence: str, rng: np.random.Generator) -> str:
    """A prefix of the sentence (2 words to all but 2) ending on a comma."""
    words = sentence.rstrip(".?!").split()
    cut = int(rng.integers(2, len(words) - 1))
    return " ".join(words[:cut]).rstrip(",") + ","


def cut_mid_sentence(samples: np.ndarray) -> np.ndarray:
    """The audio up to its quietest 20 ms between 40 and 70 % of its length."""
    frame = audio.ms_to_samples(20, RATE)
    levels = (samples[: samples.size // frame * frame].reshape(-1, frame) ** 2).mean(axis=1)
    low, high = int(0.4 * levels.size), int(0.7 * levels.size)
    return samples[: (low + int(np.argmin(levels[low:high]))) * frame]


def make_turns(rng: np.random.Generator, count: int) -> list[tuple[str, str, np.ndarray]]:
    """(text, kind, audio with trailing silence), the kinds in turn."""
    sentences = [s for s in vad_corpus.SENTENCES if len(s.split()) >= 5]
    turns = []
    for index in range(count):
        sentence, kind = str(rng.choice(sentences)), KINDS[index % len(KINDS)]
        text = comma_text(sentence, rng) if kind == "comma" else sentence
        spoken = vad_corpus.speak(text, vad_corpus.random_voice(rng), RATE)
        if kind == "cut":
            spoken = cut_mid_sentence(spoken)
        spoken = spoken * 10 ** ((rng.uniform(-32, -20) - audio.dbfs(spoken)) / 20)
        silence = np.zeros(audio.ms_to_samples(SILENCE_AFTER_MS, RATE), dtype=np.float32)
        turns.append((text, kind, np.concatenate([spoken.astype(np.float32), silence])))
    return turns


def with_noise(samples: np.ndarray, snr_db: float | None, rng: np.random.Generator) -> np.ndarray:
    if snr_db is None:
        return samples
    speech = samples[np.abs(samples) > 0]
    scale = audio.rms(speech) / 10 ** (snr_db / 20)
    return (samples + scale * rng.standard_normal(samples.size)).astype(np.float32)


def run(args: argparse.Namespace) -> dict:
    rng = np.random.default_rng(args.seed)
    print("making the turns ...", file=sys.stderr, flush=True)
    turns = make_turns(rng, args.turns)
    model = SmartTurn()
    model.probability(turns[0][2])  # onnxruntime's first run allocates
    conditions = {}
    with ResourceSampler({"turn_bench": psutil.Process()}) as load:
        for name, snr in (("clean", None), ("white-10dB", 10.0)):
            probabilities, cpu = [], []
            for _, _, samples in turns:
                noisy = with_noise(samples, snr, rng)
                started = time.process_time()
                probabilities.append(model.probability(noisy))
                cpu.append((time.process_time() - started) * 1000)
            kinds = np.array([kind for _, kind, _ in turns])
            said = np.array(probabilities) > 0.5
            conditions[name] = {
                "accuracy": float(np.mean(said == (kinds == "complete"))),
                "said_complete": {k: float(np.mean(said[kinds == k])) for k in KINDS},
                "cpu_ms_p50": float(np.percentile(cpu, 50)),
                "cpu_ms_p95": float(np.percentile(cpu, 95)),
                "turns": [
                    {"text": text, "kind": kind, "probability": round(p, 4)}
                    for (text, kind, _), p in zip(turns, probabilities, strict=True)
                ],
            }
    return {
        "benchmark": "turn",
        "stamp": STAMP,
        "params": {"seed": args.seed, "turns": args.turns, "silence_after_ms": SILENCE_AFTER_MS},
        "model": {"package": f"pipecat-ai {metadata.version('pipecat-ai')}", "file": MODEL_FILE},
        "machine": machine_info(),
        "load": load.result,
        "code": code_version(),
        "conditions": conditions,
    }


def print_report(report: dict) -> None:
    params = report["params"]
    print(
        f"\nSmart Turn v3.2 ({report['model']['package']}): {params['turns']} turns "
        f"({', '.join(KINDS)} in turn), {params['silence_after_ms']} ms of silence after each, "
        f"seed {params['seed']}"
    )
    print("share called complete (probability > 0.5), by kind of turn; CPU ms per prediction")
    header = f"{'condition':12} {'accuracy':>9}" + "".join(f" {k:>9}" for k in KINDS)
    print(header + f" {'CPU p50':>8} {'p95':>6}")
    for name, row in report["conditions"].items():
        shares = "".join(f" {row['said_complete'][k]:9.3f}" for k in KINDS)
        print(
            f"{name:12} {row['accuracy']:9.3f}{shares} "
            f"{row['cpu_ms_p50']:8.1f} {row['cpu_ms_p95']:6.1f}"
        )
    load = report["load"]
    print(f"other processes used {load.get('other_cpu_percent')}% of a core meanwhile")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--turns", type=int, default=60)
    parser.add_argument("--seed", type=int, default=1)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    report = run(args)
    print_report(report)
    paths = write_json(report, name="turn", stamp=STAMP, latest=True)
    print("\nwrote " + ", ".join(str(p.relative_to(p.parents[2])) for p in paths))


if __name__ == "__main__":
    main()
