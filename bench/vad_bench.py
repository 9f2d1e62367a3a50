"""VAD benchmark: frame accuracy, boundary error and speed of each backend on a labelled corpus.

Run from the repository root:

    python -m bench.vad_bench                       # 24 utterances per condition, seed 1
    python -m bench.vad_bench --utterances 40 --seed 7
    python -m bench.vad_bench --backends energy --quick

The corpus (bench/vad_corpus.py) is made at run time from the seed: one
track of espeak-ng utterances (several voices, speeds and pitches) between
silences of 0.8-2.5 s, at 24 kHz (the voice socket's rate), then that track
clean and mixed with white, pink, babble (six other espeak-ng talkers) and
50 Hz hum (with its harmonics) noise at 20, 10, 5 and 0 dB SNR.

Every backend runs through voice.vad.VoiceActivityDetector with the same
settings (VAD_* defaults), fed 20 ms chunks as a browser sends them:
`energy`, `silero`, `foreground` (the default) and, as a baseline only,
`webrtcvad` (webrtcvad-wheels, aggressiveness WEBRTC_MODE, 30 ms frames at
16 kHz: it takes no 24 kHz).

Measured per backend and condition:
- precision, recall, F1 of 10 ms frames (a frame is speech when most of its
  samples are): detected = between a speech_started and its speech_stopped;
- onset and offset error: for each true utterance, the first detected start
  (last detected stop) among the detections overlapping it minus its true
  start (stop), in ms; p50 of the absolute values (missed utterances apart);
- speed: seconds of audio per CPU second of this process (one core: every
  backend runs single-threaded), with 20 ms chunks and with 1 s chunks.
The mean F1 is over the 16 noisy conditions (clean is shown, not averaged).
Results: bench/results/vad-<UTC time>.json and vad-latest.json.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime

import numpy as np
import psutil
import webrtcvad

from bench import vad_corpus
from bench.harness import ResourceSampler, code_version, machine_info, write_json
from bench.stats import percentile
from voice import audio
from voice.vad import SPEECH_STARTED, SPEECH_STOPPED, VadConfig, VoiceActivityDetector

SAMPLE_RATE = 24_000
FRAME_MS = 10
LIVE_CHUNK_MS = 20
BULK_CHUNK_MS = 1000
BACKENDS = ("energy", "silero", "foreground", "webrtcvad")
WEBRTC_MODE = 3
STAMP = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")

# name: (what, target, lower is better)
TARGETS = {
    "default_mean_f1": ("default backend mean F1", 0.93),
    "default_speed": ("default backend x realtime (20 ms chunks)", 100.0),
    "default_babble10_f1": ("default backend babble 10 dB F1", 0.85),
    "energy_mean_f1": ("energy mean F1", 0.88),
    "energy_speed": ("energy x realtime (1 s chunks)", 5000.0),
    "default_onset_p50_ms": ("default backend onset error p50 (ms)", 30.0),
}


@dataclass(frozen=True)
class Condition:
    noise: str | None
    snr_db: float | None

    @property
    def name(self) -> str:
        return "clean" if self.noise is None else f"{self.noise}-{self.snr_db:g}dB"


CONDITIONS = [Condition(None, None)] + [
    Condition(kind, snr) for kind in vad_corpus.NOISE_KINDS for snr in vad_corpus.SNRS_DB
]


class WebrtcBackend:
    """WebRTC's GMM VAD as a VoiceActivityDetector backend: 1.0 for speech frames, else 0."""

    sample_rate = 16_000
    frame_samples = 480

    def __init__(self, mode: int = WEBRTC_MODE) -> None:
        self._vad = webrtcvad.Vad(mode)

    def scores(self, frames: np.ndarray) -> np.ndarray:
        pcm = [audio.float_to_pcm16(frame) for frame in frames]
        return np.array([float(self._vad.is_speech(f, self.sample_rate)) for f in pcm])


def detector(backend: str, config: VadConfig) -> VoiceActivityDetector:
    if backend == "webrtcvad":
        return VoiceActivityDetector(
            sample_rate=SAMPLE_RATE, config=config, backend=WebrtcBackend()
        )
    return VoiceActivityDetector(sample_rate=SAMPLE_RATE, config=replace(config, backend=backend))


def detect(
    samples: np.ndarray, backend: str, config: VadConfig, *, chunk_ms: int
) -> tuple[list[tuple[int, int]], float]:
    """(detected segments [start, stop) in samples, CPU seconds spent)."""
    vad = detector(backend, config)
    chunk = SAMPLE_RATE * chunk_ms // 1000
    events = []
    started = time.process_time()
    for position in range(0, samples.size, chunk):
        events += vad.process(samples[position : position + chunk])
    events += vad.flush()
    cpu = time.process_time() - started
    return segments_of(events), cpu


def segments_of(events) -> list[tuple[int, int]]:
    segments, start = [], None
    for event in events:
        if event.type == SPEECH_STARTED:
            start = event.sample
        elif event.type == SPEECH_STOPPED and start is not None:
            segments.append((start, event.sample))
            start = None
    return segments


def frame_labels(segments: list[tuple[int, int]], size: int) -> np.ndarray:
    """Per 10 ms frame: True when most of its samples lie in a segment."""
    mask = np.zeros(size, dtype=bool)
    for start, stop in segments:
        mask[start:stop] = True
    frame = SAMPLE_RATE * FRAME_MS // 1000
    count = size // frame
    return mask[: count * frame].reshape(count, frame).mean(axis=1) > 0.5


def scores(truth: np.ndarray, detected: np.ndarray) -> dict:
    hits = int(np.sum(truth & detected))
    precision = hits / max(1, int(detected.sum()))
    recall = hits / max(1, int(truth.sum()))
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


def boundary_errors(
    truth: list[tuple[int, int]], detected: list[tuple[int, int]]
) -> tuple[list[float], list[float], int]:
    """(onset errors ms, offset errors ms, missed utterances): signed, detected minus true."""
    onsets, offsets, missed = [], [], 0
    for start, stop in truth:
        overlapping = [(a, b) for a, b in detected if a < stop and b > start]
        if not overlapping:
            missed += 1
            continue
        onsets.append(audio.samples_to_ms(overlapping[0][0] - start, SAMPLE_RATE))
        offsets.append(audio.samples_to_ms(overlapping[-1][1] - stop, SAMPLE_RATE))
    return onsets, offsets, missed


def p50_abs(values: list[float]) -> float | None:
    return percentile([abs(v) for v in values], 50)


def run_backend(backend: str, config: VadConfig, track, truth: np.ndarray, mixes: dict) -> dict:
    """One backend over every condition: its table rows and summary."""
    rows, all_on, all_off, cpu_live, cpu_bulk, seconds = {}, [], [], 0.0, 0.0, 0.0
    for condition in CONDITIONS:
        samples = mixes[condition.name]
        detected, cpu = detect(samples, backend, config, chunk_ms=LIVE_CHUNK_MS)
        _, cpu_b = detect(samples, backend, config, chunk_ms=BULK_CHUNK_MS)
        cpu_live, cpu_bulk = cpu_live + cpu, cpu_bulk + cpu_b
        seconds += track.seconds
        onsets, offsets, missed = boundary_errors(track.segments, detected)
        row = scores(truth, frame_labels(detected, samples.size))
        row.update(
            onset_p50_ms=p50_abs(onsets),
            offset_p50_ms=p50_abs(offsets),
            onset_median_signed_ms=percentile(onsets, 50),
            offset_median_signed_ms=percentile(offsets, 50),
            missed=missed,
            false_starts=sum(
                not any(a < stop and b > start for start, stop in track.segments)
                for a, b in detected
            ),
        )
        rows[condition.name] = row
        all_on += onsets
        all_off += offsets
        print(f"  {backend:9} {condition.name:12} F1 {row['f1']:.3f}", file=sys.stderr)
    noisy = [rows[c.name]["f1"] for c in CONDITIONS if c.noise is not None]
    return {
        "conditions": rows,
        "mean_f1": float(np.mean(noisy)),
        "onset_p50_ms": p50_abs(all_on),
        "offset_p50_ms": p50_abs(all_off),
        "x_realtime_live": seconds / cpu_live,
        "x_realtime_bulk": seconds / cpu_bulk,
    }


def run(args: argparse.Namespace) -> dict:
    config = VadConfig()
    rng = np.random.default_rng(args.seed)
    print("making the corpus ...", file=sys.stderr, flush=True)
    track = vad_corpus.make_track(rng, utterances=args.utterances, sample_rate=SAMPLE_RATE)
    truth = frame_labels(track.segments, track.speech.size)
    mixes = {c.name: vad_corpus.mix(track, c.noise, c.snr_db or 0.0, rng) for c in CONDITIONS}
    results: dict = {}
    # Speeds are CPU time of this process, but other work on the cores slows it too: noted.
    with ResourceSampler({"vad_bench": psutil.Process()}) as load:
        for backend in args.backends:
            results[backend] = run_backend(backend, config, track, truth, mixes)
    default = config.backend
    summary = {}
    if default in results and "energy" in results:
        d, e = results[default], results["energy"]
        summary = {
            "default_mean_f1": d["mean_f1"],
            "default_speed": d["x_realtime_live"],
            "default_babble10_f1": d["conditions"]["babble-10dB"]["f1"],
            "energy_mean_f1": e["mean_f1"],
            "energy_speed": e["x_realtime_bulk"],
            "default_onset_p50_ms": d["onset_p50_ms"],
        }
    return {
        "benchmark": "vad",
        "stamp": STAMP,
        "params": {
            "seed": args.seed,
            "utterances": args.utterances,
            "sample_rate": SAMPLE_RATE,
            "corpus_seconds_per_condition": round(track.seconds, 1),
            "speech_fraction": round(float(truth.mean()), 3),
            "config": asdict(config),
            "webrtc_mode": WEBRTC_MODE,
        },
        "machine": machine_info(),
        "load": load.result,
        "code": code_version(),
        "backends": results,
        "targets": {
            name: {"value": summary.get(name), "target": t} for name, (_, t) in TARGETS.items()
        },
    }


def verdict(name: str, value: float | None) -> str:
    target = TARGETS[name][1]
    if value is None:
        return "-"
    lower_is_better = name.endswith("_ms")
    return "ok" if (value <= target if lower_is_better else value >= target) else "MISSED"


def print_report(report: dict) -> None:
    backends = list(report["backends"])
    params = report["params"]
    print(
        f"\nVAD: {params['utterances']} utterances, {params['corpus_seconds_per_condition']} s "
        f"per condition ({params['speech_fraction']:.0%} speech), seed {params['seed']}, "
        f"{params['sample_rate']} Hz, 20 ms chunks"
    )
    header = f"{'condition':13}" + "".join(f"| {b:^26} " for b in backends)
    print(header)
    print(
        f"{'':13}"
        + "".join(f"| {'P':>5} {'R':>5} {'F1':>5} {'on':>4} {'off':>4} " for _ in backends)
    )
    print("-" * len(header))
    for condition in CONDITIONS:
        line = f"{condition.name:13}"
        for b in backends:
            row = report["backends"][b]["conditions"][condition.name]
            line += (
                f"| {row['precision']:5.3f} {row['recall']:5.3f} {row['f1']:5.3f} "
                f"{fmt_ms(row['onset_p50_ms'])} {fmt_ms(row['offset_p50_ms'])} "
            )
        print(line)
    print("-" * len(header))
    for label, key, form in [
        ("mean F1 (noisy)", "mean_f1", "{:.3f}"),
        ("onset p50 ms", "onset_p50_ms", "{:.0f}"),
        ("offset p50 ms", "offset_p50_ms", "{:.0f}"),
        ("x RT 20 ms chunks", "x_realtime_live", "{:,.0f}"),
        ("x RT 1 s chunks", "x_realtime_bulk", "{:,.0f}"),
    ]:
        print(
            f"{label:18}"
            + "".join(f"{form.format(report['backends'][b][key]):>23}  " for b in backends)
        )
    load = report["load"]
    print(
        f"speeds: CPU time of this process (one thread); meanwhile other processes used "
        f"{load.get('other_cpu_percent')}% of a core ({', '.join(load['top_other_processes'])})"
    )
    print("\ntargets")
    for name, entry in report["targets"].items():
        value = entry["value"]
        shown = "-" if value is None else f"{value:,.3f}" if value < 10 else f"{value:,.0f}"
        label, target = TARGETS[name][0], entry["target"]
        print(f"  {label:44} {shown:>9}  target {target:g}  {verdict(name, value)}")


def fmt_ms(value: float | None) -> str:
    """Milliseconds in 4 columns; `>9s` when utterances were merged into one long detection."""
    if value is None:
        return "   -"
    return f"{value:4.0f}" if value < 9000 else " >9s"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--utterances", type=int, default=24, help="utterances in the track")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--backends", type=lambda s: s.split(","), default=list(BACKENDS), help="comma-separated"
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: 4 utterances")
    args = parser.parse_args(argv)
    if args.quick:
        args.utterances = 4
    unknown = set(args.backends) - set(BACKENDS)
    if unknown:
        parser.error(f"unknown backends {sorted(unknown)}: choose among {BACKENDS}")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    report = run(args)
    print_report(report)
    paths = write_json(report, name="vad", stamp=STAMP, latest=not args.quick)
    print("\nwrote " + ", ".join(str(p.relative_to(p.parents[2])) for p in paths))


if __name__ == "__main__":
    main()
