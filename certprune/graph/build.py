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
from certprune.verifiers.affine import _densify, is_affine_module


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
        """Append the nodes of module ``m`` applied to node ``x``; returns the output node."""
        if isinstance(m, nn.Sequential):
            for child in m:
                x = self.module(child, x)
            return x
        if isinstance(m, onnx_ops.OnnxGraph):
            return self._onnx_graph(m, x)
        if isinstance(m, (nn.Identity, nn.Dropout)):
            return x
        op = self._op(m, x)
        if op is None:
            self.unsupported.add(type(m).__name__)
            return x
        return self.add(op, (x,), type(m).__name__)

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

    def _op(self, m: nn.Module, x: int) -> Op | None:
        shape = self.shape(x)
        if isinstance(m, nn.ReLU):
            return ReLU()
        if isinstance(m, nn.Linear):
            return L.Linear(_t(m.weight), _t(m.bias))
        if isinstance(m, (nn.Conv1d, nn.Conv2d)):
            return self._conv(m, shape)
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            return _batchnorm(m, shape)
        if isinstance(m, (nn.Flatten, nn.Unflatten, onnx_ops.Reshape)):
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
        if isinstance(m, (nn.AvgPool1d, nn.AvgPool2d, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d)):
            return S.MonotoneLinear(m, shape, repr(m))
        if is_affine_module(m):  # other affine layers (ConvTranspose, custom is_affine ops): dense map
            w, bias, out = _densify([m], shape)
            return L.Dense(w, bias, shape, out)
        return None

    def _conv(self, m, shape) -> Op:
        if m.padding_mode != "zeros" or isinstance(m.padding, str) and m.padding != "valid":
            raise UnsupportedModelError(f"{type(m).__name__} with padding {m.padding!r} / mode {m.padding_mode!r} "
                                        "is not supported (zero padding with explicit sizes only)")
        pad = (0,) * (m.weight.dim() - 2) if isinstance(m.padding, str) else tuple(m.padding)
        w, bias = _t(m.weight), _t(m.bias)
        y = (torch.nn.functional.conv1d if w.dim() == 3 else torch.nn.functional.conv2d)(
            self.samples[-1].new_zeros(1, *shape), w, None, m.stride, pad, m.dilation, m.groups)
        return L.Conv(w, bias, tuple(m.stride), pad, tuple(m.dilation), m.groups, shape, tuple(y.shape[1:]))


def _batchnorm(m, shape) -> Op:
    if m.training or m.running_mean is None:
        raise UnsupportedModelError(f"{type(m).__name__} without running statistics (or in training mode)")
    var, mean = _t(m.running_var), _t(m.running_mean)
    w = _t(m.weight) if m.weight is not None else torch.ones_like(var)
    b = _t(m.bias) if m.bias is not None else torch.zeros_like(var)
    scale = w / torch.sqrt(var + m.eps)
    shift = b - mean * scale
    view = (-1,) + (1,) * (len(shape) - 1)
    return L.Scale(scale.reshape(view), shift.reshape(view))


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
    return L.Scale(1.0 / c, None)
