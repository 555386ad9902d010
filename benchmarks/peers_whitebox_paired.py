"""Paired white-box comparison of the peers recipe's ensembles against its Baseline.

For each white-box attack unit the suite stored per image (PGD and AutoAttack, adaptive over
the members' aggregations), every defense is compared with Baseline on the images both were
attacked on: robust accuracy of each and McNemar's exact test (``robens.stats.mcnemar_exact``).
Reads only the run folder's ``trial.json`` files and ``suite/samples/*.npz`` arrays (no pickle).

    python benchmarks/peers_whitebox_paired.py runs/reproduce/peers/fashion-mnist-quick
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np
import torch

from robens.samples import sample_outcomes
from robens.stats import mcnemar_exact

#: the suite's white-box units: "<attack>-adaptive-eps<eps>-<hash>"
WHITE_BOX = re.compile(r"^(?P<attack>[a-z_]+)-adaptive-eps(?P<eps>[0-9.]+)-[0-9a-f]+$")


def trials(root: Path) -> dict[str, Path]:
    """Trial folder by the trial's ``name`` override, over every stage of the recipe."""
    out: dict[str, Path] = {}
    for spec in sorted(root.glob("*/trials/*/trial.json")):
        name = (json.loads(spec.read_text()).get("overrides") or {}).get("name")
        if name:
            out[str(name)] = spec.parent
    return out


def outcomes(trial: Path) -> dict[tuple[str, str], dict[int, bool]]:
    """``{(attack, eps): {dataset index: robust}}`` of a trial's white-box units."""
    got: dict[tuple[str, str], dict[int, bool]] = {}
    for npz in sorted((trial / "suite" / "samples").glob("*.npz")):
        m = WHITE_BOX.match(npz.stem)
        if m is None:
            continue
        res = sample_outcomes(trial, {"unit": npz.stem, "threat_model": "white_box"})
        if res is not None:
            idx, ok = res
            got[(m["attack"], m["eps"])] = dict(zip(idx.tolist(), ok.tolist(), strict=True))
    return got


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path, help="the recipe's output folder")
    ap.add_argument("--baseline", default="baseline", help="trial name of the reference")
    args = ap.parse_args()
    runs = trials(args.run)
    if args.baseline not in runs:
        raise SystemExit(f"error: no trial named {args.baseline!r} under {args.run}")
    base = outcomes(runs[args.baseline])
    for (attack, eps), ref in sorted(base.items()):
        print(f"{attack} (adaptive) at eps {eps}:")
        for name, trial in sorted(runs.items()):
            other = outcomes(trial).get((attack, eps))
            if name == args.baseline or other is None:
                continue
            common = sorted(set(ref) & set(other))
            a = torch.tensor([other[i] for i in common], dtype=torch.bool)
            b = torch.tensor([ref[i] for i in common], dtype=torch.bool)
            only_a, only_b, p = mcnemar_exact(a, b)
            print(f"  {name:10s} {100 * float(np.mean(a.numpy())):5.1f}% vs {args.baseline} "
                  f"{100 * float(np.mean(b.numpy())):5.1f}% on {len(common)} images "
                  f"(+{only_a}/-{only_b}, McNemar p {p:.2g})")


if __name__ == "__main__":
    main()
