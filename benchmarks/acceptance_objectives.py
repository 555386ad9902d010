"""Acceptance runs of issue 3: diversity objectives on the full Fashion-MNIST training set.

Every run trains 3 Leaky-ReLU LeNet-5 members for 2 epochs (batch 128, Adam 1e-3) through the
:class:`~robens.training.Trainer`, then measures on test images:

* clean ensemble accuracy (all 10k test images);
* mean pairwise cosine of the members' loss input-gradients (GAL's Eq. 6);
* mean ``||J||_F^2`` of the members' input-logit Jacobians (exact, C backward passes);
* mean ADP log-det diversity ``logdet(M~^T M~ + 1e-6 I)`` (true label removed).

Runs and targets (relative targets compare with ``baseline`` measured by this script):

=========  ====================================================  ===============================
baseline   CE + noise augmentation (eps 0.3, sigma 0.15, 1:1)     cosine > 0.3
gal        CE + 0.5 * GAL + noise augmentation                    cosine < 0, acc >= 83%
jr         CE + 0.1 * JR (n_proj 1)                                ||J||^2 <= 10% base, acc >= 78%
adp        sum_k CE_k - ADP_{2, 0.5}                               logED >= base + 5, acc >= 87%
=========  ====================================================  ===============================

Usage (one run per call, runs are resumable; results go to ``<out>/<name>/acceptance.json``)::

    python benchmarks/acceptance_objectives.py --only baseline
    python benchmarks/acceptance_objectives.py --only gal
    python benchmarks/acceptance_objectives.py --table        # print what has been measured

``--epochs``, ``--train-size`` and ``--measure-size`` shrink a run for a timing estimate.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

from robens.config import validate_config
from robens.data import load_dataset
from robens.factory import load_ensemble
from robens.metrics.accuracy import evaluate_accuracy
from robens.objectives import (
    input_gradients,
    jacobian_frobenius_sq,
    log_det_diversity,
    mean_pairwise_cosine,
)
from robens.training import Trainer

RUNS: dict[str, dict[str, Any]] = {
    "baseline": {"objective": "ce", "noise_eps": 0.3},
    "gal": {"objective": "ce + 0.5*gal", "noise_eps": 0.3},
    "jr": {"objective": "ce + 0.1*jr", "terms": {"jr": {"n_proj": 1}}},
    "adp": {
        "objective": "ce + adp",
        "terms": {"ce": {"reduction": "sum"}, "adp": {"alpha": 2.0, "beta": 0.5}},
    },
}


def make_config(name: str, args: argparse.Namespace) -> dict[str, Any]:
    run = RUNS[name]
    return {
        "name": f"acceptance-{name}",
        "seed": args.seed,
        "data": {
            "dataset": "fashion-mnist",
            "root": args.data_root,
            "train_size": args.train_size,
            "batch_size": 128,
            "augment": {"noise_eps": run.get("noise_eps", 0.0), "noise_mode": "concat"},
        },
        "model": {
            "arch": "lenet",
            "members": 3,
            "activation": "leaky_relu",
            "leaky_slope": args.leaky_slope,
        },
        "objective": run["objective"],
        "terms": run.get("terms", {}),
        "optimizer": {"name": "adam", "lr": 1e-3},
        "training": {"epochs": args.epochs, "threads": args.threads},
        "output_dir": str(Path(args.out) / name),
    }


@torch.no_grad()
def _accuracy(ens: torch.nn.Module, data) -> dict[str, Any]:
    return evaluate_accuracy(ens, data.batches(1000, shuffle=False))


def measure(ens: torch.nn.Module, data, measure_size: int, batch: int = 200) -> dict[str, Any]:
    """Clean accuracy on all of ``data``; gradient metrics on its first ``measure_size``."""
    ens.eval()
    acc = _accuracy(ens, data)
    n = min(measure_size, len(data))
    cos_sum = jac_sum = led_sum = 0.0
    seen = 0
    for x, y in data.batches(batch, shuffle=False):
        if seen >= n:
            break
        x, y = x[: n - seen], y[: n - seen]
        grads = input_gradients(ens, x, y)  # [M, B, D]
        cos_sum += float(mean_pairwise_cosine(grads).sum())
        jac = torch.stack([jacobian_frobenius_sq(m, x, exact=True) for m in ens.members])
        jac_sum += float(jac.mean(0).sum())
        with torch.no_grad():
            logits = ens.member_logits(x)
            led = log_det_diversity(torch.softmax(logits, -1), y, member_logits=logits)
        led_sum += float(led.sum())
        seen += len(y)
    return {
        "accuracy": acc["ensemble"],
        "member_accuracy": acc["members"],
        "n_test": acc["n"],
        "n_measured": seen,
        "mean_pairwise_cosine": cos_sum / seen,
        "mean_jacobian_frobenius_sq": jac_sum / seen,
        "mean_log_det_diversity": led_sum / seen,
    }


def run_one(name: str, args: argparse.Namespace) -> dict[str, Any]:
    cfg = validate_config(make_config(name, args), source=f"acceptance:{name}")
    run_dir = Path(cfg.output_dir)
    ckpt = run_dir / "checkpoint.safetensors"
    t0 = time.perf_counter()
    done = False
    if ckpt.exists():
        from robens.checkpoint import load_checkpoint

        _, meta = load_checkpoint(ckpt)
        done = bool(meta.get("complete"))
    if not done:
        trainer = Trainer(cfg, run_dir=run_dir, progress=args.progress, echo=print)
        print(
            f"[{name}] training 3x lenet on {len(trainer.train_set)} images, objective"
            f" '{trainer.objective}', noise_eps {cfg.data.augment.noise_eps}", flush=True
        )
        trainer.fit(resume=ckpt.exists())
    train_s = time.perf_counter() - t0
    ens, meta = load_ensemble(ckpt)
    test = load_dataset("fashion-mnist", "test", root=args.data_root)
    t1 = time.perf_counter()
    result = measure(ens, test, args.measure_size)
    result.update(
        {
            "run": name,
            "objective": cfg.objective,
            "terms": cfg.terms,
            "noise_eps": cfg.data.augment.noise_eps,
            "epochs": cfg.training.epochs,
            "train_size": meta["dataset"]["train_size"],
            "train_seconds_this_call": round(train_s, 1),
            "epoch_seconds": [h.get("seconds") for h in meta.get("history", [])],
            "measure_seconds": round(time.perf_counter() - t1, 1),
            "leaky_slope": cfg.model.leaky_slope,
            "seed": cfg.seed,
        }
    )
    (run_dir / "acceptance.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def verdicts(results: dict[str, dict[str, Any]]) -> dict[str, list[tuple[str, bool | None]]]:
    """Acceptance checks; ``None`` when the baseline needed for a relative check is missing."""
    base = results.get("baseline")
    out: dict[str, list[tuple[str, bool | None]]] = {}
    if base:
        out["baseline"] = [("cosine > 0.3", base["mean_pairwise_cosine"] > 0.3)]
    if "gal" in results:
        r = results["gal"]
        out["gal"] = [
            ("cosine < 0.0", r["mean_pairwise_cosine"] < 0.0),
            ("acc >= 83%", r["accuracy"] >= 0.83),
        ]
    if "jr" in results:
        r = results["jr"]
        rel = None
        if base:
            rel = r["mean_jacobian_frobenius_sq"] <= 0.1 * base["mean_jacobian_frobenius_sq"]
        out["jr"] = [("||J||^2 <= 10% of baseline", rel), ("acc >= 78%", r["accuracy"] >= 0.78)]
    if "adp" in results:
        r = results["adp"]
        rel = None
        if base:
            rel = r["mean_log_det_diversity"] >= base["mean_log_det_diversity"] + 5.0
        out["adp"] = [("logED >= baseline + 5", rel), ("acc >= 87%", r["accuracy"] >= 0.87)]
    return out


def table(results: dict[str, dict[str, Any]]) -> str:
    head = (
        f"{'run':<9} {'objective':<14} {'noise':>5} {'acc %':>6} {'cos':>7} {'||J||^2':>9}"
        f" {'logED':>8} {'n':>5}  checks"
    )
    lines = [head, "-" * len(head)]
    checks = verdicts(results)
    for name in RUNS:
        r = results.get(name)
        if r is None:
            continue
        marks = ", ".join(
            f"{label}: {'n/a' if ok is None else ('PASS' if ok else 'FAIL')}"
            for label, ok in checks.get(name, [])
        )
        lines.append(
            f"{name:<9} {r['objective']:<14} {r['noise_eps']:>5.2f} {100 * r['accuracy']:>6.2f}"
            f" {r['mean_pairwise_cosine']:>7.3f} {r['mean_jacobian_frobenius_sq']:>9.3f}"
            f" {r['mean_log_det_diversity']:>8.3f} {r['n_measured']:>5}  {marks}"
        )
    return "\n".join(lines)


def load_results(out: str) -> dict[str, dict[str, Any]]:
    results = {}
    for name in RUNS:
        path = Path(out) / name / "acceptance.json"
        if path.exists():
            results[name] = json.loads(path.read_text())
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--only", choices=sorted(RUNS), action="append", help="run(s) to train")
    p.add_argument("--table", action="store_true", help="only print the measured table")
    p.add_argument("--out", default="runs/acceptance", help="parent folder of the run dirs")
    p.add_argument("--data-root", default=None)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--train-size", type=int, default=None, help="subset (timing estimates)")
    p.add_argument("--measure-size", type=int, default=2000, help="test images for grad metrics")
    p.add_argument("--leaky-slope", type=float, default=0.1)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--progress", action="store_true")
    args = p.parse_args(argv)
    if not args.table:
        for name in args.only or list(RUNS):
            r = run_one(name, args)
            brief = {k: v for k, v in r.items() if k != "terms"}
            print(f"[{name}] " + json.dumps(brief), flush=True)
    results = load_results(args.out)
    print(table(results))
    failed = [ok for checks in verdicts(results).values() for _, ok in checks if ok is False]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
