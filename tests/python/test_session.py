"""The Python package against the command line: the same numbers, the same errors, no copies."""
import os
import shutil
import subprocess
import threading
import time

import pytest
import torch

import galvani
from conftest import EXAMPLES, FIXTURES

MODEL = EXAMPLES / "fashion_cnn.pt"
N = 8

# Every method the project ships, with options that keep each quick; run in float64 so that "the same" means
# bit for bit.
METHODS = [
    {"plugin": "conductance", "layers": ["features.1", "classifier.2"], "unit": "filter", "steps": 16,
     "rule": "gausslegendre"},
    {"plugin": "nig", "layers": ["features.4"], "unit": "filter", "steps": 16},
    {"plugin": "internal-influence", "layers": ["features.4"], "steps": 16, "rule": "gausslegendre"},
    {"plugin": "gradient-x-activation", "layers": ["features.4", "classifier.2"]},
    {"plugin": "gradient-x-delta", "layers": ["classifier.2"]},
    {"plugin": "activation", "layers": ["features.1"], "unit": "filter"},
    {"plugin": "deeplift", "layers": ["features.4", "classifier.2"], "input": True},
    {"plugin": "shapley-sampling", "layers": ["classifier.2"], "max_permutations": 4},
    {"plugin": "integrated-gradients", "steps": 16},
    {"plugin": "pathway-gradient", "contribution": "mct", "sparsity": 0.7},
    {"plugin": "conductance", "name": "neuron-conductance", "layers": ["classifier.2"], "neurons": [0, 3],
     "steps": 8},
]


def toml_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return "[" + ", ".join(toml_value(x) for x in v) + "]"


def write_config(path, inputs_file, methods, evaluators=(), dtype="float64"):
    lines = ["[model]", f"path = {toml_value(str(MODEL))}", f'dtype = "{dtype}"', "", "[data]",
             f"inputs = {toml_value(str(inputs_file))}", 'baselines = "zeros"', 'target = "predicted"', ""]
    for m in methods:
        lines.append("[[methods]]")
        lines += [f"{k} = {toml_value(v)}" for k, v in m.items()]
        lines.append("")
    for e in evaluators:
        lines.append("[[evaluators]]")
        lines += [f"{k} = {toml_value(v)}" for k, v in e.items()]
        lines.append("")
    path.write_text("\n".join(lines))
    return path


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    x = torch.load(EXAMPLES / "fashion_test.pt")[:N].clone()
    f = tmp_path_factory.mktemp("data") / "inputs.pt"
    torch.save(x, f)
    return x, f


@pytest.fixture(scope="module")
def cli_run(cli, inputs, tmp_path_factory):
    """The command line's results for METHODS, read back from its files."""
    d = tmp_path_factory.mktemp("cli")
    cfg = write_config(d / "run.toml", inputs[1], METHODS, [{"plugin": "completeness"}])
    out = d / "out"
    subprocess.run([cli, "run", str(cfg), "--out", str(out), "--quiet"], check=True)
    return cfg, out


def method_name(m):
    return m.get("name", m["plugin"])


def cli_values(out, method, layer, what=""):
    return torch.load(out / "attributions" / method / f"{layer}{what}.pt")


def test_compare_equals_the_command_line_bit_for_bit(inputs, cli_run):
    _, out = cli_run
    s = galvani.Session(torch.jit.load(str(MODEL)), dtype="float64")
    r = s.compare(METHODS, inputs[0], evaluators=["completeness"], progress=False)
    assert r.complete
    assert set(r.methods) == {method_name(m) for m in METHODS}
    import json
    summary = json.loads((out / "summary.json").read_text())
    deltas = {(m["method"], m["layer"]): m["delta"] for m in summary["methods"] if "delta" in m}
    assert len(deltas) >= 5
    assert torch.equal(r.f_input, torch.tensor(summary["f_input"], dtype=torch.float64))
    checked = 0
    for a in r.attributions:
        assert a.values.dtype == torch.float64
        assert torch.equal(a.values, cli_values(out, a.method, a.layer)), (a.method, a.layer)
        if a.delta is not None:  # summary.json has it, with 17 significant digits: exactly
            assert a.delta.tolist() == deltas[(a.method, a.layer)], (a.method, a.layer)
        else:
            assert (a.method, a.layer) not in deltas
        for key, extra in a.extras.items():
            assert torch.equal(extra, cli_values(out, a.method, a.layer, "." + key)), (a.method, a.layer, key)
        checked += 1
    assert checked >= len(METHODS) + 4  # several layers, deeplift's input, integrated gradients' input
    # The evaluation is the same too: completeness's metrics equal summary.json's.
    cli_metrics = {(m["method"], m["layer"], m["name"]): m["value"]
                   for m in summary["evaluations"]["completeness"]["metrics"]}
    py_metrics = {(m["method"], m["layer"], m["name"]): m["value"] for m in r.evaluations["completeness"].metrics}
    assert py_metrics.keys() == cli_metrics.keys() and len(py_metrics) > 0
    for k, v in py_metrics.items():
        assert v == pytest.approx(cli_metrics[k], rel=1e-9, abs=1e-14), k


@pytest.mark.parametrize("entry", METHODS, ids=method_name)
def test_attribute_equals_the_command_line_per_method(inputs, cli_run, entry):
    """One method at a time through Session.attribute gives the run's numbers, bit for bit (whether its path pass
    is shared with other methods or not)."""
    _, out = cli_run
    s = galvani.Session(str(MODEL), dtype="float64")
    options = {k: v for k, v in entry.items() if k != "plugin"}
    r = s.attribute(entry["plugin"], inputs[0], progress=False, **options)
    assert r.method == method_name(entry)
    assert len(r) >= 1
    for layer, a in r.items():
        expected = cli_values(out, r.method, layer)
        assert a.values.shape == expected.shape
        assert torch.equal(a.values, expected), (r.method, layer, (a.values - expected).abs().max())


def test_run_returns_and_writes_what_the_command_line_does(inputs, cli_run, tmp_path):
    cfg, out = cli_run
    r = galvani.run(cfg, tmp_path / "py", progress=False)
    assert (tmp_path / "py" / "summary.json").is_file()
    assert (tmp_path / "py" / "report.md").is_file()
    for m in METHODS:
        for layer, a in r[method_name(m)].items():
            assert torch.equal(a.values, cli_values(out, method_name(m), layer))
            assert torch.equal(torch.load(tmp_path / "py" / "attributions" / method_name(m) / f"{layer}.pt"),
                               a.values)


def test_tensors_cross_without_copies_in_the_models_dtype(inputs):
    x = inputs[0].to(torch.float64).contiguous()
    s = galvani.Session(str(MODEL), dtype="float64")
    planned = s._plan(x, "zeros", "predicted", [{"plugin": "activation", "layers": ["features.1"]}], None, None, None)
    run = planned.execute(None)
    # The inputs the engine computed on are the caller's tensor, not a copy, with its strides (DLPack's stride 1
    # for the size-1 channel dimension would make convolutions take channels-last kernels).
    assert run.inputs.data_ptr() == x.data_ptr()
    assert run.inputs.stride() == x.stride() and run.results[0]["values"].is_contiguous()
    assert run.results[0]["values"].stride() == run.results[0]["values"].contiguous().stride()
    # Results come out on the engine's own memory: two reads are views of one storage.
    a, b = run.results[0]["values"], run.results[0]["values"]
    assert a.data_ptr() == b.data_ptr()
    a[0].fill_(123.0)
    assert b[0].eq(123.0).all()
    assert a.dtype == torch.float64 and a.device.type == "cpu"
    # float32 by default: the model's dtype.
    r = galvani.Session(str(MODEL)).attribute("activation", inputs[0], layers=["features.1"], progress=False)
    assert r["features.1"].values.dtype == torch.float32


def test_a_session_loads_its_model_once_and_reloads_a_changed_file(inputs, tmp_path):
    x = inputs[0].to(torch.float64)
    model_file = tmp_path / "model.pt"
    shutil.copy(MODEL, model_file)
    s = galvani.Session(str(model_file), dtype="float64")
    calls = [("conductance", {"layers": ["features.4"], "steps": 8}),
             ("gradient-x-activation", {"layers": ["features.4", "classifier.2"]}),
             ("conductance", {"layers": ["features.4"], "steps": 8}),
             ("deeplift", {"layers": ["classifier.2"]}),
             ("activation", {"layers": ["classifier.2"]})]
    for method, kw in calls:  # the kept model (and the graphs it built) gives what a fresh load gives
        kept = s.attribute(method, x, progress=False, **kw)
        fresh = galvani.Session(str(model_file), dtype="float64").attribute(method, x, progress=False, **kw)
        assert list(kept) == list(fresh) == kw["layers"]
        for layer in fresh:
            assert torch.equal(kept[layer].values, fresh[layer].values)
    assert s._loaded.loads == 1
    with pytest.raises(galvani.ModelError, match="nonexistent"):  # a failed plan keeps the model
        s.attribute("activation", x, layers=["nonexistent"], progress=False)
    assert s._loaded.loads == 1
    before = kept["classifier.2"].values.clone()
    # The file changes under the session: the next call loads it again.
    m = torch.jit.load(str(model_file))
    with torch.no_grad():
        for p in m.parameters():
            p.mul_(2.0)
    m.save(str(model_file))
    stat = os.stat(model_file)
    os.utime(model_file, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    after = s.attribute("activation", x, layers=["classifier.2"], progress=False)
    assert s._loaded.loads == 2
    assert not torch.equal(after["classifier.2"].values, before)


def test_adaptive_steps_from_python(inputs, cli, tmp_path):
    x = inputs[0].to(torch.float64)
    s = galvani.Session(str(MODEL), dtype="float64")
    r = s.attribute("nig", x, layers=["features.4"], steps="auto", tolerance=0.5, max_steps=64, progress=False)
    points = r["features.4"].extras["points"]
    assert points.shape == (N,) and points.dtype == torch.long
    assert points.min() >= 10 + 18 and points.max() <= 10 + 18 + 34 + 66
    # The same numbers as the command line's.
    m = {"plugin": "nig", "layers": ["features.4"], "steps": "auto", "tolerance": 0.5, "max_steps": 64}
    cfg = write_config(tmp_path / "auto.toml", inputs[1], [m])
    subprocess.run([cli, "run", str(cfg), "--out", str(tmp_path / "out"), "--quiet"], check=True)
    assert torch.equal(r["features.4"].values, cli_values(tmp_path / "out", "nig", "features.4"))
    assert torch.equal(points, cli_values(tmp_path / "out", "nig", "features.4", ".points"))
    with pytest.raises(galvani.ConfigError, match="tolerance: only with steps"):
        s.attribute("nig", x, layers=["features.4"], steps=16, tolerance=0.5, progress=False)


def test_baselines_and_targets_as_tensors_and_keys(inputs):
    x = inputs[0]
    s = galvani.Session(str(MODEL), dtype="float64")
    zeros = s.attribute("integrated-gradients", x, steps=8, progress=False)
    as_tensor = s.attribute("integrated-gradients", x, steps=8, baselines=torch.zeros(1, 28, 28), progress=False)
    assert torch.equal(zeros["input"].values, as_tensor["input"].values)
    predicted = zeros.targets
    by_tensor = s.attribute("integrated-gradients", x, steps=8, target=predicted, progress=False)
    assert torch.equal(by_tensor["input"].values, zeros["input"].values)
    one_class = s.attribute("integrated-gradients", x, steps=8, target=3, progress=False)
    assert one_class.targets.eq(3).all()
    # Completeness against F(x) − F(x′) holds per input (Gauss–Legendre would be tighter; this is the midpoint
    # rule's 8 points).
    ig = zeros["input"]
    total = ig.values.flatten(1).sum(1)
    assert torch.allclose(total - (zeros.f_input - zeros.f_baseline), ig.delta, atol=1e-12)


def test_bad_input_raises_the_command_lines_errors_and_the_interpreter_goes_on(inputs, cli, tmp_path):
    x = inputs[0]
    s = galvani.Session(str(MODEL))
    with pytest.raises(galvani.ConfigError) as e:
        s.attribute("conductance", x, layers=["features.4"], stepz=3)
    assert "stepz" in str(e.value) and "valid here:" in str(e.value) and "steps" in str(e.value)
    # The same message as the command line's for the same mistake.
    cfg = write_config(tmp_path / "bad.toml", inputs[1], [{"plugin": "conductance", "layers": ["features.4"],
                                                           "stepz": 3}])
    p = subprocess.run([cli, "run", str(cfg), "--dry-run"], capture_output=True, text=True)
    assert p.returncode == 1
    assert p.stderr.strip() == "galvani: error: " + str(e.value)

    with pytest.raises(galvani.ModelError, match="no layer named 'features.9'"):
        s.attribute("conductance", x, layers=["features.9"])
    with pytest.raises(galvani.ConfigError, match="unknown method plugin 'nope'"):
        s.attribute("nope", x)
    with pytest.raises(galvani.ConfigError, match="inputs: expected a torch.Tensor, got str"):
        s.attribute("nig", "inputs.pt", layers=["features.4"])
    with pytest.raises(galvani.ConfigError, match=r"steps: expected an integer"):
        s.attribute("nig", x, layers=["features.4"], steps="many")
    with pytest.raises(galvani.ConfigError, match="expected a bool, number, string, list or dict, got object"):
        s.attribute("nig", x, layers=["features.4"], rule=object())
    with pytest.raises(galvani.ModelError, match=r"cannot run on inputs of shape \[2, 3, 28, 28\]"):
        s.attribute("nig", torch.zeros(2, 3, 28, 28), layers=["features.4"])
    with pytest.raises(galvani.ShapeError, match="data.baselines"):
        s.attribute("nig", x, layers=["features.4"], baselines=torch.zeros(5, 5))
    with pytest.raises(galvani.ConfigError, match="model: expected a torch.jit.ScriptModule"):
        galvani.Session(42)
    with pytest.raises(galvani.PluginError, match="cannot load model"):
        galvani.Session(str(tmp_path / "missing.pt")).attribute("activation", x, layers=["features.1"])
    assert issubclass(galvani.ModelError, galvani.Error) and issubclass(galvani.Error, RuntimeError)
    # Still usable after all that.
    r = s.attribute("activation", x, layers=["features.1"], progress=False)
    assert r["features.1"].values.shape == (N, 16, 28, 28)


class Branchy(torch.nn.Module):
    """Not scriptable (a Python-only call in forward), traceable."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.fc1 = torch.nn.Linear(6, 8)
        self.act = torch.nn.ReLU()
        self.fc2 = torch.nn.Linear(8, 3)

    def forward(self, x):
        scale = float(len(list(self.fc1.parameters())))  # TorchScript cannot compile list(...) of parameters
        return self.fc2(self.act(self.fc1(x * scale / 2.0)))


def test_modules_are_scripted_or_traced_with_a_warning():
    torch.manual_seed(1)
    x = torch.randn(4, 6)
    seq = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    s = galvani.Session(seq)
    assert s.export == "scripted"
    got = s.attribute("gradient-x-activation", x, layers=["1"], progress=False)["1"].values
    act = torch.relu(seq[0](x))
    act.retain_grad()
    out = seq[2](act)
    out.gather(1, out.argmax(1, keepdim=True)).sum().backward()
    assert torch.allclose(got, (act * act.grad).detach(), atol=1e-6)

    m = Branchy()
    s = galvani.Session(m)
    assert s.export is None
    with pytest.warns(UserWarning, match="could not be scripted .* traced"):
        r = s.attribute("activation", x, layers=["act"], progress=False)
    assert s.export == "traced"
    assert torch.allclose(r["act"].values, torch.relu(m.fc1(x)), atol=1e-6)


def test_layers_lists_what_the_command_line_lists(cli, inputs):
    records = galvani.layers(torch.jit.load(str(MODEL)), inputs[0])
    p = subprocess.run([cli, "layers", str(MODEL), "--inputs", str(inputs[1])], capture_output=True, text=True,
                       check=True)
    rows = [line.split() for line in p.stdout.splitlines()[1:] if line.strip()]
    assert [r.name for r in records] == [row[0] for row in rows]
    by_name = {r.name: r for r in records}
    assert by_name["features.4"].type == "ReLU" and by_name["features.4"].shape == (32, 14, 14)


def test_token_id_models_through_a_path_layer():
    refs = torch.jit.load(str(FIXTURES / "text_cnn_refs.pt"))
    ids = refs.input
    assert not ids.is_floating_point()
    s = galvani.Session(str(FIXTURES / "text_cnn_scripted.pt"), path_layer="embedding", dtype="float64")
    r = s.attribute("integrated-gradients", ids, baselines="pad:0", steps=32, rule="gausslegendre", progress=False)
    a = r["input"]
    tokens = a.extras["tokens"]
    assert tokens.shape == ids.shape
    assert torch.allclose(tokens, a.values.sum(-1), atol=1e-12)
    # Completeness at the embedding (a cut of this model): delta is what the sum misses of F(x) − F(x′), small with
    # 32 Gauss–Legendre points even through max over time.
    assert torch.allclose(tokens.sum(1) - (r.f_input - r.f_baseline), a.delta, atol=1e-12)
    assert a.delta.abs().max() < 1e-2


def test_the_gil_is_released_while_the_engine_computes(inputs):
    s = galvani.Session(str(MODEL))
    ticks = []
    done = threading.Event()

    def work():
        s.attribute("conductance", inputs[0], layers=["features.4"], steps=200, progress=False)
        done.set()

    t = threading.Thread(target=work)
    t.start()
    while not done.is_set():
        ticks.append(time.perf_counter())
        time.sleep(0.001)
    t.join()
    # Python code kept running beside the engine: many ticks, none held up for long.
    assert len(ticks) > 20
    gaps = [b - a for a, b in zip(ticks, ticks[1:])]
    assert max(gaps) < 0.5


def test_progress_is_reported_to_a_callable(inputs):
    seen = []
    s = galvani.Session(str(MODEL))
    s.compare([{"plugin": "nig", "layers": ["features.4"], "steps": 4}], inputs[0], evaluators=["completeness"],
              progress=lambda stage, done, total: seen.append((stage, done, total)))
    shards = [e for e in seen if e[0] == "shards"]
    assert shards and shards[-1][1] == shards[-1][2]
    assert ("evaluator completeness", 1, 1) in seen


def test_a_failing_progress_callable_raises_after_the_run(inputs):
    s = galvani.Session(str(MODEL))

    def boom(stage, done, total):
        raise ValueError("stop here")

    with pytest.raises(ValueError, match="stop here"):
        s.attribute("activation", inputs[0], layers=["features.1"], progress=boom)
