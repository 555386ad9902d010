"""Step time of the vectorized (torch.func.vmap) vs loop ensemble paths, on this device.

Measures one training step (forward, cross-entropy, backward) and an input-gradient step
(forward + backward to the input, as attacks do) for M members of one architecture, and prints
the loop/vmap time ratio measured in this run. ``Ensemble(vectorize="auto")`` picks the loop on
CPU and vmap on CUDA; this script is how that choice is checked.

    python benchmarks/bench_ensemble.py --arch lenet --members 5 --batch 128 --repeats 10
"""

from __future__ import annotations

import argparse
import time

import torch
from torch.nn import functional as F

from robens.ensemble import Ensemble
from robens.models import build_model


def timed(fn, repeats: int, device: torch.device) -> float:
    fn()  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / repeats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="lenet")
    ap.add_argument("--members", type=int, default=5)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    dev = torch.device(args.device)
    torch.manual_seed(0)
    members = [build_model(args.arch, activation="leaky_relu") for _ in range(args.members)]
    shape = members[0].robens_spec["in_shape"]
    x = torch.rand(args.batch, *shape, device=dev)
    y = torch.randint(0, 10, (args.batch,), device=dev)
    results = {}
    for vec in (False, True):
        ens = Ensemble(members, vectorize=vec).to(dev).eval()

        def train_step(ens=ens):
            ens.zero_grad(set_to_none=True)
            F.cross_entropy(ens.member_logits(x).flatten(0, 1), y.repeat(args.members)).backward()

        def input_grad(ens=ens):
            xx = x.clone().requires_grad_(True)
            torch.autograd.grad(F.cross_entropy(ens(xx), y), xx)

        results[vec] = (timed(train_step, args.repeats, dev), timed(input_grad, args.repeats, dev))
    print(f"device {dev} ({torch.get_num_threads()} threads), {args.members}x{args.arch},"
          f" batch {args.batch}, {args.repeats} repeats")
    for i, what in enumerate(("train step (fwd+bwd to params)", "input gradient (attack step)")):
        loop, vmap = results[False][i], results[True][i]
        print(f"{what:34s} loop {1e3 * loop:8.2f} ms  vmap {1e3 * vmap:8.2f} ms"
              f"  loop/vmap = {loop / vmap:.2f}x")


if __name__ == "__main__":
    main()
