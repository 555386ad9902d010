"""Report figures (matplotlib, Agg backend, PNG), each drawn only when its records exist.

Every ``fig_*`` function takes the runs and a PNG path and returns ``{"file", "title",
"caption"}`` when it drew the figure, ``None`` when the records it needs are absent. This file
holds the accuracy figures and the registry :data:`FIGURES`; the diagnostics are in
:mod:`robens.report.diagnostics`, the image figures in :mod:`robens.report.images`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from robens.report.diagnostics import fig_detection_roc, fig_gaas, fig_jacobian, fig_noise_rotation
from robens.report.images import fig_examples, fig_uap
from robens.report.intervals import interval, value_of
from robens.report.plotting import (
    LINESTYLES,
    THREAT_TITLES,
    Figure,
    color,
    finish,
    lam,
    legend,
    pct,
    plt,
    subplots,
)
from robens.report.runs import Run

#: fewest measured budgets (besides eps = 0) for which the accuracy-vs-eps plot draws lines
MIN_LINE_EPS = 3
#: one marker per attack, so series without lines stay apart
MARKERS = "osD^vP*X"

# ---------------------------------------------------------------------------- accuracy vs eps
def fig_accuracy_vs_eps(runs: list[Run], path: Path) -> Figure | None:
    threats = [t for t in THREAT_TITLES if any(r.select("robust_accuracy", threat_model=t)
                                                 for r in runs)]
    if not threats:
        return None
    fig, axes = subplots(len(threats))
    for ax, threat in zip(axes, threats, strict=True):
        attacks = sorted({r["attack"] for run in runs
                          for r in run.select("robust_accuracy", threat_model=threat)})
        for ri, run in enumerate(runs):
            recs = run.select("robust_accuracy", threat_model=threat)
            for attack in sorted({r["attack"] for r in recs}):
                pts: dict[float, dict] = {}
                for e in sorted({float(r["eps"]) for r in recs if r["attack"] == attack}):
                    pts[e] = run.best("robust_accuracy", threat_model=threat, attack=attack,
                                  eps=e)  # type: ignore[assignment]
                measured = len(pts)
                clean = run.best("clean_accuracy")
                if clean is not None and value_of(clean) is not None:
                    pts.setdefault(0.0, clean)
                xs = sorted(pts)
                ys = [value_of(pts[x]) or 0.0 for x in xs]
                cis = [interval(pts[x]) or (y, y) for x, y in zip(xs, ys, strict=True)]
                err = [[y - lo for y, (lo, _) in zip(ys, cis, strict=True)],
                       [hi - y for y, (_, hi) in zip(ys, cis, strict=True)]]
                # a line only where at least MIN_LINE_EPS budgets were measured: fewer points
                # say nothing about the accuracy between them
                style = (LINESTYLES[attacks.index(attack) % len(LINESTYLES)]
                         if measured >= MIN_LINE_EPS else "none")
                ax.errorbar(xs, ys, yerr=err, color=color(ri, len(runs)),
                            marker=MARKERS[attacks.index(attack) % len(MARKERS)],
                            linestyle=style, capsize=3, label=f"{run.label}: {attack}")
        ax.set_title(f"accuracy vs eps, {THREAT_TITLES[threat]}")
        ax.set_xlabel("eps (L-inf, pixels in [0, 1])")
        ax.set_ylabel("accuracy")
        ax.set_ylim(0, 1.02)
        pct(ax)
        ax.grid(alpha=0.3)
        legend(ax)
    return finish(
        fig, path, "Accuracy vs perturbation budget",
        "Robust accuracy of every method against each attack as eps grows"
        " (eps = 0 is the clean accuracy), one panel per threat model; bars are 95% Wilson"
        f" intervals. Points are joined by lines only where {MIN_LINE_EPS} or more eps were"
        " measured; markers alone mean nothing was measured in between.",
    )


# ---------------------------------------------------------------------------- trade-off
def _combos(runs: list[Run]) -> list[tuple[str, str, float]]:
    seen: dict[tuple[str, str, float], int] = {}
    for run in runs:
        for r in run.robust():
            key = (r.get("threat_model", "white_box"), r["attack"], float(r["eps"]))
            seen[key] = seen.get(key, 0) + 1
    return sorted(seen, key=lambda k: (-seen[k], list(THREAT_TITLES).index(k[0])
                                       if k[0] in THREAT_TITLES else 9, k[1], k[2]))


def fig_tradeoff(runs: list[Run], path: Path) -> Figure | None:
    combos = _combos(runs)[:3]
    pts_any = [run for run in runs if run.clean() is not None and run.robust()]
    if not combos or not pts_any:
        return None
    fig, axes = subplots(len(combos))
    markers = "osD^vP*X"
    for ax, (threat, attack, eps) in zip(axes, combos, strict=True):
        for i, run in enumerate(runs):
            clean = run.clean()
            rob = run.value("robust_accuracy", threat_model=threat, attack=attack, eps=eps)
            if clean is None or rob is None:
                continue
            ax.scatter([clean], [rob], marker=markers[i % len(markers)], s=50, label=run.label)
            ax.annotate(lam(run), (clean, rob), textcoords="offset points", xytext=(5, 4),
                        fontsize=7)
        ax.set_title(f"{THREAT_TITLES.get(threat, threat)} {attack} eps={eps:g}", fontsize=10)
        cleans = [c for c in (r.clean() for r in runs) if c is not None]
        ax.set_xlim(max(0.0, min(cleans) - 0.05), min(1.0, max(cleans) + 0.02) + 0.01)
        ax.set_ylim(0.0, 1.02)
        ax.set_xlabel("clean accuracy")
        ax.set_ylabel("robust accuracy")
        pct(ax)
        pct(ax, "x")
        ax.grid(alpha=0.3)
        legend(ax)
    return finish(
        fig, path, "Accuracy-robustness trade-off",
        "Clean against robust accuracy, one point per method, labelled by its"
        " regularization strength lambda.",
    )


# ---------------------------------------------------------------------------- lambda sweep
def _avg_uap(run: Run) -> float | None:
    vals = [float(r["value"]) for r in run.select("robust_accuracy", threat_model="universal")]
    return float(np.mean(vals)) if vals else None


def fig_reg_strength(runs: list[Run], path: Path) -> Figure | None:
    lam_runs = [r for r in runs if r.reg_lambda is not None and r.clean() is not None]
    if len({r.reg_lambda for r in lam_runs}) < 2:
        return None
    panels: list[tuple[str, Callable[[Run], float | None]]] = [("clean accuracy", Run.clean)]
    if any(_avg_uap(r) is not None for r in lam_runs):
        panels.append(("average UAP accuracy", _avg_uap))
        if any(r.value("weighted_accuracy") is not None for r in lam_runs):
            panels.append(("weighted accuracy", lambda r: r.value("weighted_accuracy")))
    else:
        combos = _combos(lam_runs)
        if combos:
            t, a, e = combos[0]
            panels.append((f"{THREAT_TITLES.get(t, t)} {a} eps={e:g}",
                           lambda r, t=t, a=a, e=e: r.value("robust_accuracy", threat_model=t,
                                                            attack=a, eps=e)))
    fig, axes = subplots(len(panels))
    groups = sorted({int(r.info.get("members") or 1) for r in lam_runs})
    for ax, (title, fn) in zip(axes, panels, strict=True):
        for m in groups:
            pts = sorted(
                (r.reg_lambda, fn(r)) for r in lam_runs
                if int(r.info.get("members") or 1) == m and fn(r) is not None
            )
            if pts:
                xs, ys = zip(*pts, strict=True)
                ax.plot(xs, ys, marker="o", label=f"M = {m}")
        ax.set_title(f"{title} vs regularization strength", fontsize=10)
        ax.set_xlabel("lambda")
        ax.set_ylabel(title)
        if any(r.reg_lambda and r.reg_lambda > 0 for r in lam_runs):
            ax.set_xscale("symlog", linthresh=0.01)
        pct(ax)
        ax.grid(alpha=0.3)
        legend(ax)
    return finish(
        fig, path, "Accuracy vs regularization strength",
        "Clean and robust accuracy against lambda, one line per ensemble size M"
        " (Jacobian Ensembles sweep M in {1, 3, 6, 9}).",
    )


# ---------------------------------------------------------------------------- histograms
HIST_METRICS = (("coherence", "gradient coherence (max pairwise cosine)"),
                ("mean_pairwise_cosine", "mean pairwise gradient cosine"),
                ("gdr", "GDR per sample"))


def fig_coherence_hist(runs: list[Run], path: Path) -> Figure | None:
    panels = [(m, t) for m, t in HIST_METRICS
              if any(r.select(m) and r.select(m)[0].get("hist_counts") for r in runs)]
    if not panels or not any(r.select("coherence") for r in runs):
        return None
    fig, axes = subplots(len(panels))
    for ax, (metric, title) in zip(axes, panels, strict=True):
        for run in runs:
            recs = [r for r in run.select(metric) if r.get("hist_counts")]
            if not recs:
                continue
            rec = max(recs, key=lambda r: r.get("n") or 0)
            edges = np.asarray(rec["hist_edges"], dtype=float)
            counts = np.asarray(rec["hist_counts"], dtype=float)
            dens = counts / max(counts.sum(), 1) / np.diff(edges)
            art = ax.stairs(dens, edges, fill=True, alpha=0.3,
                            label=f"{run.label} (mean {rec['value']:.3f})")
            ax.stairs(dens, edges, linewidth=1.2, color=art.get_facecolor()[:3])
        ax.set_title(title, fontsize=10)
        ax.set_xlabel(metric)
        ax.set_ylabel("density")
        ax.grid(alpha=0.3)
        legend(ax)
    return finish(
        fig, path, "Gradient coherence histograms",
        "Distribution over test inputs of the members' loss-gradient alignment:"
        " a baseline ensemble sits near 1, a diversity-trained one lower (GAL, Fig. 2).",
    )


# ---------------------------------------------------------------------------- heatmaps
def fig_transfer_heatmaps(runs: list[Run], path: Path) -> Figure | None:
    have = [r for r in runs if r.select("transfer_matrix_accuracy")]
    if not have:
        return None
    fig, axes = subplots(len(have), width=4.2, height=3.8)
    for ax, run in zip(axes, have, strict=True):
        recs = run.select("transfer_matrix_accuracy")
        first = recs[0]
        recs = [r for r in recs if r["attack"] == first["attack"] and r["eps"] == first["eps"]]
        m = 1 + max(max(int(r["source"]), int(r["target"])) for r in recs)
        mat = np.full((m, m), np.nan)
        for r in recs:
            mat[int(r["source"]), int(r["target"])] = float(r["value"])
        im = ax.imshow(mat, vmin=0, vmax=1, cmap="viridis")
        for i in range(m):
            for j in range(m):
                if not np.isnan(mat[i, j]):
                    ax.text(j, i, f"{100 * mat[i, j]:.0f}", ha="center", va="center",
                            color="white" if mat[i, j] < 0.6 else "black", fontsize=8)
        ax.set_xticks(range(m))
        ax.set_yticks(range(m))
        ax.set_xlabel("evaluated member")
        ax.set_ylabel("source member")
        ax.set_title(f"{run.label}\n{first['attack']} eps={first['eps']:g}", fontsize=9)
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="accuracy")
    return finish(
        fig, path, "Transferability between members",
        "Accuracy (%) of each member (column) on adversarial examples crafted on"
        " each member (row); the diagonal is white-box, high off-diagonal values mean"
        " examples transfer poorly.",
    )


# ---------------------------------------------------------------------------- GDR
def fig_gdr_vs_success(runs: list[Run], path: Path) -> Figure | None:
    series: dict[tuple[str, str, float], list[tuple[float, float, str]]] = {}
    for run in runs:
        g = run.value("gdr")
        if g is None:
            continue
        for r in run.select("attack_success_rate"):
            key = (r.get("threat_model", "white_box"), r["attack"], float(r["eps"]))
            series.setdefault(key, []).append((g, max(float(r["value"]), 1e-4), run.label))
    if not series:
        return None
    fig, ax = plt.subplots(figsize=(6, 4.2))
    for (threat, attack, eps), pts in sorted(series.items()):
        pts.sort()
        xs, ys, _ = zip(*pts, strict=True)
        ax.scatter(xs, ys, s=30, label=f"{THREAT_TITLES.get(threat, threat)} {attack}"
                f" eps={eps:g}")
    for (_, _, _), pts in list(series.items())[:1]:
        for x, y, label in pts:
            ax.annotate(label, (x, y), textcoords="offset points", xytext=(4, -10), fontsize=7)
    ax.set_yscale("log")
    ax.set_xlabel("ensemble GDR (mean over test inputs; lower = more diverse)")
    ax.set_ylabel("attack success rate")
    ax.set_title("GDR vs attack success", fontsize=10)
    ax.grid(alpha=0.3, which="both")
    legend(ax)
    return finish(
        fig, path, "GDR vs attack success",
        "Attack success rate (log scale) against the Gradient Diversity Rating, one"
        " point per method (Adam & Speciel 2020 report log success rising with GDR).",
    )


FIGURES: list[tuple[str, Callable[[list[Run], Path], Figure | None]]] = [
    ("accuracy_vs_eps.png", fig_accuracy_vs_eps),
    ("tradeoff.png", fig_tradeoff),
    ("reg_strength.png", fig_reg_strength),
    ("coherence_hist.png", fig_coherence_hist),
    ("transfer_heatmaps.png", fig_transfer_heatmaps),
    ("gdr_vs_success.png", fig_gdr_vs_success),
    ("detection_roc.png", fig_detection_roc),
    ("noise_rotation.png", fig_noise_rotation),
    ("jacobian.png", fig_jacobian),
    ("gaas.png", fig_gaas),
    ("examples.png", fig_examples),
    ("uap.png", fig_uap),
]


def draw_figures(runs: list[Run], folder: Path) -> list[Figure]:
    """Draw every figure whose records exist into ``folder``; returns their descriptions.

    Figures from an earlier build that no longer apply are removed, so the folder only holds
    what the page shows.
    """
    out = []
    for name, fn in FIGURES:
        path = folder / name
        fig = fn(runs, path)
        if fig is None:
            path.unlink(missing_ok=True)
        else:
            out.append(fig)
    return out
