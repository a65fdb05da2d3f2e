"""Small random non-chain ReLU graphs (residual blocks, concat branches, strided convs with
BatchNorm, a twin network) built as the ONNX loader's ``OnnxGraph`` modules, so that the same
object runs in torch, in auto_LiRPA and through ``certprune.graph.build_graph``."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from certprune.io import onnx_ops as ops


def _lin(i: int, o: int, g: torch.Generator) -> nn.Linear:
    lin = nn.Linear(i, o)
    with torch.no_grad():
        lin.weight.copy_(torch.randn(o, i, generator=g) / i ** 0.5)
        lin.bias.copy_(torch.randn(o, generator=g) * 0.1)
    return lin


def _bn(c: int, g: torch.Generator, cls=nn.BatchNorm2d) -> nn.Module:
    bn = cls(c)
    with torch.no_grad():
        bn.running_mean.copy_(torch.rand(c, generator=g) - 0.5)
        bn.running_var.copy_(torch.rand(c, generator=g) * 1.5 + 0.5)
        bn.weight.copy_(torch.rand(c, generator=g) + 0.5)
        bn.bias.copy_(torch.rand(c, generator=g) * 0.4 - 0.2)
    return bn.eval()


def graph(nodes: list[tuple[nn.Module, tuple[str, ...], str]], result: str) -> ops.OnnxGraph:
    mods, wiring, outs = zip(*nodes)
    return ops.OnnxGraph(list(mods), list(wiring), list(outs), result).eval()


def residual_relu_add(seed: int = 0, d: int = 6, h: int = 8, out: int = 3) -> ops.OnnxGraph:
    """a = relu(W1 x); b = relu(a + W3 relu(W2 a)) (a ResNet block: the sum feeds a ReLU);
    c = relu(W4 b - a); y = W5 c. (auto_LiRPA 0.3 fails on 1-D sums feeding a ReLU.)"""
    g = torch.Generator().manual_seed(seed)
    return graph([
        (_lin(d, h, g), ("__input__",), "z1"), (nn.ReLU(), ("z1",), "a"),
        (_lin(h, h, g), ("a",), "z2"), (nn.ReLU(), ("z2",), "r2"), (_lin(h, h, g), ("r2",), "z3"),
        (ops.TensorBinary("Add"), ("a", "z3"), "s"), (nn.ReLU(), ("s",), "b"),
        (_lin(h, h, g), ("b",), "z4"), (ops.TensorBinary("Sub"), ("z4", "a"), "t"), (nn.ReLU(), ("t",), "c"),
        (_lin(h, out, g), ("c",), "y")], "y")


def residual_mlp(seed: int = 0, d: int = 6, h: int = 8, out: int = 3) -> ops.OnnxGraph:
    """a = relu(W1 x); r = relu(W2 a); s = a + W3 r (skip connection); c = relu(W4 s);
    t = c - r; y = W5 t."""
    g = torch.Generator().manual_seed(seed)
    return graph([
        (_lin(d, h, g), ("__input__",), "z1"), (nn.ReLU(), ("z1",), "a"),
        (_lin(h, h, g), ("a",), "z2"), (nn.ReLU(), ("z2",), "r"), (_lin(h, h, g), ("r",), "z3"),
        (ops.TensorBinary("Add"), ("a", "z3"), "s"), (_lin(h, h, g), ("s",), "z4"), (nn.ReLU(), ("z4",), "c"),
        (ops.TensorBinary("Sub"), ("c", "r"), "t"), (_lin(h, out, g), ("t",), "y")], "y")


def concat_branches(seed: int = 0, d: int = 5) -> ops.OnnxGraph:
    """Two ReLU branches of different widths on the input and a slice of it, concatenated."""
    g = torch.Generator().manual_seed(seed)
    idx = np.array([0, 2, 3])
    return graph([
        (_lin(d, 6, g), ("__input__",), "p"), (nn.ReLU(), ("p",), "pa"),
        (_lin(d, 4, g), ("__input__",), "q"), (ops.ConstBinary("Mul", np.float32(-1.5), False), ("q",), "q2"),
        (nn.ReLU(), ("q2",), "qa"), (ops.Select(idx, (3,)), ("__input__",), "xs"),
        (ops.Concat(1), ("pa", "xs", "qa"), "cat"), (_lin(13, 7, g), ("cat",), "h"), (nn.ReLU(), ("h",), "ha"),
        (_lin(7, 2, g), ("ha",), "y")], "y")


def conv_residual(seed: int = 0) -> ops.OnnxGraph:
    """Strided padded conv + BatchNorm + ReLU, a residual conv block, a strided conv, linear head;
    input (1, 8, 8)."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    c1 = nn.Conv2d(1, 4, 3, stride=2, padding=1)
    c2 = nn.Conv2d(4, 4, 3, padding=1)
    c3 = nn.Conv2d(4, 3, 3, stride=2, padding=0)
    return graph([
        (c1, ("__input__",), "z1"), (_bn(4, g), ("z1",), "n1"), (nn.ReLU(), ("n1",), "a"),
        (c2, ("a",), "z2"), (nn.ReLU(), ("z2",), "r2"), (ops.TensorBinary("Add"), ("a", "r2"), "s"),
        (c3, ("s",), "z3"), (nn.ReLU(), ("z3",), "r3"), (nn.Flatten(), ("r3",), "f"),
        (_lin(3, 5, g), ("f",), "h"), (nn.ReLU(), ("h",), "ha"), (_lin(5, 3, g), ("ha",), "y")], "y")


def twin_mlp(seed: int = 0, d: int = 3, h: int = 6) -> ops.OnnxGraph:
    """Input (d + 1,): x = in[:d], x' = x with feature 0 replaced by in[d]; outputs [s(x), s(x')]
    with the same 1-logit ReLU MLP s (two copies: Slice/Concat around them, as in a twin ONNX)."""
    g = torch.Generator().manual_seed(seed)
    l1, l2 = _lin(d, h, g), _lin(h, 1, g)
    import copy
    m1, m2 = copy.deepcopy(l1), copy.deepcopy(l2)
    return graph([
        (ops.Select(np.arange(d), (d,)), ("__input__",), "x"),
        (ops.Select(np.array([d]), (1,)), ("__input__",), "p"),
        (ops.Select(np.arange(1, d), (d - 1,)), ("__input__",), "rest"),
        (ops.Concat(1), ("p", "rest"), "x2"),
        (l1, ("x",), "z"), (nn.ReLU(), ("z",), "a"), (l2, ("a",), "s"),
        (m1, ("x2",), "z'"), (nn.ReLU(), ("z'",), "a'"), (m2, ("a'",), "s'"),
        (ops.Concat(1), ("s", "s'"), "y")], "y")


GRAPHS = {
    "residual_relu_add": (residual_relu_add, (6,)),
    "residual_mlp": (residual_mlp, (6,)),
    "concat_branches": (concat_branches, (5,)),
    "conv_residual": (conv_residual, (1, 8, 8)),
    "twin_mlp": (twin_mlp, (4,)),
}
