"""A verification query made ready for the back ends: model forms, flattened box, stacked spec,
and the float32 confirmation of counterexamples on the ORIGINAL model."""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import torch
from torch import nn

from certprune.errors import ConfigError, UnsupportedModelError
from certprune.graph import Graph
from certprune.results import Result, Verdict
from certprune.specs import InputRegion, Property
from certprune.semantics import Semantics, parse_semantics
from certprune.verifiers.affine import AffineReluNet, flatten_modules
from certprune.verifiers.attack import Float32Model, float32_forward, float32_margin
from certprune.verifiers.bab import Spec


CONFIRM_SINGLE_MAX = 16  # batch hits re-run alone, best float32 margin first


@dataclass
class Problem:
    """``lo``/``hi``: flattened float64 box (integer inputs rounded inward); ``int_mask`` flat or
    None; ``run32`` the float32 original model on flattened inputs; ``input_shape`` the model's;
    ``open_lo``/``open_hi`` flat masks of open (strict) bounds or None."""

    net: AffineReluNet | Graph  # a chain's dense form, or the graph IR of any other ReLU graph
    run32: Float32Model
    prop: Property
    lo: np.ndarray
    hi: np.ndarray
    int_mask: np.ndarray | None
    input_shape: tuple[int, ...]
    strategy: str
    spec: Spec
    open_lo: np.ndarray | None = None
    open_hi: np.ndarray | None = None

    @cached_property
    def graph(self) -> Graph:
        """The graph IR every bound and exact leaf runs on (a chain's dense form as a graph)."""
        return chain_graph(self.net)

    def confirm(self, pts: np.ndarray) -> np.ndarray | None:
        """The point (float32 values, as float64, flat) among ``pts`` that lies in the region and
        whose float32 output violates the property exactly (strict rows strictly:
        :meth:`Property.is_violated`) in the batch and again when run alone, the one with the
        smallest float32 margin among the first ``CONFIRM_SINGLE_MAX`` batch hits; else None."""
        x32 = to_float32_in_box(np.asarray(pts, dtype=np.float64).reshape(len(pts), -1), self.lo, self.hi,
                                self.open_lo, self.open_hi)
        ok = in_box_float32(x32, self.lo, self.hi, self.int_mask, self.open_lo, self.open_hi)
        if not ok.any():
            return None
        x32 = x32[ok]
        m, y = float32_margin(self.run32, self.prop, x32)
        hit = self.prop.is_violated(y)
        # a batched float32 run may round differently from the point run a user repeats (BLAS
        # blocking): a candidate counts only when it violates the property run alone too
        for i in np.argsort(np.where(hit, m, np.inf), kind="stable")[:CONFIRM_SINGLE_MAX]:
            if not hit[i]:
                break
            if self.prop.is_violated(float32_margin(self.run32, self.prop, x32[i:i + 1])[1])[0]:
                return x32[i]
        return None

    def falsified(self, x: np.ndarray, stats: dict, phase: str) -> Result:
        """FALSIFIED Result for a confirmed flat point, re-run once more for its float32 output."""
        m, y = float32_margin(self.run32, self.prop, x[None])
        if not self.prop.is_violated(y)[0]:  # defensive: confirm() already checked this exact point
            raise AssertionError("counterexample failed its float32 re-check")
        stats["phase"] = phase
        stats["counterexample_margin"] = float(m[0])
        cex = x.astype(np.float32).reshape(self.input_shape)
        return Result(Verdict.FALSIFIED, counterexample=cex, counterexample_output=y[0].astype(np.float32),
                      stats=stats, message=f"counterexample found by {phase}, re-checked in float32")

    def root_alive(self, cfg: Any, deadline: float | None, prior: dict | None = None) -> np.ndarray:
        """Disjuncts not refuted on the whole region by CROWN, then by alpha-CROWN
        (``bounds.engine.root_lower``: 20 Adam steps, lr 0.5, stopped at the deadline), with the
        fixed ReLU input bounds ``prior`` (``verifiers.refine``) where given."""
        from certprune.bounds.engine import root_lower

        lo, hi = torch.as_tensor(self.lo)[None], torch.as_tensor(self.hi)[None]
        iters = 20 if cfg.use_alpha_crown else 0
        lower = root_lower(self.graph, lo, hi, self.spec.C, self.spec.c, iters, self.spec.tol, deadline=deadline,
                           prior=prior)
        return (~(self.spec.disjunct_max(lower - self.spec.tol) > 0)[0]).numpy()


def chain_graph(net: AffineReluNet | Graph) -> Graph:
    """``net`` as a graph (an AffineReluNet becomes its Linear/ReLU chain)."""
    from certprune.graph import build_graph
    return net if isinstance(net, Graph) else build_graph(net)


def to_float32_in_box(x: np.ndarray, lo: np.ndarray, hi: np.ndarray, open_lo: np.ndarray | None = None,
                      open_hi: np.ndarray | None = None) -> np.ndarray:
    """Round points to float32, stepping one float32 ulp inward where rounding left the box or
    sits on an open bound (unless the box holds no float32 number there, e.g. a point box at 0.1:
    see in_box_float32)."""
    with np.errstate(over="ignore"):  # boxes lie within the float32 range (InputRegion checks)
        x32 = np.clip(x, lo, hi).astype(np.float32)
    olo = np.zeros(lo.shape, bool) if open_lo is None else open_lo
    ohi = np.zeros(hi.shape, bool) if open_hi is None else open_hi
    for _ in range(2):
        with np.errstate(over="ignore"):
            up, down = np.nextafter(x32, np.float32(np.inf)), np.nextafter(x32, np.float32(-np.inf))
        x32 = np.where(((x32 < lo) | (olo & (x32 <= lo))) & ((up < hi) | (~ohi & (up <= hi))), up, x32)
        x32 = np.where(((x32 > hi) | (ohi & (x32 >= hi))) & ((down > lo) | (~olo & (down >= lo))), down, x32)
    return x32.astype(np.float64)


def in_box_float32(x32: np.ndarray, lo: np.ndarray, hi: np.ndarray, int_mask: np.ndarray | None,
                   open_lo: np.ndarray | None = None, open_hi: np.ndarray | None = None) -> np.ndarray:
    """Per point: inside the box, where a coordinate may also equal the float32 rounding of a
    closed box bound (needed when no float32 number lies in ``[lo, hi]`` along that input);
    strictly inside open bounds (``open_lo``/``open_hi`` masks); integral on integer inputs."""
    with np.errstate(over="ignore"):
        lo32, hi32 = lo.astype(np.float32).astype(np.float64), hi.astype(np.float32).astype(np.float64)
    above = (x32 >= lo) | (x32 == lo32)
    below = (x32 <= hi) | (x32 == hi32)
    if open_lo is not None:
        above = np.where(open_lo, x32 > lo, above)
    if open_hi is not None:
        below = np.where(open_hi, x32 < hi, below)
    ok = above & below
    if int_mask is not None:
        ok &= ~int_mask | (x32 == np.round(x32))
    return ok.all(axis=1)


def in_region_float32(region: InputRegion, x32: np.ndarray) -> np.ndarray:
    """:func:`in_box_float32` for points ``(N, ...)`` (float32 values) of an :class:`InputRegion`."""
    def flat(m):
        return None if m is None else m.ravel()
    pts = np.asarray(x32, dtype=np.float64).reshape(-1, region.dim)
    return in_box_float32(pts, region.lower.ravel(), region.upper.ravel(), flat(region.integer_mask),
                          flat(region.open_lower), flat(region.open_upper))


def build_spec(prop: Property, cert_margin: float) -> Spec:
    """Stack the disjuncts' rows; row r gets margin ``cert_margin * (1 + |b_r|)``."""
    A = [d.A for d in prop.disjuncts]
    b = [d.b for d in prop.disjuncts]
    C = torch.as_tensor(np.vstack(A))
    bb = torch.as_tensor(np.concatenate(b))
    rows = torch.as_tensor(np.concatenate([np.full(len(bi), k) for k, bi in enumerate(b)]), dtype=torch.long)
    return Spec(C, -bb, rows, cert_margin * (1 + bb.abs()), A, b)


def model_forms(model, region_shape: tuple[int, ...],
                deadline: float | None = None) -> tuple[AffineReluNet | Graph, Float32Model, tuple[int, ...]]:
    """(bound form, float32 runner, model input shape) of a Network / nn.Module / AffineReluNet.
    The bound form is the dense chain (``AffineReluNet``) where the model is a chain of single
    ``nn.Linear`` layers and ReLUs (its weights copied, nothing rounded), else its graph IR
    (convolutions, BatchNorm, composed Linear layers, residual, concat, twin networks: one
    operator per layer, each with its rigorous rounding margin)."""
    from certprune.verifiers.bounds import affine_net, graph_of

    if isinstance(model, AffineReluNet):
        shape = tuple(model.input_shape)
        return model, float32_forward(model, shape), shape
    if not isinstance(model, nn.Module):
        raise ConfigError(f"model must be a Network, torch.nn.Module or AffineReluNet, got {type(model).__name__}")
    info = getattr(model, "info", None)
    shape = tuple(info.input_shape) if info is not None else tuple(region_shape)
    first = next(iter(flatten_modules(model)), None)
    if (info is None and isinstance(model, nn.Sequential) and isinstance(first, nn.Linear)
            and int(np.prod(shape)) != first.in_features and (not shape or shape[-1] != first.in_features)):
        shape = (first.in_features,)  # let check_shapes report the mismatch in words
    from certprune.verifiers.affine import is_exact_chain
    try:
        if not is_exact_chain(model, shape):  # densifying would round outside every margin (affine doc)
            raise UnsupportedModelError("not a chain of single Linear layers")
        form = affine_net(model, shape, deadline)
        if not form.exact:  # the two checks must agree; never bound a rounded product
            raise UnsupportedModelError("densified")
    except UnsupportedModelError:  # the graph IR (its error names the unsupported ops)
        form = graph_of(model, shape)
    return form, float32_forward(model, shape), shape


def prepare(model, prop: Property, cfg, deadline: float | None = None) -> Problem:
    """Validate the query against the model and build the :class:`Problem` (DeadlineExceeded
    past ``deadline`` while densifying a large model)."""
    from certprune.verifiers.verify import check_shapes

    if not isinstance(prop, Property):
        raise ConfigError(f"prop must be a certprune Property, got {type(prop).__name__}")
    net, run32, shape = model_forms(model, prop.region.shape, deadline)
    check_shapes(prop, shape, net.output_dim)
    lo, hi = prop.region.lower.ravel().copy(), prop.region.upper.ravel().copy()
    mask = None
    if prop.region.integer_mask is not None and prop.region.integer_mask.any():
        mask = prop.region.integer_mask.ravel().copy()
        lo[mask], hi[mask] = np.ceil(lo[mask]), np.floor(hi[mask])
    strategy = cfg.strategy
    if strategy == "auto":
        strategy = "input" if net.input_dim <= cfg.input_split_max_dim else "relu"
    open_lo = None if prop.region.open_lower is None else prop.region.open_lower.ravel().copy()
    open_hi = None if prop.region.open_upper is None else prop.region.open_upper.ravel().copy()
    spec = build_spec(prop, cfg.cert_margin)
    if parse_semantics(getattr(cfg, "semantics", None)) is Semantics.FLOAT32:
        spec.tol = spec.tol + spec.C.abs() @ float32_output_error(model, net, lo, hi)
    return Problem(net, run32, prop, lo, hi, mask, shape, strategy, spec, open_lo, open_hi)


_CHAIN_PASSIVE = (nn.ReLU, nn.Flatten, nn.Identity, nn.Dropout)


def float32_output_error(model, net, lo: np.ndarray, hi: np.ndarray) -> torch.Tensor:
    """``--semantics float32``: a rigorous bound (n_out,) on |float32 output - exact output| over
    the box, from :func:`certprune.bounds.float32.output_error` on :func:`float32_graph` with
    intersected CROWN bounds of the whole region (valid on every sub-domain)."""
    from certprune.bounds import crown
    from certprune.bounds.float32 import output_error

    g = float32_graph(model, net)
    st = crown.intermediate(g, torch.as_tensor(lo)[None], torch.as_tensor(hi)[None], intersect=True)
    return output_error(g, st.bounds)[0]


_FLOAT32_REFUSAL = ("--semantics float32 supports chain MLPs and graphs of Linear / Conv / MatMul, ReLU, Add / Sub, "
                    "Concat and shape operators (weights exact in float32) only")


def float32_graph(model, net=None) -> Graph:
    """The graph whose operator-by-operator float32 execution is the model's: the chain of
    ``net`` for a chain MLP (one ``nn.Linear`` between ReLUs), else the graph of ``model`` itself
    (one operator per module, never merged), whose every operator must have a float32 error
    model (Linear, Conv, MatMul, ReLU, Add/Sub, Concat, Reshape, Permute, Select, zero Pad) and
    whose weights must be float32-exact; otherwise UnsupportedModelError (one line)."""
    from certprune.graph import ops_linear as L
    from certprune.graph import ops_merge as M
    from certprune.graph import ops_shape as S
    from certprune.graph.relu import ReLU
    from certprune.verifiers.bounds import graph_of

    info = getattr(model, "info", None)
    if net is None:
        net = model_forms(model, tuple(info.input_shape) if info is not None else ())[0]
    if _is_linear_chain(model, net):
        return graph_of(net)
    if not isinstance(model, nn.Module):  # an AffineReluNet whose weights float32 rounds
        raise UnsupportedModelError(_FLOAT32_REFUSAL + "; use --semantics exact")
    g = net if isinstance(net, Graph) else graph_of(model, tuple(info.input_shape) if info is not None else
                                                    tuple(net.input_shape))
    modelled = (L.Linear, L.Conv, L.MatMul, ReLU, M.AddSub, M.Concat, S.Reshape, S.Permute, S.Select, S.Pad)
    bad = sorted({type(n.op).__name__ for n in g.nodes[1:] if not isinstance(n.op, modelled)})
    for n in g.nodes[1:]:
        if isinstance(n.op, (L.Linear, L.Conv, L.MatMul)):
            for t in (n.op.weight, getattr(n.op, "bias", None)):
                if t is not None and not bool((t.float().double() == t).all()):
                    bad.append(f"{type(n.op).__name__} weights not exact in float32")
    if bad:
        raise UnsupportedModelError(f"{_FLOAT32_REFUSAL}; not modelled: {', '.join(dict.fromkeys(bad))}; "
                                    "use --semantics exact")
    return g


def require_float32_chain(model, net=None) -> None:
    """Raise UnsupportedModelError (one line) unless ``--semantics float32`` applies to ``model``
    (``net``: its bound form from :func:`model_forms`, built here when None): see
    :func:`float32_graph`."""
    float32_graph(model, net)


def _is_linear_chain(model, net) -> bool:
    """Whether float32 execution of ``model`` computes exactly ``net``'s layers, one matmul each."""
    if not isinstance(net, AffineReluNet):
        return False
    # the bounds use net's (float64) weights while the float32 run rounds them: they must agree
    if not all(bool((w.float().double() == w).all()) for w in net.weights + net.biases):
        return False
    if isinstance(model, AffineReluNet):
        return True
    mods = flatten_modules(model)
    if any(not isinstance(m, (nn.Linear,) + _CHAIN_PASSIVE) for m in mods):
        return False
    linears_per_segment, count = [], 0
    for m in mods:
        if isinstance(m, nn.ReLU):
            linears_per_segment.append(count)
            count = 0
        elif isinstance(m, nn.Linear):
            count += 1
    linears_per_segment.append(count)
    return all(c == 1 for c in linears_per_segment) and len(linears_per_segment) == net.num_layers
