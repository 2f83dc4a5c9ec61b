"""galvani.captum against Captum itself, on small models. Needs a Captum snapshot: CAPTUM_PATH names the folder
holding the `captum` package (CTest sets it when ../shared/vendor has one); without it these tests are reported
skipped, with this reason."""
import importlib
import os
import sys

import pytest
import torch

import galvani
from galvani import captum as gc

CAPTUM_PATH = os.environ.get("CAPTUM_PATH", "")
if not CAPTUM_PATH or not os.path.isdir(os.path.join(CAPTUM_PATH, "captum")):
    pytest.skip(f"no Captum snapshot (CAPTUM_PATH={CAPTUM_PATH!r} holds no captum package)", allow_module_level=True)
sys.path.insert(0, CAPTUM_PATH)
cattr = importlib.import_module("captum.attr")


def cnn():
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(4, 6, 3, padding=1), torch.nn.ReLU(), torch.nn.Flatten(),
        torch.nn.Linear(6 * 4 * 4, 12), torch.nn.ReLU(), torch.nn.Linear(12, 3)).double().eval()


@pytest.fixture(scope="module")
def model_and_data():
    torch.manual_seed(1)
    return cnn(), torch.rand(5, 1, 8, 8, dtype=torch.float64), torch.tensor([0, 1, 2, 1, 0])


def close(a, b, rtol=1e-5):
    assert a.shape == b.shape, (a.shape, b.shape)
    scale = b.abs().max().item()
    assert scale > 0
    err = (a - b).abs().max().item()
    assert err <= rtol * scale, f"max error {err:.3g} against max |value| {scale:.3g}"


@pytest.mark.parametrize("method", ["gausslegendre", "riemann_trapezoid", "riemann_left", "riemann_middle"])
@pytest.mark.parametrize("layer", [3, 4, 7])
def test_layer_conductance(model_and_data, method, layer):
    m, x, t = model_and_data
    ours, our_delta = gc.LayerConductance(m, m[layer]).attribute(x, target=t, n_steps=20, method=method,
                                                                 return_convergence_delta=True)
    theirs, their_delta = cattr.LayerConductance(m, m[layer]).attribute(x, target=t, n_steps=20, method=method,
                                                                        return_convergence_delta=True)
    close(ours, theirs)
    assert torch.allclose(our_delta, their_delta, atol=1e-5 * theirs.abs().max().item())


@pytest.mark.parametrize("method", ["gausslegendre", "riemann_trapezoid", "riemann_right"])
def test_internal_influence(model_and_data, method):
    m, x, t = model_and_data
    close(gc.InternalInfluence(m, m[4]).attribute(x, target=t, n_steps=16, method=method),
          cattr.InternalInfluence(m, m[4]).attribute(x, target=t, n_steps=16, method=method))


@pytest.mark.parametrize("layer", [1, 4, 7])
def test_layer_integrated_gradients(model_and_data, layer):
    m, x, t = model_and_data
    ours, our_delta = gc.LayerIntegratedGradients(m, m[layer]).attribute(x, target=t, n_steps=24,
                                                                         return_convergence_delta=True)
    theirs, their_delta = cattr.LayerIntegratedGradients(m, m[layer]).attribute(x, target=t, n_steps=24,
                                                                                return_convergence_delta=True)
    close(ours, theirs)
    assert torch.allclose(our_delta, their_delta, atol=1e-5 * theirs.abs().max().item())


@pytest.mark.parametrize("layer", [4, 7])
def test_layer_deeplift(model_and_data, layer):
    m, x, t = model_and_data
    baselines = torch.full_like(x, 0.1)
    ours = gc.LayerDeepLift(m, m[layer]).attribute(x, baselines=baselines, target=t)
    theirs = cattr.LayerDeepLift(m, m[layer]).attribute(x, baselines=baselines, target=t)
    close(ours, theirs)


@pytest.mark.parametrize("layer_index", [7, 4])
def test_neuron_conductance(model_and_data, layer_index):
    m, x, t = model_and_data
    layer = m[layer_index]
    # The most active unit (many of a random network's ReLUs are dead, and a dead unit's conductance is 0).
    act = cattr.LayerActivation(m, layer).attribute(x).mean(0)
    index = tuple(int(v) for v in (act == act.max()).nonzero()[0])
    selector = index[0] if act.dim() == 1 else index  # an int for a dense layer, a tuple for a conv layer's
    ours = gc.NeuronConductance(m, layer).attribute(x, selector, target=t, n_steps=16)
    theirs = cattr.NeuronConductance(m, layer).attribute(x, selector, target=t, n_steps=16)
    close(ours, theirs)


def test_gradient_x_activation_and_activation(model_and_data):
    m, x, t = model_and_data
    close(gc.LayerGradientXActivation(m, m[4]).attribute(x, target=t),
          cattr.LayerGradientXActivation(m, m[4]).attribute(x, target=t))
    close(gc.LayerActivation(m, m[4]).attribute(x), cattr.LayerActivation(m, m[4]).attribute(x))


def test_layers_by_name_and_what_is_not_supported(model_and_data):
    m, x, t = model_and_data
    by_name = gc.LayerConductance(m, "4").attribute(x, target=t, n_steps=8)
    by_module = gc.LayerConductance(m, m[4]).attribute(x, target=t, n_steps=8)
    assert torch.equal(by_name, by_module)
    with pytest.raises(galvani.ConfigError, match="not a submodule"):
        gc.LayerConductance(m, torch.nn.ReLU())
    with pytest.raises(galvani.ConfigError, match="additional_forward_args: not supported"):
        gc.LayerConductance(m, m[4]).attribute(x, target=t, additional_forward_args=(1,))
    with pytest.raises(galvani.ConfigError, match="several inputs"):
        gc.LayerConductance(m, m[4]).attribute((x, x), target=t)
