#!/usr/bin/python3
"""Exports the benchmark models: torchvision's resnet18 with random weights (seed 0), 10 classes, for
3×64×64 inputs, traced (resnet18_bench_traced.pt) and scripted (resnet18_bench_scripted.pt).

Usage: /usr/bin/python3 benchmarks/export_models.py OUTDIR
"""
import os
import sys

import torch
import torchvision


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None, num_classes=10).eval()
    example = torch.rand(2, 3, 64, 64)
    torch.jit.trace(model, example).save(os.path.join(out, "resnet18_bench_traced.pt"))
    torch.jit.script(model).save(os.path.join(out, "resnet18_bench_scripted.pt"))
    print("wrote resnet18_bench_traced.pt and resnet18_bench_scripted.pt to", out)


if __name__ == "__main__":
    main()
