"""Detection scores for adversarial inputs; every score is *higher for normal inputs*.

* :func:`confidence`: the maximum predicted probability (Hendrycks & Gimpel 2017).
* :func:`non_me`: non-maximal entropy (Pang et al. 2018, NeurIPS, Sec. 3.3; official code
  ``P2333/Reverse-Cross-Entropy``): with ``y^ = argmax F``, ``F^_i = F_i / sum_{j != y^} F_j``
  and ``nonME = -sum_{i != y^} F^_i log F^_i``; maximal (``log(L - 1)``) when the non-maximal
  predictions are uniform, which RCE training favours on normal inputs.
* :class:`KernelDensity`: kernel density on the last hidden layer (Feinman et al. 2017, "Detecting
  adversarial samples from artifacts"; Pang et al. 2018): ``KD(x) = (1/|X_y^|) sum_{x_i in
  X_y^} k(phi(x), phi(x_i))`` with a Gaussian kernel ``k(a, b) = exp(-||a - b||^2 / (2 h^2))``
  (scikit-learn's bandwidth ``h``; Pang's ``exp(-||.||^2 / sigma^2)`` is ``h^2 = sigma^2 / 2``)
  and ``X_y^`` a class-conditional reference set of training points of the predicted class.
  Scores are log-densities (monotone in KD, so the AUC is the same, and they never underflow
  in 1024-d feature spaces). For an :class:`~robens.ensemble.Ensemble` each member gets its
  own feature space and reference set; the score is the mean of the members' log-densities.
* :func:`member_agreement`: ``1 -`` member disagreement, the fraction of members whose vote
  equals the ensemble's prediction.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import torch
from torch import nn

from robens.errors import InputError
from robens.utils import eval_mode

DETECTORS = ("confidence", "non_me", "kernel_density", "disagreement")


def confidence(probs: torch.Tensor) -> torch.Tensor:
    """Maximum class probability of each sample, ``[B]``."""
    return probs.amax(-1)


def non_me(probs: torch.Tensor, eps: float = 1e-30) -> torch.Tensor:
    """Non-maximal entropy of each sample, ``[B]`` (Pang et al. 2018; code form
    ``sum_{i != y^} (-log F_i) F_i / S + log S`` with ``S = sum_{j != y^} F_j``)."""
    if probs.dim() != 2 or probs.shape[-1] < 2:
        raise InputError(f"non_me needs probabilities [B, L] with L >= 2, got {list(probs.shape)}")
    p = probs.double()
    top = p.argmax(-1, keepdim=True)
    mask = torch.ones_like(p, dtype=torch.bool).scatter_(1, top, False)
    rest = torch.where(mask, p, torch.zeros_like(p))
    s = rest.sum(-1, keepdim=True).clamp_min(eps)
    q = rest / s
    ent = -(q * torch.log(q.clamp_min(eps))).sum(-1)
    return ent.to(probs.dtype)


def member_votes(member_logits: torch.Tensor) -> torch.Tensor:
    """Predicted class of every member, ``[M, B]``."""
    return member_logits.argmax(-1)


def member_agreement(member_logits: torch.Tensor, ensemble_logits: torch.Tensor) -> torch.Tensor:
    """Fraction of members voting for the ensemble's prediction, ``[B]`` (1 = unanimous)."""
    pred = ensemble_logits.argmax(-1)
    return (member_votes(member_logits) == pred.unsqueeze(0)).double().mean(0)


def features_of(model: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """Last-hidden-layer features: ``[model.features(x)]``, or one per Ensemble member."""
    members = getattr(model, "members", None)
    mods = list(members) if members is not None else [model]
    out = []
    for i, m in enumerate(mods):
        fn = getattr(m, "features", None)
        if not callable(fn):
            raise InputError(
                f"kernel density needs models with a features(x) method (the last hidden"
                f" layer); member {i} ({type(m).__name__}) has none"
            )
        out.append(fn(x).flatten(1))
    return out


def log_kernel_density(
    feats: torch.Tensor,
    pred: torch.Tensor,
    ref_feats: torch.Tensor,
    ref_labels: torch.Tensor,
    bandwidth: float,
    chunk: int = 256,
) -> torch.Tensor:
    """``log KD`` of every sample against the reference points of its predicted class, ``[B]``.

    ``log KD(x) = logsumexp_i(-||phi(x) - phi(x_i)||^2 / (2 h^2)) - log |X_y^|``; a class with
    no reference point gives ``-inf``.
    """
    if bandwidth <= 0 or not math.isfinite(bandwidth):
        raise InputError(f"bandwidth must be a finite number > 0, got {bandwidth!r}")
    f = feats.double()
    r = ref_feats.double().to(f.device)
    rl = ref_labels.to(f.device)
    out = torch.full((f.shape[0],), -math.inf, dtype=torch.float64, device=f.device)
    for c in pred.unique().tolist():
        rows = (pred == c).nonzero().flatten()
        ref = r[rl == c]
        if ref.shape[0] == 0:
            continue
        for s in range(0, rows.numel(), chunk):
            idx = rows[s : s + chunk]
            d2 = torch.cdist(f[idx], ref).square()
            out[idx] = torch.logsumexp(-d2 / (2 * bandwidth**2), dim=1) - math.log(ref.shape[0])
    return out


class KernelDensity:
    """Class-conditional kernel-density detector on the last hidden layer.

    Args:
        model: a model with ``features(x)`` (or an Ensemble of such members) returning logits.
        bandwidth: Gaussian kernel bandwidth ``h`` (scikit-learn convention; Feinman et al. used
            1.20 on MNIST and 0.26 on CIFAR-10; Pang's sigma^2 = 1/0.26 is h = 1.387).
        per_class: reference points per class (Pang et al.: 1000 random training points).
        seed: seed of the random choice of reference points.

    ``fit(batches)`` stores the reference features of each member; ``score(x)`` returns the
    mean over members of ``log KD`` ``[B]``.
    """

    def __init__(
        self, model: nn.Module, bandwidth: float = 1.0, per_class: int = 1000, seed: int = 0
    ) -> None:
        if not (isinstance(bandwidth, (int, float)) and bandwidth > 0):
            raise InputError(f"bandwidth must be > 0, got {bandwidth!r}")
        if isinstance(per_class, bool) or not isinstance(per_class, int) or per_class < 1:
            raise InputError(f"per_class must be an integer >= 1, got {per_class!r}")
        self.model = model
        self.bandwidth = float(bandwidth)
        self.per_class = per_class
        self.seed = seed
        self.ref_feats: list[torch.Tensor] | None = None
        self.ref_labels: torch.Tensor | None = None

    def _device(self) -> torch.device:
        for p in self.model.parameters():
            return p.device
        return torch.device("cpu")

    @torch.no_grad()
    def fit(self, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> KernelDensity:
        """Collect reference features: ``per_class`` random points per class (label = true)."""
        feats: list[list[torch.Tensor]] = []
        labels: list[torch.Tensor] = []
        dev = self._device()
        with eval_mode(self.model):
            for x, y in batches:
                fs = features_of(self.model, x.to(dev))
                if not feats:
                    feats = [[] for _ in fs]
                for store, f in zip(feats, fs, strict=True):
                    store.append(f.cpu())
                labels.append(y.cpu())
        if not labels:
            raise InputError("KernelDensity.fit got no reference samples")
        y_all = torch.cat(labels)
        g = torch.Generator().manual_seed(int(self.seed))
        keep = []
        for c in y_all.unique().tolist():
            idx = (y_all == c).nonzero().flatten()
            perm = idx[torch.randperm(idx.numel(), generator=g)[: self.per_class]]
            keep.append(perm)
        sel = torch.cat(keep).sort().values
        self.ref_feats = [torch.cat(store)[sel] for store in feats]
        self.ref_labels = y_all[sel]
        return self

    @torch.no_grad()
    def score(self, x: torch.Tensor, pred: torch.Tensor | None = None) -> torch.Tensor:
        """Mean over members of ``log KD`` against the predicted class's references, ``[B]``."""
        if self.ref_feats is None or self.ref_labels is None:
            raise InputError("call KernelDensity.fit(train_batches) before score()")
        dev = self._device()
        with eval_mode(self.model):
            x = x.to(dev)
            if pred is None:
                pred = self.model(x).argmax(-1)
            fs = features_of(self.model, x)
        vals = [
            log_kernel_density(f, pred.to(f.device), rf, self.ref_labels, self.bandwidth)
            for f, rf in zip(fs, self.ref_feats, strict=True)
        ]
        return torch.stack(vals).mean(0).cpu()


@torch.no_grad()
def detection_scores(
    model: nn.Module,
    x: torch.Tensor,
    detectors: Sequence[str] = ("confidence", "non_me"),
    kd: KernelDensity | None = None,
) -> dict[str, torch.Tensor]:
    """Every requested score of ``x`` (``[B]`` each, higher = normal), on the model's device.

    ``disagreement`` is scored as :func:`member_agreement` (needs an Ensemble);
    ``kernel_density`` needs a fitted :class:`KernelDensity` ``kd``.
    """
    unknown = sorted(set(detectors) - set(DETECTORS))
    if unknown:
        raise InputError(f"unknown detector(s) {unknown}; available: {', '.join(DETECTORS)}")
    out: dict[str, torch.Tensor] = {}
    with eval_mode(model):
        member = None
        if hasattr(model, "member_logits"):
            member = model.member_logits(x)
            logits = model.combine_logits(member)
        else:
            logits = model(x)
        probs = torch.softmax(logits.double(), -1)
        if "confidence" in detectors:
            out["confidence"] = confidence(probs).cpu()
        if "non_me" in detectors:
            out["non_me"] = non_me(probs).cpu()
        if "disagreement" in detectors:
            if member is None:
                raise InputError("the disagreement detector needs an Ensemble (member votes)")
            out["disagreement"] = member_agreement(member, logits).cpu()
        if "kernel_density" in detectors:
            if kd is None:
                raise InputError("the kernel_density detector needs a fitted KernelDensity")
            out["kernel_density"] = kd.score(x, logits.argmax(-1))
    return out
