"""Report figures of the diagnostics: detection ROC, noise and rotation, Jacobian norms, GAAS.

Each ``fig_*`` takes the runs and a PNG path and returns the figure's description, or ``None``
when the records it needs are absent (see :mod:`robens.report.figures`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from robens.report.plotting import Figure, finish, legend, pct, plt, subplots
from robens.report.runs import Run


# ---------------------------------------------------------------------------- ROC
def fig_detection_roc(runs: list[Run], path: Path) -> Figure | None:
    keys = sorted({(r["attack"], float(r["eps"])) for run in runs
                   for r in run.select("detection_auc") if r.get("fpr")})
    if not keys:
        return None
    fig, axes = subplots(len(keys))
    for ax, (attack, eps) in zip(axes, keys, strict=True):
        for run in runs:
            for r in run.select("detection_auc", attack=attack, eps=eps):
                if not r.get("fpr"):
                    continue
                auc = r.get("value")
                ax.plot(r["fpr"], r["tpr"], label=f"{run.label}: {r['detector']}"
                        f" (AUC {auc:.3f})" if auc is not None else r["detector"])
        ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
        ax.set_xlabel("adversarial kept (false positive rate)")
        ax.set_ylabel("clean kept (true positive rate)")
        ax.set_title(f"detection ROC, {attack} eps={eps:g}", fontsize=10)
        ax.grid(alpha=0.3)
        legend(ax)
    return finish(
        fig, path, "Detection ROC curves",
        "ROC of each detection score over (clean correct, successful adversarial)"
        " pairs, the RCE paper's protocol; higher scores mean normal.",
    )


# ---------------------------------------------------------------------------- extras
def fig_noise_rotation(runs: list[Run], path: Path) -> Figure | None:
    kinds = [(m, k, t) for m, k, t in (("noise_accuracy", "sigma", "Gaussian noise sigma"),
                                       ("rotation_accuracy", "degrees", "rotation (degrees)"))
             if any(r.select(m) for r in runs)]
    if not kinds:
        return None
    fig, axes = subplots(len(kinds))
    for ax, (metric, key, title) in zip(axes, kinds, strict=True):
        for run in runs:
            pts = {float(r[key]): float(r["value"]) for r in run.select(metric)}
            if not pts:
                continue
            clean = run.clean()
            if clean is not None:
                pts.setdefault(0.0, clean)
            xs = sorted(pts)
            ax.plot(xs, [pts[x] for x in xs], marker="o", label=run.label)
        ax.set_xlabel(title)
        ax.set_ylabel("accuracy")
        ax.set_title(f"accuracy vs {title}", fontsize=10)
        pct(ax)
        ax.grid(alpha=0.3)
        legend(ax)
    return finish(
        fig, path, "Noise and rotation robustness",
        "Accuracy under Gaussian pixel noise and small rotations.",
    )


def fig_jacobian(runs: list[Run], path: Path) -> Figure | None:
    have = [r for r in runs if r.value("ensemble_jacobian_frob_sq") is not None]
    if not have:
        return None
    fig, ax = plt.subplots(figsize=(max(5, 1.8 * len(have) + 2), 4))
    x = np.arange(len(have))
    members = [np.mean([float(r["value"]) for r in run.select("member_jacobian_frob_sq")])
               for run in have]
    ens = [run.value("ensemble_jacobian_frob_sq") for run in have]
    ax.bar(x - 0.15, members, width=0.3, label="mean member ||J_i||_F^2")
    ax.bar(x + 0.15, ens, width=0.3, label="ensemble ||J_F||_F^2")
    for i, run in enumerate(have):
        lo = run.value("jacobian_theorem31_lower")
        hi = run.value("jacobian_theorem31_upper")
        ex = run.value("jacobian_theorem31_expected")
        if lo is not None and hi is not None:
            ax.errorbar([i + 0.45], [ex if ex is not None else (lo + hi) / 2],
                        yerr=[[max((ex or lo) - lo, 0)], [max(hi - (ex or lo), 0)]],
                        fmt="_", color="black", capsize=6, markersize=14,
                        label="Theorem 3.1: expected, [lower, upper]" if i == 0 else None)
    ax.set_xticks(x)
    ax.set_xticklabels([r.label for r in have], rotation=15, fontsize=8)
    ax.set_ylabel("squared Frobenius norm")
    ax.set_xlim(-0.6, len(have) - 0.3)
    ax.set_title("input-logit Jacobian norms", fontsize=10)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.15), ncol=2)
    return finish(
        fig, path, "Jacobian norms and Theorem 3.1",
        "Mean squared Frobenius norm of the members' and the ensemble's input-logit"
        " Jacobians, with the range and expectation Theorem 3.1 (Jacobian Ensembles) predicts"
        " for independent members.",
    )


def fig_gaas(runs: list[Run], path: Path) -> Figure | None:
    if not any(r.select("gaas_success") for r in runs):
        return None
    fig, ax = plt.subplots(figsize=(6, 4.2))
    for run in runs:
        recs = run.select("gaas_success")
        for eps in sorted({float(r["eps"]) for r in recs}):
            pts = sorted((int(r["k"]), float(r["value"])) for r in recs if r["eps"] == eps)
            xs, ys = zip(*pts, strict=True)
            ax.plot(xs, ys, marker="o", label=f"{run.label} eps={eps:g}")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("k (orthogonal directions)")
    ax.set_ylabel("P(direction misclassified)")
    ax.set_title("GAAS: gradient-aligned adversarial subspace", fontsize=10)
    pct(ax)
    ax.grid(alpha=0.3)
    legend(ax)
    return finish(
        fig, path, "GAAS success vs number of directions",
        "Fraction of k orthogonal gradient-aligned directions (Tramer et al. 2017)"
        " that fool the model.",
    )
