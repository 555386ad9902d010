"""Terminal rendering for the CLI: the attack-suite results table and ``robens evaluate
--suite``."""

from __future__ import annotations

import os
from typing import Any

from robens.evaluate.runner import run_suite
from robens.evaluate.suite_config import load_suite
from robens.pipeline import train_checkpoint

SHOWN = ("clean_accuracy", "robust_accuracy", "weighted_accuracy", "noise_accuracy",
         "rotation_accuracy", "detection_auc", "transfer_offdiag_accuracy")


def _label(r: dict[str, Any]) -> str:
    if r["metric"] == "detection_auc":
        return f"AUC {r.get('detector')}"
    if r["metric"] == "noise_accuracy":
        return f"noise sigma={r.get('sigma')}"
    if r["metric"] == "rotation_accuracy":
        return f"rotation {r.get('degrees')} deg"
    return r["metric"]


def print_results_table(records: list[dict[str, Any]]) -> None:
    """A rich table of the accuracy-like records (one line per attack and eps)."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title="attack suite")
    for col in ("threat", "attack", "eps", "metric", "value %", "n"):
        table.add_column(col, justify="right" if col in ("eps", "value %", "n") else "left")
    for r in records:
        if r["metric"] not in SHOWN:
            continue
        value = r["value"]
        table.add_row(
            str(r.get("threat_model", "")), str(r.get("attack", "")), f"{r.get('eps', 0):g}",
            _label(r), "nan" if value is None else f"{100 * value:.2f}", str(r.get("n", "")),
        )
    Console().print(table)


def run_suite_cli(
    checkpoint: str | os.PathLike,
    suite: str | os.PathLike,
    dataset: str | None,
    data_root: str | None,
    test_size: int | None,
    batch_size: int | None,
    out: str | os.PathLike | None,
    device: str,
    seed: int | None,
    progress: bool,
) -> dict[str, Any]:
    """``robens evaluate CKPT --suite SUITE``: run the suite and print a results table.

    The CLI's ``--batch-size`` and ``--seed`` have defaults (500, 0); they apply only where the
    suite file sets no value of its own, so a suite's choices win over the CLI defaults.
    """
    cfg = load_suite(suite)
    if "batch_size" in cfg.model_fields_set:
        batch_size = None
    if "seed" in cfg.model_fields_set:
        seed = None
    result = run_suite(
        checkpoint, cfg, out=out, progress=progress, echo=print, dataset=dataset,
        data_root=data_root, test_size=test_size, batch_size=batch_size, device=device,
        seed=seed, train_fn=train_checkpoint,
    )
    print_results_table(result["records"])
    print(f"records: {result['results_jsonl']} and {result['results_csv']}")
    return result


def print_stage_table(stages: list[dict[str, Any]]) -> None:
    """A cascade's per-stage log (AutoAttack): robust accuracy after each stage, time."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title="AutoAttack stages")
    for col in ("stage", "robust % after", "attacked", "broken", "seconds"):
        table.add_column(col, justify="left" if col == "stage" else "right")
    for r in stages:
        table.add_row(r["stage"], f"{100 * r['robust_accuracy']:.2f}", str(r["n_attacked"]),
                      str(r["n_broken"]), f"{r['seconds']:.1f}")
    Console().print(table)
