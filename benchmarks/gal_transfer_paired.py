"""Paired comparison of the diversity-training targets under the same transfer attacks.

The ``diversity-training`` recipe compares Base/Div and Ens/Ens+Div by their accuracies on 500
test images, where one image is 0.2 points. This script takes a finished recipe run, crafts each
transfer attack of its suite ONCE per image on the recipe's surrogate (average member CE, as in
the suite) and evaluates every target on the same adversarial images, so the comparison of two
targets is paired: for each (attack, eps) it reports both accuracies, their difference with a
95% paired-bootstrap interval, and McNemar's exact test on the discordant images. A cell is a
win or a loss only when p < 0.05; otherwise it is a tie.

Usage::

    python benchmarks/gal_transfer_paired.py \\
        runs/reproduce/diversity-training/fashion-mnist-quick \\
        --test-size 2000

Writes ``<run>/paired.json`` and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch
from scipy.stats import binomtest

from robens.attacks import attack_parameters, build_attack
from robens.data import load_dataset
from robens.factory import load_ensemble
from robens.utils import atomic_write_json

PAIRS = [("div", "base"), ("ens-div", "ens")]


def targets_of(stage: Path) -> dict[str, Path]:
    out = {}
    for trial in sorted((stage / "trials").iterdir()):
        meta = json.loads((trial / "trial.json").read_text())
        ckpt = trial / "checkpoint.safetensors"
        if ckpt.exists():
            out[meta["config"]["name"]] = ckpt
    return out


def paired_stats(a: torch.Tensor, b: torch.Tensor, boot: int, seed: int) -> dict[str, Any]:
    """Accuracy difference a - b over the same images, bootstrap CI and McNemar exact p."""
    a, b = a.double(), b.double()
    diff = float(a.mean() - b.mean())
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, a.numel(), (boot, a.numel()), generator=g)
    d = (a[idx] - b[idx]).mean(1).sort().values
    lo, hi = float(d[int(0.025 * boot)]), float(d[int(0.975 * boot) - 1])
    only_a = int(((a == 1) & (b == 0)).sum())
    only_b = int(((a == 0) & (b == 1)).sum())
    p = 1.0 if only_a + only_b == 0 else binomtest(only_a, only_a + only_b, 0.5).pvalue
    verdict = "tie" if p >= 0.05 else ("win" if diff > 0 else "loss")
    return {"diff": diff, "ci95": [lo, hi], "only_a": only_a, "only_b": only_b, "p": p,
            "verdict": verdict}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run", type=Path, help="the recipe's output folder (…/fashion-mnist-quick)")
    ap.add_argument("--test-size", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch-size", type=int, default=250)
    ap.add_argument("--bootstrap", type=int, default=2000)
    args = ap.parse_args()

    stage = args.run / "targets"
    plan = json.loads((stage / "plan.json").read_text())
    suite = plan["suite"]
    sur_path = next(iter(suite["surrogates"].values()))["checkpoint"]
    surrogate, _ = load_ensemble(sur_path)
    loaded = {k: load_ensemble(p) for k, p in targets_of(stage).items()}
    targets = {k: ens for k, (ens, _) in loaded.items()}
    dataset_name = next(iter(loaded.values()))[1]["config"]["data"]["dataset"]
    data = load_dataset(dataset_name, "test", size=args.test_size, seed=args.seed)
    batches = list(data.batches(args.batch_size))
    print(f"targets {sorted(targets)}, surrogate {sur_path}, {len(data)} test images")

    with torch.no_grad():
        clean = {k: torch.cat([m(x).argmax(-1) == y for x, y in batches])
                 for k, m in targets.items()}
    cells: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    for entry in suite["attacks"]:
        if entry.get("threat") != "transfer":
            continue
        for eps in entry["eps"]:
            kw = dict(entry.get("params") or {})
            if "seed" in attack_parameters(entry["attack"]):
                kw.setdefault("seed", suite.get("seed", 0))
            atk = build_attack(entry["attack"], surrogate, eps=eps, combine="loss", **kw)
            ok: dict[str, list[torch.Tensor]] = {k: [] for k in targets}
            for x, y in batches:
                x_adv = atk(x, y)
                with torch.no_grad():
                    for k, m in targets.items():
                        ok[k].append(m(x_adv).argmax(-1) == y)
            robust = {k: clean[k] & torch.cat(v) for k, v in ok.items()}
            cell = {"attack": entry["attack"], "eps": eps,
                    "accuracy": {k: float(v.double().mean()) for k, v in robust.items()},
                    "pairs": {}}
            for a, b in PAIRS:
                if a in robust and b in robust:
                    cell["pairs"][f"{a} vs {b}"] = paired_stats(
                        robust[a], robust[b], args.bootstrap, args.seed)
            cells.append(cell)
            print(f"{entry['attack']} eps {eps:g}: "
                  + ", ".join(f"{k} {100 * v:.1f}%" for k, v in cell["accuracy"].items())
                  + f" ({time.perf_counter() - t0:.0f}s)", flush=True)

    lines = ["| attack | eps | " + " | ".join(f"{a} vs {b}" for a, b in PAIRS) + " |",
             "|---|---|" + "---|" * len(PAIRS)]
    for c in cells:
        row = []
        for a, b in PAIRS:
            s = c["pairs"].get(f"{a} vs {b}")
            row.append("—" if s is None else
                       f"{100 * c['accuracy'][a]:.1f} vs {100 * c['accuracy'][b]:.1f}"
                       f" ({100 * s['diff']:+.1f}, CI [{100 * s['ci95'][0]:+.1f},"
                       f" {100 * s['ci95'][1]:+.1f}], p={s['p']:.2g}: {s['verdict']})")
        lines.append(f"| {c['attack']} | {c['eps']:g} | " + " | ".join(row) + " |")
    tally = {}
    for a, b in PAIRS:
        v = [c["pairs"][f"{a} vs {b}"]["verdict"] for c in cells if f"{a} vs {b}" in c["pairs"]]
        tally[f"{a} vs {b}"] = {w: v.count(w) for w in ("win", "loss", "tie")}
    print("\n".join(lines))
    print("tally:", json.dumps(tally))
    out = {"run": str(args.run), "test_size": len(data), "seed": args.seed,
           "clean": {k: float(v.double().mean()) for k, v in clean.items()},
           "cells": cells, "tally": tally, "seconds": round(time.perf_counter() - t0, 1)}
    atomic_write_json(args.run / "paired.json", out)
    print(f"wrote {args.run / 'paired.json'}")


if __name__ == "__main__":
    main()
