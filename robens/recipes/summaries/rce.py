"""RCE (Pang et al., NeurIPS 2018): detection ROC-AUC of CE- vs RCE-trained models
(confidence, non-ME, kernel density) per attack, beside the published numbers."""

from __future__ import annotations

from typing import Any

from robens.recipes.summaries.base import SUMMARIES, make_check, make_table, pct, ref_dataset, roles
from robens.recipes.views import PlanInfo, TrialView

RCE_ROLES = {"ce": "CE", "rce": "RCE"}
RCE_DETECTORS = [("confidence", "Confidence"), ("non_me", "non-ME"),
                 ("kernel_density", "K-density")]


@SUMMARIES.register("rce")
def summarize_rce(plan: PlanInfo, views: list[TrialView]) -> dict[str, Any]:
    """Detection ROC-AUC of the CE- and RCE-trained models per attack and detector beside the
    published numbers; check: RCE raises the non-ME AUC on most attacks."""
    from robens.report.reproduce import published_table

    targets = roles(views, RCE_ROLES)
    attacks: list[str] = []
    for v in targets.values():
        for r in v.select("detection_auc"):
            if r["attack"] not in attacks:
                attacks.append(r["attack"])
    pub = published_table("rce_detection")
    ref = ref_dataset(plan, [r["dataset"] for r in pub["rows"]])
    pubs = {r["attack"]: r for r in pub["rows"] if r["dataset"] == ref}
    headers = ["Attack", "pairs CE/RCE"] + [f"ours {h} CE→RCE" for _, h in RCE_DETECTORS] + [
        f"published {h} ({ref})" for _, h in RCE_DETECTORS]
    rows, aucs = [], {}
    for a in attacks:
        vals = {k: {d: (targets[k].value("detection_auc", attack=a, detector=d)
                        if k in targets else None) for d, _ in RCE_DETECTORS} for k in RCE_ROLES}
        aucs[a] = vals
        pairs = [str(targets[k].select("detection_auc", attack=a)[0].get("n_pairs", "?"))
                 if k in targets and targets[k].select("detection_auc", attack=a) else "—"
                 for k in RCE_ROLES]
        p = pubs.get(a)
        rows.append([a, "/".join(pairs)]
                    + [f"{pct(vals['ce'][d])}→{pct(vals['rce'][d])}" for d, _ in RCE_DETECTORS]
                    + ([f"{p[d][0]:g}→{p[d][1]:g}" for d, _ in RCE_DETECTORS] if p
                       else ["—"] * 3))
    note = ("ROC-AUC (%) of clean (correct) vs successful adversarial pairs; CE-trained →"
            " RCE-trained model.")
    if ref != plan.dataset:
        note += f" Published on {ref}, ours on {plan.dataset}."
    clean = {k: v.clean() for k, v in targets.items()}
    table = make_table("published", pub["title"], headers, rows, note=note, source=pub["source"])
    checks = []
    for d, label in RCE_DETECTORS[1:2]:
        cmp = [(v["rce"][d], v["ce"][d]) for v in aucs.values()
               if v["rce"][d] is not None and v["ce"][d] is not None]
        won = sum(1 for r, c in cmp if r > c)
        checks.append(make_check(f"RCE raises the {label} AUC on most attacks",
                                 bool(cmp) and won > len(cmp) / 2, f"{won}/{len(cmp)} attacks"))
    return {"tables": [table], "checks": checks, "data": {"auc": aucs, "clean": clean}}
