"""Acceptance measurement of the attacks (issue 4) on a trained checkpoint.

On the 3-member LeNet ensemble trained 2 epochs on Fashion-MNIST (``robens train``), at
eps = 0.1: PGD-20 <= I-FGSM-10 <= FGSM in robust accuracy, all well below clean; and the worst of
5 SGD-UAP seeds at eps = 0.15 lowers accuracy by at least 20 points.

    python benchmarks/acceptance_attacks.py runs/main/checkpoint.safetensors --test-size 2000

Prints one line per measurement and PASS/FAIL per criterion; ``--json`` writes the numbers.
Robust accuracy here is accuracy on the attacked inputs (a sample counts when it is classified
correctly after the attack), the usual definition for untargeted attacks on the true label.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from robens.attacks import FGSM, IFGSM, PGD, SGDUAP, uap_metrics
from robens.data import load_dataset
from robens.evaluate.clean import checkpoint_test_set
from robens.factory import load_ensemble

WELL_BELOW = 0.20  # "well below clean": at least 20 accuracy points lower


def accuracy_under(model, attack, data, batch_size: int) -> float:
    correct = n = 0
    for x, y in data.batches(batch_size):
        x_adv = x if attack is None else attack(x, y)
        with torch.no_grad():
            correct += int((model(x_adv).argmax(-1) == y).sum())
        n += y.numel()
    return correct / n


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("checkpoint", type=Path)
    p.add_argument("--test-size", type=int, default=None, help="test subset (default: all)")
    p.add_argument("--eps", type=float, default=0.1)
    p.add_argument("--uap-eps", type=float, default=0.15)
    p.add_argument("--uap-seeds", type=int, default=5)
    p.add_argument("--uap-iterations", type=int, default=100)
    p.add_argument("--uap-batch-size", type=int, default=200)
    p.add_argument("--batch-size", type=int, default=250)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    model, meta = load_ensemble(args.checkpoint)
    model.eval()
    for q in model.parameters():
        q.requires_grad_(False)
    test = checkpoint_test_set(meta, None, None, args.test_size, args.seed)
    print(
        f"checkpoint {args.checkpoint}: {model.num_members}-member ensemble"
        f" ({model.extra_repr()}); {len(test)} test images of {test.name}"
    )
    out: dict = {"checkpoint": str(args.checkpoint), "n": len(test), "eps": args.eps}

    t0 = time.perf_counter()
    out["clean"] = accuracy_under(model, None, test, args.batch_size)
    eps = args.eps
    attacks = {
        "fgsm": FGSM(model, eps),
        "ifgsm10": IFGSM(model, eps, alpha=eps / 10, steps=10),
        "pgd20": PGD(model, eps, alpha=2.5 * eps / 20, steps=20, seed=args.seed),
    }
    print(f"clean accuracy            {100 * out['clean']:6.2f}%")
    for name, atk in attacks.items():
        t = time.perf_counter()
        out[name] = accuracy_under(model, atk, test, args.batch_size)
        print(
            f"{name:8s} eps={eps:<5g}      {100 * out[name]:6.2f}%"
            f"   ({time.perf_counter() - t:.1f}s)"
        )

    # SGD-UAP: fitted on the training split (streamed), worst of N seeds ranked on the test set
    cfg = meta.get("config", {}).get("data", {})
    train = load_dataset(test.name, "train", root=cfg.get("root"), seed=args.seed)
    t = time.perf_counter()
    uap = SGDUAP(
        model,
        args.uap_eps,
        batch_size=args.uap_batch_size,
        iterations=args.uap_iterations,
        seeds=args.uap_seeds,
        seed=args.seed,
    )
    delta = uap.fit(train, select_on=test)
    m = uap_metrics(model, delta, test)
    out["uap"] = {
        **m,
        "per_seed_accuracy": [h["accuracy"] for h in uap.history],
        "eps": args.uap_eps,
        "seeds": args.uap_seeds,
    }
    print(
        f"SGD-UAP eps={args.uap_eps:g} worst of {args.uap_seeds}:"
        f" accuracy {100 * m['accuracy']:.2f}% (clean {100 * m['clean_accuracy']:.2f}%),"
        f" fooling rate {100 * m['fooling_rate_changed']:.2f}%"
        f" changed / {100 * m['fooling_rate_misclassified']:.2f}% misclassified"
        f"; per seed {[round(100 * a, 2) for a in out['uap']['per_seed_accuracy']]}"
        f" ({time.perf_counter() - t:.1f}s)"
    )

    checks = {
        "PGD-20 <= I-FGSM-10": out["pgd20"] <= out["ifgsm10"],
        "I-FGSM-10 <= FGSM": out["ifgsm10"] <= out["fgsm"],
        f"all >= {100 * WELL_BELOW:.0f} points below clean": all(
            out[k] <= out["clean"] - WELL_BELOW for k in attacks
        ),
        "SGD-UAP lowers accuracy by >= 20 points": m["accuracy"] <= m["clean_accuracy"] - 0.20,
    }
    out["checks"] = checks
    out["seconds"] = time.perf_counter() - t0
    for name, ok in checks.items():
        print(f"{'PASS' if ok else 'FAIL'}  {name}")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
