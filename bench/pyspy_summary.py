"""Summarize a py-spy collapsed-stack file (`--format raw --threads`) per thread.

    python -m bench.pyspy_summary bench/results/<file>.pyspy.txt [--top 25] [--match chat/]

For each thread: samples, then the functions with the most inclusive samples
(a function counted once per stack), optionally only frames whose text
contains --match. Samples are 10 ms each at py-spy's default --rate 100.
"""

from __future__ import annotations

import argparse
from collections import Counter, defaultdict
from pathlib import Path


def parse(path: Path) -> dict[str, list[tuple[list[str], int]]]:
    stacks: dict[str, list[tuple[list[str], int]]] = defaultdict(list)
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        thread = frames[0] + (";" + frames[1] if len(frames) > 1 else "")
        stacks[thread].append((frames[2:], int(count)))
    return stacks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("path", type=Path)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--match", default="", help="only frames containing this text")
    args = parser.parse_args()
    threads = parse(args.path)
    for thread, entries in sorted(threads.items(), key=lambda kv: -sum(c for _, c in kv[1])):
        total = sum(c for _, c in entries)
        inclusive: Counter = Counter()
        leaf: Counter = Counter()
        for frames, count in entries:
            for frame in set(frames):
                if args.match in frame:
                    inclusive[frame] += count
            if frames:
                leaf[frames[-1]] += count
        print(f"\n== {thread}: {total} samples")
        for frame, count in inclusive.most_common(args.top):
            print(f"{count:7d} {100 * count / total:5.1f}%  {frame}")
        print("  -- top self (leaf) frames")
        for frame, count in leaf.most_common(10):
            print(f"{count:7d} {100 * count / total:5.1f}%  {frame}")


if __name__ == "__main__":
    main()
