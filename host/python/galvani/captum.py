"""Captum's neuron and layer attribution classes, computed by Galvani: change the import to try it.

    from galvani.captum import LayerConductance        # instead of: from captum.attr import LayerConductance
    lc = LayerConductance(model, model.features[4])
    attributions, delta = lc.attribute(x, baselines=None, target=3, n_steps=50, return_convergence_delta=True)

Each class takes Captum's constructor and `attribute` arguments and returns what Captum returns, with Captum's
definitions where they differ from the papers (so that results match Captum's; the native API, galvani.Session,
keeps the papers'):

- LayerConductance sums ∂F/∂y(αₖ)·(y(αₖ₊₁) − y(αₖ)) over the n_steps + 1 points of `method` only (no segments to
  α = 0 and α = 1), with the gradient at the left point;
- method="riemann_trapezoid" (NeuronConductance's default) weighs the n points 1/n, the first and last 1/(2n):
  they sum to 1 − 1/n, not 1;
- LayerDeepLift uses the Rescale rule (Captum's only rule for ReLU and friends).

One input tensor, one baseline tensor or number, targets as an int, a list or a tensor. What Captum supports and
this facade does not (several inputs, additional_forward_args, attribute_to_layer_input, custom attribution
functions, device_ids) raises galvani.ConfigError saying so, never a silently different result.
"""
import torch

from ._api import Session
from ._galvani import ConfigError

__all__ = ["LayerConductance", "InternalInfluence", "LayerIntegratedGradients", "LayerGradientXActivation",
           "LayerActivation", "LayerDeepLift", "NeuronConductance"]

_RULES = {"gausslegendre": "gausslegendre", "riemann_left": "riemann_left", "riemann_right": "riemann_right",
          "riemann_middle": "riemann_middle", "riemann_trapezoid": "captum_trapezoid"}


def _rule(method):
    try:
        return _RULES[method]
    except KeyError:
        raise ConfigError(f"method: {method!r} is not one of Captum's approximation methods {sorted(_RULES)}") \
            from None


def _layer_name(model, layer):
    if isinstance(layer, str):
        return layer
    for name, module in model.named_modules():
        if module is layer and name:
            return name
    raise ConfigError("layer: not a submodule of the model (give the submodule object, e.g. model.features[4], or "
                      "its name, e.g. \"features.4\")")


def _one_tensor(value, what):
    if isinstance(value, tuple):
        if len(value) != 1:
            raise ConfigError(f"{what}: models with several inputs are not supported by galvani.captum yet; give one "
                              f"tensor")
        value = value[0]
    return value


def _baselines(baselines, inputs, in_input_space=False):
    """Captum's baselines for the engine. `in_input_space`: given as inputs even where the path runs in a layer's
    space (the engine's "zeros" would then be zeros of the layer, Captum's are the layer's output on zero inputs)."""
    baselines = _one_tensor(baselines, "baselines")
    if baselines is None:
        return torch.zeros_like(inputs[:1]) if in_input_space else "zeros"
    if isinstance(baselines, (int, float)) and not isinstance(baselines, bool):
        return torch.full_like(inputs[:1], float(baselines))
    return baselines


def _target(target, n):
    if target is None:
        return "predicted"
    if isinstance(target, int):
        return target
    if isinstance(target, (list, tuple)):
        if any(isinstance(t, tuple) for t in target):
            raise ConfigError("target: tuples (indices into a multi-dimensional output) are not supported")
        return torch.as_tensor(target, dtype=torch.long)
    if isinstance(target, torch.Tensor):
        t = target.reshape(-1).long()
        return t.expand(n).contiguous() if t.numel() == 1 else t
    raise ConfigError(f"target: expected an int, a list or a tensor, got {type(target).__name__}")


def _unsupported(**given):
    for name, value in given.items():
        if value not in (None, False):
            raise ConfigError(f"{name}: not supported by galvani.captum yet")


def _session(model, **settings):
    dtype = None
    for p in model.parameters():
        dtype = {torch.float64: "float64", torch.float32: "float32"}.get(p.dtype)
        break
    device = next((str(p.device) for p in model.parameters()), "cpu")
    return Session(model, device=device, dtype=dtype, **settings)


class _LayerAttribution:
    def __init__(self, forward_func, layer, device_ids=None):
        _unsupported(device_ids=device_ids)
        if not isinstance(forward_func, torch.nn.Module):
            raise ConfigError("forward_func: galvani.captum needs the model (an nn.Module or ScriptModule), not a "
                              "function")
        self.forward_func = forward_func
        self.layer = layer
        self._name = _layer_name(forward_func, layer)
        self._sessions = {}

    def _run(self, method, inputs, baselines, target, path_layer=None, **options):
        inputs = _one_tensor(inputs, "inputs")
        key = path_layer
        if key not in self._sessions:
            self._sessions[key] = _session(self.forward_func, path_layer=path_layer)
        s = self._sessions[key]
        return s.attribute(method, inputs, baselines=_baselines(baselines, inputs, path_layer is not None),
                           target=_target(target, inputs.shape[0]), progress=False, **options)

    @staticmethod
    def _out(values, delta, return_convergence_delta):
        return (values, delta) if return_convergence_delta else values


class LayerConductance(_LayerAttribution):
    """Captum's LayerConductance: conductance of every unit of the layer's output, [N, *layer shape]."""

    def attribute(self, inputs, baselines=None, target=None, additional_forward_args=None, n_steps=50,
                  method="gausslegendre", internal_batch_size=None, return_convergence_delta=False,
                  attribute_to_layer_input=False, grad_kwargs=None):
        _unsupported(additional_forward_args=additional_forward_args, attribute_to_layer_input=attribute_to_layer_input,
                     grad_kwargs=grad_kwargs)
        r = self._run("nig", inputs, baselines, target, layers=[self._name], steps=n_steps + 1, rule=_rule(method),
                      gradient_at="left", segments="quadrature", internal_batch=internal_batch_size)
        a = r[self._name]
        return self._out(a.values, a.delta, return_convergence_delta)

    def has_convergence_delta(self):
        return True


class InternalInfluence(_LayerAttribution):
    """Captum's InternalInfluence: the gradient at the layer integrated along the input path, [N, *layer shape]."""

    def attribute(self, inputs, baselines=None, target=None, additional_forward_args=None, n_steps=50,
                  method="gausslegendre", attribute_to_layer_input=False, internal_batch_size=None,
                  grad_kwargs=None):
        _unsupported(additional_forward_args=additional_forward_args, attribute_to_layer_input=attribute_to_layer_input,
                     grad_kwargs=grad_kwargs)
        r = self._run("internal-influence", inputs, baselines, target, layers=[self._name], steps=n_steps,
                      rule=_rule(method), internal_batch=internal_batch_size)
        return r[self._name].values


class LayerIntegratedGradients(_LayerAttribution):
    """Captum's LayerIntegratedGradients: integrated gradients in the layer's output space (the path runs between
    the layer's outputs on the baseline and on the input), [N, *layer shape]."""

    def __init__(self, forward_func, layer, device_ids=None, multiply_by_inputs=True):
        super().__init__(forward_func, layer, device_ids)
        _unsupported(multiply_by_inputs=not multiply_by_inputs)

    def attribute(self, inputs, baselines=None, target=None, additional_forward_args=None, n_steps=50,
                  method="gausslegendre", internal_batch_size=None, return_convergence_delta=False,
                  attribute_to_layer_input=False, grad_kwargs=None):
        _unsupported(additional_forward_args=additional_forward_args, attribute_to_layer_input=attribute_to_layer_input,
                     grad_kwargs=grad_kwargs)
        r = self._run("integrated-gradients", inputs, baselines, target, path_layer=self._name, steps=n_steps,
                      rule=_rule(method), internal_batch=internal_batch_size)
        a = r["input"]
        return self._out(a.values, a.delta, return_convergence_delta)

    def has_convergence_delta(self):
        return True


class LayerGradientXActivation(_LayerAttribution):
    """Captum's LayerGradientXActivation: ∂F/∂y · y at the layer's output, [N, *layer shape]."""

    def __init__(self, forward_func, layer, device_ids=None, multiply_by_inputs=True):
        super().__init__(forward_func, layer, device_ids)
        _unsupported(multiply_by_inputs=not multiply_by_inputs)

    def attribute(self, inputs, target=None, additional_forward_args=None, attribute_to_layer_input=False,
                  grad_kwargs=None):
        _unsupported(additional_forward_args=additional_forward_args, attribute_to_layer_input=attribute_to_layer_input,
                     grad_kwargs=grad_kwargs)
        return self._run("gradient-x-activation", inputs, None, target, layers=[self._name])[self._name].values


class LayerActivation(_LayerAttribution):
    """Captum's LayerActivation: the layer's output, [N, *layer shape]."""

    def attribute(self, inputs, additional_forward_args=None, attribute_to_layer_input=False):
        _unsupported(additional_forward_args=additional_forward_args, attribute_to_layer_input=attribute_to_layer_input)
        return self._run("activation", inputs, None, None, layers=[self._name])[self._name].values


class LayerDeepLift(_LayerAttribution):
    """Captum's LayerDeepLift: DeepLIFT contributions of the layer's units with the Rescale rule,
    [N, *layer shape]."""

    def __init__(self, model, layer, multiply_by_inputs=True):
        super().__init__(model, layer)
        _unsupported(multiply_by_inputs=not multiply_by_inputs)

    def attribute(self, inputs, baselines=None, target=None, additional_forward_args=None,
                  return_convergence_delta=False, attribute_to_layer_input=False, custom_attribution_func=None,
                  grad_kwargs=None):
        _unsupported(additional_forward_args=additional_forward_args, attribute_to_layer_input=attribute_to_layer_input,
                     custom_attribution_func=custom_attribution_func, grad_kwargs=grad_kwargs)
        r = self._run("deeplift", inputs, baselines, target, layers=[self._name], nonlinear_rule="rescale")
        a = r[self._name]
        return self._out(a.values, a.delta, return_convergence_delta)

    def has_convergence_delta(self):
        return True


class NeuronConductance(_LayerAttribution):
    """Captum's NeuronConductance: the conductance of the input features through one neuron of the layer,
    [N, *input shape]."""

    def __init__(self, forward_func, layer, device_ids=None, multiply_by_inputs=True):
        super().__init__(forward_func, layer, device_ids)
        _unsupported(multiply_by_inputs=not multiply_by_inputs)

    def attribute(self, inputs, neuron_selector, baselines=None, target=None, additional_forward_args=None,
                  n_steps=50, method="riemann_trapezoid", internal_batch_size=None, attribute_to_neuron_input=False,
                  grad_kwargs=None):
        _unsupported(additional_forward_args=additional_forward_args,
                     attribute_to_neuron_input=attribute_to_neuron_input, grad_kwargs=grad_kwargs)
        x = _one_tensor(inputs, "inputs")
        r = self._run("conductance", x, baselines, target, layers=[self._name], steps=n_steps, rule=_rule(method),
                      neurons=[self._flat_index(x, neuron_selector)], internal_batch=internal_batch_size)
        values = r[self._name].values  # [N, 1, *input shape]: one selected neuron
        return values[:, 0]

    def _flat_index(self, x, selector):
        if callable(selector):
            raise ConfigError("neuron_selector: a function is not supported by galvani.captum yet; give an index")
        if isinstance(selector, int):
            return selector
        if not isinstance(selector, tuple) or not all(isinstance(i, int) for i in selector):
            raise ConfigError("neuron_selector: expected an int or a tuple of ints (slices are not supported yet)")
        shape = None
        for layer in self._sessions.setdefault("_layers", _session(self.forward_func)).layers(x[:1]):
            if layer.name == self._name:
                shape = layer.shape
        if shape is None or len(shape) != len(selector):
            raise ConfigError(f"neuron_selector: {selector} does not index the layer's output of shape {shape}")
        flat = 0
        for i, n in zip(selector, shape):
            if not 0 <= i < n:
                raise ConfigError(f"neuron_selector: {selector} is outside the layer's output of shape {shape}")
            flat = flat * n + i
        return flat
