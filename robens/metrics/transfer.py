"""Transferability: from a surrogate to a target, and between ensemble members.

* :func:`transfer_attack` / :func:`surrogate_transfer`: the GAL paper's black-box protocol
  (Kariyappa & Qureshi 2019, Sec. 5): adversarial examples crafted on a separately trained
  surrogate (objective: the mean of its members' losses, ``combine="loss"``) and tested on the
  target, through the evaluation engine (:func:`robens.evaluate.engine.evaluate_attack`).
* :func:`transferability_matrix` / :func:`transfer_matrix`: the member x member matrix of Co
  et al. (Jacobian Ensembles) and Kariyappa & Qureshi 2019 (Fig. 1): entry ``(i, j)`` is the
  accuracy of member ``j`` on examples crafted on member ``i``; the diagonal is each member's
  white-box robust accuracy. :func:`transfer_summary` reduces it for a report.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from robens.attacks import build_attack
from robens.attacks.base import Attack
from robens.errors import InputError
from robens.evaluate.engine import as_batches, evaluate_attack
from robens.utils import eval_mode


def transfer_attack(
    attack: Attack, target: Callable[[torch.Tensor], torch.Tensor], batches: Any
) -> dict[str, Any]:
    """Craft with ``attack`` (on its own surrogate model) and evaluate on ``target``.

    Returns ``{"n", "clean_accuracy", "robust_accuracy", "transfer_success",
    "surrogate_success"}``: the target's accuracy on clean and adversarial inputs (robust
    counts a sample only when it is classified correctly both clean and attacked), the fraction
    of the target's correctly classified samples that the transferred examples fool, and the
    attack's success rate on its own surrogate. Labels are the true labels of ``batches``.
    """
    if not isinstance(attack, Attack):
        raise InputError(f"attack must be a robens Attack, got {type(attack).__name__}")
    try:
        out = evaluate_attack(target, attack, batches)
    except InputError:
        raise InputError("transfer_attack got no samples") from None
    return {
        "n": out.n,
        "clean_accuracy": out.clean_accuracy,
        "robust_accuracy": out.robust_accuracy,
        "transfer_success": out.success_rate if int(out.clean_ok.sum()) else 0.0,
        "surrogate_success": float(out.attack_success.sum()) / out.n,
    }


def surrogate_transfer(
    surrogate: Any,
    target: Callable[[torch.Tensor], torch.Tensor],
    attack: str,
    batches: Any,
    combine: str | None = "loss",
    **params: Any,
) -> dict[str, Any]:
    """Craft ``attack`` on ``surrogate`` (members combined by ``combine``; the GAL paper's
    mean of member losses by default) and evaluate on ``target`` (:func:`transfer_attack`)."""
    if not (hasattr(surrogate, "member_logits") or isinstance(surrogate, (list, tuple))):
        combine = None
    atk = build_attack(attack, surrogate, combine=combine, **params)
    return transfer_attack(atk, target, batches)


def _members(ensemble: Any) -> list[nn.Module]:
    if isinstance(ensemble, (list, tuple)):
        return list(ensemble)
    members = getattr(ensemble, "members", None)
    if members is None:
        raise InputError("a transfer matrix needs an Ensemble or a list of models")
    return list(members)


def transferability_matrix(
    ensemble: Any | Sequence[nn.Module],
    make_attack: Callable[[nn.Module], Attack],
    batches: Any,
) -> torch.Tensor:
    """``[M, M]`` matrix: entry ``(i, j)`` is the accuracy of member ``j`` on the examples
    crafted on member ``i`` (the diagonal is each member's white-box robust accuracy).

    ``make_attack(member)`` builds the attack on one member; ``batches`` is read once.
    """
    members = _members(ensemble)
    m = len(members)
    if m == 0:
        raise InputError("the ensemble has no members")
    attacks = [make_attack(member) for member in members]
    correct = torch.zeros(m, m, dtype=torch.float64)
    n = 0
    with eval_mode(members):
        for x, y in as_batches(batches):
            n += y.numel()
            for i, atk in enumerate(attacks):
                x_adv = atk(x, y)
                with torch.no_grad():
                    for j, member in enumerate(members):
                        correct[i, j] += float(
                            (member(x_adv).argmax(-1) == y.to(x_adv.device)).sum()
                        )
    if n == 0:
        raise InputError("transferability_matrix got no samples")
    return correct / n


def transfer_matrix(
    ensemble: Any, attack: str | Callable[[nn.Module], Any], batches: Any, **params: Any
) -> torch.Tensor:
    """``[M, M]`` float64 accuracy matrix: row = source member, column = evaluated member.

    ``attack`` is a registered attack name (built on each member with ``params``, e.g.
    ``transfer_matrix(ens, "fgsm", batches, eps=0.1)``) or a factory ``member -> Attack``.
    """
    if isinstance(attack, str):
        name = attack

        def factory(member: nn.Module) -> Any:
            return build_attack(name, member, **params)
    else:
        if params:
            raise InputError("params are only used with an attack name, not with a factory")
        factory = attack
    return transferability_matrix(_members(ensemble), factory, list(batches)).double()


def transfer_summary(matrix: torch.Tensor) -> dict[str, float]:
    """Summary of a transfer matrix ``A`` (accuracies): ``white_box`` = mean diagonal,
    ``transfer`` = mean off-diagonal accuracy (higher = examples transfer less), ``gap`` =
    ``transfer - white_box``."""
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
