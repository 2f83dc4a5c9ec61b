#!/usr/bin/python3
"""galvani.captum against Captum, in one process, on the example CNN: the same classes, calls and arguments.

For each class both tools' `attribute` calls alternate `--repetitions` times after one warm-up call each (Galvani's
warm-up also scripts and saves the model once per instance); printed: the medians, Captum ÷ Galvani with the
range over the repetitions, and the max abs difference between the two results relative to the largest |value|.

    CAPTUM_PATH=../shared/vendor PYTHONPATH=build/python /usr/bin/python3 benchmarks/captum/facade_side_by_side.py

Both run on the same libtorch with torch.set_num_threads(--threads) (Galvani: [run] threads is the same count).
Without CAPTUM_PATH the script says so and exits 0.
"""
import argparse
import importlib
import os
import statistics
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from side_by_side import eager_model, model_files, submodule  # noqa: E402

CALLS = [  # class, layer, attribute keyword arguments
    ("LayerConductance", "features.4", {"n_steps": 50, "method": "gausslegendre"}),
    ("InternalInfluence", "features.4", {"n_steps": 50, "method": "gausslegendre"}),
    ("LayerIntegratedGradients", "features.4", {"n_steps": 50, "method": "gausslegendre"}),
    ("LayerGradientXActivation", "features.4", {}),
    ("LayerDeepLift", "features.4", {}),
    ("NeuronConductance", "classifier.2", {"n_steps": 50, "method": "gausslegendre", "neuron_selector": 3}),
]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repetitions", type=int, default=5)
    a = ap.parse_args()
    captum_path = os.environ.get("CAPTUM_PATH")
    if not captum_path or not os.path.isdir(os.path.join(captum_path, "captum")):
        print("CAPTUM_PATH does not name a folder holding the captum package: nothing measured")
        return 0
    sys.path.insert(0, captum_path)
    cattr = importlib.import_module("captum.attr")
    from galvani import captum as gc

    torch.set_num_threads(a.threads)
    model = eager_model("fashion", model_files("fashion", ""))
    x = torch.load(os.path.join(os.path.dirname(os.path.dirname(HERE)), "docs/examples/fashion_test.pt"))[:a.batch]
    target = model(x).argmax(1)
    print(f"example CNN, batch {a.batch}, {a.threads} thread(s), medians of {a.repetitions}")
    print(f"{'class':<26}{'Captum s':>10}{'Galvani s':>11}{'ratio':>8}  {'range':<13}{'max diff (rel)':>15}")
    for name, layer, kwargs in CALLS:
        kwargs = dict(kwargs)
        args = (x, kwargs.pop("neuron_selector")) if "neuron_selector" in kwargs else (x,)
        extra = {} if name == "LayerGradientXActivation" else {"baselines": None}
        theirs = getattr(cattr, name)(model, submodule(model, layer))
        ours = getattr(gc, name)(model, submodule(model, layer))
        times = {"captum": [], "galvani": []}
        results = {}
        for tool, obj in (("captum", theirs), ("galvani", ours)):  # warm-up
            results[tool] = obj.attribute(*args, target=target, **extra, **kwargs)
        for _ in range(a.repetitions):
            for tool, obj in (("captum", theirs), ("galvani", ours)):
                t0 = time.perf_counter()
                results[tool] = obj.attribute(*args, target=target, **extra, **kwargs)
                times[tool].append(time.perf_counter() - t0)
        c, g = statistics.median(times["captum"]), statistics.median(times["galvani"])
        ratios = sorted(ct / gt for ct, gt in zip(times["captum"], times["galvani"]))
        diff = ((results["galvani"].double() - results["captum"].double()).abs().max() /
                results["captum"].double().abs().max()).item()
        print(f"{name:<26}{c:>10.3f}{g:>11.3f}{c / g:>7.2f}×  {ratios[0]:.2f}–{ratios[-1]:.2f}×{diff:>15.1e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
