"""Issue 8, items 6, 7, 8 (pickles) and 10: loading and calling models.

- ``Network(x)`` with a wrongly shaped batch: ShapeMismatchError naming both shapes; a flat
  ``(N, prod(input_shape))`` batch is reshaped row-major;
- ``.gz`` models and VNN-LIB files inflate at most to a cap (argument / CERTPRUNE_MAX_INFLATE);
- full pickles of any protocol load with trust_pickle, and the refusal names --trust-pickle,
  not torch's weights_only advice;
- onnxruntime is a core dependency and the load result / ``certprune info`` say whether its
  self-check ran.
"""
from __future__ import annotations

import gzip
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from certprune.cli import main
from certprune.errors import ConfigError, ModelLoadError, ShapeMismatchError, VNNLibError
from certprune.io.inflate import DEFAULT_MAX_INFLATE, max_inflate, parse_size
from certprune.io.onnx_export import save_onnx
from certprune.network import ModelInfo, Network, load_model
from certprune.vnnlib import read_vnnlib, write_vnnlib

from conftest import random_mlp

REPO = Path(__file__).resolve().parents[1]
DIGITS = REPO / "certprune" / "models" / "digits_mlp.onnx"


def acas_like() -> Network:
    """An ACAS-Xu-shaped net: input (1, 1, 5), flattened first, then a ReLU MLP."""
    mlp = random_mlp([5, 6, 5], seed=1)
    return Network(nn.Sequential(nn.Flatten(), *mlp), ModelInfo((1, 1, 5), 5))


# ----------------------------------------------------------------------------- item 6
def test_wrong_batch_shape_names_both_shapes():
    net = acas_like()
    with pytest.raises(ShapeMismatchError, match=r"\(8, 4\).*\(N, 1, 1, 5\)"):
        net(torch.zeros(8, 4))
    with pytest.raises(ShapeMismatchError, match=r"\(8, 1, 5, 1\)"):
        net(torch.zeros(8, 1, 5, 1))  # right size, wrong layout: not guessed
    with pytest.raises(ShapeMismatchError):
        net.run_float32(np.zeros((3, 7), np.float32))


def test_flat_batch_is_reshaped_row_major():
    net = acas_like()
    x = torch.randn(8, 1, 1, 5)
    with torch.no_grad():
        np.testing.assert_array_equal(net(x.reshape(8, 5)).numpy(), net(x).numpy())
    np.testing.assert_array_equal(net.run_float32(x.reshape(8, 5).numpy()), net.run_float32(x.numpy()))


def test_acas_xu_net_takes_flat_batches(shared_data):
    """The issue's case: an ACAS Xu net expects (N, 1, 1, 5); (8, 5) used to fail deep in torch."""
    net = load_model(shared_data / "vnncomp" / "acasxu" / "onnx" / "ACASXU_run2a_1_1_batch_2000.onnx")
    assert net.info.input_shape == (1, 1, 5)
    x = torch.rand(8, 5)
    with torch.no_grad():
        np.testing.assert_array_equal(net(x).numpy(), net(x.reshape(8, 1, 1, 5)).numpy())
    with pytest.raises(ShapeMismatchError, match=r"\(8, 6\).*\(N, 1, 1, 5\)"):
        net(torch.rand(8, 6))


def test_flat_batch_on_a_conv_model_matches_the_image_batch():
    conv = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 6 * 6, 3)).eval()
    net = Network(conv, ModelInfo((1, 8, 8), 3))
    x = torch.randn(4, 1, 8, 8)
    with torch.no_grad():
        np.testing.assert_allclose(net(x.reshape(4, 64)).numpy(), conv(x).numpy())


# ----------------------------------------------------------------------------- item 7
def gzip_bomb(path: Path, inflated: int) -> Path:
    """``inflated`` zero bytes, gzip-compressed (about 1000x smaller)."""
    with gzip.open(path, "wb", compresslevel=9) as f:
        block = bytes(1 << 20)
        for _ in range(inflated >> 20):
            f.write(block)
    return path


def test_onnx_gz_bomb_is_refused_at_the_cap(tmp_path, monkeypatch):
    bomb = gzip_bomb(tmp_path / "bomb.onnx.gz", 16 << 20)
    assert bomb.stat().st_size < 100_000
    with pytest.raises(ModelLoadError, match=r"inflates to more than 4 MiB.*CERTPRUNE_MAX_INFLATE"):
        load_model(bomb, max_inflate=4 << 20)
    monkeypatch.setenv("CERTPRUNE_MAX_INFLATE", "2M")
    with pytest.raises(ModelLoadError, match="more than 2 MiB"):
        load_model(bomb)
    assert main(["info", str(bomb)]) == 2


def test_cap_allows_real_gz_models_and_vnnlib(tmp_path, monkeypatch):
    gz = tmp_path / "digits.onnx.gz"
    gz.write_bytes(gzip.compress(DIGITS.read_bytes()))
    ref = load_model(DIGITS)
    net = load_model(gz, max_inflate=DIGITS.stat().st_size)  # exactly the size: allowed
    x = np.random.default_rng(0).random((3, 1, 8, 8), dtype=np.float32)
    np.testing.assert_array_equal(net.run_float32(x), ref.run_float32(x))
    with pytest.raises(ModelLoadError, match="inflates to more than"):
        load_model(gz, max_inflate=DIGITS.stat().st_size - 1)
    text = "(declare-const X_0 Real)(declare-const Y_0 Real)(assert (>= X_0 0))(assert (<= X_0 1))(assert (<= Y_0 0))"
    spec = read_vnnlib(text)[0]
    path = write_vnnlib(spec, tmp_path / "p.vnnlib.gz")
    assert len(read_vnnlib(path)) == 1
    monkeypatch.setenv("CERTPRUNE_MAX_INFLATE", "10")
    with pytest.raises(VNNLibError, match="more than 10 bytes"):
        read_vnnlib(path)


def test_vnnlib_gz_bomb_is_refused(tmp_path, capsys, monkeypatch):
    bomb = gzip_bomb(tmp_path / "bomb.vnnlib.gz", 8 << 20)
    with pytest.raises(VNNLibError, match="possible gzip bomb"):
        read_vnnlib(bomb, max_inflate=1 << 20)
    model = tmp_path / "m.onnx"
    save_onnx(random_mlp([2, 3, 2]), model, (2,))
    monkeypatch.setenv("CERTPRUNE_MAX_INFLATE", "1M")
    assert main(["verify", str(model), str(bomb), "--timeout", "5"]) == 2
    assert "gzip bomb" in capsys.readouterr().err


def test_cap_configuration():
    assert DEFAULT_MAX_INFLATE == 1 << 30
    assert [parse_size(s) for s in ("123", "4K", "512M", "2G", "64KiB", "3 mb")] == \
        [123, 4096, 512 << 20, 2 << 30, 64 << 10, 3 << 20]
    for bad in ("", "-1", "0", "1.5G", "lots", "2T"):
        with pytest.raises(ConfigError, match="byte count"):
            parse_size(bad)
    with pytest.raises(ConfigError):
        max_inflate(0)
    assert max_inflate(77) == 77


def test_corrupt_gzip_is_one_clear_error(tmp_path):
    bad = tmp_path / "bad.onnx.gz"
    bad.write_bytes(b"\x1f\x8b\x08\x00garbage")
    with pytest.raises(ModelLoadError, match="cannot read ONNX file"):
        load_model(bad)


def test_torch_zip_members_are_capped(tmp_path):
    from certprune.io.torch_loader import save_torch
    path = save_torch(random_mlp([30, 40, 2]), tmp_path / "m.pt", (30,))
    assert load_model(path).info.input_shape == (30,)
    with pytest.raises(ModelLoadError, match="zip bomb"):
        load_model(path, max_inflate=1000)


# ----------------------------------------------------------------------------- item 8 (pickles)
@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_full_pickles_of_every_protocol_need_and_accept_trust(tmp_path, protocol, capsys):
    m = random_mlp([3, 4, 2], seed=protocol)
    path = tmp_path / f"full{protocol}.pt"
    torch.save(m, path, pickle_protocol=protocol)
    with pytest.raises(ModelLoadError) as e:
        load_model(path)
    assert "--trust-pickle" in str(e.value) and "weights_only" not in str(e.value)
    net = load_model(path, trust_pickle=True)
    x = torch.randn(5, 3)
    with torch.no_grad():
        np.testing.assert_array_equal(net(x).numpy(), m(x).numpy())
    assert main(["info", str(path)]) == 2
    err = capsys.readouterr().err
    assert "--trust-pickle" in err and "weights_only" not in err and len(err.strip().splitlines()) == 1
    assert main(["info", str(path), "--trust-pickle"]) == 0


def test_random_bytes_are_not_called_a_pickle(tmp_path):
    path = tmp_path / "noise.pt"
    path.write_bytes(np.random.default_rng(0).bytes(2000).replace(b"\x80", b"\x00").replace(b"PK", b"pk"))
    with pytest.raises(ModelLoadError, match="not a readable PyTorch file") as e:
        load_model(path, trust_pickle=True)
    assert "weights_only" not in str(e.value)


# ----------------------------------------------------------------------------- item 10
def test_onnxruntime_is_a_core_dependency():
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    meta = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert any(d.replace(" ", "").startswith("onnxruntime") for d in meta["dependencies"])


def test_load_result_and_info_say_whether_the_check_ran(tmp_path, capsys, monkeypatch):
    check = load_model(DIGITS).info.extra["onnxruntime_check"]
    assert check["ran"] is True and check["samples"] == 4 and check["max_abs_diff"] < 1e-5
    assert main(["info", str(DIGITS)]) == 0
    assert "onnxruntime check: ran: agrees on 4 random inputs" in capsys.readouterr().out
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # simulate a machine without it
    check = load_model(DIGITS).info.extra["onnxruntime_check"]
    assert check["ran"] is False and "not installed" in check["skipped"]
    assert main(["info", str(DIGITS)]) == 0
    assert "onnxruntime check: SKIPPED: onnxruntime is not installed" in capsys.readouterr().out
