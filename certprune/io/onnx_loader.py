"""ONNX -> torch: ``load_onnx(path)`` returns a :class:`~certprune.network.Network`.

Why our own converter: onnx2torch imports torchvision, which does not import next to this torch
2.13 CPU build; and a converter that emits a plain ``nn.Sequential`` of standard layers (plus the
small ``is_affine`` ops of :mod:`certprune.io.onnx_ops`) is what the native bound engine needs.

How it works: nodes are visited in (ONNX-guaranteed) topological order. Any node whose inputs
are all constants (initializers, ``Constant``, ``Shape`` of a traced tensor, ...) is folded with
onnx's own reference evaluator. Every other node becomes one torch module, run at once on a
batch-1 sample so that shapes are known. Batch convention: the file's first input dim is the batch
(dynamic, or fixed at 1); shape ops (Flatten, Reshape, Squeeze, Unsqueeze) become per-sample
row-major reshapes that keep the batch dim. A chain graph becomes ``nn.Sequential`` (MatMul+Add
fused into ``nn.Linear``); other DAGs (residual adds, concats) become an ``OnnxGraph``.
Each load ends with a self-check against onnxruntime (:mod:`certprune.io.onnx_check`).

Output activations: a Sigmoid/Softmax in the file is *kept* (not stripped, unlike the Keras
loader): a VNN-LIB property about an ONNX model speaks about the file's actual outputs, so
stripping would change its meaning. The native (ReLU-only) engine then raises
UnsupportedModelError naming the layer and ``engine="auto"`` falls back to auto_LiRPA.
"""
from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from certprune.errors import ModelLoadError, UnsupportedModelError
from certprune.io import onnx_ops as ops
from certprune.io.inflate import read_file_bytes
from certprune.network import ModelInfo, Network

# Ops converted to torch modules when they act on the model's (non-constant) data.
TENSOR_OPS = frozenset({
    "Gemm", "MatMul", "Add", "Sub", "Mul", "Div", "Relu", "Conv", "Flatten", "Reshape", "Squeeze",
    "Unsqueeze", "Transpose", "BatchNormalization", "Identity", "Dropout", "Sigmoid", "Softmax", "Tanh",
    "LeakyRelu", "AveragePool", "MaxPool", "GlobalAveragePool", "Pad", "Concat", "Cast", "Neg", "Slice",
    "Gather",
})
INPUT = "__input__"


def load_onnx(path: str | Path, check: bool = True, max_inflate: int | None = None) -> Network:
    """Read ``.onnx`` / ``.onnx.gz`` into a Network (see module doc); errors name the file.

    ``check``: compare with onnxruntime on random inputs (:mod:`certprune.io.onnx_check`); the
    outcome is in ``info.extra["onnxruntime_check"]``. ``max_inflate``: cap in bytes on the
    inflated size of a ``.gz`` file (default ``$CERTPRUNE_MAX_INFLATE`` or 1 GiB,
    :mod:`certprune.io.inflate`)."""
    p = Path(path)
    data = read_file_bytes(p, ModelLoadError, max_inflate, "ONNX file")
    try:
        raw = p.read_bytes() if p.name.lower().endswith(".gz") else data
    except OSError as e:
        raise ModelLoadError(f"cannot read ONNX file {p}: {e}") from None
    proto = _parse_proto(data, p)
    try:
        module, info = onnx_to_torch(proto)
    except (UnsupportedModelError, ModelLoadError) as e:
        raise type(e)(f"{p.name}: {e}") from None
    except (TypeError, ValueError, KeyError, IndexError, AttributeError) as e:
        # a structurally broken graph (wrong attribute types, missing inputs) that protobuf accepted
        raise ModelLoadError(f"{p.name}: malformed ONNX graph ({type(e).__name__}: {e})") from None
    info_full = ModelInfo(info.input_shape, info.num_outputs, hashlib.sha256(raw).hexdigest(), "onnx", str(p),
                          info.input_names, info.output_names, None, info.extra)
    net = Network(module, info_full)
    if check:
        from certprune.io.onnx_check import compare_with_onnxruntime
        try:
            info.extra["onnxruntime_check"] = compare_with_onnxruntime(net, data if data is not raw else p)
        except ModelLoadError as e:
            raise ModelLoadError(f"{p.name}: {e}") from None
    return net


def _parse_proto(data: bytes, p: Path):
    import onnx
    try:
        proto = onnx.load_model_from_string(data)
    except Exception as e:  # protobuf raises DecodeError / RuntimeWarning-ish types: report, naming the file
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelLoadError(f"{p} is not a valid ONNX model: {first[:200]}") from None
    if not proto.graph.node:
        raise ModelLoadError(f"{p} is not a valid ONNX model: the graph has no nodes")
    if any(t.data_location == onnx.TensorProto.EXTERNAL for t in proto.graph.initializer):
        try:  # weights stored beside the model file (onnx's external-data format)
            onnx.external_data_helper.load_external_data_for_model(proto, str(p.parent))
        except Exception as e:  # OSError, or onnx's ValidationError for a missing/odd data file
            raise ModelLoadError(f"{p}: cannot read its external weight data: {str(e).splitlines()[0]}") from None
    return proto


def onnx_to_torch(proto) -> tuple[nn.Module, ModelInfo]:
    """Convert a ModelProto; ModelInfo has shapes and names only (no hash/path)."""
    with warnings.catch_warnings():  # a zero-width layer (Gemm with 0 units) is a valid network, but
        warnings.filterwarnings("ignore", message="Initializing zero-element tensors is a no-op")  # torch warns
        return _Converter(proto).run()


class _Converter:
    """One conversion: constants, batch-1 samples of tensors, and the emitted nodes."""

    def __init__(self, proto):
        from onnx import numpy_helper
        self.proto, self.graph = proto, proto.graph
        self.opsets = {d.domain or "": d.version for d in proto.opset_import}
        self.consts: dict[str, np.ndarray] = {t.name: numpy_helper.to_array(t) for t in self.graph.initializer}
        self.samples: dict[str, torch.Tensor] = {}
        self.alias: dict[str, str] = {}
        self.nodes: list[tuple[nn.Module, tuple[str, ...], str]] = []

    # ------------------------------------------------------------------ driver
    def run(self) -> tuple[nn.Module, ModelInfo]:
        _check_finite_initializers(self.consts)
        inp, shape = self._input()
        self._check_supported(inp.name)
        self.samples[INPUT] = torch.zeros(1, *shape)
        self.alias[inp.name] = INPUT
        for node in self.graph.node:
            self._visit(node)
        if len(self.graph.output) != 1:
            raise UnsupportedModelError(f"models with {len(self.graph.output)} outputs are not supported (need 1)")
        out = self._name(self.graph.output[0].name)
        if out not in self.samples:
            raise UnsupportedModelError("the model output does not depend on its input")
        n_out = int(self.samples[out].numel())
        if n_out == 0:
            raise UnsupportedModelError(f"the model output {self.graph.output[0].name!r} has no values "
                                        f"(shape {tuple(self.samples[out].shape[1:])}); a model needs at least one output")
        module = self._assemble(out)
        info = ModelInfo(shape, n_out, source_format="onnx", input_names=(inp.name,),
                         output_names=(self.graph.output[0].name,),
                         extra={"opset": self.opsets.get("", 0), "producer": self.proto.producer_name,
                                "metadata": {m.key: m.value for m in self.proto.metadata_props}})
        return module, info

    def _input(self):
        inits = set(self.consts)
        inputs = [i for i in self.graph.input if i.name not in inits]
        if len(inputs) != 1:
            raise UnsupportedModelError(f"models with {len(inputs)} inputs are not supported (need exactly 1)")
        inp = inputs[0]
        tt = inp.type.tensor_type
        if tt.elem_type != 1:  # onnx.TensorProto.FLOAT
            raise UnsupportedModelError(f"input {inp.name!r} is not float32 (ONNX elem_type {tt.elem_type})")
        dims = [d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim]
        if len(dims) >= 2 and dims[0] in (None, 0, 1):
            dims = dims[1:]  # batch dim: dynamic or fixed at 1
        if not dims or any(d is None or d <= 0 for d in dims):
            raise UnsupportedModelError(f"input {inp.name!r} has no fixed per-sample shape: {_dims_text(tt)}")
        return inp, tuple(int(d) for d in dims)

    def _check_supported(self, input_name: str) -> None:
        """Raise once, listing every op type that acts on data and has no converter."""
        data = {input_name}
        bad = set()
        for node in self.graph.node:
            if any(i in data for i in node.input):
                if node.op_type not in TENSOR_OPS and node.op_type != "Shape":
                    bad.add(str(node.op_type))
                if node.op_type != "Shape":
                    data.update(node.output)
        if bad:
            raise UnsupportedModelError("unsupported ONNX operators: " + ", ".join(sorted(bad)))

    def _name(self, n: str) -> str:
        return self.alias.get(n, n)

    def _visit(self, node) -> None:
        names = [self._name(n) for n in node.input]
        undefined = [n for n in names if n and n not in self.consts and n not in self.samples]
        if undefined:
            raise ModelLoadError(f"{node.op_type} node {node.name!r} reads undefined value(s) {undefined}")
        if all(n == "" or n in self.consts for n in names):
            self._fold(node, [self.consts.get(n) for n in names])
        elif node.op_type == "Shape":
            self._fold(node, [self.samples[names[0]].numpy()])
        elif node.op_type in ("Identity", "Dropout") or (node.op_type == "Cast" and _attr(node, "to", 1) == 1):
            self.alias[node.output[0]] = names[0]
        else:
            module, tensor_inputs = self._build(node, names)
            try:
                with torch.no_grad():
                    y = module(*[self.samples[n] for n in tensor_inputs])
            except RuntimeError as e:  # inconsistent shapes in the file
                raise ModelLoadError(f"{node.op_type} node {node.name!r} fails on inputs of shape "
                                     f"{[tuple(self.samples[n].shape) for n in tensor_inputs]}: "
                                     f"{str(e).splitlines()[0]}") from None
            self.samples[node.output[0]] = y
            self.nodes.append((module, tuple(tensor_inputs), node.output[0]))

    def _fold(self, node, values: list) -> None:
        """Evaluate a node on constants with onnx's reference implementation."""
        from onnx.reference import ReferenceEvaluator
        feeds = {n: v for n, v in zip(node.input, values) if n != "" and v is not None}
        try:
            outs = ReferenceEvaluator(node, opsets=self.opsets).run(None, feeds)
        except Exception as e:  # the reference evaluator raises many types; report the node
            raise UnsupportedModelError(f"cannot evaluate constant {node.op_type} node {node.name!r}: {e}") from None
        for name, v in zip(node.output, outs):
            self.consts[name] = np.asarray(v)

    # ------------------------------------------------------------------ op builders
    def _build(self, node, names: list[str]) -> tuple[nn.Module, list[str]]:
        op = node.op_type
        tensors = [n for n in names if n in self.samples]
        x = self.samples[tensors[0]]
        builder = _BUILDERS.get(op)
        if builder is not None:
            return builder(self, node, names, x), tensors[:1]
        if op in ("Add", "Sub", "Mul", "Div"):
            return self._binary(node, names, tensors)
        if op == "Concat":
            if len(tensors) != len(names):
                raise UnsupportedModelError(f"Concat node {node.name!r} mixes constants and data")
            return ops.Concat(_axis(_attr(node, "axis", 1), x.dim())), tensors
        raise UnsupportedModelError(f"unsupported ONNX operator {op}")

    def _binary(self, node, names, tensors) -> tuple[nn.Module, list[str]]:
        op = node.op_type
        if len(tensors) == 2:
            if op == "Div":
                raise UnsupportedModelError(f"Div node {node.name!r} divides two data tensors (not supported)")
            return ops.TensorBinary(op), tensors
        const_first = names[0] not in self.samples
        if op == "Div" and const_first:
            raise UnsupportedModelError(f"Div node {node.name!r} divides a constant by data (not supported)")
        const = self.consts[names[0] if const_first else names[1]]
        return ops.ConstBinary(op, const.astype(np.float32), const_first), tensors

    def _gemm(self, node, names, x) -> nn.Module:
        if names[0] not in self.samples or names[1] not in self.consts or _attr(node, "transA", 0):
            raise UnsupportedModelError(f"Gemm node {node.name!r} needs data A (not transposed) and constant B")
        b = self.consts[names[1]].astype(np.float64)
        b = b.T if _attr(node, "transB", 0) else b  # (K, N)
        alpha, beta = _attr(node, "alpha", 1.0), _attr(node, "beta", 1.0)
        lin = nn.Linear(b.shape[0], b.shape[1], bias=True)
        bias = np.zeros(b.shape[1])
        if len(names) > 2 and names[2]:
            c = self.consts[names[2]].astype(np.float64)
            if c.size not in (1, b.shape[1]):
                raise UnsupportedModelError(f"Gemm node {node.name!r} has a bias of shape {c.shape}")
            bias = beta * np.broadcast_to(c.reshape(-1), (b.shape[1],))
        w = alpha * b.T
        if not (_float32_exact(w) and _float32_exact(bias)):
            raise UnsupportedModelError(f"Gemm node {node.name!r}: alpha * B or beta * C is not a float32 number "
                                        "(folding it would change the file's function)")
        _set_linear(lin, w, bias)
        return lin

    def _matmul(self, node, names, x) -> nn.Module:
        if names[0] not in self.samples or names[1] not in self.consts:
            raise UnsupportedModelError(f"MatMul node {node.name!r} must multiply data by a constant on the right")
        w = self.consts[names[1]]
        if x.dim() == 2 and w.ndim == 2:
            lin = nn.Linear(w.shape[0], w.shape[1], bias=False)
            _set_linear(lin, w.T, None)
            return lin
        return ops.MatMulConst(w)

    def _conv(self, node, names, x) -> nn.Module:
        w = self.consts.get(names[1])
        if w is None:
            raise UnsupportedModelError(f"Conv node {node.name!r} has non-constant weights")
        k = w.ndim - 2
        if k not in (1, 2):
            raise UnsupportedModelError(f"Conv node {node.name!r} is {k}-dimensional (1-D and 2-D supported)")
        strides = _attr(node, "strides", [1] * k)
        dil = _attr(node, "dilations", [1] * k)
        pads = _conv_pads(node, x.shape[2:], w.shape[2:], strides, dil)
        begin, end = pads[:k], pads[k:]
        cls = nn.Conv1d if k == 1 else nn.Conv2d
        conv = cls(w.shape[1] * _attr(node, "group", 1), w.shape[0], tuple(w.shape[2:]), stride=tuple(strides),
                   padding=tuple(begin) if begin == end else 0, dilation=tuple(dil), groups=_attr(node, "group", 1),
                   bias=len(names) > 2 and bool(names[2]))
        with torch.no_grad():
            conv.weight.copy_(torch.from_numpy(w.astype(np.float32)))
            if conv.bias is not None:
                conv.bias.copy_(torch.from_numpy(self.consts[names[2]].astype(np.float32)))
        if begin == end:
            return conv
        torch_pad = [p for d in reversed(range(k)) for p in (begin[d], end[d])]
        return nn.Sequential(ops.ConstantPad(tuple(torch_pad)), conv)

    def _batchnorm(self, node, names, x) -> nn.Module:
        scale, bias, mean, var = (self.consts.get(n) for n in names[1:5])
        if any(v is None for v in (scale, bias, mean, var)):
            raise UnsupportedModelError(f"BatchNormalization node {node.name!r} has non-constant parameters")
        cls = nn.BatchNorm2d if x.dim() == 4 else nn.BatchNorm1d
        bn = cls(len(scale), eps=_attr(node, "epsilon", 1e-5))
        with torch.no_grad():
            for t, v in ((bn.weight, scale), (bn.bias, bias), (bn.running_mean, mean), (bn.running_var, var)):
                t.copy_(torch.from_numpy(np.array(v, dtype=np.float32)))
        return bn.eval()

    def _reshape_like(self, node, names, x) -> nn.Module:
        """Flatten/Reshape/Squeeze/Unsqueeze: the ONNX result on the batch-1 sample, per sample."""
        from onnx.reference import ReferenceEvaluator
        feeds = {node.input[0]: x.numpy()}
        feeds.update({n: self.consts[m] for n, m in zip(node.input[1:], names[1:]) if n})
        out = ReferenceEvaluator(node, opsets=self.opsets).run(None, feeds)[0].shape
        per_sample = out[1:] if len(out) >= 2 and out[0] == 1 else out
        return nn.Flatten() if len(per_sample) == 1 else ops.Reshape(tuple(per_sample))

    def _select(self, node, names, x) -> nn.Module:
        """Slice / Gather with constant indices on non-batch axes: a fixed selection of entries,
        found by running the ONNX op (reference evaluator) on the entries' flat indices."""
        from onnx.reference import ReferenceEvaluator
        if any(n not in self.consts for n in names[1:] if n):
            raise UnsupportedModelError(f"{node.op_type} node {node.name!r} needs constant indices")
        axes = [_attr(node, "axis", 0)] if node.op_type == "Gather" else self._sliced_axes(node, names, x)
        if any(_axis(int(a), x.dim()) == 0 for a in axes):
            raise UnsupportedModelError(f"{node.op_type} node {node.name!r} indexes the batch dimension")
        feeds = {node.input[0]: np.arange(x.numel(), dtype=np.int64).reshape(tuple(x.shape))}
        feeds.update({n: self.consts[m] for n, m in zip(node.input[1:], names[1:]) if n})
        idx = ReferenceEvaluator(node, opsets=self.opsets).run(None, feeds)[0]
        per_sample = idx.shape[1:] if idx.ndim >= 1 and idx.shape[:1] == (1,) else idx.shape
        return ops.Select(idx.reshape(-1), tuple(per_sample))

    def _sliced_axes(self, node, names, x) -> list[int]:
        """Axes a Slice actually cuts (full-range slices of an axis are ignored)."""
        def arg(i, attr, default):
            if self.opsets.get("", 13) < 10:
                return list(_attr(node, attr, default))
            return list(self.consts[names[i]]) if len(names) > i and names[i] else default
        starts, ends = arg(1, "starts", []), arg(2, "ends", [])
        axes = arg(3, "axes", list(range(len(starts))))
        steps = arg(4, "steps", [1] * len(starts))
        return [int(a) for a, s0, e0, st in zip(axes, starts, ends, steps)
                if not (s0 == 0 and e0 >= x.shape[int(a)] and st == 1)]

    def _transpose(self, node, names, x) -> nn.Module:
        perm = tuple(_attr(node, "perm", list(reversed(range(x.dim())))))
        if perm[0] != 0:
            raise UnsupportedModelError(f"Transpose node {node.name!r} moves the batch dimension (perm {perm})")
        return ops.Permute(perm)

    def _pad(self, node, names, x) -> nn.Module:
        mode = _attr(node, "mode", "constant")
        pads = list(self.consts[names[1]]) if len(names) > 1 and names[1] else _attr(node, "pads", [])
        value = float(self.consts[names[2]]) if len(names) > 2 and names[2] else _attr(node, "value", 0.0)
        n = len(pads) // 2
        if mode != "constant" or value != 0 or pads[0] or pads[n]:
            raise UnsupportedModelError(f"Pad node {node.name!r}: only zero padding of non-batch dims is supported")
        return ops.ConstantPad(tuple(int(p) for d in reversed(range(1, n)) for p in (pads[d], pads[n + d])))

    def _pool(self, node, names, x) -> nn.Module:
        if node.op_type == "GlobalAveragePool":
            return nn.AdaptiveAvgPool2d(1)
        k = _attr(node, "kernel_shape", [])
        pads = _attr(node, "pads", [0] * 2 * len(k))
        if len(k) != 2 or pads[:2] != pads[2:] or _attr(node, "auto_pad", "NOTSET") not in ("NOTSET", "VALID"):
            raise UnsupportedModelError(f"{node.op_type} node {node.name!r}: only 2-D symmetric pooling is supported")
        kw = dict(kernel_size=tuple(k), stride=tuple(_attr(node, "strides", k)), padding=tuple(pads[:2]),
                  ceil_mode=bool(_attr(node, "ceil_mode", 0)))
        if node.op_type == "MaxPool":
            return nn.MaxPool2d(**kw)
        return nn.AvgPool2d(**kw, count_include_pad=bool(_attr(node, "count_include_pad", 0)))

    def _softmax(self, node, names, x) -> nn.Module:
        default = -1 if self.opsets.get("", 13) >= 13 else 1
        axis = _axis(_attr(node, "axis", default), x.dim())
        if self.opsets.get("", 13) < 13 and axis != x.dim() - 1:
            raise UnsupportedModelError(f"Softmax node {node.name!r}: opset < 13 with axis {axis} not supported")
        return nn.Softmax(dim=axis)

    # ------------------------------------------------------------------ assembly
    def _assemble(self, out: str) -> nn.Module:
        prev, chain = INPUT, True
        for _, tins, o in self.nodes:
            chain &= tins == (prev,)
            prev = o
        if chain and prev == out:
            return _fuse_bias(nn.Sequential(*[m for m, _, _ in self.nodes]))
        mods, wiring, outs = zip(*self.nodes)
        return ops.OnnxGraph(list(mods), list(wiring), list(outs), out)


_BUILDERS = {
    "Gemm": _Converter._gemm, "MatMul": _Converter._matmul, "Conv": _Converter._conv,
    "BatchNormalization": _Converter._batchnorm, "Flatten": _Converter._reshape_like,
    "Reshape": _Converter._reshape_like, "Squeeze": _Converter._reshape_like,
    "Unsqueeze": _Converter._reshape_like, "Transpose": _Converter._transpose, "Pad": _Converter._pad,
    "AveragePool": _Converter._pool, "MaxPool": _Converter._pool, "GlobalAveragePool": _Converter._pool,
    "Softmax": _Converter._softmax, "Slice": _Converter._select, "Gather": _Converter._select,
    "Neg": lambda self, node, names, x: ops.ConstBinary("Mul", np.float32(-1.0), False),
    "Relu": lambda self, node, names, x: nn.ReLU(),
    "Sigmoid": lambda self, node, names, x: nn.Sigmoid(),
    "Tanh": lambda self, node, names, x: nn.Tanh(),
    "LeakyRelu": lambda self, node, names, x: nn.LeakyReLU(_attr(node, "alpha", 0.01)),
}


def _fuse_bias(seq: nn.Sequential) -> nn.Sequential:
    """Fold ``Linear`` followed by ``+ c`` / ``- c`` (c a per-output constant) into the Linear's bias."""
    out: list[nn.Module] = []
    for m in seq:
        prev = out[-1] if out else None
        if (isinstance(prev, nn.Linear) and isinstance(m, ops.ConstBinary) and m.op in ("Add", "Sub")
                and not (m.op == "Sub" and m.const_first) and m.const.dim() <= 2
                and m.const.numel() in (1, prev.out_features) and (m.const.dim() < 2 or m.const.shape[0] == 1)):
            c = m.const.reshape(-1).double() * (1 if m.op == "Add" else -1)
            old = prev.bias.detach().double() if prev.bias is not None else torch.zeros(prev.out_features).double()
            if not _float32_exact((old + c).numpy()):  # the float32 bias would round: keep the Add
                out.append(m)
                continue
            fused = nn.Linear(prev.in_features, prev.out_features)
            _set_linear(fused, prev.weight.detach().double().numpy(), (old + c).numpy())
            out[-1] = fused
            continue
        out.append(m)
    return nn.Sequential(*out)


def _float32_exact(v) -> bool:
    """Whether float64 values (a fold of float32 constants, computed exactly or not) are float32
    numbers: only then may the fold replace the file's operators (exact semantics)."""
    v = np.asarray(v, dtype=np.float64)
    with np.errstate(over="ignore"):
        return bool((v.astype(np.float32).astype(np.float64) == v).all())


def _set_linear(lin: nn.Linear, w: np.ndarray, b: np.ndarray | None) -> None:
    with torch.no_grad():
        lin.weight.copy_(torch.from_numpy(np.ascontiguousarray(w, dtype=np.float32)))
        if b is not None:
            lin.bias.copy_(torch.from_numpy(np.ascontiguousarray(b, dtype=np.float32)))


def _conv_pads(node, spatial, kernel, strides, dil) -> list[int]:
    """Explicit ONNX pads [begin..., end...], resolving auto_pad SAME_UPPER / SAME_LOWER."""
    k = len(kernel)
    mode = _attr(node, "auto_pad", "NOTSET")
    if mode in ("NOTSET", "VALID"):
        return list(_attr(node, "pads", [0] * 2 * k)) if mode == "NOTSET" else [0] * 2 * k
    begin, end = [], []
    for n, kk, s, d in zip(spatial, kernel, strides, dil):
        total = max((-(-int(n) // s) - 1) * s + (kk - 1) * d + 1 - int(n), 0)
        small, big = total // 2, total - total // 2
        begin.append(small if mode == "SAME_UPPER" else big)
        end.append(big if mode == "SAME_UPPER" else small)
    return begin + end


def _attr(node, name: str, default):
    """Attribute value (ints/floats as lists, strings decoded), or ``default`` when absent."""
    from onnx import helper
    for a in node.attribute:
        if a.name == name:
            v = helper.get_attribute_value(a)
            if v is None:
                raise ModelLoadError(f"attribute {name!r} of {node.op_type} node {node.name!r} is malformed")
            return v.decode(errors="replace") if isinstance(v, bytes) else v
    return default


def _axis(axis: int, ndim: int) -> int:
    return axis + ndim if axis < 0 else axis


def _dims_text(tt) -> str:
    return "[" + ", ".join(str(d.dim_value) if d.HasField("dim_value") else (d.dim_param or "?")
                           for d in tt.shape.dim) + "]"


def _check_finite_initializers(consts: dict[str, np.ndarray]) -> None:
    bad = [n for n, v in consts.items() if v.dtype.kind == "f" and not np.all(np.isfinite(v))]
    if bad:
        raise ModelLoadError(f"model has NaN or infinite values in initializers: {', '.join(bad[:10])}")

