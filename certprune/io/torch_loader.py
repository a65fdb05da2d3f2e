"""PyTorch files -> Network, without unpickling untrusted code.

Accepted, in this order:
1. TorchScript (``torch.jit.save``): a scripted/traced ``Sequential`` of Linear, Conv2d,
   BatchNorm, Flatten, ReLU is rebuilt as a plain ``nn.Sequential`` (so the native engine can use
   it); any other TorchScript module is kept as is.
2. A state dict, read with ``torch.load(weights_only=True)`` (no arbitrary code), plus a known
   architecture: ``architecture="mlp:20-50-30-1"`` (Linear/ReLU chain, widths from input to
   output), or a JSON sidecar ``<file>.arch.json`` as written by :func:`save_torch`. Pruning
   masks stored as ``*_orig`` / ``*_mask`` pairs (torch.nn.utils.prune) are applied.
3. A full pickle of a module, only with ``trust_pickle=True`` (unpickling can run any code).
"""
from __future__ import annotations

import json
import warnings
import zipfile
from pathlib import Path

import torch
from torch import nn

from certprune.errors import ConfigError, ModelLoadError, UnsupportedModelError
from certprune.io.inflate import check_zip_size
from certprune.network import ModelInfo, Network, file_sha256

SIDECAR_SUFFIX = ".arch.json"
_LAYER_KEYS = {
    "Linear": ("in_features", "out_features"),
    "Conv2d": ("in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation", "groups"),
    "BatchNorm1d": ("num_features", "eps"),
    "BatchNorm2d": ("num_features", "eps"),
    "ReLU": (), "Flatten": (), "Sigmoid": (), "Tanh": (), "Identity": (), "Dropout": (),
}


def load_torch(path: str | Path, *, trust_pickle: bool = False, input_shape: tuple[int, ...] | None = None,
               architecture: str | None = None, max_inflate: int | None = None) -> Network:
    """Load a TorchScript file, a state dict + architecture, or (trusted) a pickled module.
    ``max_inflate`` caps the total inflated size of the zip archive's members (bytes)."""
    p = Path(path)
    check_zip_size(p, ModelLoadError, max_inflate)
    module = _try_torchscript(p)
    arch = None
    if module is None:
        obj = _load_weights_only(p, trust_pickle)
        if isinstance(obj, nn.Module):
            module = obj
        else:
            state, arch = _state_and_arch(obj, p, architecture)
            module = _build_from_state(state, arch, p)
    shape = _input_shape(module, input_shape, arch, p)
    try:
        with torch.no_grad():
            n_out = int(module.eval()(torch.zeros(1, *shape)).numel())
    except RuntimeError as e:
        raise ModelLoadError(f"{p.name}: model rejects inputs of shape {shape}: {str(e).splitlines()[0]}") from None
    info = ModelInfo(shape, n_out, file_sha256(p), "torch", str(p),
                     output_activation=(arch or {}).get("output_activation"))
    return Network(module, info)


def save_torch(model: nn.Module, path: str | Path, input_shape: tuple[int, ...] | None = None) -> Path:
    """Save a ``nn.Sequential`` as a state dict plus a ``<path>.arch.json`` sidecar that
    :func:`load_torch` reads back without unpickling; returns ``path``."""
    info = getattr(model, "info", None)
    module = model.module if info is not None else model
    if input_shape is None and info is not None:
        input_shape = tuple(info.input_shape)
    if not isinstance(module, nn.Sequential):
        raise UnsupportedModelError("save_torch stores nn.Sequential models only; use torch.jit.save otherwise")
    layers = [_describe(m) for m in module]
    path = Path(path)
    torch.save({k: v.detach().cpu() for k, v in module.state_dict().items()}, path)
    sidecar = {"layers": layers, "input_shape": list(input_shape) if input_shape else None,
               "output_activation": getattr(info, "output_activation", None)}
    Path(str(path) + SIDECAR_SUFFIX).write_text(json.dumps(sidecar, indent=1))
    return path


def _describe(m: nn.Module) -> dict:
    name = type(m).__name__
    if name not in _LAYER_KEYS:
        raise UnsupportedModelError(f"save_torch cannot describe layer {name}")
    d = {"type": name}
    for k in _LAYER_KEYS[name]:
        v = getattr(m, k)
        d[k] = list(v) if isinstance(v, tuple) else v
    if name in ("Linear", "Conv2d"):
        d["bias"] = m.bias is not None
    return d


def _try_torchscript(p: Path) -> nn.Module | None:
    """A TorchScript archive (zip with ``code/``), rebuilt as nn.Sequential where possible."""
    try:
        with zipfile.ZipFile(p) as z:
            if not any("/code/" in n for n in z.namelist()):
                return None
    except (zipfile.BadZipFile, OSError):
        return None
    try:
        with warnings.catch_warnings():  # torch 2.13 marks TorchScript deprecated; it still loads
            warnings.simplefilter("ignore", DeprecationWarning)
            scripted = torch.jit.load(str(p), map_location="cpu")
    except RuntimeError as e:
        raise ModelLoadError(f"{p} is not a loadable TorchScript file: {str(e).splitlines()[0]}") from None
    return _unscript(scripted) or scripted


def _unscript(scripted) -> nn.Sequential | None:
    """Plain copy of a scripted Sequential of known layers, or None."""
    if getattr(scripted, "original_name", "") != "Sequential":
        return None
    out = []
    for child in scripted.children():
        name = getattr(child, "original_name", "")
        if name not in _LAYER_KEYS or not all(hasattr(child, k) for k in _LAYER_KEYS[name]):
            return None  # traced modules do not keep e.g. Conv2d's stride: keep the TorchScript module
        spec = {"type": name, **{k: getattr(child, k) for k in _LAYER_KEYS[name] if hasattr(child, k)}}
        if name in ("Linear", "Conv2d"):
            spec["bias"] = getattr(child, "bias", None) is not None
        layer = _make_layer(spec)
        layer.load_state_dict(child.state_dict())
        out.append(layer)
    return nn.Sequential(*out)


def _load_weights_only(p: Path, trust_pickle: bool):
    """``torch.load(weights_only=True)``; a file that needs full unpickling (any pickle protocol:
    torch's weights-only reader also refuses protocol 4/5 framing) is unpickled only when trusted."""
    try:
        with warnings.catch_warnings():  # torch warns about its own unpickler internals
            warnings.simplefilter("ignore")
            return torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises UnpicklingError, RuntimeError, EOFError... for other files
        msg = str(e)
        if not _needs_unpickling(msg, p):
            reason = _refusal(msg) if "Weights only load failed" in msg else _first_line(msg) or type(e).__name__
            raise ModelLoadError(f"{p} is not a readable PyTorch file: {reason}") from None
    if not trust_pickle:
        raise ModelLoadError(
            f"{p.name} is a full Python pickle (torch's weights-only reader refused it: {_refusal(msg)}); "
            "unpickling it can run arbitrary code. Pass trust_pickle=True (CLI: --trust-pickle) only if you "
            "trust the file, or save a state dict or TorchScript instead")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            obj = torch.load(p, map_location="cpu", weights_only=False)
    except Exception as e:  # arbitrary unpickling errors (missing classes, ...): name the file
        raise ModelLoadError(f"{p} could not be unpickled: {type(e).__name__}: {_first_line(str(e))[:200]}") from None
    if not isinstance(obj, nn.Module):
        raise ModelLoadError(f"{p.name} unpickles to a {type(obj).__name__}, not a torch module")
    return obj


def _needs_unpickling(msg: str, p: Path) -> bool:
    """Whether torch's weights-only refusal is about a pickle (zip archive or pickle protocol >= 2
    header) rather than a file that is no pickle at all."""
    if "Unsupported global" in msg:
        return True
    if "Weights only load failed" not in msg:
        return False
    with open(p, "rb") as f:
        head = f.read(2)
    return zipfile.is_zipfile(p) or (len(head) == 2 and head[0] == 0x80 and 2 <= head[1] <= 5)


def _refusal(msg: str) -> str:
    """The short reason in torch's weights-only error (its advice to pass weights_only=False dropped)."""
    for marker in ("WeightsUnpickler error:", "Unsupported global"):
        if marker in msg:
            tail = msg.split(marker, 1)[1] if marker.endswith(":") else marker + msg.split(marker, 1)[1]
            return _first_line(tail).split(". ")[0].removesuffix(".")[:160] or "unsupported content"
    return "unsupported content"


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.strip().splitlines() if line.strip()), "")


def _state_and_arch(obj, p: Path, architecture: str | None) -> tuple[dict, dict]:
    """(state dict, architecture dict) from the file, the sidecar or the ``architecture`` string."""
    if not isinstance(obj, dict):
        raise ModelLoadError(f"{p.name} holds a {type(obj).__name__}, not a state dict")
    state = obj.get("state_dict", obj)
    if not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelLoadError(f"{p.name} is not a state dict of tensors")
    if architecture is not None:
        return state, parse_architecture(architecture)
    if isinstance(obj.get("architecture"), str):
        return state, parse_architecture(obj["architecture"])
    sidecar = Path(str(p) + SIDECAR_SUFFIX)
    if sidecar.is_file():
        try:
            return state, json.loads(sidecar.read_text())
        except json.JSONDecodeError as e:
            raise ModelLoadError(f"{sidecar} is not valid JSON: {e}") from None
    raise ModelLoadError(f"{p.name} is a state dict without an architecture: pass architecture='mlp:IN-H1-...-OUT' "
                         f"(CLI: --architecture) or provide {sidecar.name}")


def parse_architecture(text: str) -> dict:
    """``"mlp:20-50-30-1"`` -> layer list (Linear/ReLU chain); widths run from input to output."""
    kind, _, widths = text.partition(":")
    try:
        sizes = [int(s) for s in widths.split("-")]
    except ValueError:
        sizes = []
    if kind != "mlp" or len(sizes) < 2 or min(sizes) < 1:
        raise ConfigError(f"unknown architecture {text!r}; expected 'mlp:IN-H1-...-OUT' with positive widths")
    layers: list[dict] = []
    for i, (a, b) in enumerate(zip(sizes, sizes[1:])):
        layers.append({"type": "Linear", "in_features": a, "out_features": b, "bias": True})
        if i < len(sizes) - 2:
            layers.append({"type": "ReLU"})
    return {"layers": layers, "input_shape": [sizes[0]]}


def _make_layer(spec: dict) -> nn.Module:
    kind = spec.get("type")
    if kind not in _LAYER_KEYS:
        raise UnsupportedModelError(f"unknown layer type {kind!r} in architecture")
    args = {k: (tuple(v) if isinstance(v, list) else v) for k, v in spec.items() if k in _LAYER_KEYS[kind]}
    if kind in ("Linear", "Conv2d"):
        args["bias"] = bool(spec.get("bias", True))
    return getattr(nn, kind)(**args)


def _build_from_state(state: dict, arch: dict, p: Path) -> nn.Sequential:
    try:
        module = nn.Sequential(*[_make_layer(s) for s in arch.get("layers", [])])
    except TypeError as e:
        raise ModelLoadError(f"{p.name}: bad layer description in the architecture: {e}") from None
    state = _apply_masks(state)
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as e:
        detail = " ".join(str(e).split())[:300]
        raise ModelLoadError(f"{p.name}: the state dict does not fit the architecture: {detail}") from None
    return module


def _apply_masks(state: dict) -> dict:
    """Fold torch.nn.utils.prune's ``name_orig * name_mask`` pairs into ``name``."""
    out = {}
    for k, v in state.items():
        if k.endswith("_orig") and k[:-5] + "_mask" in state:
            out[k[:-5]] = v * state[k[:-5] + "_mask"]
        elif not (k.endswith("_mask") and k[:-5] + "_orig" in state):
            out[k] = v
    return out


def _input_shape(module: nn.Module, given, arch: dict | None, p: Path) -> tuple[int, ...]:
    if given is not None:
        return tuple(int(d) for d in given)
    if arch and arch.get("input_shape"):
        return tuple(int(d) for d in arch["input_shape"])
    first = next((m for m in module.modules() if isinstance(m, (nn.Linear, nn.Conv2d))), None)
    if isinstance(first, nn.Linear):
        return (first.in_features,)
    raise ModelLoadError(f"{p.name}: cannot infer the input shape; pass input_shape (CLI: --input-shape)")
