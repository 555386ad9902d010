"""GDR (Adam & Speciel 2020): the gradient diversity rating of each ensemble against its
white-box attack success rate, and their Spearman rank correlation.

Check: the correlation is significantly positive in most (attack, eps) cells. Each cell's
significance comes from a permutation test of Spearman's rho over the ensembles (exact for up
to 8 ensembles: with 4 no ordering reaches p < 0.05, so few ensembles stay INCONCLUSIVE); the
cells share their ensembles, so they are not independent evidence, and the majority rule asks
for significance in each. Every ensemble must be above chance on clean data."""

from __future__ import annotations

import math
from typing import Any

from robens.recipes.summaries.base import (
    SUMMARIES,
    chance_gate,
    make_check,
    make_table,
    pct,
    verdict_check,
)
from robens.recipes.views import PlanInfo, TrialView
from robens.stats import Finding, spearman_permutation

SPEARMAN_TEST = "Spearman rho, permutation test (two-sided)"


def spearman(x: list[float], y: list[float]) -> tuple[float, float]:
    """Spearman's rank correlation and its two-sided permutation p-value (``nan`` when
    undefined; :func:`robens.stats.spearman_permutation`)."""
    return spearman_permutation(x, y)


@SUMMARIES.register("gdr")
def summarize_gdr(plan: PlanInfo, views: list[TrialView]) -> dict[str, Any]:
    """GDR and attack success rate per ensemble and their Spearman rank correlation per
    (attack, eps); check: the correlation is significantly positive on most cells."""
    from robens.report.reproduce import published_table

    eps = [float(e) for e in plan.recipe.vars.get("eps", [0.03, 0.06, 0.09])]
    attacks = list(plan.recipe.vars.get("attacks", ["fgsm", "pgd", "mifgsm"]))
    points, used = [], {}
    for v in views:
        g = v.value("gdr")
        if g is None:
            continue
        asr = {f"{a}@{e:g}": v.value("attack_success_rate", threat_model="white_box", attack=a,
                                     eps=e) for a in attacks for e in eps}
        terms = {k: w for k, w in v.terms.items() if k not in ("ce", "ensemble_ce")}
        used[f"{v.config.objective} (seed {v.config.seed}, {v.id})"] = v
        points.append({"trial": v.id, "objective": v.config.objective, "seed": v.config.seed,
                       "terms": terms, "gdr": g, "clean": v.clean(), "asr": asr})
    points.sort(key=lambda p: p["gdr"])
    headers = ["objective", "seed", "Clean %", "GDR"] + [f"ASR {a} {e:g} %" for a in attacks
                                                         for e in eps]
    rows = [[p["objective"], str(p["seed"]), pct(p["clean"]), f"{p['gdr']:.4f}"]
            + [pct(p["asr"][f"{a}@{e:g}"], 2) for a in attacks for e in eps] for p in points]
    ours = make_table(
        "ours", f"Our ensembles ({plan.dataset}, {plan.scale} scale), by GDR", headers, rows,
        note="GDR = mean over test images of the Gaussian-orthant rating of the members' loss"
        " gradients (lower = more diverse); ASR = white-box attack success rate on the ensemble"
        " (fraction of correctly classified images fooled).")
    corr_rows, corr = [], {}
    for a in attacks:
        for e in eps:
            key = f"{a}@{e:g}"
            pairs = [(p["gdr"], p["asr"][key]) for p in points if p["asr"][key] is not None]
            rho, pval = spearman([x for x, _ in pairs], [y for _, y in pairs])
            corr[key] = {"rho": rho, "p": pval, "n": len(pairs)}
            corr_rows.append([a, f"{e:g}", str(len(pairs)), _num(rho),
                              "—" if math.isnan(pval) else f"{pval:.3g}"])
    pub = published_table("gdr_blog")
    corr_table = make_table(
        "correlation", "Spearman rank correlation between GDR and attack success rate",
        ["attack", "eps", "n", "rho", "p"], corr_rows, note=pub["note"], source=pub["source"])
    name = "rank correlation between GDR and attack success is positive (blog)"
    n = len(points)
    found = [Finding(k, c["rho"], c["p"], SPEARMAN_TEST,
                     f"{k}: rho {c['rho']:+.2f}, p={c['p']:.2g}, n = {c['n']}")
             for k, c in corr.items() if not math.isnan(c["rho"])]
    if found:
        checks = [verdict_check(name, found, "most", chance_gate(used),
                                note=f"n = {n} ensembles each")]
    else:
        checks = [make_check(name, None, f"undefined with n = {n} ensembles")]
    gdrs = [p["gdr"] for p in points]
    data = {"points": points, "correlation": corr, "n": n,
            "gdr_range": [min(gdrs), max(gdrs)] if gdrs else None}
    return {"tables": [ours, corr_table], "checks": checks, "data": data}


def _num(v: float | None, digits: int = 3) -> str:
    return "—" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:+.{digits}f}"
