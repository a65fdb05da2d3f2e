"""The ``lirpa`` bound engine: an adapter over auto_LiRPA 0.3 (``BoundedModule``).

Precision: the model is copied to float64 and bounded in float64 (auto_LiRPA 0.3 runs in
float64 on CPU once the compatibility patches are applied), so bounds carry the same
convention as the native engine: they enclose the real-arithmetic network up to float64
rounding; certifying callers add their own margin for float32 execution.

Options: ``sparse_intermediate_bounds`` is switched off so that every intermediate neuron gets
full CROWN bounds (auto_LiRPA's default computes CROWN only for neurons that IBP finds unstable
in *some* box of the batch, which makes results depend on the batch). This is the semantics
the native engine reproduces (see ``certprune.bounds.crown``). alpha-CROWN is auto_LiRPA's
``CROWN-Optimized`` with its default 20 iterations.
"""
from __future__ import annotations

import contextlib
import copy
import warnings
import weakref

import torch
from torch import nn

from certprune.errors import UnsupportedModelError
from certprune.verifiers.affine import AffineReluNet

_METHOD = {"ibp": "IBP", "crown": "CROWN", "alpha-crown": "CROWN-Optimized", "forward": "forward"}
# sparse alphas must be off too: with dense intermediate bounds auto_LiRPA 0.3 otherwise fails
# ("shape mismatch" in reconstruct_full_alpha) as soon as some neuron is stable in every box.
_BOUND_OPTS = {"sparse_intermediate_bounds": False, "sparse_conv_intermediate_bounds": False,
               "sparse_features_alpha": False, "sparse_spec_alpha": False, "verbosity": 0}
_CACHE: "weakref.WeakKeyDictionary[nn.Module, tuple]" = weakref.WeakKeyDictionary()


@contextlib.contextmanager
def _float64_default():
    """auto_LiRPA's optimiser casts its best bounds to ``torch.get_default_dtype()``; run it with
    float64 as the default and restore the caller's default afterwards."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        torch.set_default_dtype(old)


def _fingerprint(model) -> tuple:
    """Cache key: the tensors of an (immutable) AffineReluNet, else structure + content hash."""
    if isinstance(model, AffineReluNet):
        return tuple(t.data_ptr() for t in model.weights + model.biases)
    from certprune.verifiers.bounds import _fingerprint as content_fingerprint
    return content_fingerprint(model)


def _as_sequential(net: AffineReluNet) -> nn.Sequential:
    """A float64 Linear/ReLU Sequential computing ``net`` on flattened inputs."""
    layers: list[nn.Module] = [nn.Flatten()]
    for i, (w, b) in enumerate(zip(net.weights, net.biases)):
        lin = nn.Linear(w.shape[1], w.shape[0]).double()
        with torch.no_grad():
            lin.weight.copy_(w)
            lin.bias.copy_(b)
        layers += [lin, nn.ReLU()] if i < net.num_layers - 1 else [lin]
    return nn.Sequential(*layers).eval()


def bounded_module(model: nn.Module, input_shape: tuple[int, ...], fresh: bool = False):
    """A float64 ``auto_LiRPA.BoundedModule`` for ``model`` (cached until its weights change,
    unless ``fresh``: alpha-CROWN keeps per-batch optimiser state in the module, so reusing one
    for another batch of boxes fails inside auto_LiRPA)."""
    from certprune.verifiers.lirpa_compat import import_auto_lirpa
    al = import_auto_lirpa()
    key = (_fingerprint(model), tuple(input_shape))
    hit = _CACHE.get(model)
    if hit is not None and hit[0] == key and not fresh:
        return hit[1]
    inner = model.module if hasattr(model, "info") and isinstance(getattr(model, "module", None), nn.Module) else model
    m64 = _as_sequential(inner) if isinstance(inner, AffineReluNet) else copy.deepcopy(inner).double().eval()
    dummy = torch.zeros(1, *input_shape, dtype=torch.float64)
    try:
        with _float64_default():
            bm = al.BoundedModule(m64, dummy, bound_opts=dict(_BOUND_OPTS), device="cpu")
    except (NotImplementedError, KeyError, RuntimeError, TypeError) as e:
        raise UnsupportedModelError(f"auto_LiRPA cannot bound this model: {type(e).__name__}: "
                                    f"{str(e).splitlines()[0] if str(e) else ''}") from None
    if not fresh:
        _CACHE[model] = (key, bm)
    return bm


def lirpa_bounds(model: nn.Module | AffineReluNet, lo: torch.Tensor, hi: torch.Tensor, input_shape: tuple[int, ...], method: str,
                 return_intermediate: bool = False, C: torch.Tensor | None = None):
    """Bounds from auto_LiRPA on N flattened boxes ``lo``/``hi`` (N, prod(input_shape)), float64.

    ``method``: ibp, crown, alpha-crown (CROWN-Optimized) or forward (forward-mode LiRPA).
    ``C`` (m, n_out) or (N, m, n_out) gives bounds on ``C @ y``. Returns a ``bounds.Bounds``.
    """
    from certprune.verifiers.bounds import Bounds
    from certprune.verifiers.lirpa_compat import import_auto_lirpa
    al = import_auto_lirpa()
    bm = bounded_module(model, input_shape, fresh=method == "alpha-crown")
    n = lo.shape[0]
    xl = lo.reshape(n, *input_shape).double()
    xu = hi.reshape(n, *input_shape).double()
    x = al.BoundedTensor((xl + xu) / 2, al.PerturbationLpNorm(x_L=xl, x_U=xu))
    Cb = None
    if C is not None:
        Cb = (C if C.dim() == 3 else C.expand(n, *C.shape)).double()
    with _float64_default(), torch.set_grad_enabled(method == "alpha-crown"):
        try:
            lower, upper = bm.compute_bounds(x=(x,), C=Cb, method=_METHOD[method])
        except NotImplementedError as e:  # e.g. forward mode through BatchNormalization
            raise UnsupportedModelError(f"auto_LiRPA cannot compute {method} bounds for this model: "
                                        f"{str(e).split('.')[0]}") from None
    inter = None
    if return_intermediate:
        inter = tuple((r.inputs[0].lower.detach().reshape(n, -1).double(),
                       r.inputs[0].upper.detach().reshape(n, -1).double()) for r in bm.relus)
    return Bounds(lower.detach().reshape(n, -1).double(), upper.detach().reshape(n, -1).double(), inter,
                  method, "lirpa")
