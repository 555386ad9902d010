"""Acceptance run of issue 5: GAL vs baseline on Fashion-MNIST, transfer from a surrogate,
coherence histograms, and the report.

Three ensembles of 3 Leaky-ReLU LeNet-5 members are trained with the settings of
``configs/gal.yaml`` (Adam 1e-3, batch 128, D' + D_noise with eps 0.3, 2 epochs):

* ``gal``:       ``ce + 0.5*gal`` (Kariyappa & Qureshi 2019, Eq. 9), seed 0;
* ``baseline``:  ``ce``, same data and augmentation, seed 0;
* ``surrogate``: ``ce``, seed 1 -- the separately trained baseline ensemble the GAL paper crafts
  its black-box examples on (objective: mean of the surrogate members' losses).

Both targets are evaluated by the same attack suite (robens.evaluate.suite): the GAL paper's
transfer attacks (FGSM, R-FGSM, I-FGSM, MI-FGSM, PGD-CW) from the surrogate at eps 0.1, white-box
FGSM/PGD, the member transfer matrix, gradient coherence/cosine/GDR distributions and member
disagreement. The report (``<out>/report/index.html``) puts both runs side by side.

Acceptance checks printed at the end (and written to ``<out>/acceptance_report.json``):

* coherence histograms separated: GAL's mean coherence is lower than the baseline's by more than
  0.2 and the two histograms overlap by less than 50 % (overlap = sum of bin-wise minima of the
  normalized histograms);
* transfer accuracy from the surrogate is higher for GAL than for the baseline, for every attack.

Usage (runs resume and finished evaluation units are skipped)::

    python benchmarks/acceptance_report.py                          # full: 60k images, 2 epochs
    python benchmarks/acceptance_report.py --train-size 10000 --epochs 1 --test-size 500 \\
        --out runs/acceptance-report-small                            # reduced check
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from robens.checkpoint import load_checkpoint
from robens.config import load_yaml, validate_config
from robens.evaluate import run_suite
from robens.records import read_json_records
from robens.report import build_report
from robens.training import Trainer
from robens.training.trainer import CHECKPOINT_NAME

TRANSFER_ATTACKS = ("fgsm", "rfgsm", "ifgsm", "mifgsm", "pgd_cw")
RUNS = {
    "baseline": {"objective": "ce", "seed": 0},
    "gal": {"objective": "ce + 0.5*gal", "seed": 0},
    "surrogate": {"objective": "ce", "seed": 1},
}


def make_config(name: str, args: argparse.Namespace) -> Any:
    """``configs/gal.yaml`` with this run's objective, seed, output and size overrides."""
    base = load_yaml(args.base_config) or {}
    run = RUNS[name]
    base = dict(base)
    base["name"] = f"acceptance-{name}"
    base["seed"] = run["seed"]
    base["objective"] = run["objective"]
    base["output_dir"] = str(Path(args.out) / name)
    data = dict(base.get("data", {}))
    if args.train_size:
        data["train_size"] = args.train_size
    if args.data_root:
        data["root"] = args.data_root
    base["data"] = data
    training = dict(base.get("training", {}))
    if args.epochs:
        training["epochs"] = args.epochs
    if args.threads:
        training["threads"] = args.threads
    base["training"] = training
    return validate_config(base, source=f"{args.base_config} ({name})")


def train(name: str, args: argparse.Namespace) -> Path:
    cfg = make_config(name, args)
    ckpt = Path(cfg.output_dir) / CHECKPOINT_NAME
    if ckpt.exists() and load_checkpoint(ckpt)[1].get("complete"):
        print(f"[{name}] already trained: {ckpt}")
        return ckpt
    t0 = time.perf_counter()
    Trainer(cfg, progress=args.progress).fit(resume=True)
    print(f"[{name}] trained in {time.perf_counter() - t0:.0f}s")
    return ckpt


def suite(surrogate: Path, args: argparse.Namespace) -> dict[str, Any]:
    return {
        "name": "acceptance-report",
        "test_size": args.test_size,
        "batch_size": 250,
        "seed": 0,
        "attacks": [
            {"attack": "fgsm", "eps": [args.eps], "masking_samples": 100},
            {"attack": "pgd", "eps": [args.eps], "params": {"steps": 10}, "masking_samples": 100},
            *[
                {"attack": a, "eps": [args.eps], "threat": "transfer", "surrogate": str(surrogate)}
                for a in TRANSFER_ATTACKS
            ],
        ],
        "metrics": {
            "gradients": {"samples": args.test_size, "bins": 40},
            "transfer_matrix": {"attack": "fgsm", "eps": args.eps, "samples": 500},
            "disagreement": True,
        },
    }


def _hist(recs: list[dict[str, Any]], metric: str) -> tuple[np.ndarray, dict[str, Any]]:
    rec = next(r for r in recs if r["metric"] == metric)
    counts = np.asarray(rec["hist_counts"], dtype=float)
    return counts / counts.sum(), rec


def checks(out: Path) -> dict[str, Any]:
    base = read_json_records(out / "baseline" / "results.jsonl")
    gal = read_json_records(out / "gal" / "results.jsonl")
    hb, rb = _hist(base, "coherence")
    hg, rg = _hist(gal, "coherence")
    overlap = float(np.minimum(hb, hg).sum())
    coh = {
        "baseline_mean": rb["value"], "gal_mean": rg["value"],
        "baseline_median": rb["summary"]["median"], "gal_median": rg["summary"]["median"],
        "baseline_q05": rb["summary"]["q05"], "gal_q95": rg["summary"]["q95"],
        "overlap": overlap,
        "separated": bool(rg["value"] < rb["value"] - 0.2 and overlap < 0.5),
    }

    def acc(recs: list[dict[str, Any]], threat: str, attack: str) -> float | None:
        for r in recs:
            if (r["metric"] == "robust_accuracy" and r.get("threat_model") == threat
                    and r["attack"] == attack):
                return r["value"]
        return None

    transfer = {
        a: {"baseline": acc(base, "transfer", a), "gal": acc(gal, "transfer", a)}
        for a in TRANSFER_ATTACKS
    }
    for v in transfer.values():
        v["gal_higher"] = (v["gal"] is not None and v["baseline"] is not None
                           and v["gal"] > v["baseline"])
    white = {a: {"baseline": acc(base, "white_box", a), "gal": acc(gal, "white_box", a)}
             for a in ("fgsm", "pgd")}
    clean = {
        name: next(r["value"] for r in recs if r["metric"] == "clean_accuracy")
        for name, recs in (("baseline", base), ("gal", gal))
    }
    return {
        "clean_accuracy": clean,
        "coherence": coh,
        "transfer_accuracy": transfer,
        "white_box_accuracy": white,
        "transfer_all_higher_for_gal": all(v["gal_higher"] for v in transfer.values()),
    }


def fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.2f}%"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="runs/acceptance-report")
    p.add_argument("--base-config", default="configs/gal.yaml")
    p.add_argument("--train-size", type=int, default=None, help="training subset (default all)")
    p.add_argument("--epochs", type=int, default=None, help="default: the config's (2)")
    p.add_argument("--test-size", type=int, default=1000)
    p.add_argument("--eps", type=float, default=0.1)
    p.add_argument("--data-root", default=None)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--progress", action="store_true")
    args = p.parse_args(argv)
    out = Path(args.out)
    t0 = time.perf_counter()
    ckpts = {name: train(name, args) for name in ("surrogate", "baseline", "gal")}
    for name in ("baseline", "gal"):
        t1 = time.perf_counter()
        run_suite(ckpts[name], suite(ckpts["surrogate"], args), out=out / name,
                  progress=args.progress, echo=lambda m, n=name: print(f"[{n}] {m}"))
        print(f"[{name}] evaluated in {time.perf_counter() - t1:.0f}s")
    index = build_report([out / "baseline", out / "gal"], out / "report")
    result = checks(out)
    result.update(
        report=str(index), seconds=round(time.perf_counter() - t0, 1),
        settings={k: v for k, v in vars(args).items() if k != "progress"},
    )
    (out / "acceptance_report.json").write_text(json.dumps(result, indent=2) + "\n")
    c = result["coherence"]
    print(f"\nclean accuracy: baseline {100 * result['clean_accuracy']['baseline']:.2f}%,"
          f" GAL {100 * result['clean_accuracy']['gal']:.2f}%")
    print(f"coherence: baseline mean {c['baseline_mean']:.3f} (median {c['baseline_median']:.3f}),"
          f" GAL mean {c['gal_mean']:.3f} (median {c['gal_median']:.3f}), histogram overlap"
          f" {c['overlap']:.3f} -> {'SEPARATED' if c['separated'] else 'NOT separated'}")
    print(f"transfer accuracy from the surrogate at eps={args.eps}:")
    for a, v in result["transfer_accuracy"].items():
        print(f"  {a:7s} baseline {fmt(v['baseline'])}  GAL {fmt(v['gal'])}"
              f"  {'GAL higher' if v['gal_higher'] else 'GAL NOT higher'}")
    for a, v in result["white_box_accuracy"].items():
        print(f"  white-box {a}: baseline {100 * (v['baseline'] or 0):.2f}%,"
              f" GAL {100 * (v['gal'] or 0):.2f}%")
    print(f"report: {index}")
    ok = c["separated"] and result["transfer_all_higher_for_gal"]
    print("ACCEPTANCE:", "PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
