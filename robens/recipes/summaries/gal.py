"""GAL / diversity training (Kariyappa & Qureshi 2019), Table 2: black-box transfer accuracy
of Base, Div, Ens and Ens+Div, gradient coherence and GAAS.

Checks: each (attack, eps) cell compares two targets by McNemar's exact test on their
per-image robust outcomes under the same surrogate's transfer examples; "every" needs a
significant win in every cell, "most" significant wins in more than half the cells; both
targets must be above chance on clean data (:func:`robens.recipes.summaries.base.verdict_check`).
"""

from __future__ import annotations

from typing import Any

from robens.recipes.summaries.base import (
    SUMMARIES,
    chance_gate,
    make_table,
    pair,
    paired_findings,
    pct,
    ref_dataset,
    roles,
    verdict_check,
)
from robens.recipes.views import PlanInfo, TrialView
from robens.stats import Claim

GAL_ATTACKS = [("fgsm", "FGSM"), ("rfgsm", "R-FGSM"), ("ifgsm", "I-FGSM"),
               ("mifgsm", "MI-FGSM"), ("pgd_cw", "PGD-CW")]
GAL_ROLES = {"base": "Base", "div": "Div", "ens": "Ens", "ens-div": "Ens+Div"}
_GAL_MODEL = {"conv3": "Conv-3", "conv4": "Conv-4", "resnet20": "ResNet-20"}


@SUMMARIES.register("gal")
def summarize_gal(plan: PlanInfo, views: list[TrialView]) -> dict[str, Any]:
    """Transfer accuracy of Base/Div/Ens/Ens+Div per attack and eps, the published Table 2 and
    the paper's claims (Div beats Base; Ens+Div beats Ens on most cells); GAAS when recorded."""
    from robens.report.reproduce import published_table

    eps = [float(e) for e in plan.recipe.vars.get("eps", [0.1, 0.3])]
    targets = roles(views, GAL_ROLES)
    cells: dict[str, dict[str, list[float | None]]] = {}
    rows, gaas_rows = [], []
    gaas_eps = sorted({float(r["eps"]) for v in targets.values()
                       for r in v.select("gaas_success")})
    ks = sorted({int(r["k"]) for v in targets.values() for r in v.select("gaas_success")})
    for role, label in GAL_ROLES.items():
        v = targets.get(role)
        if v is None:
            continue
        cells[role] = {a: [v.value("robust_accuracy", threat_model="transfer", attack=a, eps=e)
                           for e in eps] for a, _ in GAL_ATTACKS}
        coh = v.value("coherence")
        rows.append([label, pct(v.clean())] + [pair(cells[role][a]) for a, _ in GAL_ATTACKS]
                    + ["—" if coh is None else f"{coh:.3f}"])
        for e in gaas_eps:
            gaas_rows.append([label, f"{e:g}"] + [pct(v.value("gaas_success", eps=e, k=k))
                                                  for k in ks])
    headers = ["T", "Clean"] + [h for _, h in GAL_ATTACKS] + ["coherence"]
    eps_txt = "/".join(f"{e:g}" for e in eps)
    ours = make_table("ours", f"Our runs ({plan.dataset}, {plan.scale} scale): black-box accuracy %"
                      f" at eps {eps_txt}", headers, rows,
                      note="Transfer attacks crafted on the separately trained surrogate ensemble"
                      " (average CE of its members); coherence = mean over test images of the max"
                      " pairwise cosine of member loss gradients.")
    pub = published_table("gal_table2")
    ref = ref_dataset(plan, [r["dataset"] for r in pub["rows"]])
    arch = _GAL_MODEL.get(str(views[0].config.model.arch))
    pub_rows = [r for r in pub["rows"] if r["dataset"] == ref]
    if arch and any(r["model"] == arch for r in pub_rows):
        pub_rows = [r for r in pub_rows if r["model"] == arch]
    cmp_rows, classes = [], []
    for p in pub_rows:
        cmp_rows.append([f"published {p['model']} ({ref})", p["training"], f"{p['clean']:g}"]
                        + ["/".join(f"{x:g}" for x in p[a]) for a, _ in GAL_ATTACKS])
        classes.append("published")
        role = {v: k for k, v in GAL_ROLES.items()}.get(p["training"])
        v = targets.get(role) if role else None
        if v is not None and (p["model"] == pub_rows[-1]["model"]):
            cmp_rows.append([f"ours ({plan.dataset})", p["training"], pct(v.clean())]
                            + [pair(cells[role][a]) for a, _ in GAL_ATTACKS])
            classes.append("ours")
    note = f"Ours at eps {eps_txt}."
    if ref != plan.dataset:
        note += f" Published on {ref} (eps {pub['eps'].get(ref)}), ours on {plan.dataset}."
    comparison = make_table("published", pub["title"], ["", "T", "Clean"]
                            + [h for _, h in GAL_ATTACKS], cmp_rows, classes, note, pub["source"])
    tables = [ours, comparison]
    if gaas_rows:
        tables.append(make_table(
            "gaas", "GAAS: mean fraction of k orthogonal gradient-aligned directions that fool"
            " the model (%)", ["T", "eps"] + [f"k={k}" for k in ks], gaas_rows,
            note="Lower = a smaller adversarial subspace (Tramèr et al. 2017)."))
    checks = []

    def test(a: str, b: str, idx: list[int], name: str, claim: Claim,
             note: str = "") -> None:
        va, vb = targets[a], targets[b]
        found, missing = paired_findings(va, vb, {
            f"{label}@{eps[i]:g}": (
                va.record("robust_accuracy", threat_model="transfer", attack=att, eps=eps[i]),
                vb.record("robust_accuracy", threat_model="transfer", attack=att, eps=eps[i]))
            for att, label in GAL_ATTACKS for i in idx})
        gate = chance_gate({GAL_ROLES[a]: va, GAL_ROLES[b]: vb})
        checks.append(verdict_check(name, found, claim, gate, missing, note))

    if "div" in cells and "base" in cells:
        test("div", "base", [0], f"Div beats Base under every transfer attack at eps {eps[0]:g}",
             "every")
    if "ens-div" in cells and "ens" in cells:
        test("ens-div", "ens", list(range(len(eps))),
             "Ens+Div beats Ens on most (attack, eps) cells (significant wins only)", "most",
             "paper, MNIST: 5 won, 1 lost, 4 tied")
    data = {"eps": eps, "cells": cells, "clean": {k: v.clean() for k, v in targets.items()},
            "clean_n": {k: v.clean_count() for k, v in targets.items()},
            "coherence": {k: v.value("coherence") for k, v in targets.items()}}
    return {"tables": tables, "checks": checks, "data": data}
