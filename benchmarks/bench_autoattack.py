"""AutoAttack on a checkpoint: robens vs torchattacks, and the per-sample worst-case check.

1. robens ``AutoAttack`` (standard: APGD-CE, APGD-T, Square; FAB-T is not built) against
   torchattacks running the same stages with the same parameters (``MultiAttack`` of
   ``APGD``, ``APGDT``, ``Square``): robust accuracy and wall time of each, in one run.
2. The worst-case property on the same images: every sample robust under AutoAttack is robust
   under FGSM, PGD-20 and APGD-CE (each run on its own), and AutoAttack's robust accuracy is
   at most the minimum of theirs. Prints AutoAttack's per-stage log.

    python benchmarks/bench_autoattack.py runs/main/baseline/checkpoint.safetensors --test-size 1000

The defaults are the standard budget (100 iterations, 9 target classes, 5,000 queries). On 2
idle CPU cores, for 1,000 images of the main job's 3-member LeNet at eps 0.1 (2026-12-02), the
run took 6,353 s in all: robens 24.70% in 2,949 s, torchattacks 24.70% in 3,073 s (ratio 0.96),
the same outcome on all 1,000 images. The main job's CPU budget: ``--steps 20
--n-target-classes 3 --n-queries 300``. At a budget below 100 iterations the two differ by
design: APGD's checkpoints here are the paper's ``ceil(p_j N)``, while torchattacks (like the
original code) rounds the interval lengths down (checkpoints 4, 7, 9, 10, 11, ... at N = 20
instead of 5, 9, 12, 14, ...); both give 22, 41, 57, 70, 80, 87, 93, 99 at N = 100.
"""

from __future__ import annotations

import argparse
import time

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint", nargs="?", default="runs/main/baseline/checkpoint.safetensors")
    ap.add_argument("--eps", type=float, default=0.1)
    ap.add_argument("--test-size", type=int, default=1000)
    ap.add_argument("--batch-size", type=int, default=250)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--n-target-classes", type=int, default=9)
    ap.add_argument("--n-queries", type=int, default=5000)
    ap.add_argument("--skip-torchattacks", action="store_true")
    args = ap.parse_args()

    from robens.attacks import APGD, FGSM, PGD, AutoAttack
    from robens.evaluate.clean import checkpoint_test_set
    from robens.evaluate.engine import evaluate_attack, merge_stage_logs
    from robens.factory import load_ensemble
    from robens.stats import mcnemar_exact

    model, meta = load_ensemble(args.checkpoint)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    data = checkpoint_test_set(meta, None, None, args.test_size, 0)
    batches = list(data.batches(args.batch_size))
    eps = args.eps
    logs: list = []

    def keep(i, x, y, result):
        logs.append((int(y.shape[0]), result.info["stages"]))

    aa = AutoAttack(model, eps=eps, steps=args.steps, n_target_classes=args.n_target_classes,
                    n_queries=args.n_queries, seed=0)
    multi = None
    if not args.skip_torchattacks:
        import torchattacks

        stages = [
            torchattacks.APGD(model, eps=eps, steps=args.steps, n_restarts=1, loss="ce",
                              seed=0),
            # torchattacks' APGDT attacks the n_classes - 1 runners-up: n_classes sets the count
            torchattacks.APGDT(model, eps=eps, steps=args.steps, n_restarts=1,
                               n_classes=args.n_target_classes + 1, seed=0),
            torchattacks.Square(model, eps=eps, n_queries=args.n_queries, n_restarts=1,
                                p_init=0.8, seed=0),
        ]
        multi = torchattacks.MultiAttack(stages)
    # interleaved by batch, alternating which goes first, so a change of the machine's load
    # affects both alike
    t_ours = t_theirs = 0.0
    outs, rob = [], []
    for bi, (x, y) in enumerate(batches):
        for which in ((0, 1) if bi % 2 == 0 else (1, 0)):
            t = time.perf_counter()
            if which == 0:
                outs.append(evaluate_attack(model, aa, [(x, y)], on_batch=keep,
                                            early_exit=True))
                t_ours += time.perf_counter() - t
            elif multi is not None:
                x_adv = multi(x, y)
                t_theirs += time.perf_counter() - t
                with torch.no_grad():
                    rob.append((model(x).argmax(-1) == y) & (model(x_adv).argmax(-1) == y))
        print(f"batch {bi + 1}/{len(batches)}: robens {t_ours:.1f} s, torchattacks"
              f" {t_theirs:.1f} s so far", flush=True)
    robust = torch.cat([o.robust for o in outs])
    n = int(robust.numel())
    robust_accuracy = float(robust.double().mean())
    print(f"AutoAttack (standard without FAB-T; {args.steps} iterations, {args.n_target_classes}"
          f" target classes, {args.n_queries} queries) at eps={eps:g} on {n} test images of"
          f" {args.checkpoint}, {torch.get_num_threads()} thread(s):")
    print(f"  {'stage':<10} {'robust % after':>14} {'attacked':>9} {'broken':>7} {'seconds':>8}")
    for s in merge_stage_logs(logs):
        print(f"  {s['stage']:<10} {100 * s['robust_accuracy']:>14.2f} {s['n_attacked']:>9d}"
              f" {s['n_broken']:>7d} {s['seconds']:>8.1f}")
    print(f"  robens AutoAttack: robust {100 * robust_accuracy:.2f}% in {t_ours:.1f} s")
    if multi is not None:
        rob_t = torch.cat(rob)
        theirs = float(rob_t.double().mean())
        print(f"  torchattacks MultiAttack(APGD, APGDT, Square): robust {100 * theirs:.2f}%"
              f" in {t_theirs:.1f} s")
        only_ours, only_theirs, p = mcnemar_exact(robust, rob_t)
        print(f"  per sample: {n - only_ours - only_theirs}/{n} agree; robust only under"
              f" robens {only_ours}, only under torchattacks {only_theirs} (McNemar p {p:.2g})")
        print(f"  time ratio robens/torchattacks = {t_ours / t_theirs:.3f} (speed-up"
              f" {t_theirs / t_ours:.2f}x); robust accuracy robens"
              f" {'<=' if robust_accuracy <= theirs else '>'} torchattacks")

    print("worst case over attacks, per sample:")
    others = {
        "fgsm": FGSM(model, eps),
        "pgd-20": PGD(model, eps, steps=20, seed=0),
        "apgd-ce": APGD(model, eps=eps, steps=args.steps, seed=0),
    }
    ok = True
    for name, atk in others.items():
        out = evaluate_attack(model, atk, batches)
        sub = not bool((robust & ~out.robust).any())
        ok &= sub and robust_accuracy <= out.robust_accuracy
        print(f"  {name:<8} robust {100 * out.robust_accuracy:6.2f}%; every AutoAttack-robust"
              f" sample robust here: {'yes' if sub else 'NO'}")
    print("AutoAttack <= each attack, per sample:", "PASS" if ok else "FAIL")


if __name__ == "__main__":
    main()
