"""The main job: train -> evaluate (clean, attack suite) -> report, from one config.

``robens run configs/main.yaml`` resumes an interrupted run and skips finished stages, so it is
safe to run again. :func:`train_checkpoint` is also the trainer of the attack suite's
``train:`` surrogates (the suite itself never imports :mod:`robens.training`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from robens.checkpoint import load_checkpoint
from robens.config import ExperimentConfig
from robens.evaluate.clean import evaluate_clean_checkpoint
from robens.evaluate.runner import run_suite
from robens.evaluate.suite_config import SuiteConfig
from robens.runinfo import record_invocation
from robens.training import Trainer
from robens.training.trainer import CHECKPOINT_NAME

Echo = Callable[[str], None]


def default_suite(config_path: str | Path) -> Path | None:
    """The suite a config runs by default: ``<config folder>/suites/<config name>.yaml``.

    ``configs/main.yaml`` -> ``configs/suites/main.yaml``; ``None`` when there is no such file.
    """
    path = Path(config_path)
    candidate = path.parent / "suites" / f"{path.stem}.yaml"
    return candidate if candidate.is_file() else None


def is_complete(run_dir: str | Path) -> bool:
    """Whether ``run_dir`` holds a checkpoint of a finished training run."""
    ckpt = Path(run_dir) / CHECKPOINT_NAME
    return ckpt.exists() and bool(load_checkpoint(ckpt)[1].get("complete"))


def train_checkpoint(
    config: ExperimentConfig, *, progress: bool = True, echo: Echo | None = print
) -> Path:
    """Train ``config`` with :class:`~robens.training.Trainer` (resuming) unless its run is
    complete; returns its checkpoint. The ``train_fn`` of suite surrogates."""
    ckpt = Path(config.output_dir) / CHECKPOINT_NAME
    if is_complete(config.output_dir):
        return ckpt
    say = echo or (lambda _m: None)
    say(f"training {config.name!r} (seed {config.seed}) into {config.output_dir}")
    Trainer(config, progress=progress, echo=echo).fit(resume=True)
    return ckpt


def run_pipeline(
    cfg: ExperimentConfig,
    suite: str | Path | SuiteConfig | None = None,
    report: bool = True,
    progress: bool = True,
    echo: Echo = print,
) -> dict[str, Any]:
    """Train (or resume), evaluate clean accuracy, run ``suite`` if given, build the report."""
    run_dir = Path(cfg.output_dir)
    ckpt = run_dir / CHECKPOINT_NAME
    record_invocation(run_dir)  # the command and machine, for the report's provenance
    if is_complete(run_dir):
        echo(f"training already complete in {run_dir}; skipping to evaluation")
    else:
        Trainer(cfg, progress=progress, echo=echo).fit(resume=True)
    summary: dict[str, Any] = {"run_dir": str(run_dir), "checkpoint": str(ckpt)}
    clean = evaluate_clean_checkpoint(
        ckpt, out=run_dir, test_size=cfg.data.test_size, seed=cfg.seed
    )  # the config's test subset (all test images when it sets none), as in training
    summary["clean"] = clean
    echo(
        f"clean test accuracy: ensemble {100 * clean['ensemble']:.2f}%, members "
        + ", ".join(f"{100 * a:.2f}%" for a in clean["members"])
    )
    if suite is not None:
        echo(f"attack suite: {suite.name if isinstance(suite, SuiteConfig) else suite}")
        summary["suite"] = run_suite(ckpt, suite, out=run_dir, progress=progress, echo=echo,
                                     train_fn=train_checkpoint)
    if report:
        from robens.report import build_report  # matplotlib: loaded only when reporting

        path = build_report(run_dir, run_dir / "report")
        summary["report"] = str(path)
        echo(f"report: {path}")
    return summary
