"""Paired white-box comparison of the peers recipe's ensembles against its Baseline.

For each white-box row of the recipe (PGD and AutoAttack, adaptive over the members'
aggregations), every defense is compared with Baseline on the images both were attacked on:
robust accuracy of each and McNemar's exact test, through the recipe summaries' own
``paired_findings`` on the trials of the recipe's plan (nothing is run; no pickle is read).

    python benchmarks/peers_whitebox_paired.py runs/reproduce/peers/fashion-mnist-quick
"""

from __future__ import annotations

import argparse
from pathlib import Path

from robens.recipes import plan_recipe, trial_views
from robens.recipes.summaries.base import paired_findings, roles
from robens.recipes.summaries.peers import PEER_ROLES


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path, help="the recipe's output folder")
    ap.add_argument("--scale", default="quick")
    ap.add_argument("--dataset", default="fashion-mnist")
    args = ap.parse_args()
    views = roles(trial_views(plan_recipe("peers", args.scale, args.dataset, args.run)),
                  PEER_ROLES)
    if "baseline" not in views:
        raise SystemExit(f"error: no complete baseline trial under {args.run}")
    base = views.pop("baseline")
    cells = sorted({(str(r["attack"]), float(r["eps"]))
                    for r in base.select("robust_accuracy", threat_model="white_box")})
    for attack, eps in cells:
        print(f"{attack} (adaptive) at eps {eps:g}:")
        pick = dict(metric="robust_accuracy", threat_model="white_box", attack=attack, eps=eps)
        for name, view in views.items():
            found, missing = paired_findings(
                view, base, {name: (view.record(**pick), base.record(**pick))})
            for line in [f.detail for f in found] + missing:
                print(f"  {line}")


if __name__ == "__main__":
    main()
