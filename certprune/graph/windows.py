"""Windows: the local-coefficient representation of the one backward (CROWN) sweep (patches mode).

The identity-spec pass of a 2-D node ``t`` (shape (C, H, W)) bounds every neuron of t: one row
per neuron. Below a convolution, the coefficients of neuron (c, i, j) are nonzero only on its
receptive field, a window of each node below (auto_LiRPA's ``Patches``). :class:`Windows` holds
such coefficients for the target's locations ``l0 .. l0 + Lc`` as ``P`` (K, Lc, R, C_j, ph, pw)
(R = 2C rows per location: ``+e_c`` for the lower and ``-e_c`` for the upper bounds), with a
geometry ``(ph, pw, sh, sw, oh, ow)``: the window of location (i, j) starts at row
``i * sh - oh`` and column ``j * sw - ow`` of the node (C_j, H_j, W_j) holding them. The rows of
the linear function are the Lc * R (location, row) pairs, so biases are (K, Lc * R) as in the
dense sweep. Positions outside the node (the zero padding of a convolution, or of the window
itself) may hold any finite value: every step multiplies them by zero (``masked``, or windows
of a per-node tensor, which are zero there) and ``dense`` crops them.

The sweep (``certprune.bounds.crown.sweep``) is the same for dense tensors and windows: each
operator's ``backward`` (and ``ReLU.backward_relaxed``) accepts either and owns its step and
its geometry step (``window_geo``: the geometry on its input given the one on its output, None
where it has no window step); contributions that meet at a node are added in their common
bounding window (``__add__``); at the input the windows are concretised against the windows of
the box's centre and radius (``concretize``). :func:`plan` / :func:`cost` decide whether a node's
pass can and should run on windows (a cost rule: windows when their volume is below
``COST_RATIO`` of the dense coefficients), and down to which nodes: where a window would cover
most of a node (deep in a ResNet the receptive field is the whole image), or an operator has no
window step, the sweep turns the windows into dense coefficients (``dense``) and goes on dense.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

Geo = tuple[int, int, int, int, int, int]  # (ph, pw, sh, sw, oh, ow)
ONE: Geo = (1, 1, 1, 1, 0, 0)  # the window of a node's own location
COST_RATIO = 0.5  # windows when their coefficient volume is below this fraction of the dense one
WINDOW_FILL = 0.5  # a node keeps windows while a window covers less than this fraction of its area
# (sri_resnet_a, node 10: 0.46 s at 0.5, 0.48 s at 1.0, 0.75 s at 0.3; dense 1.0 s)


@dataclass
class Locations:
    """The target's spatial size ``hw``, the locations ``sl`` of one chunk, and the unfold cache
    shared by the chunks of one pass (per-node tensors are unfolded once for all locations)."""

    hw: tuple[int, int]
    sl: slice
    cache: dict = field(default_factory=dict)
    plan: dict = field(default_factory=dict)  # node -> geometry of the nodes that keep windows


def unfold(x: torch.Tensor, g: Geo, hw: tuple[int, int]) -> torch.Tensor:
    """Windows of ``x`` (B, C, H, W) at the prod(hw) locations, flattened: (B, L, 1, C * ph * pw),
    zero outside x."""
    ph, pw, sh, sw, oh, ow = g
    H, W = x.shape[-2:]
    bottom = max(0, (hw[0] - 1) * sh + ph - oh - H)
    right = max(0, (hw[1] - 1) * sw + pw - ow - W)
    xp = F.pad(x, (ow, right, oh, bottom))
    u = xp.unfold(2, ph, sh).unfold(3, pw, sw)[:, :, :hw[0], :hw[1]]
    return u.permute(0, 2, 3, 1, 4, 5).reshape(x.shape[0], hw[0] * hw[1], 1, -1)


def bounding(a: Geo, b: Geo) -> Geo | None:
    """The bounding window of two geometries with the same stride (None: strides differ)."""
    if a[2:4] != b[2:4]:
        return None
    oh, ow = max(a[4], b[4]), max(a[5], b[5])
    return max(oh - a[4] + a[0], oh - b[4] + b[0]), max(ow - a[5] + a[1], ow - b[5] + b[1]), a[2], a[3], oh, ow


@dataclass(frozen=True, eq=False)
class Windows:
    """Coefficients ``P`` (K, Lc, R, C, ph, pw) on windows of geometry ``geo`` of a node of
    per-sample ``shape`` (C, H, W), for the locations ``at`` (see module doc)."""

    P: torch.Tensor
    geo: Geo
    shape: tuple[int, ...]
    at: Locations

    @property
    def batch(self) -> int:
        return self.P.shape[0]

    @property
    def rows(self) -> int:
        return self.P.shape[1] * self.P.shape[2]

    def moved(self, P: torch.Tensor, geo: Geo, shape) -> "Windows":
        """Other coefficients for the same locations (an operator's input)."""
        return Windows(P, geo, tuple(shape), self.at)

    def flat(self) -> torch.Tensor:
        """(K, Lc, R, C * ph * pw)."""
        return self.P.reshape(*self.P.shape[:3], -1)

    def of(self, owner, name: str, make) -> torch.Tensor:
        """Windows (B, Lc, 1, C * ph * pw) of the per-node tensor ``make()`` (B, C, H, W) at this
        geometry, unfolded once per pass (cached under ``owner``'s identity, ``name``, geometry)."""
        key = (id(owner), name, self.geo)
        hit = self.at.cache.get(key)
        if hit is None or hit[0] is not owner:
            hit = self.at.cache[key] = (owner, unfold(make(), self.geo, self.at.hw))
        return hit[1][:, self.at.sl]

    def of_param(self, owner, name: str, v: torch.Tensor) -> torch.Tensor:
        """Windows of an operator's per-sample parameter ``v`` broadcast to this node's shape."""
        return self.of(owner, name, lambda: torch.broadcast_to(v, self.shape).unsqueeze(0).to(self.P.dtype))

    def masked(self) -> torch.Tensor:
        """``P`` with the positions outside the node set to zero (before a step that moves values)."""
        if self.geo == ONE:  # each location's own position: always inside
            return self.P
        ones = self.of(None, ("mask",) + self.shape[1:], lambda: self.P.new_ones(1, 1, *self.shape[1:]))
        g = self.geo
        return self.P * ones.reshape(1, ones.shape[1], 1, 1, g[0], g[1])

    def dot(self, w: torch.Tensor) -> torch.Tensor:
        """``sum(P * w)`` per row for windows ``w`` (B, Lc, 1, X): a bias (max(K, B), Lc * R)."""
        out = self.flat() @ w.transpose(-1, -2)
        return out.reshape(out.shape[0], -1)

    def times(self, w: torch.Tensor) -> "Windows":
        """``P * w`` for windows ``w`` (B, Lc, 1, X) (an elementwise step)."""
        out = self.flat() * w
        return self.moved(out.reshape(out.shape[0], *self.P.shape[1:]), self.geo, self.shape)

    def placed(self, g: Geo) -> torch.Tensor:
        """``P`` inside the (larger) bounding window ``g``, zero elsewhere."""
        top, left = g[4] - self.geo[4], g[5] - self.geo[5]
        bottom, right = g[0] - top - self.geo[0], g[1] - left - self.geo[1]
        if top == left == bottom == right == 0:
            return self.P
        return F.pad(self.P, (left, right, top, bottom))

    def __add__(self, other: "Windows") -> "Windows":
        g = bounding(self.geo, other.geo)
        if g is None:
            raise ValueError(f"windows of different strides meet: {self.geo} vs {other.geo}")
        return self.moved(self.placed(g) + other.placed(g), g, self.shape)

    def dense(self) -> torch.Tensor:
        """The same coefficients as a dense tensor (K, Lc * R, C, H, W): every window scattered
        to its location, positions outside the node dropped."""
        K, Lc, R, C, ph, pw = self.P.shape
        _, H, W = self.shape
        sh, sw, oh, ow = self.geo[2:]
        li = torch.arange(*self.at.sl.indices(self.at.hw[0] * self.at.hw[1]))
        i, j = li // self.at.hw[1], li % self.at.hw[1]
        Hp, Wp = max(H + oh, int(i.max()) * sh + ph), max(W + ow, int(j.max()) * sw + pw)
        rows = (i * sh).view(-1, 1, 1) + torch.arange(ph).view(1, -1, 1)  # canvas rows of each window
        cols = (j * sw).view(-1, 1, 1) + torch.arange(pw).view(1, 1, -1)
        idx = (rows * Wp + cols).reshape(1, Lc, 1, 1, ph * pw).expand(K, Lc, R, C, ph * pw)
        D = self.P.new_zeros(K, Lc, R, C, Hp * Wp)
        D.scatter_(-1, idx, self.P.reshape(K, Lc, R, C, ph * pw))
        D = D.reshape(K, Lc * R, C, Hp, Wp)[..., oh:oh + H, ow:ow + W]
        return D.contiguous()

    def __neg__(self) -> "Windows":
        return self.moved(-self.P, self.geo, self.shape)

    def concretize(self, bias: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
        """Minimum over each box (``lo``/``hi`` (N, C, H, W), the input node) of the linear
        function with these coefficients and ``bias`` (K, Lc * R): (N, Lc * R). Overwrites ``P``
        with |P| where it is contiguous (the end of a sweep: nobody reads it again)."""
        center = self.of(lo, "center", lambda: (lo + hi) / 2).transpose(-1, -2)  # (N, Lc, X, 1)
        radius = self.of(lo, "radius", lambda: (hi - lo) / 2).transpose(-1, -2)
        Pf = self.flat()
        mid = (Pf @ center).squeeze(-1)
        # the sweep's own last buffer: |P| in place where it can be (one allocation less)
        mag = Pf.abs_() if Pf.is_contiguous() and not Pf.requires_grad else Pf.abs()
        out = mid - (mag @ radius).squeeze(-1)
        return bias + out.reshape(out.shape[0], -1)


def identity(shape: tuple[int, int, int], at: Locations, dtype) -> Windows:
    """The identity spec ``[+e_c; -e_c]`` at every location of ``at.sl`` of a node of ``shape``."""
    C = shape[0]
    eye = torch.eye(C, dtype=dtype)
    Lc = len(range(*at.sl.indices(at.hw[0] * at.hw[1])))
    P = torch.cat([eye, -eye]).reshape(1, 1, 2 * C, C, 1, 1).expand(1, Lc, 2 * C, C, 1, 1)
    return Windows(P, ONE, tuple(shape), at)


def plan(graph, t: int) -> dict[int, Geo] | None:
    """Window geometry of the nodes whose coefficients stay windows in the pass of node t (t
    first), or None where t itself cannot keep them (not 3-D, no window step). Going down from
    t, a node keeps windows while every consumer in the pass hands it windows of one stride,
    it is 3-D, and a window covers less than ``WINDOW_FILL`` of its area; below, the pass runs
    on dense coefficients (the sweep converts them, ``Windows.dense``)."""
    if len(graph.nodes[t].shape) != 3:
        return None
    geo: dict[int, Geo] = {t: ONE}
    dense: set[int] = set()
    for i in sorted(graph.ancestors(t), reverse=True):
        if i == 0:
            break
        node = graph.nodes[i]
        new = None if i in dense else node.op.window_geo(geo[i])
        if new is None or any(len(graph.nodes[j].shape) != 3 for j in node.inputs):
            geo.pop(i, None)
            dense.add(i)
            dense.update(node.inputs)
            continue
        for j in node.inputs:
            m = None if j in dense else new if j not in geo else bounding(geo[j], new)
            if m is None or m[0] * m[1] >= WINDOW_FILL * graph.nodes[j].shape[1] * graph.nodes[j].shape[2]:
                geo.pop(j, None)
                dense.add(j)
            else:
                geo[j] = m
    return geo if t in geo else None


def cost(graph, t: int, geo: dict[int, Geo]) -> tuple[int, int]:
    """(windows, dense) coefficient values per row of the pass below t: window volumes where the
    plan keeps windows, node sizes elsewhere, vs node sizes everywhere."""
    below = graph.ancestors(t) - {t}
    dense = sum(graph.nodes[j].size for j in below)
    patch = sum(graph.nodes[j].shape[0] * geo[j][0] * geo[j][1] if j in geo else graph.nodes[j].size for j in below)
    return patch, dense
