"""The report of a reproduction recipe (``robens reproduce``): our summary tables with the
published numbers beside them, the recipe's checks, what the scale reduced, wall times, and
the general report of every trial (:func:`robens.report.build_report`) under ``full/``.

The input is the plain ``summary.json`` data written by :mod:`robens.recipes`; nothing else
is read, so the report can be rebuilt from the records at any time.
"""

from __future__ import annotations

import html
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from robens.errors import ConfigError
from robens.report.build import CSS as BASE_CSS
from robens.report.published import PUBLISHED_TABLES
from robens.stats import verdict_of
from robens.utils import atomic_write_text

#: Published numbers that are not tables of a paper (read from a figure), for the summaries.
GDR_BLOG: dict[str, Any] = {
    "key": "gdr_blog",
    "title": "GDR vs attack success (Adam & Speciel 2020, blog figure, approximate)",
    "source": "G. A. Adam, R. Speciel, Evaluating Ensemble Robustness Against Adversarial"
    " Attacks (arXiv:2005.05750), blog post alexadam.ca 2020-05-13",
    "kind": "reference",
    "note": "Published (read from the blog's figure, Fashion-MNIST): ensemble GDR spans about"
    " 0.03-0.19 and log(attack success) rises roughly linearly with GDR for FGSM, L-inf PGD and"
    " MI-FGSM at eps 0.03/0.06/0.09 (e.g. FGSM at eps 0.03: about 2e-3 to 6e-2), i.e. a positive"
    " rank correlation; the sample size is not stated.",
    "gdr_range": (0.03, 0.19),
    "fgsm_003_success": (2e-3, 6e-2),
    "rows": [],
}
EXTRA_PUBLISHED: list[dict[str, Any]] = [GDR_BLOG]

CSS = BASE_CSS + """
li.pass { color: #1a6b1a; } li.fail { color: #a11; } li.na { color: #666; }
li .test { color: #444; font-size: 90%; }
"""

def published_table(key: str) -> dict[str, Any]:
    """A published table by key (``je_table1``, ``gal_table2``, ``adp_table2``,
    ``rce_detection``, ``mmc_cifar10``, ``gdr_blog``)."""
    for table in [*PUBLISHED_TABLES, *EXTRA_PUBLISHED]:
        if table["key"] == key:
            return table
    known = ", ".join(t["key"] for t in [*PUBLISHED_TABLES, *EXTRA_PUBLISHED])
    raise ConfigError(f"unknown published table {key!r}; known: {known}")


def _md_escape(s: str) -> str:
    return str(s).replace("|", "\\|")


def table_markdown(t: dict[str, Any]) -> str:
    """A summary table as Markdown (rows of class ``ours`` in bold)."""
    lines = [f"### {t['title']}", "", "| " + " | ".join(_md_escape(h) for h in t["headers"])
             + " |", "|" + "|".join("---" for _ in t["headers"]) + "|"]
    for row, cls in zip(t["rows"], t["classes"], strict=True):
        cells = [_md_escape(c) for c in row]
        if cls == "ours":
            cells = [f"**{c}**" if c else c for c in cells]
        lines.append("| " + " | ".join(cells) + " |")
    if t.get("note"):
        lines += ["", f"_{t['note']}_"]
    if t.get("source"):
        lines += ["", f"Source: {t['source']}"]
    return "\n".join(lines)


def table_html(t: dict[str, Any]) -> str:
    """A summary table as HTML."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in t["headers"])
    body = "\n".join(
        f'<tr class="{html.escape(cls)}">' + "".join(f"<td>{html.escape(c)}</td>" for c in row)
        + "</tr>" for row, cls in zip(t["rows"], t["classes"], strict=True)
    )
    parts = [f"<h3>{html.escape(t['title'])}</h3>",
             f'<div class="scroll"><table><thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n'
             "</tbody></table></div>"]
    if t.get("note"):
        parts.append(f'<p class="note">{html.escape(t["note"])}</p>')
    if t.get("source"):
        parts.append(f'<p class="source">Source: {html.escape(t["source"])}</p>')
    return "\n".join(parts)


def _test_line(c: dict[str, Any]) -> str:
    """``test: <name>, p = <p> (alpha 0.05)`` of a check, empty when it names no test."""
    if not c.get("test"):
        return ""
    p = c.get("p")
    tail = "" if p is None else f", p = {p:.3g}"
    return f"test: {c['test']}{tail} (alpha {c.get('alpha', 0.05):g})"


def _settings(summary: dict[str, Any]) -> list[str]:
    wall = summary.get("wall_seconds")
    lines = [
        f"recipe `{summary.get('recipe')}`, scale `{summary.get('scale')}`, dataset"
        f" `{summary.get('dataset')}`; {summary.get('trials_complete')} of"
        f" {summary.get('trials_total')} trials complete",
        f"wall time {wall:.0f} s over all invocations (last {summary.get('wall_seconds_last')}"
        f" s); sum of trial times {summary.get('trial_seconds')} s; {summary.get('cpus')} CPUs"
        if wall is not None else "wall time: not recorded",
    ]
    if summary.get("command"):
        lines.append(f"command: `{summary['command']}`")
    if summary.get("overrides"):
        lines.append(f"overrides: `{summary['overrides']}`")
    return lines


def recipe_markdown(summary: dict[str, Any], figures: Sequence[dict[str, str]] = ()) -> str:
    """The recipe report as Markdown."""
    md = [f"# Reproduction: {summary.get('title') or summary.get('recipe')}", ""]
    md += [f"- {s}" for s in _settings(summary)] + [""]
    if summary.get("notes"):
        md += ["## What this scale changes", ""] + [f"- {n}" for n in summary["notes"]] + [""]
    md += ["## Checks", ""]
    md += [f"- **{verdict_of(c)}** {c['name']}: {c['detail']}"
           + (f" ({_test_line(c)})" if _test_line(c) else "") for c in summary["checks"]]
    md += ["", "PASS: every model involved is significantly above chance on clean data and the"
           " claim holds counting only significant differences; FAIL: it fails even counting"
           " every non-significant difference in its favour; INCONCLUSIVE: neither."]
    md += [""]
    md += ["## Results", ""]
    for t in summary["tables"]:
        md += [table_markdown(t), ""]
    if figures:
        md += ["## Figures", ""]
        md += [f"- [{f['title']}](full/figures/{f['file']})" for f in figures] + [""]
    md += ["The general report of every trial (all records, figures, warnings) is in"
           " [full/index.html](full/index.html).", ""]
    return "\n".join(md)


def recipe_html(summary: dict[str, Any], figures: Sequence[dict[str, str]] = ()) -> str:
    """The recipe report as a static HTML page (no JavaScript, no network)."""
    title = summary.get("title") or summary.get("recipe") or "recipe"
    body = [f"<h1>Reproduction: {html.escape(str(title))}</h1>"]
    body += [f'<p class="meta">{html.escape(s.replace("`", ""))}</p>' for s in _settings(summary)]
    if summary.get("notes"):
        body.append("<h2>What this scale changes</h2><ul>" + "".join(
            f"<li>{html.escape(n)}</li>" for n in summary["notes"]) + "</ul>")
    css = {"PASS": "pass", "FAIL": "fail"}
    body.append("<h2>Checks</h2><ul>" + "".join(
        f'<li class="{css.get(verdict_of(c), "na")}"><b>{verdict_of(c)}</b>'
        f" {html.escape(c['name'])}: {html.escape(c['detail'])}"
        + (f' <span class="test">({html.escape(_test_line(c))})</span>' if _test_line(c) else "")
        + "</li>" for c in summary["checks"]) + "</ul>")
    body.append('<p class="note">PASS: every model involved is significantly above chance on'
                " clean data and the claim holds counting only significant differences; FAIL:"
                " it fails even counting every non-significant difference in its favour;"
                " INCONCLUSIVE: neither.</p>")
    body.append("<h2>Results</h2>")
    body += [table_html(t) for t in summary["tables"]]
    if figures:
        body.append("<h2>Figures</h2>")
        for f in figures:
            src = html.escape(f"full/figures/{f['file']}")
            body.append(f"<figure><h3>{html.escape(f['title'])}</h3><img src=\"{src}\" alt=\""
                        f"{html.escape(f['title'])}\"><figcaption>{html.escape(f['caption'])}"
                        "</figcaption></figure>")
    body.append('<p class="meta">The general report of every trial: <a href="full/index.html">'
                "full/index.html</a>.</p>")
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{html.escape(str(title))}</title>\n<link rel=\"icon\" href=\"data:,\">\n"
            f"<style>{CSS}</style>\n</head>\n<body>\n" + "\n".join(body) + "\n</body>\n</html>\n")


def build_recipe_report(
    summary: dict[str, Any], out_dir: str | os.PathLike, run_dirs: Sequence[str | os.PathLike]
) -> Path:
    """Write ``out_dir/index.html`` and ``out_dir/summary.md`` from a recipe summary, and the
    general report of ``run_dirs`` into ``out_dir/full``; returns the path of ``index.html``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    figures: list[dict[str, str]] = []
    if run_dirs:
        from robens.report.build import build_report

        try:
            build_report(list(run_dirs), out / "full")
            figures = [{"file": p.name, "title": p.stem.replace("_", " "), "caption": ""}
                       for p in sorted((out / "full" / "figures").glob("*.png"))]
        except Exception as exc:  # the recipe summary must not depend on the general report
            summary = {**summary, "checks": [*summary["checks"], {
                "name": "general report", "passed": None, "verdict": "INCONCLUSIVE",
                "detail": f"not built: {type(exc).__name__}: {exc}"}]}
    index = out / "index.html"
    atomic_write_text(index, recipe_html(summary, figures))
    atomic_write_text(out / "summary.md", recipe_markdown(summary, figures))
    for path in (index, out / "summary.md"):
        path.chmod(0o644)
    return index


__all__ = [
    "EXTRA_PUBLISHED",
    "GDR_BLOG",
    "build_recipe_report",
    "published_table",
    "recipe_html",
    "recipe_markdown",
    "table_html",
    "table_markdown",
]
