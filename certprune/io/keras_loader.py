"""Keras HDF5 (``.h5``) -> torch, through h5py alone (no TensorFlow): ``load_keras_h5(path)``.

Reads the ``model_config`` JSON attribute (a Keras 2 ``Sequential``, or a ``Functional`` model
whose layers form a chain) and the weights under ``model_weights/<layer>/`` named by each layer
group's ``weight_names`` attribute. Supported layers: InputLayer, Dense (activation relu, linear,
sigmoid, softmax, tanh), Activation, ReLU, Dropout, Flatten. Keras Dense kernels are (in, out):
``nn.Linear.weight`` is their transpose.

A final sigmoid/softmax is stripped so ``module`` outputs logits, and recorded in
``ModelInfo.output_activation``; decisions are unchanged (sigmoid(z) > 0.5 iff z > 0; argmax is
invariant under softmax). Re-apply it (``torch.sigmoid``) to compare with Keras probabilities.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from certprune.errors import ModelLoadError, UnsupportedModelError
from certprune.network import ModelInfo, Network, file_sha256

ACTIVATIONS = {"relu": nn.ReLU, "linear": None, "sigmoid": nn.Sigmoid, "softmax": lambda: nn.Softmax(dim=-1),
               "tanh": nn.Tanh}
STRIPPABLE = ("sigmoid", "softmax")
PASS_THROUGH = ("Dropout", "InputLayer", "GaussianNoise", "GaussianDropout", "AlphaDropout")


def load_keras_h5(path: str | Path) -> Network:
    """Load a Keras HDF5 model file into a Network (see module doc)."""
    import h5py
    p = Path(path)
    try:
        f = h5py.File(p, "r")
    except OSError as e:
        hint = " (Keras 3 .keras archives are not supported; save as .h5)" if p.suffix == ".keras" else ""
        raise ModelLoadError(f"{p} is not a readable HDF5 file{hint}: {e}") from None
    with f:
        try:
            layers = _layers(f, p)
            weights = f["model_weights"] if "model_weights" in f else f
            _check_supported(layers, p)
            modules, activation, input_shape = _convert(layers, weights, p)
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as e:
            # model_config JSON or weight groups with an unexpected structure
            raise ModelLoadError(f"{p}: malformed Keras model ({type(e).__name__}: {e})") from None
    module = nn.Sequential(*modules)
    with torch.no_grad():
        n_out = int(module.eval()(torch.zeros(1, *input_shape)).numel())
    info = ModelInfo(input_shape, n_out, file_sha256(p), "keras", str(p), output_activation=activation,
                     extra={"keras_layers": [lay["class_name"] for lay in layers]})
    return Network(module, info)


def _layers(f, p: Path) -> list[dict]:
    """The layer configs, in order, from the ``model_config`` attribute."""
    raw = f.attrs.get("model_config")
    if raw is None:
        raise ModelLoadError(f"{p} has no model_config attribute (a weights-only file?); save the whole model")
    try:
        cfg = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModelLoadError(f"{p}: model_config is not valid JSON: {e}") from None
    kind, body = cfg.get("class_name"), cfg.get("config")
    layers = body.get("layers") if isinstance(body, dict) else body
    if not isinstance(layers, list) or not layers:
        raise ModelLoadError(f"{p}: model_config lists no layers")
    if kind in ("Functional", "Model"):
        _check_chain(layers, p)
    elif kind != "Sequential":
        raise UnsupportedModelError(f"{p.name}: unsupported Keras model class {kind!r}")
    return layers


def _check_chain(layers: list[dict], p: Path) -> None:
    """A Functional model is accepted only if every layer reads the previous one."""
    for prev, lay in zip(layers, layers[1:]):
        inbound = lay.get("inbound_nodes") or [[[None]]]
        try:
            src = [node[0] for node in inbound[0]]
        except (TypeError, IndexError, KeyError):
            src = []
        if src != [prev.get("name", prev["config"].get("name"))]:
            raise UnsupportedModelError(f"{p.name}: functional Keras model is not a chain of layers "
                                        f"(layer {lay['config'].get('name')!r})")


def _check_supported(layers: list[dict], p: Path) -> None:
    """Raise once, listing every unsupported layer class and activation."""
    bad = []
    for lay in layers:
        cls, conf = lay["class_name"], lay.get("config", {})
        if cls in ("Dense", "Activation"):
            act = conf.get("activation", "linear")
            if act not in ACTIVATIONS:
                bad.append(f"{cls}(activation={act!r})")
        elif cls == "ReLU":
            if conf.get("max_value") is not None or conf.get("negative_slope", 0) or conf.get("threshold", 0):
                bad.append("ReLU(with max_value/negative_slope/threshold)")
        elif cls not in PASS_THROUGH + ("Flatten",):
            bad.append(cls)
    if bad:
        raise UnsupportedModelError(f"{p.name}: unsupported Keras layers: {', '.join(sorted(set(bad)))}")


def _convert(layers: list[dict], weights, p: Path) -> tuple[list[nn.Module], str | None, tuple[int, ...]]:
    modules: list[nn.Module] = []
    input_shape = _declared_input_shape(layers)
    for lay in layers:
        cls, conf = lay["class_name"], lay.get("config", {})
        if cls == "Dense":
            kernel, bias = _dense_weights(weights, conf, p)
            if input_shape is None and not modules:
                input_shape = (kernel.shape[0],)
            lin = nn.Linear(kernel.shape[0], kernel.shape[1], bias=True)
            with torch.no_grad():
                lin.weight.copy_(torch.from_numpy(np.ascontiguousarray(kernel.T, dtype=np.float32)))
                lin.bias.copy_(torch.from_numpy(bias.astype(np.float32)))
            modules.append(lin)
        if cls in ("Dense", "Activation"):
            act = ACTIVATIONS[conf.get("activation", "linear")]
            if act is not None:
                modules.append(act())
        elif cls == "ReLU":
            modules.append(nn.ReLU())
        elif cls == "Flatten":
            modules.append(nn.Flatten())
    if input_shape is None:
        raise ModelLoadError(f"{p}: cannot tell the model's input shape")
    activation = None
    last = layers[-1]
    last_act = last.get("config", {}).get("activation") if last["class_name"] in ("Dense", "Activation") else None
    if last_act in STRIPPABLE:
        modules.pop()
        activation = last_act
    return modules, activation, input_shape


def _declared_input_shape(layers: list[dict]) -> tuple[int, ...] | None:
    conf = layers[0].get("config", {})
    shape = conf.get("batch_input_shape") or conf.get("batch_shape")
    if shape and all(isinstance(d, int) for d in shape[1:]):
        return tuple(shape[1:])
    return None


def _dense_weights(weights, conf: dict, p: Path) -> tuple[np.ndarray, np.ndarray]:
    """Kernel (in, out) and bias (out,) of a Dense layer (zeros when ``use_bias`` is false)."""
    name = conf.get("name", "")
    if name not in weights:
        raise ModelLoadError(f"{p}: no weights stored for layer {name!r}")
    group = weights[name]
    names = [n.decode() if isinstance(n, bytes) else str(n) for n in group.attrs.get("weight_names", [])]
    arrays = [np.asarray(group[n]) for n in names if n in group]
    if len(arrays) != len(names) or not arrays:
        raise ModelLoadError(f"{p}: weights of layer {name!r} are missing or incomplete")
    kernel = arrays[0]
    bias = arrays[1] if conf.get("use_bias", True) and len(arrays) > 1 else np.zeros(kernel.shape[1])
    if kernel.ndim != 2 or bias.shape != (kernel.shape[1],):
        raise ModelLoadError(f"{p}: layer {name!r} has kernel {kernel.shape} and bias {bias.shape}")
    return kernel, bias
