"""RCE (Pang et al., NeurIPS 2018): detection ROC-AUC of CE- vs RCE-trained models
(confidence, non-ME, kernel density) per attack, beside the published numbers.

Check: RCE raises the non-ME AUC on most attacks, counting only significant rises. The two
models' AUCs come from different (clean, adversarial) pairs, so each attack's difference is
tested unpaired: z = (AUC_RCE - AUC_CE) / sqrt(SE_RCE^2 + SE_CE^2) with Hanley & McNeil's
(1982) standard errors for n_pairs clean and n_pairs adversarial scores (treating the two sides
of a model's pairs as independent, an approximation), two-sided normal p; both models must be
above chance on clean data."""

from __future__ import annotations

import math
from typing import Any

from robens.recipes.summaries.base import (
    SUMMARIES,
    chance_gate,
    make_table,
    pct,
    ref_dataset,
    roles,
    verdict_check,
)
from robens.recipes.views import PlanInfo, TrialView
from robens.stats import Finding, auc_difference

AUC_TEST = "ROC-AUC difference, Hanley-McNeil z (two-sided)"

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
    if "ce" in targets and "rce" in targets:
        for d, label in RCE_DETECTORS[1:2]:
            found, missing = [], []
            for a in attacks:
                rr = targets["rce"].record("detection_auc", attack=a, detector=d)
                rc = targets["ce"].record("detection_auc", attack=a, detector=d)
                if rr is None or rc is None or any(
                        math.isnan(float(r["value"])) for r in (rr, rc)):
                    missing.append(f"{a}: no AUC for both models")
                    continue
                nr, nc = int(rr.get("n_pairs") or 0), int(rc.get("n_pairs") or 0)
                _, p = auc_difference(float(rr["value"]), (nr, nr), float(rc["value"]), (nc, nc))
                diff = float(rr["value"]) - float(rc["value"])
                found.append(Finding(a, diff, p, AUC_TEST,
                                     f"{a}: {pct(rc['value'])} → {pct(rr['value'])} ({nc}/{nr}"
                                     f" pairs, p={p:.2g})"))
            gate = chance_gate({"CE": targets["ce"], "RCE": targets["rce"]})
            checks.append(verdict_check(
                f"RCE raises the {label} AUC on most attacks (significant rises only)", found,
                "most", gate, missing))
    return {"tables": [table], "checks": checks, "data": {"auc": aucs, "clean": clean,
                     "clean_n": {k: v.clean_count() for k, v in targets.items()}}}
