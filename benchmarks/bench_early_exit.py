"""Early exit: PGD-10 robust accuracy of a checkpoint, robens (engine, early exit) vs torchattacks.

Both attack the checkpoint's ensemble (torchattacks sees it as one ``nn.Module``) with the same
parameters (eps, alpha = 2.5 eps / steps, 10 steps, random start) and the same random starts:
before each batch the global RNG is seeded with the batch index, and both draw their start
from it. Robust accuracy counts a sample when it is classified correctly clean and attacked.
robens runs through :func:`robens.evaluate.engine.evaluate_attack` with ``early_exit=True``
(samples leave the batch at the first iterate that fools the model); torchattacks runs every
step on every sample. Prints both robust accuracies, the per-sample agreement, the samples on
which they differ, and the time ratio, measured in the same run (alternating order by batch).

    python benchmarks/bench_early_exit.py runs/main/checkpoint.safetensors       # 10,000 images
    python benchmarks/bench_early_exit.py runs/main --test-size 1000 --eps 0.1
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize()


def bench_early_exit(
    checkpoint: str | Path, eps: float = 0.1, steps: int = 10, test_size: int | None = None,
    batch_size: int = 500, device: str = "cpu",
) -> dict[str, float]:
    import torchattacks

    from robens.attacks import PGD
    from robens.evaluate.clean import checkpoint_test_set
    from robens.evaluate.engine import evaluate_attack
    from robens.factory import load_ensemble

    dev = torch.device(device)
    model, meta = load_ensemble(checkpoint)
    model.to(dev).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    data = checkpoint_test_set(meta, None, None, test_size, 0)
    alpha = 2.5 * eps / steps
    ours = PGD(model, eps, alpha=alpha, steps=steps)  # seed None: the global RNG, as torchattacks
    theirs = torchattacks.PGD(model, eps=eps, alpha=alpha, steps=steps, random_start=True)
    t_ours = t_theirs = 0.0
    rob_ours: list[torch.Tensor] = []
    rob_theirs: list[torch.Tensor] = []
    for bi, (x, y) in enumerate(data.batches(batch_size)):
        x, y = x.to(dev), y.to(dev)
        for which in ((0, 1) if bi % 2 == 0 else (1, 0)):
            torch.manual_seed(bi)
            _sync(dev)
            t = time.perf_counter()
            if which == 0:
                out = evaluate_attack(model, ours, [(x, y)], device=dev, early_exit=True)
                _sync(dev)
                t_ours += time.perf_counter() - t
                rob_ours.append(out.robust)
            else:
                x_adv = theirs(x, y)
                with torch.no_grad():
                    ok = (model(x).argmax(-1) == y) & (model(x_adv).argmax(-1) == y)
                _sync(dev)
                t_theirs += time.perf_counter() - t
                rob_theirs.append(ok.cpu())
    a, b = torch.cat(rob_ours), torch.cat(rob_theirs)
    n = a.numel()
    res = {
        "n": n, "robens": float(a.double().mean()), "torchattacks": float(b.double().mean()),
        "agreement": float((a == b).double().mean()), "only_robens_robust": int((a & ~b).sum()),
        "only_torchattacks_robust": int((~a & b).sum()), "robens_s": t_ours,
        "torchattacks_s": t_theirs,
    }
    print(f"PGD-{steps} at eps={eps:g} (alpha {alpha:g}, random start) on {n} test images of"
          f" {checkpoint} ({dev.type}, {torch.get_num_threads()} thread(s)):")
    print(f"  robens, engine with early exit : robust {100 * res['robens']:.2f}%"
          f"  {t_ours:8.1f} s")
    print(f"  torchattacks PGD, every step   : robust {100 * res['torchattacks']:.2f}%"
          f"  {t_theirs:8.1f} s")
    print(f"  per-sample agreement {100 * res['agreement']:.2f}% (robust only under robens:"
          f" {res['only_robens_robust']}, only under torchattacks:"
          f" {res['only_torchattacks_robust']}); identical robust accuracy:"
          f" {'yes' if res['robens'] == res['torchattacks'] else 'NO'}")
    print(f"  time ratio robens/torchattacks = {t_ours / t_theirs:.3f}"
          f" ({t_theirs / t_ours:.2f}x faster)")
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint", nargs="?", default="runs/main/checkpoint.safetensors")
    ap.add_argument("--eps", type=float, default=0.1)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--test-size", type=int, default=None, help="default: the whole test split")
    ap.add_argument("--batch-size", type=int, default=500)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    bench_early_exit(args.checkpoint, args.eps, args.steps, args.test_size, args.batch_size,
                     args.device)


if __name__ == "__main__":
    main()
