"""Summarise chaos runs for RELIABILITY.md: `python -m tests.chaos.report [N] [run,run]` (last N runs)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from tests.chaos.runner import RESULTS


def load(limit: int) -> list[dict]:
    lines = (RESULTS / "history.jsonl").read_text().splitlines() if (RESULTS / "history.jsonl").exists() else []
    runs = []
    for line in lines[-limit:]:
        entry = json.loads(line)
        if "file" not in entry:  # a run that stopped before its verdict
            runs.append({"run": entry["run"], "started_at": entry["at"], "passed": False, "aborted": entry.get("error"),
                         "duration_s": entry["duration_s"], "faults": entry.get("faults", [])})
            continue
        path = Path(entry["file"])
        path = path if path.is_absolute() else RESULTS.parent.parent.parent / path
        if path.exists():
            runs.append(json.loads(path.read_text()))
    return runs


def _faults(run: dict) -> str:
    kinds: dict[str, int] = {}
    for fault in run["faults"]:
        if fault["kind"] != "start":
            kinds[fault["kind"]] = kinds.get(fault["kind"], 0) + 1
    return ", ".join(f"{k}×{n}" for k, n in kinds.items())


def _recovery(run: dict) -> str:
    parts = []
    for fault in run["faults"]:
        if fault["kind"].startswith(("restart", "add_worker", "broker")):
            extra = f", output after {fault['resumed_after_s']}s" if fault.get("resumed_after_s") is not None else ""
            parts.append(f"{fault['kind']} {fault['seconds']}s{extra}")
    return "; ".join(parts)


def table(runs: list[dict]) -> str:
    head = ("| run | at (UTC) | passed | s | raw records (bad, re-sent) | faults | keys | movements | mismatches "
            "| availability out (dup) | postings out (dup) | worker RSS after start → end, peak (MiB) |")
    rows = [head, "|" + "---|" * 12]
    for r in runs:
        if r.get("aborted"):
            rows.append(f"| {r['run']} | {r['started_at'][:19]} | NO | {r['duration_s']:.0f} | aborted: "
                        f"{r['aborted'][:160]} |" + " |" * 7)
            continue
        rss = "; ".join(
            f"{name} {v.get('after_start_kb', 0) // 1024}→{v.get('end_kb', v.get('before_stop_kb', 0)) // 1024}, "
            f"{v.get('peak_kb', 0) // 1024}" for name, v in sorted(r.get("worker_rss_kb", {}).items()))
        mismatches = r.get("mismatch_total")
        detail = ", ".join(f"{k} {v}" for k, v in r.get("mismatches", {}).items() if v)
        rows.append(
            f"| {r['run']} | {r['started_at'][:19]} | {'yes' if r.get('passed') else 'NO'} | {r['duration_s']:.0f} "
            f"| {r['raw_records_produced']} ({r['bad_records_produced']}, {r['producer_resends_in']}) "
            f"| {_faults(r)} | {r['keys_compared']} | {r['movements_expected']} "
            f"| {mismatches}{' (' + detail + ')' if detail else ''} "
            f"| {r['availability_records_out']} ({r['availability_duplicate_records']}) "
            f"| {r['postings_records_out']} ({r['postings_duplicate_records']}) | {rss} |")
    return "\n".join(rows)


def main() -> None:
    limit = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    names = set(sys.argv[2].split(",")) if len(sys.argv) > 2 else None
    runs = [r for r in load(10_000) if names is None or r["run"] in names][-limit:]
    print(table(runs))
    for r in runs:
        if r.get("aborted"):
            continue
        print(f"\n{r['run']} {r['started_at']}: recovery: {_recovery(r)}")
        if r.get("movements_lost_by_cause"):
            print(f"  lost movements by cause: {r['movements_lost_by_cause']}")


if __name__ == "__main__":
    main()
