"""What this box charges for touching memory: `python -m bench.first_touch [--gib N]`.

Maps N GiB of anonymous memory, writes one byte in every 4 KiB page (so the kernel gives the process
each page), unmaps it, and does it again after a pause of 0, 1, 3, 10 and 0 s: the CPU a page costs
in the kernel (getrusage's system time) and in Python (user time). A VM whose balloon reports freed
memory to its host (free page reporting) hands pages the guest freed back a few seconds later; the
next touch of them then waits for the host, and that wait shows as the process's system time. A
broker filling its page cache for new topics, or a worker started afresh, pays it the same way.
"""
from __future__ import annotations

import argparse
import mmap
import resource
import time

PAGE = 4096


def touch(gib: float) -> tuple[float, float, float]:
    """Wall seconds, and user and system µs per page, to touch `gib` GiB of fresh anonymous memory."""
    size = int(gib * (1 << 30))
    memory = mmap.mmap(-1, size)
    before, began = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    for offset in range(0, size, PAGE):
        memory[offset] = 1
    wall, after = time.perf_counter() - began, resource.getrusage(resource.RUSAGE_SELF)
    memory.close()
    pages = size // PAGE
    return (wall, (after.ru_utime - before.ru_utime) / pages * 1e6,
            (after.ru_stime - before.ru_stime) / pages * 1e6)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.first_touch", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gib", type=float, default=2.0)
    args = parser.parse_args()
    print(f"{args.gib} GiB touched a page at a time; µs per 4 KiB page")
    print(f"{'after a pause of':>17} {'wall s':>7} {'user':>6} {'system':>7}")
    for pause in (0, 0, 1, 3, 10, 0):
        time.sleep(pause)
        wall, user, system = touch(args.gib)
        print(f"{pause:>15} s {wall:7.2f} {user:6.2f} {system:7.2f}", flush=True)


if __name__ == "__main__":
    main()
