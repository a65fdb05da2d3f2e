"""report.html: one self-contained page (PNG plots embedded as base64) for a fairness audit."""
from __future__ import annotations

import base64
import html
from pathlib import Path

import pandas as pd

from certprune.report.plots import share_plot, unfair_map, verdict_map
from certprune.report.tables import summary_table

_STYLE = "body{font-family:sans-serif;max-width:60em;margin:2em auto}table{border-collapse:collapse}" \
         "td,th{border:1px solid #ccc;padding:2px 6px;font-size:90%}"


def _img(png: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def _headline(summary: dict) -> str:
    ind, sh = summary["individuals"], summary["individual_share"]
    if summary["fair_on_domain"]:
        return f"Fair on the domain: all {ind['total']} individuals proven fair."
    if ind["unfair"] or summary["counterexample_pairs"]:
        return (f"Not fair: {ind['unfair']} individuals ({100 * sh['unfair']:.4g} %) proven unfair, "
                f"{summary['counterexample_pairs']} validated counterexample pairs; "
                f"{100 * sh['undecided']:.4g} % undecided.")
    return f"Undecided: {100 * sh['fair']:.4g} % proven fair, {100 * sh['undecided']:.4g} % undecided."


def _who(summary: dict) -> str:
    parts = []
    est = summary.get("sampled_unfair_share")
    if est:
        parts.append(f"Sampled unfair share of the domain: {100 * est['share']:.3g} % ({est['unfair']} of "
                     f"{est['samples']} uniform points; {100 * est['confidence']:.0f} % Wilson interval "
                     f"{100 * est['low']:.3g}-{100 * est['high']:.3g} %), beside the proven bounds "
                     f"{100 * summary['individual_share']['unfair']:.3g}-"
                     f"{100 * (summary['individual_share']['unfair'] + summary['individual_share']['undecided']):.3g} %.")
    rec = summary.get("records")
    if rec:
        parts.append(f"Real records: {rec['unfair']} of {rec['in_domain']} in the domain are unfair individuals "
                     f"({100 * rec['unfair_share']:.3g} %; exact per-record check).")
    return "".join(f"<p>{html.escape(p)}</p>" for p in parts)


def write_report(path: str | Path, summary: dict, parts: pd.DataFrame, decoded: pd.DataFrame, spec, part,
                 affected: pd.DataFrame | None = None, sampled: tuple | None = None,
                 map_features: tuple[str, str] | None = None, max_rows: int = 50) -> Path:
    """Write the HTML report: headline, query, individuals table, plots, counterexamples, affected records."""
    names = list(spec.feature_names)
    relax = ", ".join(f"{n} (±{d})" for n, d in spec.relaxed) or "none"
    body = [f"<h1>Fairness audit{': ' + html.escape(spec.name) if spec.name else ''}</h1>",
            f"<h2>{html.escape(_headline(summary))}</h2>",
            f"<p>Protected: <b>{html.escape(', '.join(spec.protected))}</b>; relaxed: {html.escape(relax)}; "
            f"semantics {html.escape(str(summary.get('semantics')))}; {part.count} partitions; {summary['seconds']} s. "
            "An individual (an integer point of the domain) is <i>unfair</i> when some point equal except on the "
            "protected features (relaxed ones within tolerance) gets the other float32 decision; counts are exact. "
            "Every counterexample pair was re-run on the original model.</p>",
            f"<p>Model sha256 {html.escape(str(summary.get('model_sha256')))}; certprune "
            f"{html.escape(str(summary.get('tool_version')))}; budget {summary.get('budget_seconds')} s.</p>",
            summary_table(summary).to_html(index=False), _who(summary),
            "<h2>Share of the domain by verdict</h2>", _img(share_plot(summary), "share by verdict"),
            "<h2>Verdict map</h2>", _img(verdict_map(parts, names), "verdict map")]
    if sampled is not None and map_features is not None:
        fi, fj = (names.index(f) for f in map_features)
        body += [f"<h2>Unfair individuals by {html.escape(map_features[0])} and {html.escape(map_features[1])}</h2>",
                 _img(unfair_map(sampled[0], sampled[1], names, (fi, fj)), "unfair map")]
    if len(decoded):
        body += [f"<h2>Counterexamples ({len(decoded)}; first {min(max_rows, len(decoded))})</h2>",
                 _readable(decoded, names).head(max_rows).to_html(index=False)]
    dom = summary.get("domain")
    if dom:
        body += ["<h2>Domain</h2>", pd.DataFrame([{"feature": n, "lower": lo, "upper": hi}
                                                  for n, (lo, hi) in dom.items()]).to_html(index=False)]
    if affected is not None and len(affected):
        body += [f"<h2>Affected records ({len(affected)}; first {min(max_rows, len(affected))})</h2>",
                 affected.head(max_rows).to_html(index=False)]
    page = f"<!doctype html><html><head><meta charset='utf-8'><title>certprune fairness audit</title>" \
           f"<style>{_STYLE}</style></head><body>{''.join(body)}</body></html>"
    p = Path(path)
    p.write_text(page, encoding="utf-8")
    return p


def _readable(decoded: pd.DataFrame, names: list[str]) -> pd.DataFrame:
    """Counterexamples as rows that show only the changed attributes (both values) and decisions."""
    rows = []
    for _, r in decoded.iterrows():
        changed = [f"{n}: {r[f'x.{n}']} -> {r[f'x_prime.{n}']}" for n in names if r[f"x.{n}"] != r[f"x_prime.{n}"]]
        rows.append({"partition": r["partition"], "changed": "; ".join(changed),
                     "decision x": "yes" if r["logit_x"] > 0 else "no",
                     "decision x'": "yes" if r["logit_x_prime"] > 0 else "no",
                     "individual": ", ".join(f"{n}={r[f'x.{n}']}" for n in names)})
    return pd.DataFrame(rows)
