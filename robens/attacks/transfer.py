"""Transfer (black-box) attacks: craft on a surrogate, evaluate on a target.

GAL paper protocol (Kariyappa & Qureshi 2019, Sec. 5): adversarial examples are crafted on a
separately trained surrogate ensemble (objective: the mean of its members' losses, i.e.
``combine="loss"``) and tested on the target model. The transferability matrix of Co et al.
(Jacobian Ensembles) crafts on each member and tests on every member.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from torch import nn

from robens.attacks.base import Attack, eval_mode
from robens.data import ImageDataset
from robens.errors import InputError

Batches = ImageDataset | Iterable[tuple[torch.Tensor, torch.Tensor]]


def _batches(
    batches: Batches, batch_size: int = 250
) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
    return batches.batches(batch_size) if isinstance(batches, ImageDataset) else batches


def _device_of(model: object, default: torch.device) -> torch.device:
    params = getattr(model, "parameters", None)
    if callable(params):
        for p in params():
            return p.device
    return default


def transfer_attack(
    attack: Attack, target: Callable[[torch.Tensor], torch.Tensor], batches: Batches
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
    n = clean = robust = fooled = base = sur = 0
    with eval_mode(target):
        for x, y in _batches(batches):
            result = attack.run(x, y)
            sur += int(result.success.sum())
            with torch.no_grad():
                dev = _device_of(target, x.device)
                yt = y.to(dev)
                ok = target(x.to(dev)).argmax(-1) == yt
                ok_adv = target(result.x_adv.to(dev)).argmax(-1) == yt
            n += y.numel()
            clean += int(ok.sum())
            robust += int((ok & ok_adv).sum())
            base += int(ok.sum())
            fooled += int((ok & ~ok_adv).sum())
    if n == 0:
        raise InputError("transfer_attack got no samples")
    return {
        "n": n,
        "clean_accuracy": clean / n,
        "robust_accuracy": robust / n,
        "transfer_success": fooled / base if base else 0.0,
        "surrogate_success": sur / n,
    }


def _members(ensemble: object) -> list[nn.Module]:
    if isinstance(ensemble, (list, tuple)):
        return list(ensemble)
    members = getattr(ensemble, "members", None)
    if members is None:
        raise InputError("transferability_matrix needs an Ensemble or a list of models")
    return list(members)


def transferability_matrix(
    ensemble: object | Sequence[nn.Module],
    make_attack: Callable[[nn.Module], Attack],
    batches: Batches,
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
        for x, y in _batches(batches):
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
