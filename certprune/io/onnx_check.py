"""Load-time self-check of the ONNX converter: the converted module must reproduce onnxruntime.

Why: verification results speak about the *file*; a converter bug would make every verdict about
the wrong network. Each ``load_onnx`` therefore runs a few random inputs (uniform in [-1, 1],
seeded) through both and refuses the model if they disagree by more than ``1e-4 * max(1, |y|)``
(float32 summation-order noise is far below that). onnxruntime is a core dependency; if it is
missing, or cannot run a file that onnx's own checker accepts (an operator onnxruntime lacks), the
check is skipped and the reason is recorded; a file that onnxruntime cannot run *and* that is not
valid ONNX (the checker's full type and shape inference rejects it, or it declares an opset newer
than the newest ONNX defines) is refused: the converter would read it with semantics the file
does not have. The outcome
(``info.extra["onnxruntime_check"]``) always says whether the check ran (``ran``), and
``certprune info`` prints it.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from certprune.errors import ModelLoadError

TOLERANCE = 1e-4


def compare_with_onnxruntime(net, source: Path | bytes, samples: int = 4, seed: int = 0) -> dict:
    """``{"ran": True, "max_abs_diff": d, "samples": n}`` or ``{"ran": False, "skipped": reason}``;
    raises ModelLoadError on a mismatch."""
    try:
        import onnxruntime as ort
    except ImportError as e:
        return {"ran": False, "skipped": f"onnxruntime is not installed ({e}); pip install onnxruntime"}
    try:
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        # a reference run: no graph rewriting, and one thread (a thread pool costs ~100 ms to start)
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        opts.intra_op_num_threads = opts.inter_op_num_threads = 1
        sess = ort.InferenceSession(source if isinstance(source, bytes) else str(source), opts,
                                    providers=["CPUExecutionProvider"])
        inp = sess.get_inputs()[0]
        x = np.random.default_rng(seed).uniform(-1, 1, size=(samples, *net.info.input_shape)).astype(np.float32)
        no_batch = len(inp.shape) == x.ndim - 1
        fixed = bool(inp.shape) and isinstance(inp.shape[0], int)
        outs = _run(sess, inp, x, no_batch, fixed)
        ref = np.concatenate([o.reshape(1 if no_batch or fixed else samples, -1) for o in outs])
    except Exception as e:  # onnxruntime rejects some files our converter reads; refuse only invalid ONNX
        invalid = _invalid_onnx(source)
        if invalid:
            raise ModelLoadError(f"not a valid ONNX model (onnxruntime cannot run it either): {invalid}") from None
        return {"ran": False, "skipped": f"onnxruntime cannot run the file: {type(e).__name__}: "
                                         f"{str(e).splitlines()[0][:120] if str(e) else ''}"}
    ours = net.run_float32(x)
    if not (np.isfinite(ours).all() and np.isfinite(ref).all()):
        raise ModelLoadError("the model's float32 outputs on random inputs in [-1, 1] are not finite (inf or NaN: "
                             "its weights overflow float32), so it cannot be checked or verified")
    diff = float(np.abs(ours - ref).max())
    if not diff <= TOLERANCE * max(1.0, float(np.abs(ref).max())):
        raise ModelLoadError(f"converted model disagrees with onnxruntime by {diff:.3g} on random inputs; "
                             "please report this model")
    return {"ran": True, "max_abs_diff": diff, "samples": samples}


def _invalid_onnx(source: Path | bytes) -> str | None:
    """Why the file is not valid ONNX (onnx.checker with full type/shape inference, and opsets up to
    the newest one defined), or None."""
    import onnx

    try:
        model = onnx.load_from_string(source) if isinstance(source, bytes) else onnx.load(str(source))
        newest = onnx.defs.onnx_opset_version()
        for op in model.opset_import:
            if op.domain in ("", "ai.onnx") and op.version > newest:
                return f"it declares ONNX opset {op.version}, newer than the newest defined ({newest})"
        onnx.checker.check_model(model, full_check=True)
    except Exception as e:  # the checker's and the parser's many error types: each is a reason
        return f"{type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}"
    return None


def describe_check(net) -> str:
    """One line for ``certprune info``: whether the onnxruntime self-check ran, and its outcome."""
    if net.info.source_format != "onnx":
        return f"not applicable ({net.info.source_format} model)"
    check = net.info.extra.get("onnxruntime_check")
    if check is None:
        return "not run (loaded with check=False)"
    if check.get("ran"):
        return f"ran: agrees on {check['samples']} random inputs (max |diff| {check['max_abs_diff']:.3g})"
    return f"SKIPPED: {check['skipped']}"


def _run(sess, inp, x: np.ndarray, no_batch: bool, fixed: bool) -> list[np.ndarray]:
    """onnxruntime outputs: one call per sample for files without or with a fixed batch dim."""
    if no_batch:
        return [sess.run(None, {inp.name: xi})[0] for xi in x]
    if fixed:
        return [sess.run(None, {inp.name: x[i:i + 1]})[0] for i in range(len(x))]
    return [sess.run(None, {inp.name: x})[0]]
