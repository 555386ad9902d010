"""Shared plotting helpers of the report's figures (matplotlib, Agg backend, PNG).

A figure function draws with these and returns ``finish(fig, path, title, caption)``: the
``{"file", "title", "caption"}`` description the page shows.
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from robens.report.runs import Run  # noqa: E402
from robens.utils import atomic_write_bytes  # noqa: E402

Figure = dict[str, str]
THREAT_TITLES = {
    "white_box": "white-box",
    "transfer": "transfer (black-box)",
    "universal": "universal (SGD-UAP)",
}
DPI = 90


def save(fig: Any, path: Path) -> None:
    """Write the figure as PNG atomically (a reader never sees a half-written file)."""
    buf = io.BytesIO()
    try:
        fig.tight_layout()
        extra = [a.get_legend() for a in fig.axes if a.get_legend() is not None]
        fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight", bbox_extra_artists=extra)
    finally:
        plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def finish(fig: Any, path: Path, title: str, caption: str) -> Figure:
    """Save ``fig`` to ``path`` and describe it for the report."""
    save(fig, path)
    return {"file": path.name, "title": title, "caption": caption}


def subplots(n: int, width: float = 4.6, height: float = 3.6) -> tuple[Any, list[Any]]:
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False)
    flat = list(axes.flat)
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def legend(ax: Any) -> None:
    """A legend inside the axes when short, below them (in columns) when long."""
    n = len(ax.get_legend_handles_labels()[0])
    if n == 0:
        return
    if n <= 6:
        ax.legend(fontsize=7)
    else:
        leg = ax.legend(fontsize=6, loc="upper center", bbox_to_anchor=(0.5, -0.2),
                        ncol=2 if n <= 16 else 3, frameon=False)
        leg.set_in_layout(False)  # keep the axes' size; savefig's tight bbox still holds it


def color(i: int, n: int) -> Any:
    """The ``i``-th of ``n`` distinct colours (tab10, tab20 beyond ten runs)."""
    cmap = plt.get_cmap("tab10" if n <= 10 else "tab20")
    return cmap(i % cmap.N)


LINESTYLES = ("-", "--", ":", "-.")


def lam(run: Run) -> str:
    lam = run.reg_lambda
    term = run.info.get("reg_term")
    if lam is None or term in (None, "none"):
        return "λ=0"
    return f"λ={lam:g} ({term})"


def pct(ax: Any, axis: str = "y") -> None:
    fmt = matplotlib.ticker.PercentFormatter(1.0)
    (ax.yaxis if axis == "y" else ax.xaxis).set_major_formatter(fmt)
