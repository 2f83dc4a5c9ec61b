#!/usr/bin/python3
"""Turns galvani_bench JSON output into the markdown table of docs/benchmarks.md.

Usage: build/benchmarks/galvani_bench --benchmark_format=json --benchmark_out=bench.json
       /usr/bin/python3 benchmarks/report.py bench.json
Each method's time is divided by the floor of the same model (a plain chunked forward+backward to the layer
over the same path points, same shards and threads); "five" is also divided by the slowest single method.
"""
import json
import sys


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    with open(sys.argv[1]) as f:
        data = json.load(f)
    times = {}
    for b in data["benchmarks"]:
        if b.get("run_type") == "aggregate" and b.get("aggregate_name") != "median":
            continue
        label, model = b["run_name"].split("/")[:2]
        times.setdefault(model, {})[label] = b["real_time"]
    print(f"machine: {data['context'].get('num_cpus')} × {data['context'].get('mhz_per_cpu')} MHz, "
          f"{data['context'].get('date')}")
    print()
    print("| model | method | time (ms) | × floor |")
    print("|---|---|---|---|")
    for model, t in times.items():
        for label, ms in t.items():
            # DeepLIFT's floors are "floor-2n" (zero baselines) and "floor-2n-distinct" (one per input).
            floor = t.get("floor") or t.get("floor-2n")
            if label.endswith("-distinct"):
                floor = t.get("floor-2n-distinct", floor)
            ratio = f"{ms / floor:.2f}" if floor else "–"
            print(f"| {model} | {label} | {ms:.1f} | {ratio} |")
        singles = [t[k] for k in ("conductance", "nig", "internal-influence") if k in t]
        if "five" in t and singles:
            print(f"| {model} | five ÷ slowest single | | {t['five'] / max(singles):.2f} |")


if __name__ == "__main__":
    main()
