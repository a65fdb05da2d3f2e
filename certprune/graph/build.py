"""Build the graph IR from a loaded model: a :class:`~certprune.network.Network`, a torch
``nn.Sequential`` (nested), the ONNX loader's ``OnnxGraph`` DAG, or an ``AffineReluNet``.

Weights are copied to float64. Identity / Dropout become aliases. Every module that has no
operator (Sigmoid, Softmax, MaxPool, a custom module, ...) is named in ONE
:class:`~certprune.errors.UnsupportedModelError`.
"""
from __future__ import annotations

import torch
from torch import nn

from certprune.errors import ShapeMismatchError, UnsupportedModelError
from certprune.graph import ops_linear as L
from certprune.graph import ops_merge as M
from certprune.graph import ops_shape as S
from certprune.graph.ir import Graph, Node
from certprune.graph.op import Op
from certprune.graph.relu import ReLU
from certprune.io import onnx_ops
from certprune.semantics import TINY64, gamma64
from certprune.verifiers.affine import _global_hooks, _plain, exact_dense


_UNSUPPORTED = "the native engine supports piecewise-linear ReLU graphs only; unsupported layers: "


def build_graph(model, input_shape: tuple[int, ...] | None = None) -> Graph:
    """The graph of ``model`` (see module doc); ``input_shape`` excludes the batch dim."""
    from certprune.verifiers.affine import AffineReluNet
    if isinstance(model, AffineReluNet):
        return _from_affine(model)
    info = getattr(model, "info", None)
    if input_shape is None:
        input_shape = tuple(info.input_shape) if info is not None else _guess_shape(model)
    inner = model.module if info is not None and isinstance(getattr(model, "module", None), nn.Module) else model
    b = _Builder(tuple(int(d) for d in input_shape))
    out = b.module(inner, 0)
    if b.unsupported:
        raise UnsupportedModelError(_UNSUPPORTED + ", ".join(sorted(b.unsupported)))
    return Graph(tuple(b.nodes), out)


def _guess_shape(model) -> tuple[int, ...]:
    first = next((m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d))), None)
    if isinstance(first, nn.Linear):
        return (first.in_features,)
    raise ShapeMismatchError("cannot infer the model's input shape; pass input_shape=")


def _from_affine(net) -> Graph:
    b = _Builder(tuple(net.input_shape))
    cur = b.add(S.Reshape(net.input_shape, (net.input_dim,)), (0,), "flatten")
    for i, (w, bias) in enumerate(zip(net.weights, net.biases)):
        cur = b.add(L.Linear(w.double(), bias.double()), (cur,), f"layer{i}")
        if i < net.num_layers - 1:
            cur = b.add(ReLU(), (cur,), f"relu{i}")
    return Graph(tuple(b.nodes), cur)


def _t(x) -> torch.Tensor | None:
    return None if x is None else x.detach().to(torch.float64).clone()


class _Builder:
    """Appends nodes, keeping a float64 zero sample of every node to learn shapes."""

    def __init__(self, input_shape: tuple[int, ...]):
        self.nodes: list[Node] = [Node(None, (), input_shape, "input")]
        self.samples = [torch.zeros(1, *input_shape, dtype=torch.float64)]
        self.unsupported: set[str] = set()

    def add(self, op: Op, inputs: tuple[int, ...], label: str = "") -> int:
        try:
            y = op.forward(*[self.samples[j] for j in inputs])
        except (RuntimeError, IndexError) as e:
            if self.unsupported:  # a skipped unsupported module changed the shape: name it, not the symptom
                raise UnsupportedModelError(_UNSUPPORTED + ", ".join(sorted(self.unsupported))) from None
            raise ShapeMismatchError(f"{op!r} rejects inputs of shape {[self.nodes[j].shape for j in inputs]}: "
                                     f"{str(e).splitlines()[0]}") from None
        self.nodes.append(Node(op, tuple(inputs), tuple(y.shape[1:]), label))
        self.samples.append(y)
        return len(self.nodes) - 1

    def shape(self, i: int) -> tuple[int, ...]:
        return self.nodes[i].shape

    def module(self, m: nn.Module, x: int) -> int:
        """Append the nodes of module ``m`` applied to node ``x``; returns the output node. A
        module is taken by its type only where its ``forward`` is that type's own and no hook
        changes it (:func:`affine._plain`): a subclass that overrides ``forward`` is unsupported."""
        if m._forward_hooks or m._forward_pre_hooks or _global_hooks():
            raise UnsupportedModelError(f"{type(m).__name__} has forward hooks: the bound operators would not see "
                                        "what they do")
        if _plain(m, nn.Sequential):
            for child in m:
                x = self.module(child, x)
            return x
        if isinstance(m, onnx_ops.OnnxGraph):
            return self._onnx_graph(m, x)
        if _plain(m, (nn.Identity, nn.Dropout)):
            return x
        op = self._op(m, x)
        if op is None:
            self.unsupported.add(type(m).__name__)
            return x
        for o in op if isinstance(op, list) else [op]:
            x = self.add(o, (x,), type(m).__name__)
        return x

    def _onnx_graph(self, g: onnx_ops.OnnxGraph, x: int) -> int:
        env = {"__input__": x}
        for mod, names, out in zip(g.nodes, g.wiring, g.outputs):
            ins = [env[n] for n in names]
            if len(ins) == 1:
                env[out] = self.module(mod, ins[0])
                continue
            op = self._multi(mod, ins)
            if op is None:
                self.unsupported.add(f"{type(mod).__name__}({getattr(mod, 'op', '')})")
                env[out] = ins[0]
            else:
                env[out] = self.add(op, tuple(ins), type(mod).__name__)
        return env[g.result]

    def _multi(self, m: nn.Module, ins: list[int]) -> Op | None:
        if isinstance(m, onnx_ops.TensorBinary) and m.op in ("Add", "Sub") and len(ins) == 2:
            if self.shape(ins[0]) != self.shape(ins[1]):
                raise UnsupportedModelError(f"{m.op} of tensors of shapes {self.shape(ins[0])} and "
                                            f"{self.shape(ins[1])} (broadcasting two tensors) is not supported")
            return M.AddSub(1.0 if m.op == "Add" else -1.0)
        if isinstance(m, onnx_ops.Concat):
            rank = len(self.shape(ins[0])) + 1
            dim = m.dim + rank if m.dim < 0 else m.dim
            if dim == 0:
                raise UnsupportedModelError("Concat along the batch dimension is not supported")
            return M.Concat(dim, [self.shape(i)[dim - 1] for i in ins])
        return None

    def _op(self, m: nn.Module, x: int) -> Op | list[Op] | None:
        shape = self.shape(x)
        if _plain(m, nn.ReLU):
            return ReLU()
        if _plain(m, nn.Linear):
            return L.Linear(_t(m.weight), _t(m.bias))
        if _plain(m, (nn.Conv1d, nn.Conv2d)):
            return self._conv(m, shape)
        if _plain(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            return _batchnorm(m, shape)
        if _plain(m, (nn.Flatten, nn.Unflatten, onnx_ops.Reshape)):
            out = tuple(m(self.samples[x]).shape[1:])
            return S.Reshape(shape, out)
        if isinstance(m, onnx_ops.Select):
            return S.Select(m.index.clone(), shape, m.shape)
        if isinstance(m, onnx_ops.Permute):
            return S.Permute(m.perm)
        if isinstance(m, onnx_ops.ConstantPad):
            return S.Pad(m.pad)
        if isinstance(m, onnx_ops.MatMulConst):
            return L.MatMul(_t(m.weight))
        if isinstance(m, onnx_ops.ConstBinary):
            return _const_binary(m, shape)
        if _plain(m, (nn.AvgPool1d, nn.AvgPool2d, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d)):
            if (getattr(m, "divisor_override", None) or 1) <= 0:
                raise UnsupportedModelError(f"{type(m).__name__} with divisor_override <= 0 (not monotone)")
            return S.MonotoneLinear(m, shape, repr(m))
        if _plain(m, (nn.ConvTranspose1d, nn.ConvTranspose2d)):  # one dense matrix, read off exactly
            w, bias, out = exact_dense(m, shape)
            return L.Dense(w, bias, shape, out)
        if callable(getattr(m, "graph_ops", None)):  # a module that states its own operators
            return list(m.graph_ops(shape))
        return None  # includes other modules declaring is_affine: no exact operator for them

    def _conv(self, m, shape) -> Op:
        k = tuple(m.weight.shape[2:])
        if m.padding == "same":  # stride 1 (torch requires it): total d (k - 1), split evenly where even
            total = [d * (kk - 1) for d, kk in zip(m.dilation, k)]
            pad = tuple(t // 2 for t in total) if all(t % 2 == 0 for t in total) else None
        else:
            pad = (0,) * len(k) if m.padding == "valid" else tuple(m.padding)
        if m.padding_mode != "zeros" or pad is None:
            raise UnsupportedModelError(f"{type(m).__name__} with padding {m.padding!r} / mode {m.padding_mode!r} "
                                        "is not supported (zero padding, symmetric)")
        w, bias = _t(m.weight), _t(m.bias)
        y = (torch.nn.functional.conv1d if w.dim() == 3 else torch.nn.functional.conv2d)(
            self.samples[-1].new_zeros(1, *shape), w, None, m.stride, pad, m.dilation, m.groups)
        return L.Conv(w, bias, tuple(m.stride), pad, tuple(m.dilation), m.groups, shape, tuple(y.shape[1:]))


def _batchnorm(m, shape) -> list[Op]:
    if m.training or m.running_mean is None:
        raise UnsupportedModelError(f"{type(m).__name__} without running statistics (or in training mode)")
    var, mean = _t(m.running_var), _t(m.running_mean)
    w = _t(m.weight) if m.weight is not None else torch.ones_like(var)
    b = _t(m.bias) if m.bias is not None else torch.zeros_like(var)
    scale = w / torch.sqrt(var + m.eps)
    if not bool(torch.isfinite(scale).all() and torch.isfinite(mean).all() and torch.isfinite(b).all()):
        raise UnsupportedModelError(f"{type(m).__name__} with running_var + eps <= 0 or non-finite statistics")
    view = (-1,) + (1,) * (len(shape) - 1)
    # not folded into one shift b - mean * scale: that product rounds outside every margin (a
    # review certified a false property through a fold with mean ~1e33); (x - mean) is its own
    # node, and the rounded scale carries its error bound (three correctly rounded operations)
    err = gamma64(4) * scale.abs() + 4 * TINY64  # three roundings, each also off by an underflow
    return [L.Scale(None, -mean.reshape(view)), L.Scale(scale.reshape(view), b.reshape(view), err.reshape(view))]


def _const_binary(m, shape) -> Op:
    c = _t(m.const)
    full = torch.broadcast_shapes(tuple(c.shape), (1, *shape))
    if tuple(full[1:]) != tuple(shape) or len(full) != len(shape) + 1:
        raise UnsupportedModelError(f"constant {m.op} broadcasts its input of shape {shape} to {tuple(full[1:])}")
    while c.dim() > len(shape):
        c = c.squeeze(0)
    if m.op == "Add":
        return L.Scale(None, c)
    if m.op == "Sub":
        return L.Scale(-torch.ones_like(c), c) if m.const_first else L.Scale(None, -c)
    if m.op == "Mul":
        return L.Scale(c, None)
    if m.const_first:
        raise UnsupportedModelError("division by a tensor (c / x) is not supported: it is not piecewise linear")
    return L.reciprocal_scale(c)
