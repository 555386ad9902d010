"""ADP (Pang et al., ICML 2019), Table 2: white-box accuracy of the baseline and the ADP
ensembles under each attack, beside the published numbers."""

from __future__ import annotations

from typing import Any

from robens.recipes.summaries.base import SUMMARIES, make_check, make_table, pct, ref_dataset, roles
from robens.recipes.views import PlanInfo, TrialView

ADP_ROLES = {"baseline": "Baseline", "adp-2-0": "ADP 2,0", "adp-2-0.5": "ADP 2,0.5"}
_PARAM_OF = {"cw": "c", "ead": "c", "jsma": "gamma"}


def _attack_param(r: dict[str, Any]) -> float:
    key = _PARAM_OF.get(str(r.get("attack")))
    params = r.get("params") or {}
    return float(params.get(key, 0.0)) if key else float(r.get("eps", 0.0))


@SUMMARIES.register("adp")
def summarize_adp(plan: PlanInfo, views: list[TrialView]) -> dict[str, Any]:
    """White-box accuracy of Baseline and the ADP ensembles per (attack, parameter) beside the
    published Table 2; check: each ADP ensemble beats the baseline on most attacks."""
    from robens.report.reproduce import published_table

    targets = roles(views, ADP_ROLES)
    cells: list[tuple[str, float]] = []
    for v in targets.values():
        for r in v.select("robust_accuracy", threat_model="white_box"):
            key = (str(r["attack"]), _attack_param(r))
            if key not in cells:
                cells.append(key)
    order = ["fgsm", "bim", "ifgsm", "pgd", "mifgsm", "jsma", "cw", "ead"]
    cells.sort(key=lambda c: (order.index(c[0]) if c[0] in order else 99, c[1]))

    def ours(role: str, attack: str, param: float) -> float | None:
        v = targets.get(role)
        if v is None:
            return None
        recs = [r for r in v.select("robust_accuracy", threat_model="white_box", attack=attack)
                if abs(_attack_param(r) - param) < 1e-12]
        return float(recs[0]["value"]) if recs else None

    pub = published_table("adp_table2")
    ref = ref_dataset(plan, [r["dataset"] for r in pub["rows"]])
    pubs = {(r["attack"], float(r["param"])): r for r in pub["rows"] if r["dataset"] == ref}
    headers = ["Attack", "Param"] + [f"ours {lab}" for lab in ADP_ROLES.values()] + [
        f"published {lab} ({ref})" for lab in ADP_ROLES.values()]
    rows = [["Clean", "—"] + [pct(targets[k].clean()) if k in targets else "—"
                               for k in ADP_ROLES] + ["—"] * 3]
    values: dict[str, dict[str, float | None]] = {}
    for attack, param in cells:
        vals = [ours(k, attack, param) for k in ADP_ROLES]
        values[f"{attack}@{param:g}"] = dict(zip(ADP_ROLES, vals, strict=True))
        p = pubs.get(("bim" if attack == "ifgsm" else attack, param))
        rows.append([attack.upper(), f"{param:g}"] + [pct(x) for x in vals]
                    + ([f"{p[k]:g}" for k in ("baseline", "adp_2_0", "adp_2_05")] if p
                       else ["—"] * 3))
    note = ("White-box accuracy % on the ensemble's averaged prediction; Param = eps"
            " (FGSM/BIM/PGD/MIM), c (C&W, EAD).")
    if ref != plan.dataset:
        note += f" Published on {ref}, ours on {plan.dataset}."
    table = make_table("published", f"{pub['title']} — ours ({plan.dataset}, {plan.scale} scale)"
                       " beside published", headers, rows, note=note, source=pub["source"])
    checks = []
    for role in ("adp-2-0.5", "adp-2-0"):
        if role not in targets or "baseline" not in targets:
            continue
        pairs = [(d[role], d["baseline"]) for d in values.values()
                 if d.get(role) is not None and d.get("baseline") is not None]
        won = sum(1 for a, b in pairs if a > b)
        checks.append(make_check(f"{ADP_ROLES[role]} beats Baseline on most white-box attacks",
                                 bool(pairs) and won > len(pairs) / 2,
                                 f"{won}/{len(pairs)} attacks"))
    return {"tables": [table], "checks": checks,
            "data": {"cells": values, "clean": {k: v.clean() for k, v in targets.items()}}}
