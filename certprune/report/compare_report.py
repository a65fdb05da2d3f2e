"""The comparison's outputs: the table as CSV / markdown / text, two plots (certified accuracy
against sparsity; per-input verification time per model) and one self-contained HTML page."""
from __future__ import annotations

import html
from pathlib import Path

import pandas as pd

from certprune.report.html import _STYLE, _img
from certprune.report.plots import _png

_FMT = {"amount": "{:.2f}", "sparsity": "{:.3f}", "clean_acc": "{:.3f}", "pgd_acc": "{:.3f}",
        "cert_acc_bounds": "{:.3f}", "cert_acc_bab": "{:.3f}", "unstable_per_input": "{:.1f}",
        "verify_s_per_input": "{:.2f}"}


def formatted(table: pd.DataFrame) -> pd.DataFrame:
    """The table as strings with fixed decimals (what markdown and the console show)."""
    out = table.copy().astype(object)
    for col, fmt in _FMT.items():
        if col in out:
            out[col] = [("nan" if pd.isna(v) else fmt.format(v)) for v in table[col]]
    return out.astype(str)


def markdown_table(table: pd.DataFrame) -> str:
    """GitHub markdown table of :func:`formatted` (numbers right-aligned)."""
    t = formatted(table)
    numeric = [pd.api.types.is_numeric_dtype(table[c]) for c in table.columns]
    head = "| " + " | ".join(t.columns) + " |"
    rule = "|" + "|".join("---:" if num else "---" for num in numeric) + "|"
    body = ["| " + " | ".join(r) + " |" for r in t.itertuples(index=False)]
    return "\n".join([head, rule, *body]) + "\n"


def certified_vs_sparsity(table: pd.DataFrame, eps: float) -> bytes:
    """PNG: certified accuracy (solid: bounds + BaB, dotted: bounds only) and clean accuracy
    (crosses) against sparsity; one colour per pruning method, each line starting at the
    reference (first) model."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    ref = table.iloc[[0]]
    fig, ax = plt.subplots(figsize=(6, 3.8))
    methods = [m for m in dict.fromkeys(table["method"]) if m != ref["method"].iloc[0]] or [ref["method"].iloc[0]]
    for k, method in enumerate(methods):
        t = pd.concat([ref, table[table["method"] == method]]).drop_duplicates("model").sort_values("sparsity")
        color = f"C{k % 10}"
        ax.plot(t["sparsity"], t["cert_acc_bab"], "o-", color=color, label=f"{method}: certified")
        ax.plot(t["sparsity"], t["cert_acc_bounds"], "v:", color=color, label=f"{method}: certified by bounds")
        ax.plot(t["sparsity"], t["clean_acc"], "x", color=color, alpha=0.6)
    for _, r in table.iterrows():
        ax.annotate(r["model"], (r["sparsity"], r["cert_acc_bab"]), fontsize=7, xytext=(3, 3),
                    textcoords="offset points")
    ax.set_xlabel("sparsity (1 - non-zeros / reference parameters)")
    ax.set_ylabel("accuracy (x: clean)")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(f"certified accuracy against sparsity, eps = {eps:g}")
    ax.legend(fontsize=7, loc="lower left")
    return _png(fig)


def verification_times(rows: dict[str, list[dict]]) -> bytes:
    """PNG: box plot per model of the seconds spent per input (PGD share + verification)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    names = list(rows)
    data = [[float(r["seconds_pgd"]) + float(r["seconds_verify"]) for r in rows[n]] or [0.0] for n in names]
    fig, ax = plt.subplots(figsize=(max(4, 1.2 * len(names)), 3.4))
    ax.boxplot(data)
    ax.set_xticks(range(1, len(names) + 1), names, rotation=20, fontsize=8)
    ax.set_ylabel("seconds per input")
    if max(max(d) for d in data) > 0:
        ax.set_yscale("symlog", linthresh=0.01)
    ax.set_title("verification time per input")
    return _png(fig)


def write_outputs(out_dir: str | Path, table: pd.DataFrame, rows: dict[str, list[dict]], query: dict) -> dict:
    """Write compare.csv, compare.md, cert_vs_sparsity.png, verify_time.png, report.html; returns their paths."""
    d = Path(out_dir)
    paths = {k: d / v for k, v in [("csv", "compare.csv"), ("md", "compare.md"), ("plot", "cert_vs_sparsity.png"),
                                   ("times", "verify_time.png"), ("html", "report.html")]}
    table.to_csv(paths["csv"], index=False)
    md = markdown_table(table)
    paths["md"].write_text(md)
    plot, times = certified_vs_sparsity(table, query["eps"]), verification_times(rows)
    paths["plot"].write_bytes(plot)
    paths["times"].write_bytes(times)
    paths["html"].write_text(_page(table, rows, query, plot, times), encoding="utf-8")
    return paths


def _page(table: pd.DataFrame, rows: dict[str, list[dict]], query: dict, plot: bytes, times: bytes) -> str:
    falsified = {n: [r for r in rs if r["verdict"] == "falsified"] for n, rs in rows.items()}
    links = "".join(f"<li>{html.escape(n)}: {len(f)} falsified; adversarial inputs in "
                    f"<code>{html.escape(n)}/adversarial/</code></li>" for n, f in falsified.items() if f)
    body = [f"<h1>certprune compare: {html.escape(str(query['dataset']))}, eps = {query['eps']:g}</h1>",
            f"<p>{query['n']} samples, timeout {query['timeout']:g} s per sample, soundness policy "
            f"<b>{html.escape(query['semantics'])}</b>. <i>certified (bounds)</i>: decided by CROWN / "
            "alpha-CROWN on the whole ball; <i>certified (BaB)</i>: by bounds or branch and bound. Every "
            "falsified sample has an adversarial input re-run in float32 on the model.</p>",
            formatted(table).to_html(index=False),
            "<h2>Accuracy against sparsity</h2>", _img(plot, "accuracy against sparsity"),
            "<h2>Verification time per input</h2>", _img(times, "verification time per input")]
    if links:
        body += ["<h2>Evidence</h2>", f"<ul>{links}</ul>"]
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>certprune compare</title>"
            f"<style>{_STYLE}</style></head><body>{''.join(body)}</body></html>")


def console_table(table: pd.DataFrame) -> str:
    """Plain-text table for the terminal."""
    return formatted(table).to_string(index=False)


