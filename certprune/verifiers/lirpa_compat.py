"""Compatibility patches that let auto_LiRPA 0.3 run on torch 2.13 and numpy 2.

auto_LiRPA 0.3 (the last release on PyPI) was written for torch 1.x / numpy 1.x. Four things
it relies on are gone; :func:`apply_patches` restores each one with the smallest shim (plus a
``appdirs`` stand-in when that dependency, skipped by ``pip install --no-deps``, is missing):

1. ``numpy.lib.arraysetops`` (removed in numpy 2): ``operators/base.py`` does
   ``from numpy.lib.arraysetops import isin``. We register a module alias exposing ``isin``.
2. ``torch.onnx.symbolic_helper._set_opset_version`` (removed in torch 2.x):
   ``parse_graph.parse_module`` calls it before ``_optimize_graph``. We add a function that sets
   the TorchScript exporter's opset global (``_globals.GLOBALS.export_onnx_opset_version``).
3. ``torch._C.Node.__getitem__`` (attribute subscripting ``node[k]``, removed in torch 2.x):
   ``parse_graph`` reads ``{k: n[k] for k in n.attributeNames()}``. We restore it as
   ``getattr(node, node.kindOf(k))(k)`` (``kindOf`` returns the typed getter's name: f, i, s, t, ...).
4. ``BoundedModule._named_members`` overrides torch's without the ``remove_duplicate`` keyword
   that torch 2.x's ``named_parameters`` passes (``list(self.parameters())``, reached from
   ``get_sparse_C`` on ResNets such as sri_resnet_a: TypeError). After the import we wrap it to
   accept and drop that keyword (it always removes duplicates, torch's default).

The patches are applied only when the lirpa engine is first used (never at import of certprune),
are idempotent, and each raises :class:`RuntimeError` naming the patch if the torch internals it
targets have moved, so a future torch upgrade fails loudly instead of silently mis-parsing.
"""
from __future__ import annotations

import sys
import types

_APPLIED = False


def _patch_numpy_arraysetops() -> None:
    """Alias ``numpy.lib.arraysetops`` with ``isin`` (numpy >= 2 removed the module)."""
    import numpy as np
    try:
        import numpy.lib.arraysetops  # noqa: F401  (numpy 1.x: nothing to do)
        return
    except ImportError:
        pass
    mod = types.ModuleType("numpy.lib.arraysetops")
    mod.isin = np.isin
    sys.modules["numpy.lib.arraysetops"] = mod
    np.lib.arraysetops = mod


def _patch_appdirs() -> None:
    """auto_LiRPA imports ``appdirs`` (a declared dependency, skipped by ``--no-deps``) for one call,
    ``user_data_dir``; if the package is missing, provide that one function."""
    try:
        import appdirs  # noqa: F401
        return
    except ImportError:
        pass
    import os
    mod = types.ModuleType("appdirs")
    mod.user_data_dir = lambda name, *a, **k: os.path.join(
        os.environ.get("XDG_DATA_HOME", os.path.expanduser("~/.local/share")), name)
    sys.modules["appdirs"] = mod


def _patch_set_opset_version() -> None:
    """Provide ``torch.onnx.symbolic_helper._set_opset_version(v)`` setting the exporter's opset."""
    import importlib
    # ``from torch.onnx import symbolic_helper`` yields the internal module in torch 2.13; the
    # module auto_LiRPA imports from is the public back-compat one in sys.modules.
    symbolic_helper = importlib.import_module("torch.onnx.symbolic_helper")
    if hasattr(symbolic_helper, "_set_opset_version"):
        return
    try:
        from torch.onnx._internal.torchscript_exporter._globals import GLOBALS
    except ImportError:
        try:
            from torch.onnx._globals import GLOBALS  # torch 2.0 - 2.5 layout
        except ImportError as e:
            raise RuntimeError("lirpa_compat patch 2 (_set_opset_version): cannot find the TorchScript "
                               "ONNX exporter's GLOBALS in this torch version") from e
    if not hasattr(GLOBALS, "export_onnx_opset_version"):
        raise RuntimeError("lirpa_compat patch 2 (_set_opset_version): GLOBALS has no export_onnx_opset_version")

    def _set_opset_version(opset_version: int) -> None:
        GLOBALS.export_onnx_opset_version = opset_version

    symbolic_helper._set_opset_version = _set_opset_version


def _node_getitem(node, key: str):
    """``node[key]``: the attribute ``key`` read through its typed getter (``kindOf``)."""
    return getattr(node, node.kindOf(key))(key)


def _patch_node_getitem() -> None:
    """Restore ``torch._C.Node.__getitem__`` (attribute subscripting) removed in torch 2.x."""
    import torch
    node_cls = torch._C.Node
    if not hasattr(node_cls, "kindOf"):
        raise RuntimeError("lirpa_compat patch 3 (Node.__getitem__): torch._C.Node has no kindOf")
    if getattr(node_cls, "__getitem__", None) is _node_getitem:
        return
    if "__getitem__" in vars(node_cls):  # torch brought it back (or an older torch): keep it
        return
    node_cls.__getitem__ = _node_getitem


def _patch_named_members(al) -> None:
    """Let ``BoundedModule._named_members`` take torch 2.x's ``remove_duplicate`` keyword (patch 4)."""
    cls = al.BoundedModule
    orig = vars(cls).get("_named_members")
    if orig is None:
        raise RuntimeError("lirpa_compat patch 4 (_named_members): BoundedModule no longer overrides it")
    if getattr(orig, "_certprune_patched", False):
        return
    import inspect
    if "remove_duplicate" in inspect.signature(orig).parameters:  # a fixed auto_LiRPA: keep it
        return

    def _named_members(self, get_members_fn, prefix="", recurse=True, remove_duplicate=True):
        return orig(self, get_members_fn, prefix=prefix, recurse=recurse)
    _named_members._certprune_patched = True
    cls._named_members = _named_members


def apply_patches() -> None:
    """Apply the three patches (idempotent); then ``import auto_LiRPA`` works."""
    global _APPLIED
    if _APPLIED:
        return
    _patch_numpy_arraysetops()
    _patch_appdirs()
    _patch_set_opset_version()
    _patch_node_getitem()
    _APPLIED = True


def import_auto_lirpa():
    """``auto_LiRPA`` after :func:`apply_patches`; raises RuntimeError if it still cannot import."""
    apply_patches()
    try:
        import auto_LiRPA
    except Exception as e:  # re-raised with context: which patch set failed, on which versions
        import numpy
        import torch
        raise RuntimeError(f"auto_LiRPA failed to import after compatibility patches "
                           f"(torch {torch.__version__}, numpy {numpy.__version__}): {e}") from e
    _patch_named_members(auto_LiRPA)
    return auto_LiRPA
