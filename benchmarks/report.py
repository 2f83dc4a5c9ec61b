#!/usr/bin/python3
"""Turns galvani_bench JSON output into the markdown table of docs/benchmarks.md.

Usage: build/benchmarks/galvani_bench --benchmark_format=json --benchmark_out=bench.json
       /usr/bin/python3 benchmarks/report.py bench.json [more.json ...]
Each method's time is divided by the floor of the same model (a plain chunked forward+backward to the layer
over the same path points, same shards and threads); "five" is also divided by the slowest single method.
With several files (runs of the same benchmark at different times), ratios are taken within each run and the
table shows the median time and the median ratio, with the range of the ratios: on a noisy machine a ratio
within one run is steadier than a time across runs.
"""
import json
import statistics
import sys


def load(path):
    with open(path) as f:
        data = json.load(f)
    times = {}
    for b in data["benchmarks"]:
        if b.get("run_type") == "aggregate" and b.get("aggregate_name") != "median":
            continue
        label, model = b["run_name"].split("/")[:2]
        times.setdefault(model, {})[label] = b["real_time"]
    return data["context"], times


def floor_of(t, label):
    # DeepLIFT's floors are "floor-2n" (zero baselines) and "floor-2n-distinct" (one per input).
    floor = t.get("floor") or t.get("floor-2n")
    if label.endswith("-distinct"):
        floor = t.get("floor-2n-distinct", floor)
    return floor


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    runs = [load(path) for path in sys.argv[1:]]
    context = runs[0][0]
    print(f"machine: {context.get('num_cpus')} × {context.get('mhz_per_cpu')} MHz, {context.get('date')}"
          + (f", {len(runs)} runs" if len(runs) > 1 else ""))
    print()
    print("| model | method | time (ms) | × floor |" + (" range |" if len(runs) > 1 else ""))
    print("|---|---|---|---|" + ("---|" if len(runs) > 1 else ""))
    for model, first in runs[0][1].items():
        for label in first:
            times = [t[model][label] for _, t in runs if label in t.get(model, {})]
            ratios = [t[model][label] / floor_of(t[model], label) for _, t in runs
                      if label in t.get(model, {}) and floor_of(t[model], label)]
            ratio = f"{statistics.median(ratios):.2f}" if ratios else "–"
            spread = ""
            if len(runs) > 1:
                spread = f" {min(ratios):.2f}–{max(ratios):.2f} |" if ratios else " |"
            print(f"| {model} | {label} | {statistics.median(times):.1f} | {ratio} |{spread}")
        t = first
        singles = [t[k] for k in ("conductance", "nig", "internal-influence") if k in t]
        if "five" in t and singles:
            print(f"| {model} | five ÷ slowest single | | {t['five'] / max(singles):.2f} |")


if __name__ == "__main__":
    main()
