"""Build the report: a static HTML page, PNG figures and a Markdown summary, from records only.

``build_report(run_dir, out_dir)`` reads ``records.jsonl``/``results.jsonl`` of one or more run
directories and writes ``out_dir/index.html`` (inline CSS, no JavaScript, no network: it reads
offline), ``out_dir/figures/*.png`` (only the figures whose records exist) and
``out_dir/summary.md``. Besides the records, only what the run folder holds for the example
images (``suite/samples/*.npz``) and the provenance section (``invocations.jsonl``,
``config.yaml``, ``history.json``, ``suite/units/*.json``) is read; checkpoints never are.
"""

from __future__ import annotations

import datetime as _dt
import html
import os
from collections.abc import Sequence
from pathlib import Path

import robens
from robens.report.comparison import paired_tables
from robens.report.figures import draw_figures
from robens.report.listing import records_table
from robens.report.provenance import Provenance, provenance
from robens.report.runs import Run, load_runs
from robens.report.stages import stage_tables
from robens.report.tables import (
    Table,
    member_tables,
    published_tables,
    run_warnings,
    summary_table,
)
from robens.utils import atomic_write_text

CSS = """
body { font-family: -apple-system, 'Segoe UI', Roboto, Helvetica, Arial, sans-serif;
       margin: 2em auto; max-width: 1200px; padding: 0 1em; color: #222; line-height: 1.45; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { font-size: 1.25em; border-bottom: 1px solid #ddd; padding-bottom: 0.2em; margin-top: 2em; }
h3 { font-size: 1.05em; margin-bottom: 0.3em; }
table { border-collapse: collapse; margin: 0.6em 0 0.4em; font-size: 0.85em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.55em; text-align: right; }
th { background: #f0f3f7; }
td:first-child, th:first-child { text-align: left; }
tr.ours td { background: #eef8ee; font-weight: 600; }
tr.published td { background: #fff; }
figure { margin: 1.2em 0; }
figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: 0.85em; color: #555; }
p.note, p.source { font-size: 0.8em; color: #666; margin: 0.2em 0; }
ul.warnings li { color: #8a4b00; font-size: 0.85em; }
.meta { color: #666; font-size: 0.85em; }
tr.settings th { font-weight: normal; font-size: 0.8em; color: #444; max-width: 14em; }
table.facts td { text-align: left; }
pre.config { font-size: 0.8em; background: #f7f7f7; padding: 0.6em; overflow-x: auto; }
.scroll { overflow-x: auto; }
"""


def _table_html(t: Table) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in t.headers)
    if any(t.subheaders):
        head += '</tr>\n<tr class="settings">' + "".join(
            f"<th>{html.escape(h)}</th>" for h in t.subheaders)
    body = []
    for i, row in enumerate(t.rows):
        cls = t.classes[i] if i < len(t.classes) else ""
        cells = "".join(f"<td>{html.escape(c)}</td>" for c in row)
        body.append(f'<tr class="{cls}">{cells}</tr>')
    tag = f'<table class="{html.escape(t.css)}">' if t.css else "<table>"
    table = f'<div class="scroll">{tag}\n<thead><tr>{head}</tr></thead>\n<tbody>\n' + \
        "\n".join(body) + "\n</tbody>\n</table></div>"
    parts = [table]
    if t.note:
        parts.append(f'<p class="note">{html.escape(t.note)}</p>')
    if t.source:
        parts.append(f'<p class="source">Source: {html.escape(t.source)}</p>')
    inner = "\n".join(parts)
    if t.collapsed:
        return (f"<details>\n<summary>{html.escape(t.title)}</summary>\n{inner}\n</details>")
    return f"<h3>{html.escape(t.title)}</h3>\n{inner}"


def _table_md(t: Table) -> str:
    def esc(s: str) -> str:
        return s.replace("|", "\\|")

    heads = [h if not s else f"{h} ({s})" for h, s in zip(
        t.headers, t.subheaders or [""] * len(t.headers), strict=True)]
    lines = [f"### {t.title}", "", "| " + " | ".join(esc(h) for h in heads) + " |",
             "|" + "|".join("---" for _ in t.headers) + "|"]
    for i, row in enumerate(t.rows):
        cells = [esc(c) for c in row]
        if i < len(t.classes) and t.classes[i] == "ours":
            cells = [f"**{c}**" if c else c for c in cells]
        lines.append("| " + " | ".join(cells) + " |")
    if t.note:
        lines += ["", f"_{t.note}_"]
    if t.source:
        lines += ["", f"Source: {t.source}"]
    return "\n".join(lines)


def _provenance_html(p: Provenance) -> str:
    parts = [_table_html(p.facts)]
    if p.times is not None:
        parts.append(_table_html(p.times))
    if p.config:
        parts.append(f"<details>\n<summary>config.yaml of {html.escape(p.folder)}</summary>\n"
                     f'<pre class="config">{html.escape(p.config)}</pre>\n</details>')
    return "\n".join(parts)


def _warnings(runs: list[Run]) -> list[str]:
    out = []
    for run in runs:
        out += [f"{run.label}: {w}" for w in run_warnings(run)]
    return out


def build_report(
    run_dir: str | os.PathLike | Sequence[str | os.PathLike], out_dir: str | os.PathLike
) -> Path:
    """Build ``out_dir/index.html`` (+ ``figures/*.png``, ``summary.md``) from the records of
    ``run_dir`` (one directory or several); returns the path of ``index.html``."""
    dirs = [run_dir] if isinstance(run_dir, (str, os.PathLike)) else list(run_dir)
    runs = load_runs(dirs)
    out = Path(out_dir)
    fig_dir = out / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    figures = draw_figures(runs, fig_dir)
    summary = summary_table(runs)
    listing = records_table(runs)
    published = published_tables(runs)
    stages = stage_tables(runs)
    members = member_tables(runs)
    paired = paired_tables(runs)
    prov = provenance(runs)
    warnings = _warnings(runs)
    stamp = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    sources = ", ".join(sorted({r.run_dir for r in runs}))

    body = [
        "<h1>robens report</h1>",
        f'<p class="meta">{len(runs)} run(s) from {html.escape(sources)}; built {stamp} by'
        f" robens {html.escape(robens.__version__)} from the records files only.</p>",
        "<h2>Summary</h2>",
        _table_html(summary),
        _table_html(listing),
    ]
    if paired:
        body.append('<h2 id="paired">Paired comparison</h2>')
        body.extend(_table_html(t) for t in paired)
    if members:
        body.append("<h2>Members</h2>")
        body.extend(_table_html(t) for t in members)
    if stages:
        body.append("<h2>Attack stages</h2>")
        body.extend(_table_html(t) for t in stages)
    if warnings:
        body.append("<h2>Warnings</h2>")
        body.append('<ul class="warnings">' + "".join(
            f"<li>{html.escape(w)}</li>" for w in warnings) + "</ul>")
    if figures:
        body.append("<h2>Figures</h2>")
        for f in figures:
            src = f"figures/{f['file']}"
            body.append(
                f'<figure id="{html.escape(Path(f["file"]).stem)}">\n'
                f'<h3>{html.escape(f["title"])}</h3>\n'
                f'<img src="{html.escape(src)}" alt="{html.escape(f["title"])}">\n'
                f"<figcaption>{html.escape(f['caption'])}</figcaption>\n</figure>"
            )
    if published:
        body.append("<h2>Published numbers beside ours</h2>")
        body.extend(_table_html(t) for t in published)
    body.append('<h2 id="provenance">Provenance</h2>')
    body.extend(_provenance_html(p) for p in prov)
    page = (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
        "<title>robens report</title>\n<link rel=\"icon\" href=\"data:,\">\n"
        f"<style>{CSS}</style>\n</head>\n<body>\n" + "\n".join(body) + "\n</body>\n</html>\n"
    )
    index = out / "index.html"
    atomic_write_text(index, page)

    md = ["# robens report", "", f"{len(runs)} run(s) from {sources}; built {stamp}.", "",
          _table_md(summary), "", _table_md(listing), ""]
    if paired:
        md += ["## Paired comparison", ""]
        for t in paired:
            md += [_table_md(t), ""]
    if members:
        md += ["## Members", ""]
        for t in members:
            md += [_table_md(t), ""]
    if stages:
        md += ["## Attack stages", ""]
        for t in stages:
            md += [_table_md(t), ""]
    if warnings:
        md += ["## Warnings", ""] + [f"- {w}" for w in warnings] + [""]
    if figures:
        md += ["## Figures", ""]
        md += [f"- [{f['title']}](figures/{f['file']}): {f['caption']}" for f in figures]
        md.append("")
    if published:
        md += ["## Published numbers beside ours", ""]
        for t in published:
            md += [_table_md(t), ""]
    md += ["## Provenance", ""]
    for p in prov:
        md += [_table_md(p.facts), ""] + ([_table_md(p.times), ""] if p.times else [])
    atomic_write_text(out / "summary.md", "\n".join(md))
    for path in [index, out / "summary.md", *(fig_dir / f["file"] for f in figures)]:
        path.chmod(0o644)  # atomic writes create private temp files; a report is for reading
    return index
