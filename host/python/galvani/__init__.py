"""Galvani from Python: how important is this neuron?

The engine is the one behind ``galvani run``: the same plugins, the same checks (an unknown option is a
``galvani.ConfigError`` naming it and the valid ones), the same numbers. Tensors go in and come back without
copies (DLPack), in the model's dtype and on its device. docs/python.md has the guide.

    import torch, galvani
    s = galvani.Session(torch.jit.load("fashion_cnn.pt"))
    r = s.attribute("conductance", x, layers=["features.4"], unit="filter", steps=50)
    r["features.4"].values, r["features.4"].delta

``galvani.captum`` has classes with Captum's names and signatures (LayerConductance, InternalInfluence, ...).
"""
from ._api import (Attribution, Evaluation, Layer, Result, RunResults, Session, component_names, evaluators,
                   layers, methods, plugins, run)
from ._galvani import (ConfigError, Error, InternalError, IoError, ModelError, NumericError, PluginError,
                       ShapeError, __version__)

for _e in (Error, ConfigError, ModelError, ShapeError, NumericError, IoError, PluginError, InternalError):
    _e.__module__ = "galvani"  # raised as galvani.ConfigError, not galvani._galvani.ConfigError
del _e

__all__ = [
    "Session", "run", "layers", "plugins", "methods", "evaluators", "component_names",
    "Result", "RunResults", "Attribution", "Evaluation", "Layer",
    "Error", "ConfigError", "ModelError", "ShapeError", "NumericError", "IoError", "PluginError", "InternalError",
    "__version__",
]
