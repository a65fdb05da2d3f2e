"""The README's end-to-end table, generated: train the pruning benchmark's nets, prune them with
``certprune prune``, certify dense and pruned variants with ``certprune compare``, and write the
compare tables into README.md between the ``compare-table`` markers.

Nets (built and trained as in experiments/pruning_benchmark.py, fixed seed, on MNIST test images
0..7999): the MLP 784-128-128-10, the convnet and the BatchNorm convnet. Each is exported to ONNX,
then pruned by the CLI (magnitude, unstructured and structured, plus stability neurons/channels;
fine-tuning ``--finetune-epochs`` epochs) and compared by the CLI on held-out images 8000.. .
CIFAR-10: the public OVAL21 base convnet (shared data) and a magnitude-pruned copy (the Python
API, no fine-tuning: ``prune`` has no CIFAR-10 training split here) on the 100 shared test images.

Every step is a subprocess running the ``certprune`` command exactly as printed; a rerun reuses the
trained nets, pruned files and compare stores (``compare`` resumes), so it only redoes what is
missing. Outputs: experiments/results/compare_pruned/<net>/ (compare.md, csv, plots, report.html).

Usage: python experiments/compare_pruned.py [-n 30] [--eps 0.02] [--timeout 3] [--nets mlp,conv,conv-bn]
       [--cifar-n 100] [--no-readme]
"""
from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "experiments" / "results" / "compare_pruned"
BEGIN, END = "<!-- compare-table:begin -->", "<!-- compare-table:end -->"
VARIANTS = {  # name -> certprune prune options (MLP: neuron, convnets: channel for the structured ones)
    "mag50": ["--method", "magnitude", "--amount", "0.5"],
    "mag80": ["--method", "magnitude", "--amount", "0.8"],
    "magS50": ["--method", "magnitude", "--amount", "0.5", "--granularity", "structured"],
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=30, help="MNIST held-out samples per model")
    ap.add_argument("--eps", type=float, default=0.02)
    ap.add_argument("--timeout", type=float, default=3.0, help="verification seconds per sample")
    ap.add_argument("--nets", default="mlp,conv,conv-bn")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--train-epochs", type=int, default=4)
    ap.add_argument("--finetune-epochs", type=int, default=1)
    ap.add_argument("--cifar-n", type=int, default=100, help="CIFAR-10 images (0 skips CIFAR-10)")
    ap.add_argument("--cifar-eps", type=float, default=0.004)
    ap.add_argument("--cifar-timeout", type=float, default=5.0)
    ap.add_argument("--no-readme", action="store_true", help="do not rewrite README.md")
    args = ap.parse_args()
    torch.set_num_threads(1)
    OUT.mkdir(parents=True, exist_ok=True)
    blocks, commands = [], []
    for net in [n for n in args.nets.split(",") if n]:
        blocks.append(_mnist_net(net, args, commands))
    if args.cifar_n:
        blocks.append(_cifar(args, commands))
    text = _block(args, blocks, commands)
    (OUT / "README_block.md").write_text(text)
    if not args.no_readme:
        _write_readme(text)
    print(text)


def _mnist_net(net: str, args, commands: list) -> tuple[str, str]:
    """Train (cached), prune every variant with the CLI, compare with the CLI; (title, compare.md)."""
    dense = f"mnist_{net}.onnx"
    if not (OUT / dense).exists():
        _train_and_export(net, OUT / dense, args.train_epochs)
    models = [dense]
    for name in [v for v in args.variants.split(",") if v]:
        pruned = f"mnist_{net}_{name}.onnx"
        cmd = ["prune", dense, *VARIANTS[name], "--dataset", "mnist", "--finetune-epochs",
               str(args.finetune_epochs), "--out", pruned]
        if not (OUT / pruned).exists():
            _certprune(cmd)
        commands.append(cmd)
        models.append(pruned)
    out = OUT / net
    cmd = ["compare", *models, "--dataset", "mnist", "-n", str(args.n), "--eps", f"{args.eps:g}",
           "--timeout", f"{args.timeout:g}", "--no-progress", "--out", net]
    _certprune(cmd)
    commands.append(cmd)
    return f"MNIST {net} (held-out images 8000..{8000 + args.n - 1}, eps {args.eps:g}, " \
           f"{args.timeout:g} s per sample)", (out / "compare.md").read_text()


def _train_and_export(net: str, path: Path, epochs: int) -> None:
    """The pruning benchmark's architecture and trainer, on MNIST test images 0..7999."""
    sys.path.insert(0, str(REPO / "experiments"))
    from pruning_benchmark import build, train

    from certprune.datasets import load_mnist
    from certprune.io.onnx_export import save_onnx
    X, y = (torch.from_numpy(a) for a in load_mnist())
    model = train(build(net), X[:8000].reshape(-1, 1, 28, 28), y[:8000], epochs, seed=0)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_onnx(model, path, (1, 28, 28))


def _cifar(args, commands: list) -> tuple[str, str]:
    """OVAL21 base (dense) and a 30 % magnitude-pruned copy through ``certprune compare``."""
    from certprune.datasets.cifar10 import OVAL21_MEAN, OVAL21_STD, default_model_path
    dense = default_model_path()
    pruned = "cifar_base_mag30.onnx"
    if not (OUT / pruned).exists():
        import certprune
        from certprune.network import load_model
        from certprune.pruning.export import save_pruned
        net = load_model(dense)
        model, manifest = certprune.prune(net.module, method="magnitude", amount=0.3,
                                          input_shape=tuple(net.info.input_shape))
        save_pruned(model, manifest, OUT / pruned)
    out = OUT / "cifar10"
    fmt = lambda v: ",".join(f"{x:g}" for x in v)  # noqa: E731
    cmd = ["compare", "$CERTPRUNE_DATA/" + str(dense.relative_to(data_root())), pruned, "--dataset", "cifar10", "--mean", fmt(OVAL21_MEAN), "--std",
           fmt(OVAL21_STD), "-n", str(args.cifar_n), "--eps", f"{args.cifar_eps:g}", "--timeout",
           f"{args.cifar_timeout:g}", "--no-progress", "--out", "cifar10"]
    _certprune(cmd)
    commands.append(cmd)
    return f"CIFAR-10 OVAL21 base convnet and a 30 % magnitude-pruned copy (test images 0..{args.cifar_n - 1}, " \
           f"eps {args.cifar_eps:g}, {args.cifar_timeout:g} s per sample)", \
        (out / "compare.md").read_text()


def data_root() -> Path:
    from certprune.datasets.paths import data_root as root
    return Path(root()).resolve()


def _certprune(argv: list[str]) -> float:
    """Run ``certprune ARGV`` in OUT (this checkout, one thread); seconds taken (a resumed compare
    only redoes missing samples, so the per-sample seconds are in its table); exits on failure."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    print("+ certprune", _show(argv), flush=True)
    t = time.perf_counter()
    argv = [a.replace("$CERTPRUNE_DATA", str(data_root())) for a in argv]
    done = subprocess.run([sys.executable, "-m", "certprune", *argv], env=env, cwd=OUT)
    if done.returncode != 0:
        sys.exit(f"certprune {argv[0]} failed with exit code {done.returncode}")
    return time.perf_counter() - t


def _show(argv: list[str]) -> str:
    return " ".join(a if a.startswith("$CERTPRUNE_DATA/") else shlex.quote(a) for a in argv)


def _block(args, blocks: list, commands: list) -> str:
    lines = [BEGIN, "", f"Generated by `python experiments/compare_pruned.py -n {args.n} --eps {args.eps:g} "
             f"--timeout {args.timeout:g} --nets {args.nets} --cifar-n {args.cifar_n}`, which ran these "
             "commands in `experiments/results/compare_pruned/` (the dense `mnist_*.onnx` nets are trained "
             "there first; outputs in `<net>/compare.md`, `report.html`, plots):", "", "```bash"]
    lines += [f"certprune {_show(c)}" for c in commands] + ["```", ""]
    for title, table in blocks:
        lines += [f"**{title}**", "", table.rstrip("\n"), ""]
    return "\n".join(lines + [END])


def _write_readme(block: str) -> None:
    path = REPO / "README.md"
    text = path.read_text()
    if BEGIN not in text or END not in text:
        sys.exit(f"README.md lacks the markers {BEGIN} ... {END}")
    head, rest = text.split(BEGIN, 1)
    path.write_text(head + block + rest.split(END, 1)[1])


if __name__ == "__main__":
    main()
