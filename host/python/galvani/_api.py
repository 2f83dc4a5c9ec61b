"""The native API: Session, run, layers. Everything here only shapes arguments for the engine (_galvani) and
its results for Python; the checks and the numbers are the engine's."""
import collections
import collections.abc
import os
import shutil
import sys
import tempfile
import threading
import warnings
import weakref

import torch

from . import _galvani
from ._galvani import ConfigError
from ._paths import PLUGIN_DIR

_galvani.set_builtin_plugins(PLUGIN_DIR)

__all__ = ["Session", "run", "layers", "plugins", "methods", "evaluators", "component_names", "Result",
           "RunResults", "Attribution", "Evaluation", "Layer"]

Layer = collections.namedtuple("Layer", "name type shape call_index call_count")
Layer.__doc__ = """One layer of a model, as `galvani layers` lists it: its name (what configs and `layers=` take),
module type, output shape of one input (None until probed with an example input) and, for a module called more
than once, which call (call_index of call_count)."""


class Attribution:
    """One method's attribution at one layer over all inputs.

    values: [N, ...] (a layer's units, or input features for input-space methods); delta: Σ values − (F(x) − F(x′))
    per input, [N], or None where the method has no completeness; extras: further per-input tensors (standard
    errors, tokens, ...); notes: what the method wants you to know about this result."""

    __slots__ = ("method", "layer", "space", "values", "delta", "extras", "notes")

    def __init__(self, record):
        for k in self.__slots__:
            setattr(self, k, record[k])

    def __repr__(self):
        shape = tuple(self.values.shape) if self.values is not None else None
        return f"Attribution(method={self.method!r}, layer={self.layer!r}, values: {shape}, " \
               f"delta: {'None' if self.delta is None else tuple(self.delta.shape)})"


class Evaluation:
    """One evaluator's output: metrics (method, layer, name, value), tables (name, columns, rows), curves and
    matrices, as summary.json and the report have them."""

    __slots__ = ("name", "metrics", "tables", "curves", "matrices")

    def __init__(self, name, record):
        self.name = name
        self.metrics = record["metrics"]
        self.tables = {t["name"]: t for t in record["tables"]}
        self.curves = record["curves"]
        self.matrices = record["matrices"]

    def metric(self, name, method="", layer=""):
        """The value of one metric; KeyError listing the metrics there are when it is absent."""
        for m in self.metrics:
            if m["name"] == name and m["method"] == method and m["layer"] == layer:
                return m["value"]
        have = sorted({(m["method"], m["layer"], m["name"]) for m in self.metrics})
        raise KeyError(f"{self.name}: no metric {name!r} for method {method!r}, layer {layer!r}; it has {have}")

    def __repr__(self):
        return f"Evaluation({self.name!r}: {len(self.metrics)} metrics, tables {sorted(self.tables)})"


class _Outcome:
    """What every run gives: F(x), F(x′), the targets, timings, and writing it all as `galvani run` does."""

    def __init__(self, run):
        self._run = run
        self.f_input = run.f_input
        self.f_baseline = run.f_baseline
        self.targets = run.targets
        self.timings = dict(run.timings)

    def write(self, dir):
        """Writes attributions, scores, tables, summary.json and the report into `dir`, atomically, as
        `galvani run` does."""
        self._run.write(os.fspath(dir))


class _ByLayer(collections.abc.Mapping):
    """One method's attributions, by layer."""

    def __init__(self, method, attributions):
        self.method = method
        self._by_layer = collections.OrderedDict((a.layer, a) for a in attributions if a.method == method)

    def __getitem__(self, layer):
        try:
            return self._by_layer[layer]
        except KeyError:
            raise KeyError(f"{self.method}: no result for layer {layer!r}; it has {list(self._by_layer)}") from None

    def __iter__(self):
        return iter(self._by_layer)

    def __len__(self):
        return len(self._by_layer)

    def __repr__(self):
        return f"{type(self).__name__}({self.method!r}, layers {list(self._by_layer)})"


class Result(_Outcome, _ByLayer):
    """One method's results, by layer: ``r["features.4"].values``. Input-space methods have one entry named after
    their target (e.g. "input")."""

    def __init__(self, run, method):
        _Outcome.__init__(self, run)
        _ByLayer.__init__(self, method, [Attribution(rec) for rec in run.results])
        for f in run.failures:
            raise _galvani.Error(f"{f['kind']} '{f['name']}' failed: {f['message']}")


class RunResults(_Outcome):
    """A whole run: every method's attributions, the evaluations, and what failed.

    ``r[method]`` is that method's attributions by layer; ``evaluations[name]`` an Evaluation; ``failures`` lists the methods
    and evaluators that failed while the rest went on (``complete`` is then False)."""

    def __init__(self, run):
        super().__init__(run)
        records = run.results
        self.attributions = [Attribution(r) for r in records]
        names = list(collections.OrderedDict.fromkeys(r["method"] for r in records))
        self.methods = {n: _ByLayer(n, self.attributions) for n in names}
        self.evaluations = collections.OrderedDict((n, Evaluation(n, e)) for n, e in run.evaluations)
        self.failures = run.failures
        self.complete = not self.failures

    def __getitem__(self, method):
        try:
            return self.methods[method]
        except KeyError:
            raise KeyError(f"no method {method!r} in this run; it has {list(self.methods)}") from None

    def __repr__(self):
        return f"RunResults(methods {list(self.methods)}, evaluations {list(self.evaluations)}, " \
               f"complete={self.complete})"


# ---- progress ---------------------------------------------------------------------------------------------------

class _Progress:
    """A tqdm bar over shards (shown after 2 s, so short work stays quiet), then a line per evaluator; nothing
    without tqdm unless asked."""

    def __init__(self, mode):
        self.mode = mode
        self.bar = None
        try:
            import tqdm  # noqa: F401
            self.tqdm = tqdm
        except ImportError:
            self.tqdm = None

    def __call__(self, stage, done, total):
        if self.mode is False:
            return
        if self.mode not in (None, True):
            self.mode(stage, done, total)  # the caller's own function
            return
        if stage == "shards":
            if self.tqdm is not None:
                if self.bar is None:
                    self.bar = self.tqdm.tqdm(total=total, desc="attributing", unit="shard",
                                              delay=0 if self.mode else 2, leave=False, file=sys.stderr)
                self.bar.update(done - self.bar.n)
                if done == total:
                    self.close()
            elif self.mode:
                print(f"\rattributing: {done}/{total} shards", end="\n" if done == total else "",
                      file=sys.stderr, flush=True)
        elif self.mode and done == total:
            print(f"{stage} done", file=sys.stderr, flush=True)

    def close(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _execute(planned, progress):
    p = _Progress(progress)
    try:
        return planned.execute(p)
    finally:
        p.close()


# ---- models -----------------------------------------------------------------------------------------------------

class _ModelFile:
    """A model as the engine loads it: a TorchScript file. A ScriptModule is saved once into a private temporary
    folder (removed with the session); a plain nn.Module is scripted, or, where scripting fails, traced on the first
    input it is given (with a warning saying why)."""

    def __init__(self, model):
        self.how = None  # "file", "script module", "scripted", "traced"
        self.why = ""
        self._dir = None
        self._module = None
        if isinstance(model, (str, os.PathLike)):
            self.path = os.fspath(model)
            self.how = "file"
            return
        if isinstance(model, torch.jit.ScriptModule):
            self._save(model)
            self.how = "script module"
            return
        if isinstance(model, torch.nn.Module):
            try:
                scripted = torch.jit.script(model)
            except Exception as e:  # TorchScript cannot compile it: trace it when the first input comes
                self._module = model
                self.why = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                self.path = None
                return
            self._save(scripted)
            self.how = "scripted"
            return
        raise ConfigError(f"model: expected a torch.jit.ScriptModule, a torch.nn.Module or the path of a TorchScript "
                          f"file, got {type(model).__name__}")

    def _save(self, module):
        self._dir = tempfile.mkdtemp(prefix="galvani-model-")
        self._cleanup = weakref.finalize(self, shutil.rmtree, self._dir, True)
        self.path = os.path.join(self._dir, "model.pt")
        torch.jit.save(module, self.path)

    def resolve(self, example):
        """The file's path; a module that could not be scripted is traced on `example` (one input) first."""
        if self.path is not None:
            return self.path
        if example is None:
            raise ConfigError(f"model: {type(self._module).__name__} cannot be scripted ({self.why}), and tracing it "
                              f"needs an example input; pass inputs, or give a traced module "
                              f"(torch.jit.trace(model, example))")
        try:
            with torch.no_grad():
                traced = torch.jit.trace(self._module, example, check_trace=False)
        except Exception as e:
            raise ConfigError(f"model: {type(self._module).__name__} can neither be scripted ({self.why}) nor traced "
                              f"({str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__}); export "
                              f"it yourself (torch.jit.script or torch.jit.trace) and pass the ScriptModule") from None
        warnings.warn(f"galvani: {type(self._module).__name__} could not be scripted ({self.why}), so it was traced "
                      f"on the first input: a traced model records the one path its Python control flow took for "
                      f"that input", stacklevel=4)
        self._save(traced)
        self.how = "traced"
        return self.path


def _tensor(value, what):
    if value is None or isinstance(value, torch.Tensor):
        return value
    if isinstance(value, (list, tuple)):
        return torch.as_tensor(value)
    raise ConfigError(f"{what}: expected a torch.Tensor, got {type(value).__name__}")


def _data_entry(value, what):
    """A baselines/target argument as the config's key (a string, a class index) or a tensor for the engine."""
    if isinstance(value, bool):
        raise ConfigError(f"{what}: expected a string, a class index or a torch.Tensor, got bool")
    if isinstance(value, (str, int)):
        return value, None
    return None, _tensor(value, what)


class Session:
    """A model with its settings, ready to attribute.

    model: a torch.jit.ScriptModule, a torch.nn.Module (scripted for you, or traced on the first input where
    scripting fails, with a warning), or the path of a TorchScript file. The session uses the model as it is when
    the session is made (a ScriptModule or nn.Module is saved once into a private file); make a new session after
    changing its weights. The engine loads the model on the first call and keeps it, with the graphs it builds for
the layers asked for, for the calls after; calls on one session run one at a time.

    The keyword arguments are the [model], [data] and [run] keys of a config file (docs/config.md): device ("cpu",
    "cuda", "cuda:N"), dtype ("float32", "float64" or None: the model's), output ("logit", "probability",
    "logit-minus-mean"), output_element (the position or key of the tensor to explain when forward returns a tuple
    or dict), path_layer (paths in that layer's output space: token-id models), vocabulary, training, linear,
    threads, shard_size, precision ("model" or "double"), backend, plugin_paths.
    """

    def __init__(self, model, *, device="cpu", dtype=None, output="logit", output_element=None, path_layer=None,
                 vocabulary=None, training=None, linear=None, threads=None, shard_size=None, precision=None,
                 backend=None, plugin_paths=None):
        self._model = _ModelFile(model)
        self._loaded = _galvani.ModelCache()  # the engine's model, loaded on the first call and kept
        self._lock = threading.Lock()  # one call at a time on the kept model
        self.model_settings = {"device": device, "dtype": dtype, "output": output, "output_element": output_element,
                               "training": training, "linear": linear, "backend": backend}
        self.data_settings = {"path_layer": path_layer,
                              "vocabulary": os.fspath(vocabulary) if vocabulary is not None else None}
        self.run_settings = {"threads": threads, "shard_size": shard_size, "precision": precision}
        self.plugin_paths = [os.fspath(p) for p in plugin_paths] if plugin_paths else None

    @property
    def export(self):
        """How the model reached the engine: "file", "script module", "scripted" or "traced" (None until a module
        that needed tracing has been traced)."""
        return self._model.how

    def _plan(self, inputs, baselines, target, methods, evaluators, limit, output_dir):
        inputs = _tensor(inputs, "inputs")
        if inputs is None:
            raise ConfigError("inputs: required (a torch.Tensor [N, ...])")
        base_key, base_tensor = _data_entry(baselines, "baselines")
        target_key, target_tensor = _data_entry(target, "target")
        example = inputs[:1] if inputs.dim() > 0 else inputs
        model = dict(self.model_settings, path=self._model.resolve(example))
        if model["dtype"] is None:
            model["dtype"] = "model"
        data = dict(self.data_settings, inputs="<inputs tensor>", baselines=base_key, target=target_key, limit=limit)
        tree = {"model": model, "data": data, "methods": methods, "run": self.run_settings}
        if evaluators:
            tree["evaluators"] = evaluators
        if output_dir is not None:
            tree["output"] = {"dir": os.fspath(output_dir)}
        if self.plugin_paths:
            tree["plugin_paths"] = self.plugin_paths
        return _galvani.plan_tree(tree, os.getcwd(), "<Session arguments>", inputs, base_tensor, target_tensor,
                                  self._loaded)

    def attribute(self, method, inputs, *, layers=None, baselines="zeros", target="predicted", steps=None,
                  unit=None, path=None, internal_batch=None, limit=None, progress=None, **options):
        """Runs one method over `inputs` and returns its Result (by layer).

        method: a method plugin's name ("conductance", "nig", "internal-influence", "integrated-gradients",
        "deeplift", "shapley-sampling", "gradient-x-activation", "activation", "pathway-gradient", ...;
        galvani.methods() lists them). baselines: "zeros", "mean", "pad:N" or a tensor ([N, ...], one input, or
        [1, ...]). target: "predicted", a class index or a tensor of classes [N]. steps, unit ("neuron", "filter",
        "layer"), path (a path plugin), internal_batch and every option of the method and its path (rule="gausslegendre",
        neurons=[...], nonlinear_rule=...) as keyword arguments: checked as the config's [[methods]] keys are.
        steps="auto" (with tolerance, min_steps, max_steps) refines each input's path as far as it needs; the
        points each input used are in extras["points"].
        progress: None shows a bar on work longer than 2 s when tqdm is installed, True always, False never, or
        a function(stage, done, total)."""
        if not isinstance(method, str):
            raise ConfigError(f"method: expected a method plugin's name (a string), got {type(method).__name__}")
        entry = dict(options, plugin=method, layers=_layer_names(layers), steps=steps, unit=unit, path=path,
                     internal_batch=internal_batch)
        with self._lock:
            run = _execute(self._plan(inputs, baselines, target, [entry], None, limit, None), progress)
        return Result(run, options.get("name", method))

    def compare(self, methods, inputs, *, baselines="zeros", target="predicted", evaluators=(), limit=None,
                progress=None, output_dir=None):
        """Runs several methods (sharing their passes over the same path) and evaluators, as one config's
        [[methods]] and [[evaluators]] would: each a method name or a dict of its keys ({"plugin": "conductance",
        "layers": [...], "steps": 50, ...}). Returns RunResults; `write()` it to get the report."""
        with self._lock:
            planned = self._plan(inputs, baselines, target, *_entries(methods, evaluators), limit, output_dir)
            return RunResults(_execute(planned, progress))

    def plan(self, methods, inputs, *, baselines="zeros", target="predicted", evaluators=(), limit=None):
        """What compare() would do, as `galvani run --dry-run` prints it; computes nothing."""
        with self._lock:
            return self._plan(inputs, baselines, target, *_entries(methods, evaluators), limit, None).describe()

    def layers(self, example_input=None):
        """The model's layers (Layer records); with an example input, their output shapes too."""
        return layers(self._model.resolve(example_input), example_input, device=self.model_settings["device"])


def _as_list(value, what):
    if value is None:
        return []
    if isinstance(value, (str, dict)):
        return [value]
    if isinstance(value, (list, tuple)):
        return list(value)
    raise ConfigError(f"{what}: expected a list of names or dicts, got {type(value).__name__}")


def _entries(methods, evaluators):
    """compare()'s and plan()'s methods and evaluators as the config's [[methods]] and [[evaluators]] tables."""
    entries = [dict(m) if isinstance(m, dict) else {"plugin": m} for m in _as_list(methods, "methods")]
    for e in entries:
        if "layers" in e:
            e["layers"] = _layer_names(e["layers"])
    evals = [e if isinstance(e, dict) else {"plugin": e} for e in _as_list(evaluators, "evaluators")]
    return entries, evals


def _layer_names(layers):
    """One layer name or several, as a list."""
    if layers is None:
        return None
    if isinstance(layers, str):
        return [layers]
    return list(layers)


def run(config, out=None, *, write=True, progress=None):
    """Runs a config file as `galvani run CONFIG [--out OUT]` does, and returns its RunResults. With write=True
    (the default) the results are written into `out` (default: the config's [output] dir), atomically."""
    planned = _galvani.plan_file(os.fspath(config), os.fspath(out) if out is not None else "")
    results = RunResults(_execute(planned, progress))
    if write:
        results.write(planned.output_dir)
    return results


def layers(model, example_input=None, *, device="cpu", backend="torchscript"):
    """What `galvani layers` prints, as a list of Layer records. model: a ScriptModule, nn.Module or a file."""
    example = _tensor(example_input, "example_input")
    model_file = _ModelFile(model)  # kept alive until the engine has loaded it (a saved module is removed with it)
    f = model_file.resolve(example[:1] if example is not None and example.dim() > 0 else None)
    records = _galvani.layers(f, backend, example, device)
    return [Layer(r["name"], r["type"], r["shape"], r["call_index"], r["call_count"]) for r in records]


def plugins():
    """The plugin libraries found (built-in and on GALVANI_PLUGIN_PATH), with their components and load errors."""
    return _galvani.plugins()


def component_names(kind):
    """The registered names of one kind: "method", "evaluator", "path" or "backend"."""
    return _galvani.component_names(kind)


def methods():
    """The method plugins' names."""
    return component_names("method")


def evaluators():
    """The evaluator plugins' names."""
    return component_names("evaluator")
