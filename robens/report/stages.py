"""Per-stage tables of cascades (AutoAttack) and of adaptive aggregation, from the records."""

from __future__ import annotations

from robens.report.intervals import interval
from robens.report.runs import Run
from robens.report.tables import Table, pct


def _interval(value: object, n: object) -> str:
    """``[lo, hi]`` (percent): the Wilson interval of a stage's robust accuracy on n images."""
    ci = interval({"value": value, "n": n}) if isinstance(value, (int, float)) else None
    return "—" if ci is None else f"[{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]"


def stage_tables(runs: list[Run]) -> list[Table]:
    """One table per run and cascade record: robust accuracy after each stage, images
    attacked and broken, seconds; and which of the attacker's aggregations broke how many
    images where the attack ran adaptively over an ensemble's aggregations."""
    out: list[Table] = []
    for run in runs:
        for r in run.robust():
            stages = r.get("stages")
            if isinstance(stages, list) and stages:
                rows = [[str(s.get("stage")), pct(s.get("robust_accuracy"), 2),
                         str(s.get("n_attacked")), str(s.get("n_broken")),
                         f"{float(s.get('seconds') or 0):.1f}",
                         _interval(s.get("robust_accuracy"), r.get("n"))] for s in stages]
                out.append(Table(
                    f"{run.label}: {r.get('attack')} eps={float(r.get('eps', 0)):g} stages"
                    f" (n = {r.get('n')})",
                    ["stage", "robust % after", "attacked", "broken", "seconds",
                     "95% interval"], rows,
                    note="Each stage attacks only the images still robust after the ones"
                    " before it; robust % counts images correct clean and under every stage,"
                    " of the n images in the title; the interval is Wilson's.",
                ))
            by_agg = r.get("stages_by_aggregation")
            if isinstance(by_agg, dict) and by_agg:
                rows = [[str(agg), str(s.get("stage")), str(s.get("n_attacked")),
                         str(s.get("n_broken")), f"{float(s.get('seconds') or 0):.1f}"]
                        for agg, log in by_agg.items() if isinstance(log, list) for s in log]
                out.append(Table(
                    f"{run.label}: {r.get('attack')} eps={float(r.get('eps', 0)):g} stages per"
                    f" aggregation (adaptive, n = {r.get('n')})",
                    ["aggregation", "stage", "attacked", "broken", "seconds"], rows,
                    note="The cascade ran under each aggregation of the members in turn, each"
                    " on the images the earlier aggregations left robust; within it each stage"
                    " attacks the images still robust after the ones before it. Broken counts"
                    " the attacker's own aggregated model; the table above counts the images"
                    " the defender's ensemble gets wrong.",
                ))
            broken = r.get("broken_by")
            if isinstance(broken, dict) and broken:
                order = ["logits", "probs", "loss"]
                broken = {k: broken[k] for k in sorted(
                    broken, key=lambda k: (order.index(k) if k in order else 9, k))}
                out.append(Table(
                    f"{run.label}: {r.get('attack')} eps={float(r.get('eps', 0)):g}, images"
                    " broken per aggregation (adaptive)",
                    list(broken), [[str(v) for v in broken.values()]],
                    note="The attack ran under each way an attacker may combine the members"
                    " (averaged logits, log of averaged probabilities, averaged losses), each"
                    " on the images the earlier ones left robust.",
                ))
    return out
