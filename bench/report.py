"""Turn a run's results into medians, ratios to the ceiling, plots and the figures in BENCHMARKS.md."""
from __future__ import annotations

import statistics
from pathlib import Path

from app.settings import REPO_ROOT

DOC = REPO_ROOT / "BENCHMARKS.md"
BEGIN, END = "<!-- bench:figures:begin -->", "<!-- bench:figures:end -->"
LABELS = {"ceiling": "aiokafka ceiling", "quix": "Quix Streams",
          "quix-stage": "Quix Streams doing the position stage's work", "positions": "pipeline: position stage",
          "pipeline": "pipeline: all stages", "hops": "same-hops floor (bare aiokafka, the pipeline's records)"}


def complete_runs(rows: list[dict]) -> list[dict]:
    """Drop runs the collector cut short: a stall longer than its idle wait (a busy box) ends a run
    early, and its rate then covers part of the data only. Complete = at least 95 % of the most
    outputs any run of that system and worker count produced from the same input."""
    most: dict[tuple, int] = {}
    for r in rows:
        k = (r["system"], r["workers"])
        most[k] = max(most.get(k, 0), r["outputs"])
    return [r for r in rows if r["outputs"] >= 0.95 * most[(r["system"], r["workers"])]]


def throughput_medians(rows: list[dict]) -> dict[str, dict]:
    groups: dict[str, list[dict]] = {}
    for r in complete_runs(rows):
        groups.setdefault(f"{r['system']}/w{r['workers']}", []).append(r)
    out = {}
    for name, runs in groups.items():
        med = {k: statistics.median(r[k] for r in runs if r.get(k) is not None)
               for k in ("outputs_per_s", "inputs_per_s", "cpu_util", "peak_rss_mb", "drain_s", "wall_from_start_s")}
        to_availability = [r["inputs_per_s_to_last_availability"] for r in runs if r.get("inputs_per_s_to_last_availability")]
        med["inputs_per_s_to_last_availability"] = statistics.median(to_availability) if to_availability else None
        per_cpu = [r["outputs_per_cpu_s"] for r in runs if r.get("outputs_per_cpu_s")]
        med["outputs_per_cpu_s"] = statistics.median(per_cpu) if per_cpu else None
        med["runs"] = len(runs)
        med["cut_short"] = sum(1 for r in rows if f"{r['system']}/w{r['workers']}" == name) - len(runs)
        med["spread"] = [round(min(r["outputs_per_s"] for r in runs)), round(max(r["outputs_per_s"] for r in runs))]
        out[name] = med
    return out


def ratios(medians: dict[str, dict]) -> dict[str, float]:
    """Each system's movements/s over the ceiling's: per-run pairs are not needed, medians of runs are."""
    ceiling = medians.get("ceiling/w1", {}).get("outputs_per_s")
    if not ceiling:
        return {}
    return {name: m["outputs_per_s"] / ceiling for name, m in medians.items()}


def _cut(m: dict) -> str:
    return f" (+{m['cut_short']} cut short)" if m.get("cut_short") else ""


def _stalled(r: dict) -> str:
    """Whether the broker stalled during a latency point (no probe before the fourteenth session)."""
    if "broker_stalled" not in r:
        return "–"
    if not r["broker_stalled"]:
        return "no"
    inputs = r.get("input_ack_max_ms")
    late_inputs = f", inputs {inputs:.0f} ms" if inputs is not None else ""
    return f"**yes** (probe {r['broker_probe_max_ms']:.0f} ms{late_inputs})"


def _fmt(v, digits: int = 0) -> str:
    if v is None:
        return "–"
    return f"{v:,.{digits}f}"


def tables(results: dict) -> str:
    med = throughput_medians(results["throughput"])
    rat = ratios(med)
    lines = ["| system | workers | movements/s (median) | min–max | raw events/s | ratio to ceiling | "
             "movements per CPU-s | worker CPU | peak RSS MB | runs |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name, m in sorted(med.items(), key=lambda kv: list(LABELS).index(kv[0].split("/")[0]) * 10 + int(kv[0][-1])):
        system, workers = name.split("/")
        raw = _fmt(m["inputs_per_s"]) if system in ("pipeline", "hops") else "–"
        lines.append(f"| {LABELS[system]} | {workers[1:]} | {_fmt(m['outputs_per_s'])} | {m['spread'][0]:,}–"
                     f"{m['spread'][1]:,} | {raw} | {_fmt(rat.get(name), 3)} | {_fmt(m['outputs_per_cpu_s'])} | "
                     f"{_fmt(m['cpu_util'], 2)} | {_fmt(m['peak_rss_mb'])} | {m['runs']}"
                     f"{_cut(m)} |")
    if med.get("pipeline/w1", {}).get("inputs_per_s_to_last_availability"):
        lines.append("")
        lines.append(f"All stages: from the first availability record to the last record of the last stage (channel "
                     f"availability or finance postings). Counted to the last availability record alone, as up to "
                     f"2026-12-02: {_fmt(med['pipeline/w1']['inputs_per_s_to_last_availability'])} raw events/s.")
    if "hops/w1" in med and "pipeline/w1" in med:
        lines.append("")
        lines.append(f"All stages / their same-hops floor (raw events/s): "
                     f"**{med['pipeline/w1']['inputs_per_s'] / med['hops/w1']['inputs_per_s']:.3f}**.")
    if "quix/w1" in med and "positions/w1" in med:
        lines.append("")
        lines.append(f"Position stage / Quix Streams: **{med['positions/w1']['outputs_per_s'] / med['quix/w1']['outputs_per_s']:.3f}**."
                     + (f" All stages / ceiling: **{rat.get('pipeline/w1', 0):.4f}**." if "pipeline/w1" in rat else ""))
    if "quix-stage/w1" in med and "positions/w1" in med:
        lines.append("")
        lines.append(f"Position stage / Quix Streams doing the position stage's work (the same rules, input and "
                     f"outputs): **{med['positions/w1']['outputs_per_s'] / med['quix-stage/w1']['outputs_per_s']:.2f}**.")
    if results["latency"]:
        lines += ["", "| system | workers | load | offered rate /s | achieved /s | p50 ms | p95 ms | p99 ms | max ms | "
                      "samples | last output after producer stopped, s | worker CPU | broker stalled |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in results["latency"]:
            lines.append(f"| {LABELS[r['system']]} | {r['workers']} | {int(r['share'] * 100)}% | {_fmt(r['rate'])} | "
                         f"{_fmt(r.get('achieved_rate'))} | {_fmt(r['p50_ms'])} | {_fmt(r['p95_ms'])} | "
                         f"{_fmt(r['p99_ms'])} | {_fmt(r['max_ms'])} | {r['samples']:,} | {_fmt(r.get('behind_s'), 1)} | "
                         f"{_fmt(r.get('cpu_util'), 2)} | {_stalled(r)} |")
        for f in results.get("failed", []):
            lines.append(f"| {f['point']} | | | | | failed: {f['error'][:120]} | | | | | | | |")
        lines += stage_batch_table(results["latency"])
    rec = results.get("recovery")
    if rec:
        lines += ["", "| recovery | positions | ready (readyz 200) s | position lookup 200 s | probe movement applied s | "
                      "positions/s | peak RSS MB |", "|---|---|---|---|---|---|---|",
                  f"| fresh worker, empty data dir | {rec['positions']:,} | {_fmt(rec['ready_s'], 1)} | "
                  f"{_fmt(rec['lookup_s'], 1)} | {_fmt(rec['probe_s'], 1)} (version {rec['probe_version']}) | "
                  f"{_fmt(rec['positions_per_s'])} | {_fmt(rec['peak_rss_mb'])} |"]
    m = results["machine"]
    if results.get("throughput_from") or results.get("latency_from"):
        lines += ["", f"Throughput figures from the run started {results.get('throughput_from')}, latency figures from "
                      f"the run started {results.get('latency_from') or results['started']}."]
    lines += ["", f"Run: `{results['command']}` from {results['started']} to {results.get('finished')}; "
                  f"{m['nproc']} × {m['cpu']}, {m['mem_gib']} GiB, Python {m['python']}; load average "
                  f"{'/'.join(f'{x:.2f}' for x in m['loadavg_start'])} at start, "
                  f"{'/'.join(f'{x:.2f}' for x in m.get('loadavg_end', ()))} at end; "
                  f"{'one-worker systems pinned to CPU 1, broker and harness to CPU 0' if results['pinned'] else 'no pinning'}; "
                  f"sizes {results['sizes']}."]
    return "\n".join(lines)


def stage_batch_table(points: list[dict]) -> list[str]:
    """Where the all-stages workers' time went at each latency point, per stage (`stage_batches`:
    the workers' own metrics, counted from their start, so the master stage's count is the master
    data loaded before the load)."""
    points = [r for r in points if r.get("stage_batches")]
    if not points:
        return []
    lines = ["", "| all stages: workers, load | stage | batches | records per batch | applying s | µs per record | "
                 "handing over s |", "|---|---|---|---|---|---|---|"]
    for r in points:
        for stage, b in sorted(r["stage_batches"].items()):
            if not b["records"]:
                continue
            lines.append(f"| {r['workers']}, {int(r['share'] * 100)}% | {stage} | {b['batches']:,} | "
                         f"{b['records'] / max(b['batches'], 1):.1f} | {b['apply_s']:.2f} | "
                         f"{1e6 * b['apply_s'] / b['records']:.0f} | {b['send_s']:.2f} |")
    return lines


def plot(results: dict, out: Path) -> list[Path]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    med = throughput_medians(results["throughput"])
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    names = sorted(med, key=lambda n: list(LABELS).index(n.split("/")[0]) * 10 + int(n[-1]))
    labels = [f"{LABELS[n.split('/')[0]]}\n{n.split('/')[1][1:]} worker(s)" for n in names]
    values = [med[n]["outputs_per_s"] for n in names]
    errs = [[max(0, v - med[n]["spread"][0]) for n, v in zip(names, values)],
            [max(0, med[n]["spread"][1] - v) for n, v in zip(names, values)]]
    ax1.barh(labels, values, xerr=errs, color=["#888" if n.startswith("ceiling") else "#4a7" for n in names])
    ax1.set_xscale("log")  # four orders of magnitude apart: a linear axis hides the pipeline's bars
    for y, v in enumerate(values):
        ax1.text(v, y, f" {v:,.0f}", va="center", fontsize=8)
    ax1.set_xlabel("movements / s, log scale (median of runs, min–max bars)")
    ax1.set_title("Drain throughput")
    ax1.invert_yaxis()
    lat = results["latency"]
    if lat:
        keys = sorted({(r["system"], r["workers"]) for r in lat}, key=lambda k: list(LABELS).index(k[0]) * 10 + k[1])
        width = 0.38
        for j, share in enumerate((0.5, 0.8)):
            # The point the broker did not stall in, if there is one (run.py runs a stalled one again).
            rows = [min((r for r in lat if (r["system"], r["workers"]) == k and r["share"] == share),
                        key=lambda r: bool(r.get("broker_stalled")), default=None)
                    for k in keys]
            xs = [i + (j - 0.5) * width for i in range(len(keys))]
            ax2.bar(xs, [r["p99_ms"] if r else 0 for r in rows], width, label=f"p99 at {int(share * 100)}% load",
                    alpha=0.55)
            ax2.scatter(xs, [r["p50_ms"] if r else 0 for r in rows], marker="_", s=300, color="k",
                        label="p50" if j == 0 else None)
        ax2.set_xticks(range(len(keys)))
        ax2.set_xticklabels([f"{LABELS[s]}\n{w} worker(s)" for s, w in keys], fontsize=7, rotation=20, ha="right")
        ax2.set_ylabel("ms, input record → output record")
        ax2.set_yscale("log")
        ax2.axhline(250, color="r", lw=0.8, ls="--")
        ax2.set_title("Latency at 50% / 80% of each system's max rate")
        ax2.legend(fontsize=8)
    fig.tight_layout()
    path = out / "throughput_latency.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [path]


def write(results: dict, out: Path, update_docs: bool = True) -> None:
    if results["throughput"]:
        try:
            plot(results, out)
        except ImportError:
            print("matplotlib is not installed: no plot (pip install -e '.[bench]')")
    if update_docs and DOC.exists():
        text = DOC.read_text()
        if BEGIN in text and END in text:
            head, rest = text.split(BEGIN, 1)
            _, tail = rest.split(END, 1)
            DOC.write_text(f"{head}{BEGIN}\n{tables(results)}\n{END}{tail}")


def summary(results: dict) -> str:
    return tables(results)
