"""Attack speed against the baselines, measured in one run on this machine.

1. PGD-10 on a 5-member LeNet ensemble: robens ``PGD`` vs ``torchattacks.PGD`` on the same
   ``Ensemble`` (torchattacks sees it as one ``nn.Module``) and batch, interleaved repeats; prints
   the median time ratio and checks that both produce the same examples under one seed.
2. Early exit (benchmarks/bench_early_exit.py): PGD-10 robust accuracy of the main checkpoint
   on its 10,000 test images, robens' engine with early exit vs torchattacks' PGD with the
   same parameters and random starts: both robust accuracies and the time ratio (skipped when
   the checkpoint is absent: ``--checkpoint``).
3. Universal perturbation at the same L-inf eps: robens ``SGDUAP`` vs ART
   ``UniversalPerturbation`` (DeepFool-based, per sample) on a small CNN trained for a few seconds
   on Fashion-MNIST (synthetic data when Fashion-MNIST is absent): time ratio and both
   fooling-rate definitions of each perturbation on held-out images.

    python benchmarks/bench_attacks.py                 # ~1-2 min on 2 CPU cores
    python benchmarks/bench_attacks.py --batch 256 --repeats 5 --uap-images 1000
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from bench_early_exit import bench_early_exit
from torch import nn

from robens.attacks import PGD, SGDUAP, uap_metrics
from robens.data import load_dataset
from robens.ensemble import Ensemble
from robens.errors import DatasetError
from robens.models import build_model


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def bench_pgd(args: argparse.Namespace, dev: torch.device) -> None:
    import torchattacks

    torch.manual_seed(0)
    members = [build_model("lenet", activation="leaky_relu") for _ in range(args.members)]
    ens = Ensemble(members, in_shape=(1, 28, 28)).to(dev).eval()
    for p in ens.parameters():
        p.requires_grad_(False)
    x = torch.rand(args.batch, 1, 28, 28, device=dev)
    with torch.no_grad():
        y = ens(x).argmax(-1)
    ours = PGD(ens, args.eps, alpha=args.eps / 4, steps=10)
    theirs = torchattacks.PGD(ens, eps=args.eps, alpha=args.eps / 4, steps=10, random_start=True)

    torch.manual_seed(1)
    a = ours(x, y)
    torch.manual_seed(1)
    b = theirs(x, y)
    same = (a - b).abs().max().item()

    t_ours, t_theirs = [], []
    for r in range(args.repeats):  # interleaved, alternating order
        for which in (0, 1) if r % 2 == 0 else (1, 0):
            sync(dev)
            t = time.perf_counter()
            (ours if which == 0 else theirs)(x, y)
            sync(dev)
            (t_ours if which == 0 else t_theirs).append(time.perf_counter() - t)
    mo, mt = statistics.median(t_ours), statistics.median(t_theirs)
    bo, bt = min(t_ours), min(t_theirs)
    print(
        f"PGD-10, {args.members}x LeNet ensemble, batch {args.batch}, {dev.type},"
        f" {torch.get_num_threads()} thread(s), {args.repeats} interleaved repeats:"
    )
    print(f"  {'':18s} {'median ms':>10s} {'best ms':>10s}")
    print(f"  {'robens PGD':18s} {1000 * mo:10.1f} {1000 * bo:10.1f}")
    print(f"  {'torchattacks PGD':18s} {1000 * mt:10.1f} {1000 * bt:10.1f}")
    print(
        f"  ratio robens/torchattacks: median {mo / mt:.3f}, best {bo / bt:.3f}"
        f"  (max |x_adv difference| under one seed: {same:.2e})"
    )


def small_cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 16, 5, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 5, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * 49, 10),
    )


def bench_uap(args: argparse.Namespace, dev: torch.device) -> None:
    from art.attacks.evasion import UniversalPerturbation
    from art.estimators.classification import PyTorchClassifier

    try:
        train = load_dataset("fashion-mnist", "train", size=args.train_images, seed=0)
        test = load_dataset("fashion-mnist", "test", size=args.uap_images, seed=1)
    except DatasetError:
        train = load_dataset("synthetic", "train", size=args.train_images)
        test = load_dataset("synthetic", "test", size=args.uap_images)
    fit_set = train.subset(args.uap_images, seed=2)
    torch.manual_seed(0)
    model = small_cnn().to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    g = torch.Generator().manual_seed(0)
    t = time.perf_counter()
    for _ in range(3):
        for xb, yb in train.batches(64, shuffle=True, generator=g):
            loss = nn.functional.cross_entropy(model(xb.to(dev)), yb.to(dev))
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    print(
        f"\nUAP at L-inf eps={args.uap_eps} on {train.name}: small CNN trained in"
        f" {time.perf_counter() - t:.1f}s; both fit on the same {len(fit_set)} training images,"
        f" evaluated on {len(test)} test images"
    )

    sync(dev)
    t = time.perf_counter()
    ours = SGDUAP(model, args.uap_eps, iterations=args.uap_iterations, seed=0).fit(fit_set)
    sync(dev)
    t_ours = time.perf_counter() - t

    clf = PyTorchClassifier(
        model=model,
        loss=nn.CrossEntropyLoss(),
        input_shape=(1, 28, 28),
        nb_classes=10,
        clip_values=(0.0, 1.0),
        device_type="gpu" if dev.type == "cuda" else "cpu",
    )
    x_fit, _ = fit_set.tensors()
    art = UniversalPerturbation(
        clf,
        attacker="deepfool",
        eps=args.uap_eps,
        norm=np.inf,
        max_iter=args.art_max_iter,
        delta=0.2,
        verbose=False,
        attacker_params={"max_iter": args.deepfool_steps, "nb_grads": 10, "verbose": False},
    )
    random.seed(0)  # ART shuffles with Python's random module
    t = time.perf_counter()
    art.generate(x_fit.numpy())
    t_art = time.perf_counter() - t
    art_delta = torch.from_numpy(np.asarray(art.noise)).reshape(1, 28, 28).float()
    print(f"  ART fooling_rate on its fitting images (its definition): {art.fooling_rate:.3f}")

    rows = [("robens SGD-UAP", ours, t_ours), ("ART UniversalPerturbation", art_delta, t_art)]
    print(
        f"  {'method':28s} {'time s':>8s} {'accuracy':>9s} {'fool(changed)':>14s}"
        f" {'fool(misclassified)':>20s} {'|delta|inf':>10s}"
    )
    clean = None
    for name, delta, secs in rows:
        m = uap_metrics(model, delta.to(dev), test)
        clean = m["clean_accuracy"]
        print(
            f"  {name:28s} {secs:8.2f} {m['accuracy']:9.3f} {m['fooling_rate_changed']:14.3f}"
            f" {m['fooling_rate_misclassified']:20.3f} {delta.abs().max().item():10.3f}"
        )
    print(f"  clean accuracy {clean:.3f}; time ratio ART/robens = {t_art / t_ours:.1f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--members", type=int, default=5)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--eps", type=float, default=0.1)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--train-images", type=int, default=3000)
    ap.add_argument("--uap-images", type=int, default=200)
    ap.add_argument("--uap-eps", type=float, default=0.15)
    ap.add_argument("--uap-iterations", type=int, default=30)
    ap.add_argument("--art-max-iter", type=int, default=1, help="passes over the images")
    ap.add_argument("--deepfool-steps", type=int, default=20)
    ap.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (1: immune to oversubscribed cores; 0 keeps torch's default)",
    )
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--checkpoint", default="runs/main/checkpoint.safetensors",
                    help="checkpoint of the early-exit benchmark (the main job's)")
    ap.add_argument("--exit-test-size", type=int, default=None,
                    help="test images of the early-exit benchmark (default: all)")
    ap.add_argument("--skip", choices=("pgd", "early_exit", "uap"), default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    if args.skip != "pgd":
        bench_pgd(args, dev)
    if args.skip != "early_exit":
        if Path(args.checkpoint).exists():
            print()
            bench_early_exit(args.checkpoint, args.eps, 10, args.exit_test_size,
                             device=str(dev))
        else:
            print(f"\nearly exit: {args.checkpoint} not found (run the main job first)")
    if args.skip != "uap":
        bench_uap(args, dev)


if __name__ == "__main__":
    main()
