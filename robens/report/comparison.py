"""Paired comparisons of the report's runs on the same test images (McNemar's exact test).

Where two runs were attacked by the same suite unit with per-sample outcomes stored
(``per_sample: true``: ``suite/samples/<unit>.npz``), each attack row compares the runs image by
image on the images both were attacked on: accuracy of each, the difference with a 95% paired
bootstrap interval, the images robust for one run only, and the two-sided McNemar exact p-value
(:func:`robens.stats.paired_comparison`). Transfer units attack both runs with the same
adversarial images (crafted once, on the surrogate); white-box and universal units attack the
same clean images, each run with its own adversarial images (a UAP is fitted on each run).
The first run (the report's order) is the reference; a difference counts as significant at
``0.05 / k`` over the table's ``k`` rows (Bonferroni).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import torch

from robens.report.intervals import settings
from robens.report.runs import Run
from robens.report.tables import Table, pct
from robens.samples import sample_outcomes
from robens.stats import ALPHA, paired_comparison

THREATS = {"white_box": "white-box", "transfer": "transfer", "universal": "universal"}


def outcomes(run: Run, rec: dict[str, Any]) -> tuple[np.ndarray, np.ndarray] | None:
    """``(dataset index, robust)`` per image of an attack record (``None`` when its unit stored
    no per-sample arrays or they cannot be read): robust as the record's value counts it
    (:func:`robens.samples.sample_outcomes`)."""
    try:
        return sample_outcomes(run.run_dir, rec)
    except (OSError, ValueError, KeyError):
        return None


#: the record fields that say which attack a record ran (the same for every target of a suite)
ATTACK_FIELDS = ("suite", "threat_model", "attack", "name", "eps", "surrogate", "params",
                 "loss", "norm", "targeted", "combine_attack", "attack_seed", "eval_seed")


def attack_key(rec: dict[str, Any]) -> str:
    """The attack a record ran, independent of the model it attacked (unit names are not:
    they hash the target's checkpoint too)."""
    fields = {k: rec.get(k) for k in ATTACK_FIELDS}
    fields.update({k: v for k, v in rec.items() if k.startswith("param_")})
    return json.dumps(fields, sort_keys=True, default=str)


def _units(run: Run) -> dict[str, dict[str, Any]]:
    """The run's ensemble robust-accuracy records by attack (the one on the most images)."""
    out: dict[str, dict[str, Any]] = {}
    for r in run.robust():
        if r.get("member") is not None or not r.get("unit"):
            continue
        u = attack_key(r)
        if u not in out or int(r.get("n") or 0) > int(out[u].get("n") or 0):
            out[u] = r
    return out


def paired_tables(runs: list[Run]) -> list[Table]:
    """One table per run after the first: its paired comparison with the first run."""
    if len(runs) < 2:
        return []
    ref, ref_units = runs[0], _units(runs[0])
    tables = []
    for other in runs[1:]:
        rows = []
        for key, rb in _units(other).items():
            ra = ref_units.get(key)
            if ra is None:
                continue
            oa, ob = outcomes(ref, ra), outcomes(other, rb)
            if oa is None or ob is None:
                continue
            _, ia, ib = np.intersect1d(oa[0], ob[0], assume_unique=True, return_indices=True)
            if not len(ia):
                continue
            c = paired_comparison(torch.from_numpy(ob[1][ib]), torch.from_numpy(oa[1][ia]))
            rows.append((rb, c))
        if not rows:
            continue
        k = len(rows)
        body = []
        for rec, c in sorted(rows, key=lambda t: (str(t[0].get("threat_model")),
                                                  str(t[0].get("attack")), float(t[0]["eps"]))):
            lo, hi = c.ci95
            sig = "yes" if c.p < ALPHA / k else "no"
            body.append([
                f"{THREATS.get(str(rec.get('threat_model')), rec.get('threat_model'))}"
                f" {rec.get('name') or rec.get('attack')}",
                f"{float(rec['eps']):g}", settings(rec), str(c.n), pct(c.acc_b, 2),
                pct(c.acc_a, 2), f"{100 * c.diff:+.2f} [{100 * lo:+.1f}, {100 * hi:+.1f}]",
                f"{c.only_a} / {c.only_b}", f"{c.p:.2g}", sig,
            ])
        tables.append(Table(
            title=f"{other.label} against {ref.label}, image by image",
            headers=["attack", "eps", "settings", "n", ref.label, other.label,
                     "difference [95% CI]", f"robust only for {other.label} / {ref.label}",
                     "McNemar p", f"significant (p < {ALPHA}/{k})"],
            rows=body,
            note=(
                "Robust accuracy (%) of both runs on the same test images (the images both were"
                " attacked on). Difference = second minus first, with a 95% paired bootstrap"
                " interval; p: McNemar's exact two-sided test on the images where the runs"
                f" disagree; significant: p below {ALPHA} divided by the {k} rows (Bonferroni)."
                " Transfer rows use the same adversarial images for both runs; white-box and"
                " universal rows the same clean images, each attacked on its own run."
            ),
        ))
    return tables
