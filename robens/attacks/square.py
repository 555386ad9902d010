"""Square Attack: score-based random search (Andriushchenko et al., ECCV 2020, Alg. 1-3).

Queries only (no gradients). Each iteration proposes, for every sample still robust, a change
of a random square window of side ``s`` (``s^2 ~ p * H * W``, ``p`` halving on the schedule of
the paper, rescaled to ``n_queries``) and keeps it if the loss decreases (or the sample is
misclassified):

* ``linf``: the start is vertical stripes ``x + eps * sign(U)`` per column and channel; a
  proposal sets the window to ``x_best +- 2 eps`` (one sign per channel), projected onto the
  ``eps``-ball and [0, 1];
* ``l2``: the start is a grid of the paper's ``eta`` blocks (concentric rectangles weighted
  ``1 / (r + 1)^2``, the two halves of opposite sign) with random signs; a proposal moves the
  mass of a second window into the first one, keeping ``||delta||_2 = eps``.

The loss is the margin ``z_y - max_{j != y} z_j`` (``loss="margin"``) or ``-CE``; targeted
attacks use ``max_{j != t} z_j - z_t`` (or ``CE`` to the target). ``windows="per_sample"`` (the
default) draws a window and signs for every sample, so each result is independent of the
batch; ``windows="shared"`` draws one per iteration for the whole batch, as AutoAttack's and
torchattacks' implementations do, and under the same ``seed`` reproduces torchattacks
``Square`` draw for draw. Random numbers come from a CPU generator (the same on every device).
L2 norms are summed as torchattacks sums them (``sqrt(sum(d^2))`` over contiguous tensors, not
``torch.norm``), so shared-window runs stay bit-identical to it on CPU: random search is chaotic,
and one accept/reject decision flipped by last-bit rounding makes a sample's trajectory an
independent run (on 1,000 Fashion-MNIST images such drift moved L2 robust accuracy by up to a
point either way, as much as a change of seed).
Window corners are drawn in ``[0, H - s)`` as in the reference code.

Equivalents: torchattacks ``Square(model, norm, eps, n_queries, n_restarts, p_init, loss,
resc_schedule, seed)``; ART ``SquareAttack``.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

import torch

from robens.attacks.base import Attack, Gen, ModelLike
from robens.attacks.losses import ce_loss, cw_margin
from robens.attacks.registry import register_attack
from robens.errors import InputError

_SCHEDULE = ((10, 1), (50, 2), (200, 4), (500, 8), (1000, 16), (2000, 32), (4000, 64),
             (6000, 128), (8000, 256))


def p_schedule(it: int, p_init: float, n_queries: int, rescale: bool = True) -> float:
    """The fraction ``p`` of pixels changed at iteration ``it`` (halving schedule of the paper,
    defined for 10,000 queries and rescaled to ``n_queries`` when ``rescale``)."""
    if rescale:
        it = int(it / n_queries * 10000)
    for bound, div in _SCHEDULE:
        if it <= bound:
            return p_init / div
    return p_init / 512


@lru_cache(maxsize=64)
def _rectangles(a: int, b: int) -> torch.Tensor:
    """Concentric rectangles around the centre of an ``a x b`` block, ``1 / (r + 1)^2``."""
    delta = torch.zeros(a, b)
    ca, cb = a // 2, b // 2
    for r in range(max(ca + 1, cb + 1)):
        delta[max(ca - r, 0) : min(ca - r + 2 * r + 1, a),
              max(cb - r, 0) : min(cb - r + 2 * r + 1, b)] += 1.0 / (r + 1) ** 2
    return delta / delta.pow(2).sum().sqrt()


@lru_cache(maxsize=64)
def eta_block(s: int) -> torch.Tensor:
    """The L2 Square block of side ``s``: rectangles on top, negated rectangles below, unit norm."""
    delta = torch.zeros(s, s)
    delta[: s // 2] = _rectangles(s // 2, s)
    delta[s // 2 :] = -_rectangles(s - s // 2, s)
    return delta / delta.pow(2).sum().sqrt()


@register_attack()
class Square(Attack):
    """Square Attack (Andriushchenko et al. 2020), ``linf`` or ``l2``, margin or CE loss.

    Args:
        model: logits callable, Ensemble or list of models (see :class:`Attack`).
        eps: budget in ``norm``.
        norm: ``"linf"`` or ``"l2"``.
        n_queries: iterations (one query per robust sample each), plus one for the start.
        n_restarts: restarts, each only on the points still robust.
        p_init: initial fraction of pixels changed (0.8 in AutoAttack).
        loss: ``"margin"`` or ``"ce"``.
        resc_schedule: rescale the ``p`` schedule to ``n_queries``.
        seed: seed of the CPU generator (``None``: the global CPU RNG).
        windows: ``"per_sample"`` or ``"shared"`` (see the module docstring).
    """

    name = "square"
    deterministic = False
    white_box = False
    supported_norms = ("linf", "l2")
    supported_losses = ("ce", "margin")

    def __init__(
        self,
        model: ModelLike,
        eps: float = 8 / 255,
        norm: str = "linf",
        n_queries: int = 5000,
        n_restarts: int = 1,
        p_init: float = 0.8,
        loss: str = "margin",
        resc_schedule: bool = True,
        seed: int | None = 0,
        targeted: bool = False,
        combine: str | None = None,
        windows: str = "per_sample",
    ) -> None:
        if loss not in self.supported_losses:
            raise InputError(f"loss must be one of margin, ce for square, got {loss!r}")
        norm = norm.lower() if isinstance(norm, str) else norm
        super().__init__(model, eps, norm, "ce", targeted, combine, seed)
        self.loss = loss
        self.n_queries = self._check_int(n_queries, "n_queries")
        self.n_restarts = self._check_int(n_restarts, "n_restarts")
        self.p_init = self._check_positive(p_init, "p_init")
        if self.p_init > 1:
            raise InputError(f"p_init must lie in (0, 1], got {p_init}")
        if windows not in ("per_sample", "shared"):
            raise InputError(f"windows must be 'per_sample' or 'shared', got {windows!r}")
        self.windows = windows
        self.resc_schedule = bool(resc_schedule)
        self.params: dict[str, Any] = {
            "n_queries": self.n_queries,
            "n_restarts": self.n_restarts,
            "p_init": self.p_init,
            "windows": windows,
        }

    def _objective_from_logits(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.loss == "margin":
            return -cw_margin(logits, y, self.targeted)
        value = ce_loss(logits, y)
        return -value if self.targeted else value

    def generator(self, device: torch.device) -> torch.Generator | None:
        """Random draws come from the CPU (device-independent, torchattacks' stream)."""
        return super().generator(torch.device("cpu"))

    # ------------------------------------------------------------------ random draws
    def _rand(self, shape: tuple[int, ...], gen: Gen, like: torch.Tensor) -> torch.Tensor:
        return torch.rand(shape, generator=gen).to(like.device)

    def _signs(self, shape: tuple[int, ...], gen: Gen, like: torch.Tensor) -> torch.Tensor:
        return torch.sign(2 * self._rand(shape, gen, like) - 1).to(like.dtype)

    def _corner(self, n: int, high: int, gen: Gen, like: torch.Tensor, b: int) -> torch.Tensor:
        v = (high * self._rand((n,), gen, like)).long()
        return v.expand(b) if n == 1 else v

    def _count(self, b: int) -> int:
        return 1 if self.windows == "shared" else b

    @staticmethod
    def _mask(vh: torch.Tensor, vw: torch.Tensor, s: int, h: int, w: int) -> torch.Tensor:
        """``[B, 1, H, W]`` booleans of the windows ``[vh, vh + s) x [vw, vw + s)``."""
        rows = torch.arange(h, device=vh.device)
        cols = torch.arange(w, device=vh.device)
        r = (rows >= vh[:, None]) & (rows < vh[:, None] + s)
        c = (cols >= vw[:, None]) & (cols < vw[:, None] + s)
        return (r[:, :, None] & c[:, None, :])[:, None]

    @staticmethod
    def _take(t: torch.Tensor, vh: torch.Tensor, vw: torch.Tensor, s: int) -> torch.Tensor:
        """The ``[B, C, s, s]`` windows of ``t`` at per-sample corners."""
        ar = torch.arange(s, device=t.device)
        b = torch.arange(t.shape[0], device=t.device)[:, None, None]
        rows = (vh[:, None] + ar)[:, :, None]
        cols = (vw[:, None] + ar)[:, None, :]
        # contiguous: reductions over a permuted (channels-last) copy add in another order
        return t[b, :, rows, cols].permute(0, 3, 1, 2).contiguous()

    def _eta(self, s: int, n: int, gen: Gen, like: torch.Tensor, b: int) -> torch.Tensor:
        """``[B, 1, s, s]`` eta blocks, each transposed with probability 1/2."""
        e = eta_block(s).to(like.device, like.dtype)
        flip = self._rand((n,), gen, like) > 0.5
        out = torch.where(flip.view(-1, 1, 1), e.t().expand(n, s, s), e.expand(n, s, s))
        return out[:, None].expand(b, 1, s, s)

    # ------------------------------------------------------------------ proposals
    def _init_linf(self, x: torch.Tensor, gen: Gen) -> torch.Tensor:
        b, c, _, w = x.shape
        return (x + self.eps * self._signs((b, c, 1, w), gen, x)).clamp(0.0, 1.0)

    def _init_l2(self, x: torch.Tensor, gen: Gen) -> torch.Tensor:
        b, c, h, w = x.shape
        s = h // 5
        delta = torch.zeros_like(x)
        start = (h - s * 5) // 2
        vh = start
        for _ in range(h // s):
            vw = start
            for _ in range(w // s):
                block = self._eta(s, self._count(b), gen, x, b)
                delta[:, :, vh : vh + s, vw : vw + s] += block * self._signs((b, c, 1, 1), gen, x)
                vw += s
            vh += s
        return (x + _unit(delta) * self.eps).clamp(0.0, 1.0)

    def _propose_linf(self, x: torch.Tensor, xb: torch.Tensor, p: float, gen: Gen) -> torch.Tensor:
        b, c, h, w = x.shape
        s = max(int(round(math.sqrt(p * h * w))), 1)
        n = self._count(b)
        vh = self._corner(n, h - s, gen, x, b)
        vw = self._corner(n, w - s, gen, x, b)
        signs = self._signs((n, c, 1, 1), gen, x)
        mask = self._mask(vh, vw, s, h, w).to(x.dtype)
        x_new = xb + mask * (2.0 * self.eps) * signs
        return torch.minimum(torch.maximum(x_new, x - self.eps), x + self.eps).clamp(0.0, 1.0)

    def _propose_l2(self, x: torch.Tensor, xb: torch.Tensor, p: float, gen: Gen) -> torch.Tensor:
        b, c, h, w = x.shape
        s = max(int(round(math.sqrt(p * h * w))), 3)
        s += 1 - s % 2
        n = self._count(b)
        vh = self._corner(n, h - s, gen, x, b)
        vw = self._corner(n, w - s, gen, x, b)
        vh2 = self._corner(n, h - s, gen, x, b)
        vw2 = self._corner(n, w - s, gen, x, b)
        delta = xb - x
        win1 = self._take(delta, vh, vw, s)
        norm_win1 = win1.pow(2).sum((-2, -1), keepdim=True).sqrt()
        both = self._mask(vh, vw, s, h, w) | self._mask(vh2, vw2, s, h, w)
        norm_img = _l2(delta)
        norm_wins = _l2(delta * both)
        new = self._eta(s, n, gen, x, b) * self._signs((b, c, 1, 1), gen, x)
        # contiguous: a transposed eta block would otherwise give ``new`` a transposed layout,
        # and the window sums below would add in another order (rounding drift vs torchattacks)
        new = (new + win1 / (1e-12 + norm_win1)).contiguous()
        budget = (self.eps**2 - norm_img**2).clamp_min(0) / c + norm_wins**2
        new = new / (1e-12 + new.pow(2).sum((-2, -1), keepdim=True).sqrt()) * budget.sqrt()
        delta = delta.masked_fill(self._mask(vh2, vw2, s, h, w), 0.0)
        ar = torch.arange(s, device=x.device)
        bi = torch.arange(b, device=x.device)[:, None, None]
        rows = (vh[:, None] + ar)[:, :, None]
        cols = (vw[:, None] + ar)[:, None, :]
        delta[bi, :, rows, cols] = new.permute(0, 2, 3, 1)
        return (x + _unit(delta) * self.eps).clamp(0.0, 1.0)

    # ------------------------------------------------------------------ search
    @torch.no_grad()
    def single_run(
        self, x: torch.Tensor, y: torch.Tensor, gen: Gen
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """One random search: ``(x_best, objective, success, queries)`` per sample."""
        if x.dim() != 4:
            raise InputError(f"square needs images [B, C, H, W], got {list(x.shape)}")
        linf = self.norm == "linf"
        x_best = self._init_linf(x, gen) if linf else self._init_l2(x, gen)
        logits, obj = self.scores(x_best, y)
        succ = self.is_success(logits, y)
        queries = torch.ones(x.shape[0], dtype=torch.int64, device=x.device)
        propose = self._propose_linf if linf else self._propose_l2
        view = (-1, 1, 1, 1)
        for it in range(self.n_queries):
            idx = (~succ).nonzero().flatten()
            if idx.numel() == 0:
                break
            p = p_schedule(it, self.p_init, self.n_queries, self.resc_schedule)
            xc, xbc = x[idx], x_best[idx]
            x_new = propose(xc, xbc, p, gen)
            logits_new, obj_new = self.scores(x_new, y[idx])
            succ_new = self.is_success(logits_new, y[idx])
            better = (obj_new > obj[idx]) | succ_new
            x_best[idx] = torch.where(better.view(view), x_new, xbc)
            obj[idx] = torch.where(better, obj_new, obj[idx])
            succ[idx] = succ_new
            queries[idx] += 1
        return x_best, obj, succ, queries

    def _attack(self, x: torch.Tensor, y: torch.Tensor, gen: Gen) -> torch.Tensor:
        with torch.no_grad():
            logits0 = self.logits(x)
        robust = ~self.is_success(logits0, y)
        queries = torch.ones(x.shape[0], dtype=torch.int64, device=x.device)
        x_out = x.clone()
        best = torch.full((x.shape[0],), -math.inf, dtype=x.dtype, device=x.device)
        for _ in range(self.n_restarts):
            idx = robust.nonzero().flatten()
            if idx.numel() == 0:
                break
            xb, obj, succ, q = self.single_run(x[idx], y[idx], gen)
            queries[idx] += q
            keep = succ | (obj > best[idx])
            x_out[idx[keep]] = xb[keep]
            best[idx[keep]] = obj[keep]
            robust[idx[succ]] = False
        self._queries = queries
        return x_out


def _view(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return v.view(-1, *([1] * (like.dim() - 1)))


def _l2(t: torch.Tensor) -> torch.Tensor:
    """``||t||_2`` per sample as ``[B, 1, ..., 1]``, summed as ``sqrt(sum(t^2))``."""
    return _view(t.pow(2).flatten(1).sum(-1).sqrt(), t)


def _unit(t: torch.Tensor) -> torch.Tensor:
    """``t / ||t||_2`` per sample (``1e-12`` guard)."""
    return t / (_l2(t) + 1e-12)
