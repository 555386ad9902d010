"""Attack suites: white-box, transfer and universal attacks plus metrics, resumable.

A suite is a YAML file (validated by pydantic; unknown keys are errors naming the key)::

    name: main
    test_size: 1000          # random test subset (seeded), null = the whole test split
    batch_size: 250
    seed: 0
    surrogates:              # for transfer attacks: a checkpoint, or a training section
      baseline: {train: {seed: 1, objective: ce}}        # overrides of the target's config
      other: {checkpoint: runs/other}
    attacks:
      - {attack: pgd, eps: [0.1], params: {steps: 10}}               # white_box (default)
      - {attack: fgsm, eps: [0.1], threat: transfer, surrogate: baseline}
      - {attack: uap, eps: [0.15], threat: universal, params: {iterations: 20, seeds: 2}}
    metrics:                 # each optional
      transfer_matrix: {attack: fgsm, eps: 0.1, samples: 500}
      gradients: {samples: 500}                      # coherence / cosine / GAL / GDR
      gaas: {eps: [0.1], k: [4, 16, 36, 64], samples: 200}
      jacobian: {samples: 100}
      disagreement: true
      noise: {sigmas: [0.05, 0.1, 0.2]}
      rotation: {degrees: [5, 10, 15]}
      detection: {attacks: [{attack: fgsm, eps: 0.1}], detectors: [confidence, non_me]}

A top-level list is read as ``attacks:``. Every (entry, eps) pair and every metric is a
*unit*; a finished unit's records are written atomically to ``<out>/suite/units/<id>.json``
and skipped when the suite runs again (the id hashes the entry, the checkpoint's digest and
the data settings, so a changed entry runs anew), so an interrupted evaluation continues where
it stopped. After every unit, ``<out>/results.jsonl`` and ``<out>/results.csv`` are rewritten
(atomically) from the finished units of this suite. Records follow docs/design.md, plus
``threat_model``, ``n``, ``members``, ``objective``, ``reg_term``, ``reg_lambda`` and per-unit
extras; white-box records carry the gradient-masking warnings of
:func:`robens.attacks.gradient_masking_checks` (AutoAttack-style checks, Croce & Hein 2020).

Each metric (and each attack threat model) is a *suite unit*: one file under
``robens/evaluate/units/`` registered by name with its spec (:mod:`robens.evaluate.units`);
``metrics:`` is validated against that registry. Surrogates with a ``train:`` section are
trained by :func:`robens.pipeline.train_checkpoint` unless ``run_suite`` gets another
``train_fn``; this module is the public entry point over the runner
(:mod:`robens.evaluate.runner`), the schema (:mod:`robens.evaluate.suite_config`) and the unit
storage (:mod:`robens.evaluate.storage`).

Transfer examples depend on the surrogate, never on the target: ``transfer_cache: auto`` (the
default) stores them beside the surrogate's checkpoint (``transfer-cache/``, safetensors with a
digest) so every target attacked through that surrogate reads them instead of crafting them
again (:mod:`robens.evaluate.transfer_cache`); a path moves the folder, ``null`` turns it off.
"""

from __future__ import annotations

import os
from typing import Any

from robens.console import print_results_table, run_suite_cli
from robens.evaluate import runner
from robens.evaluate.runner import SuiteRunner, _cross_check, _regularizer, run_fields
from robens.evaluate.storage import RESULTS_CSV, RESULTS_JSONL
from robens.evaluate.suite_config import THREATS, MetricsSpec, SuiteConfig, load_suite
from robens.evaluate.surrogates import SurrogateSpec, TrainFn
from robens.evaluate.units import UNITS, AttackEntry, register_unit
from robens.pipeline import train_checkpoint

__all__ = [
    "RESULTS_CSV", "RESULTS_JSONL", "THREATS", "UNITS", "AttackEntry", "MetricsSpec",
    "SuiteConfig", "SuiteRunner", "SurrogateSpec", "TrainFn", "_cross_check", "_regularizer",
    "load_suite", "print_results_table", "register_unit", "run_fields", "run_suite",
    "run_suite_cli",
]


def run_suite(
    checkpoint: str | os.PathLike,
    suite: str | os.PathLike | dict | list | SuiteConfig,
    **options: Any,
) -> dict[str, Any]:
    """Run an attack suite on a checkpoint; resumable (finished units are skipped).

    :func:`robens.evaluate.runner.run_suite` (same ``options``: ``out``, ``progress``,
    ``echo``, ``dataset``, ``data_root``, ``test_size``, ``batch_size``, ``device``, ``seed``,
    ``train_fn``) with ``train_fn`` defaulting to :func:`robens.pipeline.train_checkpoint`
    (robens' trainer) for ``train:`` surrogates. Returns ``{"records", "results_jsonl",
    "results_csv", "ran", "skipped", "warnings"}``.
    """
    options["train_fn"] = options.get("train_fn") or train_checkpoint
    return runner.run_suite(checkpoint, suite, **options)
