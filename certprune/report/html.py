"""report.html: one self-contained page (PNG plots embedded as base64) for a fairness audit."""
from __future__ import annotations

import base64
import html
from pathlib import Path

import pandas as pd

from certprune.report.plots import share_plot, verdict_map
from certprune.report.tables import summary_table

_STYLE = "body{font-family:sans-serif;max-width:60em;margin:2em auto}table{border-collapse:collapse}" \
         "td,th{border:1px solid #ccc;padding:2px 6px;font-size:90%}"


def _img(png: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def write_report(path: str | Path, summary: dict, parts: pd.DataFrame, decoded: pd.DataFrame, spec, part,
                 max_rows: int = 50) -> Path:
    """Write the HTML report: query, summary table, the two plots, first counterexamples."""
    names = list(spec.feature_names)
    relax = ", ".join(f"{n} (±{d})" for n, d in spec.relaxed) or "none"
    body = [f"<h1>Fairness audit{': ' + html.escape(spec.name) if spec.name else ''}</h1>",
            f"<p>Protected: <b>{html.escape(', '.join(spec.protected))}</b>; relaxed: {html.escape(relax)}; "
            f"{part.count} partitions; {summary['seconds']} s. A partition is <i>certified</i> when no pair "
            "of its integer points (equal except the protected feature, relaxed ones within tolerance) "
            "changes the float32 decision; every <i>falsified</i> partition has such a pair, re-run on the "
            "original model.</p>",
            summary_table(summary).to_html(index=False),
            "<h2>Share of the domain by verdict</h2>", _img(share_plot(summary), "share by verdict"),
            "<h2>Verdict map</h2>", _img(verdict_map(parts, names), "verdict map")]
    if len(decoded):
        body += [f"<h2>Counterexamples ({len(decoded)}; first {min(max_rows, len(decoded))})</h2>",
                 decoded.head(max_rows).to_html(index=False)]
    page = f"<!doctype html><html><head><meta charset='utf-8'><title>certprune fairness audit</title>" \
           f"<style>{_STYLE}</style></head><body>{''.join(body)}</body></html>"
    p = Path(path)
    p.write_text(page, encoding="utf-8")
    return p
