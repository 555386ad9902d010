"""Transferability between ensemble members, and from a surrogate to a target.

* :func:`transfer_matrix`: the member x member matrix of Co et al. (Jacobian Ensembles) and
  Kariyappa & Qureshi 2019 (Fig. 1): entry ``(i, j)`` is the accuracy of member ``j`` on
  adversarial examples crafted on member ``i``; the diagonal is each member's white-box robust
  accuracy. It wraps :func:`robens.attacks.transferability_matrix` and adds the summary a
  report needs (:func:`transfer_summary`).
* :func:`surrogate_transfer`: the GAL paper's black-box protocol (Sec. 5): craft on a
  separately trained surrogate (objective: mean of its members' losses), test on the target;
  wraps :func:`robens.attacks.transfer_attack`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from robens.errors import InputError

Batches = Iterable[tuple[torch.Tensor, torch.Tensor]]


def _members(ensemble: Any) -> list[nn.Module]:
    if isinstance(ensemble, (list, tuple)):
        return list(ensemble)
    members = getattr(ensemble, "members", None)
    if members is None:
        raise InputError("transfer_matrix needs an Ensemble or a list of models")
    return list(members)


def transfer_matrix(
    ensemble: Any,
    attack: str | Callable[[nn.Module], Any],
    batches: Batches,
    **params: Any,
) -> torch.Tensor:
    """``[M, M]`` float64 accuracy matrix: row = source member, column = evaluated member.

    ``attack`` is a registered attack name (built on each member with ``params``, e.g.
    ``transfer_matrix(ens, "fgsm", batches, eps=0.1)``) or a factory ``member -> Attack``.
    """
    from robens.attacks import build_attack, transferability_matrix

    if isinstance(attack, str):
        name = attack

        def make(member: nn.Module) -> Any:
            return build_attack(name, member, **params)

        factory = make
    else:
        if params:
            raise InputError("params are only used with an attack name, not with a factory")
        factory = attack
    batches = list(batches)
    return transferability_matrix(_members(ensemble), factory, batches).double()


def transfer_summary(matrix: torch.Tensor) -> dict[str, float]:
    """Summary of a transfer matrix ``A`` (accuracies):

    ``white_box`` = mean diagonal, ``transfer`` = mean off-diagonal accuracy (higher = examples
    transfer less), ``gap`` = ``transfer - white_box``.
    """
    a = torch.as_tensor(matrix, dtype=torch.float64)
    if a.dim() != 2 or a.shape[0] != a.shape[1]:
        raise InputError(f"a transfer matrix must be square, got shape {list(a.shape)}")
    m = a.shape[0]
    diag = float(a.diagonal().mean())
    if m == 1:
        return {"white_box": diag, "transfer": float("nan"), "gap": float("nan")}
    off = a[~torch.eye(m, dtype=torch.bool)]
    transfer = float(off.mean())
    return {"white_box": diag, "transfer": transfer, "gap": transfer - diag}


def surrogate_transfer(
    surrogate: Any,
    target: Callable[[torch.Tensor], torch.Tensor],
    attack: str,
    batches: Batches,
    combine: str | None = "loss",
    **params: Any,
) -> dict[str, Any]:
    """Craft ``attack`` on ``surrogate`` (members combined by ``combine``; the GAL paper's
    mean of member losses by default) and evaluate on ``target``.

    Returns :func:`robens.attacks.transfer_attack`'s dict (``robust_accuracy``,
    ``clean_accuracy``, ``transfer_success``, ``surrogate_success``, ``n``).
    """
    from robens.attacks import build_attack, transfer_attack

    if not (hasattr(surrogate, "member_logits") or isinstance(surrogate, (list, tuple))):
        combine = None
    atk = build_attack(attack, surrogate, combine=combine, **params)
    return transfer_attack(atk, target, batches)
