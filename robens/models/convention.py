"""Output conventions: what a model's ``forward`` returns, declared by the model itself.

A model (or its ``classifier`` head, by the ``forward(x) == classifier(features(x))`` contract)
declares a class attribute or property ``output_convention``; :func:`output_convention` reads
it, with ``"logits"`` for any module that declares nothing, so a user's own ``nn.Module`` works.
Attacks read the declaration once, at construction, and never check class names.

* ``"logits"``: ordinary logits ``Z`` (argmax = prediction, softmax = probabilities).
* ``"mm_scores"``: Max-Mahalanobis scores ``h_l = -1/2 ||z - mu_l||^2`` of fixed centres
  (Pang et al. 2018/2020); the MMC loss is ``-h_y``. Any module carrying a tensor attribute
  ``mm_centers`` ``[L, d]`` is a Max-Mahalanobis head whose *input* is the features ``z``; its
  ``kind`` (``"mmc"`` or ``"mmlda"``, default ``"mmc"``) names the training loss.
* ``"rce_negated"``: RCE's inference logits ``-Z`` (Pang et al. 2018, Sec. 3.2); attacking the
  output attacks the inference classifier ``softmax(-Z)``.

A module with a truthy ``rce_inference`` attribute (the earlier duck-typed convention) counts
as ``"rce_negated"``.
"""

from __future__ import annotations

from robens.errors import InputError

LOGITS = "logits"
MM_SCORES = "mm_scores"
RCE_NEGATED = "rce_negated"
CONVENTIONS = (LOGITS, MM_SCORES, RCE_NEGATED)


def output_convention(model: object) -> str:
    """The output convention ``model`` declares (its own, else its ``classifier``'s), or
    ``"logits"``."""
    if getattr(model, "rce_inference", False):
        return RCE_NEGATED
    value = getattr(model, "output_convention", None)
    if value is None:
        value = getattr(getattr(model, "classifier", None), "output_convention", LOGITS)
    if value not in CONVENTIONS:
        raise InputError(
            f"{type(model).__name__}.output_convention must be one of {', '.join(CONVENTIONS)},"
            f" got {value!r}"
        )
    return str(value)
