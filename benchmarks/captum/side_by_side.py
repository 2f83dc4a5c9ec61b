#!/usr/bin/python3
"""Galvani and Captum side by side on the same models, inputs, targets and settings, in one sitting.

For every workload both tools run as whole processes, alternating A/B, `--repetitions` times per thread setting:
Galvani as `galvani run CONFIG --quiet`, Captum as this script in worker mode (python3, torch, captum imported,
the model rebuilt and loaded, the attribute calls made twice). Printed per workload and thread setting: each
tool's median in-process time (Galvani: the run's "run (wall)" from summary.json, attribution over all shards,
after planning's probe forwards; Captum: the second, warm call, for the fastest internal_batch_size; its first,
cold call is given too), the whole-process medians (Captum's less its second call), the
ratios Captum ÷ Galvani with the range over the repetitions, the max abs difference between the two tools'
attributions and, with --accuracy, each tool's max abs error against a converged reference (Captum, 1024
Gauss-Legendre steps, float64).

    CAPTUM_PATH=../shared/vendor /usr/bin/python3 benchmarks/captum/side_by_side.py \
        --galvani build/host/galvani --model fashion --cores 1,2 --repetitions 5 --accuracy --json out.json

Captum is found through CAPTUM_PATH (the folder holding the `captum` package); without it the script says so
and exits 0 without measuring. Needs python3-torch (and python3-torchvision for resnet18), python3-tqdm and
python3-matplotlib (Captum imports them).
"""
import argparse
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

# Workloads: Galvani methods (run together in one run) and the Captum calls doing the same work.
WORKLOADS = {
    "conductance": (["conductance"], ["LayerConductance"]),
    "nig": (["nig"], ["LayerConductance"]),
    "internal-influence": (["internal-influence"], ["InternalInfluence"]),
    "integrated-gradients": (["integrated-gradients"], ["IntegratedGradients"]),
    "gradient-x-activation": (["gradient-x-activation"], ["LayerGradientXActivation"]),
    "deeplift": (["deeplift"], ["LayerDeepLift"]),
    "five path methods": (["conductance", "nig", "internal-influence", "integrated-gradients",
                           "gradient-x-activation"],
                          ["LayerConductance", "LayerIntegratedGradients", "InternalInfluence", "IntegratedGradients",
                           "LayerGradientXActivation"]),
}
PATH_CALLS = {"LayerConductance", "LayerIntegratedGradients", "InternalInfluence", "IntegratedGradients"}
MODELS = {
    # name: (layer, batch)
    "fashion": ("features.4", 64),
    "resnet18": ("layer1", 8),
}


def model_files(name, bench_models):
    if name == "fashion":
        return os.path.join(ROOT, "docs/examples/fashion_cnn.pt")
    return os.path.join(bench_models, "resnet18_bench_traced.pt")


def eager_model(name, path):
    """The eager nn.Module Captum needs (it hooks submodules), with the TorchScript model's weights."""
    import torch
    if name == "fashion":
        spec = importlib.util.spec_from_file_location("train_fashion", os.path.join(ROOT, "docs/examples/train_fashion.py"))
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        model = mod.FashionCNN()
    else:
        import torchvision
        model = torchvision.models.resnet18(weights=None, num_classes=10)
    model.load_state_dict(torch.jit.load(path).state_dict())
    return model.eval()


def submodule(model, dotted):
    for part in dotted.split("."):
        model = getattr(model, part)
    return model


def make_inputs(name, out):
    import torch
    layer, batch = MODELS[name]
    if name == "fashion":
        x = torch.load(os.path.join(ROOT, "docs/examples/fashion_test.pt"))[:batch].contiguous()
    else:
        torch.manual_seed(0)
        x = torch.rand(batch, 3, 64, 64)
    torch.save(x, out)


# ---------------------------------------------------------------------------------------------------- worker
def captum_call(call, model, layer, x, target, steps, internal_batch, dtype_double=False):
    import torch
    from captum import attr
    baselines = torch.zeros_like(x)
    ib = internal_batch or None
    if call == "LayerConductance":
        return attr.LayerConductance(model, layer).attribute(x, baselines, target=target, n_steps=steps,
                                                             method="gausslegendre", internal_batch_size=ib)
    if call == "LayerIntegratedGradients":
        return attr.LayerIntegratedGradients(model, layer).attribute(x, baselines, target=target, n_steps=steps,
                                                                     method="gausslegendre", internal_batch_size=ib)
    if call == "InternalInfluence":
        return attr.InternalInfluence(model, layer).attribute(x, baselines, target=target, n_steps=steps,
                                                              method="gausslegendre", internal_batch_size=ib)
    if call == "IntegratedGradients":
        return attr.IntegratedGradients(model).attribute(x, baselines, target=target, n_steps=steps,
                                                         method="gausslegendre", internal_batch_size=ib)
    if call == "LayerGradientXActivation":
        return attr.LayerGradientXActivation(model, layer).attribute(x, target=target)
    if call == "LayerDeepLift":
        return attr.LayerDeepLift(model, layer).attribute(x, baselines, target=target)
    raise ValueError(call)


def worker(args):
    """One whole Captum process: import, load, attribute; prints {"seconds": in-process, "files": [...]}."""
    import torch
    torch.set_num_threads(args.threads)
    model = eager_model(args.model, args.model_file)
    x = torch.load(args.inputs)
    if args.double:
        model = model.double()
        x = x.double()
    layer_name = MODELS[args.model][0]
    layer = submodule(model, layer_name)
    with torch.no_grad():
        target = model(x).argmax(1)
    calls = args.calls.split(",")
    t0 = time.perf_counter()
    results = [captum_call(c, model, layer, x, target, args.steps, args.internal_batch) for c in calls]
    seconds = time.perf_counter() - t0
    warm = []  # the same calls again in this process: no first-call costs (allocations, kernels, hooks)
    for _ in range(args.inner):
        t0 = time.perf_counter()
        for c in calls:
            captum_call(c, model, layer, x, target, args.steps, args.internal_batch)
        warm.append(time.perf_counter() - t0)
    files = []
    for c, r in zip(args.calls.split(","), results):
        f = os.path.join(args.out, f"{c}.pt")
        torch.save(r.detach(), f)
        files.append(f)
    print(json.dumps({"seconds": seconds, "warm": warm, "files": files}))


# ---------------------------------------------------------------------------------------------------- driver
def galvani_config(model_file, inputs, layer, methods, threads, steps):
    lines = [f'[model]\npath = "{model_file}"\n[data]\ninputs = "{inputs}"\n[run]\nthreads = {threads}\n']
    for m in methods:
        where = '["input"]' if m == "integrated-gradients" else f'["{layer}"]'
        lines.append(f'[[methods]]\nplugin = "{m}"\n')
        if m != "integrated-gradients":
            lines.append(f"layers = {where}\n")
        if m in ("conductance", "nig", "internal-influence", "integrated-gradients"):
            lines.append(f'steps = {steps}\nrule = "gausslegendre"\n')
        if m == "deeplift":
            lines.append('nonlinear_rule = "rescale"\n')
    return "".join(lines)


def pin(cores):
    return ["taskset", "-c", ",".join(str(c) for c in range(cores))] if shutil.which("taskset") else []


def run_galvani(args, cfg, out, cores):
    t0 = time.perf_counter()
    subprocess.run(pin(cores) + [args.galvani, "run", cfg, "--out", out, "--quiet"], check=True,
                   stdout=subprocess.DEVNULL)
    whole = time.perf_counter() - t0
    with open(os.path.join(out, "summary.json")) as f:
        summary = json.load(f)
    return summary["timings_seconds"]["run (wall)"], whole, summary


def run_captum(args, model_file, inputs, calls, cores, internal_batch, out, steps=50, double=False, inner=0):
    env = dict(os.environ, PYTHONPATH=args.captum + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cmd = pin(cores) + [sys.executable, os.path.abspath(__file__), "--worker", "--model", args.model_name,
                        "--model-file", model_file, "--inputs", inputs, "--calls", ",".join(calls),
                        "--threads", str(cores), "--internal-batch", str(internal_batch), "--steps", str(steps),
                        "--out", out, "--inner", str(inner)] + (["--double"] if double else [])
    t0 = time.perf_counter()
    done = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
    whole = time.perf_counter() - t0
    return json.loads(done.stdout.strip().splitlines()[-1]), whole


def max_abs(a, b):
    return float((a.double() - b.double()).abs().max())


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--model-file", help=argparse.SUPPRESS)
    p.add_argument("--inputs", help=argparse.SUPPRESS)
    p.add_argument("--calls", help=argparse.SUPPRESS)
    p.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--internal-batch", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--steps", type=int, default=50, help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    p.add_argument("--double", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--inner", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--galvani", default=os.path.join(ROOT, "build/host/galvani"), help="the galvani binary")
    p.add_argument("--bench-models", default=os.path.join(ROOT, "build/bench_models"),
                   help="folder of resnet18_bench_traced.pt (benchmarks/export_models.py)")
    p.add_argument("--model", dest="model", default="fashion", choices=sorted(MODELS))
    p.add_argument("--workloads", default=",".join(WORKLOADS), help="comma-separated, from: " + ", ".join(WORKLOADS))
    p.add_argument("--cores", default="1,2", help="thread settings: cores given to each tool (taskset)")
    p.add_argument("--internal-batches", default="0,32,64,128", help="Captum internal_batch_size values (0 = none)")
    p.add_argument("--repetitions", type=int, default=5)
    p.add_argument("--accuracy", action="store_true", help="also each tool's error against a converged reference")
    p.add_argument("--reference-steps", type=int, default=1024)
    p.add_argument("--json", help="write every measurement here")
    args = p.parse_args()
    if args.worker:
        return worker(args)

    captum = os.environ.get("CAPTUM_PATH")
    if not captum or not os.path.isdir(os.path.join(captum, "captum")):
        print("side_by_side: skipped: set CAPTUM_PATH to the folder holding the captum package "
              "(e.g. CAPTUM_PATH=../shared/vendor) to measure Captum beside Galvani")
        return 0
    args.captum = os.path.abspath(captum)
    args.model_name = args.model
    import torch
    model_file = model_files(args.model, args.bench_models)
    if not os.path.exists(model_file):
        sys.exit(f"side_by_side: {model_file} not found (build the benchmarks: it is made by export_models.py)")
    layer, batch = MODELS[args.model]
    work = tempfile.mkdtemp(prefix="galvani-captum-")
    inputs = os.path.join(work, "inputs.pt")
    make_inputs(args.model, inputs)
    records = []
    references = {}
    if args.accuracy:  # Captum, converged, float64: one reference per Captum call kind (path methods only)
        for call in sorted(PATH_CALLS | {"LayerGradientXActivation", "LayerDeepLift"}):
            out = os.path.join(work, "reference-" + call)
            os.makedirs(out)
            steps = args.reference_steps if call in PATH_CALLS else 50
            r, _ = run_captum(args, model_file, inputs, [call], 2, 64, out, steps=steps, double=True)
            references[call] = torch.load(r["files"][0])
    # What each Galvani method is compared with.
    reference_of = {"conductance": "LayerConductance", "nig": "LayerConductance",
                    "internal-influence": "InternalInfluence", "integrated-gradients": "IntegratedGradients",
                    "gradient-x-activation": "LayerGradientXActivation", "deeplift": "LayerDeepLift"}
    print(f"model {args.model}, layer {layer}, batch {batch}, 50 Gauss-Legendre steps, zero baselines, "
          f"predicted targets; {args.repetitions} repetitions, A/B alternating")
    header = ("workload", "cores", "galvani s", "captum s, warm (best ib)", "captum/galvani in-process", "range",
              "captum cold/galvani",
              "whole: galvani s", "whole: captum s", "captum/galvani whole", "max |galvani - captum|",
              "galvani err", "captum err")
    print(" | ".join(header))
    for name in args.workloads.split(","):
        methods, calls = WORKLOADS[name]
        for cores in [int(c) for c in args.cores.split(",")]:
            cfg = os.path.join(work, f"{name}-{cores}.toml".replace(" ", "_"))
            with open(cfg, "w") as f:
                f.write(galvani_config(model_file, inputs, layer, methods, 1 if cores == 1 else 0, 50))
            ibs = [int(b) for b in args.internal_batches.split(",")] if set(calls) & PATH_CALLS else [0]
            g_in, g_whole = [], []
            c_in, c_cold, c_whole = ({ib: [] for ib in ibs} for _ in range(3))
            summary, captum_files = None, {}
            for rep in range(args.repetitions):
                g_out = os.path.join(work, "galvani-out")
                gi, gw, summary = run_galvani(args, cfg, g_out, cores)
                g_in.append(gi)
                g_whole.append(gw)
                for ib in ibs:
                    out = os.path.join(work, f"captum-{ib}")
                    os.makedirs(out, exist_ok=True)
                    r, cw = run_captum(args, model_file, inputs, calls, cores, ib, out, inner=1)
                    c_in[ib].append(r["warm"][0])
                    c_cold[ib].append(r["seconds"])
                    c_whole[ib].append(cw - r["warm"][0])  # the process as if it made the first call only
                    captum_files[ib] = r["files"]
            best = min(ibs, key=lambda ib: statistics.median(c_in[ib]))
            gm, cm = statistics.median(g_in), statistics.median(c_in[best])
            ratios = sorted(c / g for c, g in zip(c_in[best], g_in))
            gwm, cwm = statistics.median(g_whole), statistics.median(c_whole[best])
            # Outputs: the first method against the first call (the workload's defining pair).
            m0 = methods[0]
            g_file = os.path.join(g_out, "attributions", m0, ("input" if m0 == "integrated-gradients" else layer) + ".pt")
            g_vals = torch.load(g_file)
            c_vals = torch.load(captum_files[best][0])
            diff = max_abs(g_vals, c_vals)
            g_err = c_err = None
            ref = references.get(reference_of.get(m0, ""))
            if ref is not None:
                g_err = max_abs(g_vals, ref)
                c_err = max_abs(c_vals, ref)
            rec = dict(workload=name, model=args.model, cores=cores, galvani_s=g_in, captum_s=c_in[best],
                       captum_internal_batch=best, captum_all=c_in, captum_cold_s=c_cold[best],
                       ratio_cold=statistics.median(c_cold[best]) / gm, galvani_whole_s=g_whole,
                       captum_whole_s=c_whole[best], ratio_in_process=cm / gm, ratio_range=[ratios[0], ratios[-1]],
                       ratio_whole=cwm / gwm, max_abs_difference=diff, galvani_error=g_err, captum_error=c_err,
                       galvani_timings=summary["timings_seconds"])
            records.append(rec)
            fmt = lambda v: "–" if v is None else f"{v:.2g}"
            print(" | ".join([name, str(cores), f"{gm:.4g}", f"{cm:.4g} ({best or 'none'})", f"{cm / gm:.2f}",
                              f"{ratios[0]:.2f}–{ratios[-1]:.2f}", f"{statistics.median(c_cold[best]) / gm:.2f}",
                              f"{gwm:.3g}", f"{cwm:.3g}", f"{cwm / gwm:.2f}",
                              fmt(diff), fmt(g_err), fmt(c_err)]), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(records, f, indent=1)
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
