"""Peer defenses head to head (recipe ``peers``): Baseline, ADP, GAL, DVERGE and TRS under
transfer attacks from independent surrogates (with the "all sources" row), adaptive white-box
attacks, clean accuracy and each ensemble's member x member transferability matrix.

Pre-stated check (written before any quick-scale run): *DVERGE and TRS each beat Baseline
under every transfer attack at the smaller eps*, one cell per (surrogate, attack, loss), each
a McNemar exact test on the two ensembles' per-image outcomes on the same adversarial images.
PASS when both models are clearly above chance and every cell is a significant win; FAIL when
a cell is a significant loss, or (at the quick and paper scales) when some cell is not
significant; INCONCLUSIVE at the tiny scale, when a model is at chance, or when a cell could
not be tested. Where DVERGE and TRS stand against GAL and ADP is reported (same tests), not
checked.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from robens.recipes.summaries.base import (
    SUMMARIES,
    chance_gate,
    make_check,
    make_table,
    pair,
    paired_findings,
    pct,
    roles,
)
from robens.recipes.views import PlanInfo, TrialView
from robens.stats import Finding, Verdict, claim_verdict, paired_comparison

PEER_ROLES = {"baseline": "Baseline", "adp": "ADP", "gal": "GAL", "dverge": "DVERGE",
              "trs": "TRS"}
CHALLENGERS = ("dverge", "trs")
ALL = "all sources"
PUBLISHED_NOTE = (
    "The DVERGE (Yang et al. 2020) and TRS (Yang et al. 2021) papers' tables are not quoted: their"
    " numbers could not be found in the project's sources (shared/seeds holds neither paper; the"
    " READMEs of zjysteven/DVERGE and AI-secure/Transferability-Reduced-Smooth-Ensemble give"
    " none). A user of the TRS code reports 88.7% clean and 20.8% under PGD-50 at eps 0.01"
    " (that repository's issue #1, docs/methods.md s. 8), not a published figure."
)

Cell = tuple[str, str, str]  # (surrogate, attack, loss)


def _loss(r: dict[str, Any]) -> str:
    return str((r.get("params") or {}).get("loss", "ce"))


def _cell(r: dict[str, Any]) -> Cell:
    return (str(r.get("surrogate")), str(r["attack"]), _loss(r))


def _label(c: Cell) -> str:
    return f"{c[1].upper()}-{c[2].upper()} from {c[0]}"


def _transfer(v: TrialView, cell: Cell, eps: float) -> dict[str, Any] | None:
    recs = [r for r in v.select("robust_accuracy", threat_model="transfer", eps=eps)
            if _cell(r) == cell]
    return max(recs, key=lambda r: r.get("n") or 0) if recs else None


def _all_sources(v: TrialView, cells: list[Cell], eps: float) -> tuple[np.ndarray,
                                                                      np.ndarray] | None:
    """``(index, robust)`` per image robust to *every* transfer attack at ``eps`` (the images
    every attack ran on); ``None`` when a cell has no record or no per-image outcomes."""
    merged: dict[int, bool] | None = None
    for c in cells:
        r = _transfer(v, c, eps)
        out = None if r is None else v.outcomes(r)
        if out is None:
            return None
        now = dict(zip(out[0].tolist(), out[1].tolist(), strict=True))
        merged = now if merged is None else {
            i: ok and now[i] for i, ok in merged.items() if i in now}
    if not merged:
        return None
    idx = np.array(sorted(merged), dtype=np.int64)
    return idx, np.array([merged[i] for i in idx.tolist()], dtype=bool)


def _paired_all(a: TrialView, b: TrialView, cells: list[Cell], eps: float) -> Finding | None:
    oa, ob = _all_sources(a, cells, eps), _all_sources(b, cells, eps)
    if oa is None or ob is None:
        return None
    _, ia, ib = np.intersect1d(oa[0], ob[0], assume_unique=True, return_indices=True)
    if len(ia) == 0:
        return None
    c = paired_comparison(oa[1][ia], ob[1][ib])
    return Finding(f"{ALL}@{eps:g}", c.diff, c.p, c.test,
                   f"{ALL}@{eps:g}: {pct(c.acc_a)} vs {pct(c.acc_b)} on {c.n}"
                   f" (+{c.only_a}/-{c.only_b}, p={c.p:.2g})")


def _white_box(v: TrialView, attack: str, eps: float) -> float | None:
    return v.value("robust_accuracy", threat_model="white_box", attack=attack, eps=eps)


def _matrix(v: TrialView) -> tuple[str, str, str]:
    recs = v.select("transfer_matrix_accuracy")
    if not recs:
        return "—", "—", "—"
    diag = v.value("transfer_diag_accuracy")
    off = v.value("transfer_offdiag_accuracy")
    cells = sorted((int(r["source"]), int(r["target"]), float(r["value"])) for r in recs)
    text = " ".join(f"{i}→{j}:{pct(x, 0)}" for i, j, x in cells)
    return pct(diag), pct(off), text


def _check(plan: PlanInfo, targets: dict[str, TrialView], role: str, cells: list[Cell],
           eps: float) -> dict[str, Any]:
    name = f"{PEER_ROLES[role]} beats Baseline under every transfer attack at eps {eps:g}"
    a, b = targets.get(role), targets.get("baseline")
    if a is None or b is None:
        return make_check(name, None, f"missing trial(s): {role if a is None else 'baseline'}")
    found, missing = paired_findings(a, b, {
        f"{_label(c)}@{eps:g}": (_transfer(a, c, eps), _transfer(b, c, eps)) for c in cells})
    gate = chance_gate({PEER_ROLES[role]: a, "Baseline": b})
    if plan.scale == "tiny":
        gate = "tiny scale: a smoke test, not evidence" + (f"; {gate}" if gate else "")
    untested = [Finding(m, 0.0, 1.0, "") for m in missing]
    verdict, p, reason = claim_verdict([*found, *untested], "every", gate)
    if verdict == Verdict.INCONCLUSIVE and not gate and found and not missing:
        verdict = Verdict.FAIL
        reason += f"; not every difference is significant (FAIL at the {plan.scale} scale)"
    if missing:
        reason += f"; untested: {'; '.join(missing)}"
    detail = "; ".join([reason] + [f.detail for f in found])
    tests = ", ".join(sorted({f.test for f in found})) or None
    return make_check(name, verdict, detail, test=tests, p=p, cells=found)


@SUMMARIES.register("peers")
def summarize_peers(plan: PlanInfo, views: list[TrialView]) -> dict[str, Any]:
    """Tables (transfer with "all sources", white-box, transferability, standing against GAL
    and ADP, the published numbers' status) and the pre-stated DVERGE/TRS check."""
    targets = roles(views, PEER_ROLES)
    present = [k for k in PEER_ROLES if k in targets]
    cells: list[Cell] = []
    eps_set: set[float] = set()
    for v in targets.values():
        for r in v.select("robust_accuracy", threat_model="transfer"):
            if _cell(r) not in cells:
                cells.append(_cell(r))
            eps_set.add(float(r["eps"]))
    cells.sort()
    eps = sorted(eps_set)
    heads = [PEER_ROLES[k] for k in present]

    rows, values = [], {}
    for c in cells:
        vals = {k: [None if (r := _transfer(targets[k], c, e)) is None else float(r["value"])
                    for e in eps] for k in present}
        values[_label(c)] = vals
        rows.append([_label(c)] + [pair(vals[k]) for k in present])
    alls = {}
    for k in present:
        per = []
        for e in eps:
            o = _all_sources(targets[k], cells, e)
            per.append(None if o is None else float(o[1].mean()))
        alls[k] = per
    values[ALL] = alls
    rows.append([ALL] + [pair(alls[k]) for k in present])
    eps_txt = "/".join(f"{e:g}" for e in eps)
    tables = [make_table(
        "transfer", f"Transfer attacks ({plan.dataset}, {plan.scale} scale): robust accuracy %"
        f" at eps {eps_txt}", ["Attack"] + heads, rows, classes=[""] * (len(rows) - 1) + ["ours"],
        note="Crafted on independently trained baseline surrogate ensembles (average loss of"
        f" their members); '{ALL}': an image counts robust only if it survives every attack"
        " above at that eps.")]

    wb_rows = [["Clean", "—"] + [pct(targets[k].clean()) for k in present]]
    wb_cells = sorted({(str(r["attack"]), float(r["eps"])) for v in targets.values()
                       for r in v.select("robust_accuracy", threat_model="white_box")})
    for attack, e in wb_cells:
        wb_rows.append([attack.upper() + " (adaptive)", f"{e:g}"]
                       + [pct(_white_box(targets[k], attack, e)) for k in present])
    tables.append(make_table(
        "white-box", "White-box attacks: robust accuracy % (worst case over the attacker's"
        " aggregations of the members)", ["Attack", "eps"] + heads, wb_rows))

    tm_rows = [[PEER_ROLES[k], *_matrix(targets[k])] for k in present]
    tables.append(make_table(
        "transferability", "Transferability matrix per method: PGD crafted on member i, accuracy"
        " % of member j", ["Method", "member white-box (diag)", "cross-member (off-diag)",
                           "matrix i→j"], tm_rows,
        note="Higher off-diagonal accuracy = adversarial examples transfer less between members."))

    standing = []
    small = eps[0] if eps else None
    if small is not None:
        for role in CHALLENGERS:
            for other in ("gal", "adp", "baseline"):
                a, b = targets.get(role), targets.get(other)
                if a is None or b is None:
                    continue
                found, missing = paired_findings(a, b, {
                    _label(c): (_transfer(a, c, small), _transfer(b, c, small)) for c in cells})
                every = _paired_all(a, b, cells, small)
                wins = sum(f.win for f in found)
                losses = sum(f.loss for f in found)
                standing.append([f"{PEER_ROLES[role]} vs {PEER_ROLES[other]}",
                                 f"{wins} / {losses} / {len(found) - wins - losses}"
                                 + (f" ({len(missing)} untested)" if missing else ""),
                                 every.detail if every else "—"])
    tables.append(make_table(
        "standing", f"Where DVERGE and TRS stand (transfer attacks at eps {small:g})"
        if small is not None else "Where DVERGE and TRS stand", ["Pair",
        "significant wins / losses / ties", f"{ALL} (McNemar)"], standing,
        note="Paired McNemar exact tests on the same adversarial images, alpha 0.05;"
        " reported, not a pre-stated check."))
    tables.append(make_table("published", "Published numbers (DVERGE, TRS papers)",
                             ["Status"], [["not found"]], note=PUBLISHED_NOTE))

    checks = [_check(plan, targets, role, cells, small) for role in CHALLENGERS
              if small is not None]
    if small is None:
        checks = [make_check("DVERGE and TRS beat Baseline under every transfer attack", None,
                             "no transfer-attack records")]
    data = {"transfer": values, "eps": eps,
            "clean": {k: targets[k].clean() for k in present},
            "clean_n": {k: targets[k].clean_count() for k in present}}
    return {"tables": tables, "checks": checks, "data": data}
