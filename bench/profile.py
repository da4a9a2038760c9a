"""Self and inclusive time per function from py-spy's collapsed stacks: `python -m bench.profile FILE.txt`."""
from __future__ import annotations

import sys
from collections import Counter


def table(path: str, top: int = 40) -> str:
    own, inclusive, total = Counter(), Counter(), 0
    for line in open(path):
        stack, _, count = line.rstrip().rpartition(" ")
        n = int(count)
        total += n
        frames = stack.split(";")
        own[frames[-1]] += n
        for frame in set(frames):
            inclusive[frame] += n
    rows = [f"{'self %':>7} {'incl %':>7}  function"]
    for frame, n in own.most_common(top):
        rows.append(f"{100 * n / total:7.2f} {100 * inclusive[frame] / total:7.2f}  {frame[:140]}")
    return "\n".join(rows)


if __name__ == "__main__":
    print(table(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 40))
