"""Step time of robens' TRS and DVERGE vs straightforward transcriptions of the reference trainers.

* TRS: ``objective "ce + trs"`` (shared clean-batch forward and input-gradients, one stacked
  forward + double backward per PGD step, the clean half's smoothness gradients reused) vs
  ``TRS_Trainer`` transcribed (a forward and an ``autograd.grad`` per member per term).
* DVERGE: ``dverge_losses`` (all members distilled in one PGD, target features once, one
  concatenated cross-training forward per member) + ``losses.sum().backward()`` vs
  ``Linf_distillation`` member by member and ``M (M-1)`` cross-training forwards.
* Both of ours run their input-gradient loops (the TRS smoothness PGD, the distillation) with
  the weights frozen (``robens.models.features.frozen_parameters``): no graph to the weights.

Each pair is first checked on float64 copies of the same models and batches (max abs difference
of the parameter gradients <= 1e-6), then timed in float32 (best of interleaved repeats); the
ratio ours/reference is printed (target <= 0.5x), beside the ratio of their arithmetic (the
floating-point operations of every matmul and convolution, forward and backward, counted by a
``TorchDispatchMode`` over ``torch.utils.flop_counter``'s formulas). On a compute-bound
device (a CPU) the time ratio follows the arithmetic ratio, however the work is batched: on 2
CPU cores, one thread, TRS 0.61-0.74x in time for 0.75x in arithmetic and DVERGE 0.55-0.63x
for 0.60x at its second layer; over its 4 layers (``--layer 0``) 0.88/0.58/0.60/0.61x in time,
0.62x in all for 0.61x in arithmetic (2026-12-01/02; the reference's times vary by 15%).
Fewer, larger kernels (the vectorized members) pay where launches dominate, on a GPU. The
transcriptions keep the reference's costs: ``.backward()`` (parameter gradients too) inside
both PGDs, the DVERGE target features recomputed every step, TRS's per-step ensemble forward
for the accuracy meter. The transcribed TRS PGD steps along each step's own gradient, as
robens' default (``pgd_direction: step``; the released code's accumulating ``adv.grad`` costs
the same).

    OMP_NUM_THREADS=1 python benchmarks/bench_peers.py --arch lenet --members 3 --batch 64
    OMP_NUM_THREADS=1 python benchmarks/bench_peers.py --layer 0   # every DVERGE layer
"""

from __future__ import annotations

import argparse
import copy
import time
from collections.abc import Callable

import torch
from torch import autograd, nn
from torch.nn import functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

from robens.ensemble import Ensemble
from robens.models import build_model
from robens.models.features import candidate_layers, layer_features
from robens.objectives import parse_objective
from robens.objectives.dverge import DistillSettings, dverge_losses

TRS = dict(scale=5.0, coeff=2.0, lamda=2.0, init_eps=0.1, adv_eps=0.2)


# --------------------------------------------------------------------- reference transcriptions
def _magnitude(g: torch.Tensor) -> torch.Tensor:
    return (g**2).sum(1).mean() * 2


def ref_trs_loss(models: list[nn.Module], x, y, progress: float, gen: torch.Generator):
    inputs = x.clone().requires_grad_(True)
    grads, loss_std = [], 0
    for m in models:
        loss = F.cross_entropy(m(inputs), y)
        grads.append(autograd.grad(loss, inputs, create_graph=True)[0].flatten(1))
        loss_std = loss_std + loss
    pairs = [(a, b) for a in range(len(models)) for b in range(a + 1, len(models))]
    cos = sum(F.cosine_similarity(grads[a], grads[b]).abs().mean() for a, b in pairs) / len(pairs)
    n = x.shape[0] // 2
    eps = (TRS["adv_eps"] - TRS["init_eps"]) * progress + TRS["init_eps"]
    src = x[n:].detach()
    u = torch.rand(src.shape, generator=gen, device=gen.device, dtype=x.dtype).to(x.device)
    adv = (src + (2 * u - 1) * eps).clamp(0, 1)
    for _ in range(6):
        adv.requires_grad_(True)
        obj = 0
        for m in models:
            g = autograd.grad(F.cross_entropy(m(adv), y[n:]), adv, create_graph=True)[0]
            obj = obj + _magnitude(g.flatten(1))
        (obj / len(models)).backward()  # as the reference: also fills the parameters' .grad
        step = adv.grad
        with torch.no_grad():
            adv = torch.max(torch.min(adv + eps / 3 * step.sign(), src + eps), src - eps)
            adv = adv.clamp(0, 1)
    adv_x = torch.cat([x[:n], adv]).requires_grad_(True)
    smooth = 0
    for m in models:
        g = autograd.grad(F.cross_entropy(m(adv_x), y), adv_x, create_graph=True)[0]
        smooth = smooth + _magnitude(g.flatten(1))
    smooth = smooth / len(models)
    with torch.no_grad():
        Ensemble(models, validate=False)(x)  # the reference's accuracy meter (no grad needed)
    for m in models:  # optimizer.zero_grad() drops what the PGD's backward left
        m.zero_grad(set_to_none=True)
    return loss_std + TRS["scale"] * (TRS["coeff"] * cos + TRS["lamda"] * smooth)


def ref_distill(model: nn.Module, layer: str, x, xt, s: DistillSettings):
    z, g = x.clone(), torch.zeros_like(x)
    for _ in range(s.steps):
        z.requires_grad_(True)
        target = layer_features(model, layer, xt).detach()  # recomputed each step
        loss = F.mse_loss(layer_features(model, layer, z), target)
        model.zero_grad()
        loss.backward()
        with torch.no_grad():
            grad = z.grad / z.grad.flatten(1).norm(p=1, dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
            g = s.mu * g + grad
            z = torch.max(torch.min(z - s.alpha * g.sign(), x + s.eps), x - s.eps).clamp(0, 1)
    model.zero_grad()
    return z.detach()


def ref_dverge_step(models, layer, x, y, xt, s):
    distilled = [ref_distill(m, layer, x, xt, s) for m in models]
    for i, m in enumerate(models):
        loss = sum(F.cross_entropy(m(d), y) for j, d in enumerate(distilled) if j != i)
        loss.backward()


# --------------------------------------------------------------------------- harness
def grads_of(models: list[nn.Module]) -> list[torch.Tensor]:
    return [p.grad.detach().clone() for m in models for p in m.parameters()]


def zero(models: list[nn.Module]) -> None:
    for m in models:
        m.zero_grad(set_to_none=True)


class FlopCount(TorchDispatchMode):
    """Floating-point operations of the ops run inside the block (``flop_registry``'s formulas:
    matmuls and convolutions, their backward and double-backward included).

    Not ``torch.utils.flop_counter.FlopCounterMode``: its module tracker raises inside
    ``torch.autograd.grad``, which both steps call."""

    def __init__(self) -> None:
        super().__init__()
        self.total = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        formula = flop_registry.get(func._overloadpacket)
        if formula is not None:
            self.total += int(formula(*args, **kwargs, out_val=out))
        return out


def flops_of(fn: Callable[[], None]) -> int:
    with FlopCount() as count:
        fn()
    return count.total


def timed_pair(
    a: Callable[[], None], b: Callable[[], None], repeats: int, device: torch.device
) -> tuple[float, float]:
    """Best-of-``repeats`` seconds of ``a`` and ``b``, interleaved (robust to shared cores)."""
    best = [float("inf"), float("inf")]
    a(), b()  # warm-up
    for _ in range(repeats):
        for k, fn in enumerate((a, b)):
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            fn()
            if device.type == "cuda":
                torch.cuda.synchronize()
            best[k] = min(best[k], time.perf_counter() - t0)
    return best[0], best[1]


def steps_for(models, x, y, xt, layer, s):
    ens = Ensemble(models, validate=False)
    obj = parse_objective("ce + trs", {"ce": {"reduction": "sum"}, "trs": TRS})
    gen = lambda: torch.Generator(x.device).manual_seed(0)  # noqa: E731

    def ours_trs():
        zero(models)
        obj(obj.batch(ens, x, y, progress=0.5, generator=gen()))[0].backward()

    def ref_trs():
        zero(models)
        ref_trs_loss(models, x, y, 0.5, gen()).backward()

    def ours_dverge():
        zero(models)
        dverge_losses(ens, layer, x, y, xt, s)[0].sum().backward()

    def ref_dverge():
        zero(models)
        ref_dverge_step(models, layer, x, y, xt, s)

    return {"trs": (ours_trs, ref_trs), "dverge": (ours_dverge, ref_dverge)}


def report(name: str, ours: Callable[[], None], ref: Callable[[], None], repeats: int,
           dev: torch.device) -> tuple[int, int, float, float]:
    """Print and return one step's arithmetic and best time, ours and the reference's."""
    f_ours, f_ref = flops_of(ours), flops_of(ref)
    t_ours, t_ref = timed_pair(ours, ref, repeats, dev)
    print(f"{name:18s} ours {t_ours * 1e3:8.1f} ms  reference {t_ref * 1e3:8.1f} ms  "
          f"ratio {t_ours / t_ref:.2f}x   arithmetic {f_ours / 1e9:.1f} vs "
          f"{f_ref / 1e9:.1f} GFLOP, ratio {f_ours / f_ref:.2f}x")
    return f_ours, f_ref, t_ours, t_ref


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="lenet")
    ap.add_argument("--members", type=int, default=3)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--layer", type=int, default=2,
                    help="1-based candidate layer for DVERGE; 0: every candidate layer, and "
                         "their total (the expected step under DVERGE's uniform per-epoch draw)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    dev = torch.device(args.device)
    torch.manual_seed(0)
    models = [build_model(args.arch).to(dev).train() for _ in range(args.members)]
    candidates = candidate_layers(models[0])
    layers = candidates if args.layer == 0 else [candidates[args.layer - 1]]
    shape = models[0].robens_spec["in_shape"]
    x, xt = torch.rand(2, args.batch, *shape, device=dev).unbind(0)
    y = torch.randint(0, 10, (args.batch,), device=dev)
    s = DistillSettings(eps=0.35, alpha=0.035, steps=10)

    m64 = [copy.deepcopy(m).double() for m in models]

    def check(name: str, ours: Callable[[], None], ref: Callable[[], None]) -> None:
        ours()
        g_ours = grads_of(m64)
        ref()
        diff = max(float((a - b).abs().max()) for a, b in zip(g_ours, grads_of(m64), strict=True))
        assert diff <= 1e-6, f"{name}: gradients differ by {diff:.3g}"
        print(f"{name}: float64 gradients equal (max abs diff {diff:.2e})")

    x64, xt64 = x.double(), xt.double()
    check("trs", *steps_for(m64, x64, y, xt64, layers[0], s)["trs"])
    for layer in layers:
        check(f"dverge at {layer!r}", *steps_for(m64, x64, y, xt64, layer, s)["dverge"])

    print(f"{args.arch} x{args.members}, batch {args.batch}, {dev}, threads "
          f"{torch.get_num_threads()}, DVERGE layer(s) {layers}")
    report("trs", *steps_for(models, x, y, xt, layers[0], s)["trs"], args.repeats, dev)
    totals = [0, 0, 0.0, 0.0]
    for layer in layers:
        row = report(f"dverge {layer!r}", *steps_for(models, x, y, xt, layer, s)["dverge"],
                     args.repeats, dev)
        totals = [a + b for a, b in zip(totals, row, strict=True)]
    if len(layers) > 1:
        f_ours, f_ref, t_ours, t_ref = totals
        print(f"dverge, all {len(layers)} layers: time ratio {t_ours / t_ref:.2f}x, "
              f"arithmetic ratio {f_ours / f_ref:.2f}x (each layer equally likely)")


if __name__ == "__main__":
    main()
