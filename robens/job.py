"""A job of several ensembles: one budget, one suite, one report with them side by side.

A config with an ``ensembles:`` section (``configs/main.yaml``) describes a *job*: the rest of
the file is the shared base, and each entry of ``ensembles`` is a set of overrides of it::

    name: main
    output_dir: runs/main
    objective: ce
    ensembles:
      baseline: {}
      gal: {objective: "ce + 0.5*gal"}

Ensemble ``gal`` is the base merged with its overrides (:func:`robens.utils.deep_merge`), named
``main-gal`` and trained into ``runs/main/gal``. ``--set`` and the CLI flags change the base,
so every ensemble sees them. The suite's ``train:`` surrogates are trained once, from the
*base* config plus their own overrides, into ``<job>/surrogates/<name>``, and every ensemble is
attacked through that one checkpoint: its transfer examples are crafted once and shared
(:mod:`robens.evaluate.transfer_cache`), so the ensembles' transfer figures are paired on the
same adversarial images. The report (``<job>/report``) reads every ensemble's records.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from robens.config import ExperimentConfig, check_path_text, validate_config
from robens.errors import ConfigError
from robens.evaluate.suite_config import SuiteConfig, load_suite
from robens.evaluate.surrogates import SurrogateSpec, surrogate_config
from robens.objectives.base import parse_objective
from robens.utils import deep_merge

Echo = Callable[[str], None]

#: the top-level key that turns a config into a job of several ensembles
ENSEMBLES = "ensembles"


def is_job(data: Any) -> bool:
    """Whether a loaded config mapping describes a job of several ensembles."""
    return isinstance(data, dict) and ENSEMBLES in data


def base_config(data: dict[str, Any], source: str = "") -> dict[str, Any]:
    """The job's shared base: the mapping without ``ensembles``, with its default folder."""
    base = {k: copy.deepcopy(v) for k, v in data.items() if k != ENSEMBLES}
    base.setdefault("name", "experiment")
    if "output_dir" not in base:
        base["output_dir"] = f"runs/{base['name']}"
    validate_config(base, source=f"{source} (shared base of the ensembles)")
    return base


def ensemble_configs(data: dict[str, Any], source: str = "") -> dict[str, ExperimentConfig]:
    """The validated config of each ensemble of a job, in the order of the file."""
    entries = data.get(ENSEMBLES)
    if not isinstance(entries, dict) or not entries:
        raise ConfigError(
            f"{source}: '{ENSEMBLES}' must map each ensemble's name to its overrides of the"
            " shared config, e.g. {baseline: {}, gal: {objective: 'ce + 0.5*gal'}}"
        )
    base = base_config(data, source)
    out: dict[str, ExperimentConfig] = {}
    for key, over in entries.items():
        name = str(key)
        try:
            check_path_text(name)
        except ValueError as exc:
            raise ConfigError(f"{source}: ensemble name {name!r}: {exc}") from None
        if "/" in name or "\\" in name or name in (".", ".."):
            raise ConfigError(f"{source}: ensemble name {name!r} must be a plain folder name")
        if over is None:
            over = {}
        if not isinstance(over, dict):
            raise ConfigError(
                f"{source}: ensemble {name!r} must be a mapping of overrides, got"
                f" {type(over).__name__}"
            )
        for fixed in ("name", "output_dir"):
            if fixed in over:
                raise ConfigError(
                    f"{source}: ensemble {name!r} sets {fixed!r}; a job names its ensembles"
                    f" <name>-<key> and puts them in <output_dir>/<key>"
                )
        merged = deep_merge(base, over, dotted=True)
        merged["name"] = f"{base['name']}-{name}"
        merged["output_dir"] = str(Path(base["output_dir"]) / name)
        cfg = validate_config(merged, source=f"{source} (ensemble {name!r})")
        try:
            parse_objective(cfg.objective, cfg.terms)  # a bad term fails now, not mid-job
        except ConfigError as exc:
            raise ConfigError(f"{source}: ensemble {name!r}: {exc}") from None
        out[name] = cfg
    return out


def shared_surrogates(
    suite: SuiteConfig,
    base: dict[str, Any],
    job_dir: Path,
    train_fn: Callable[..., Path],
    progress: bool = True,
    echo: Echo = print,
) -> SuiteConfig:
    """``suite`` with each ``train:`` surrogate trained once from the job's base config and
    replaced by its checkpoint (``<job_dir>/surrogates/<name>`` unless it sets a folder)."""
    specs: dict[str, SurrogateSpec] = {}
    for name, spec in suite.surrogates.items():
        if spec.train is None:
            specs[name] = spec
            continue
        cfg = surrogate_config({"config": base}, name, spec.train, job_dir)
        ckpt = train_fn(cfg, progress=progress, echo=echo)
        specs[name] = SurrogateSpec(checkpoint=str(ckpt))
    return suite.model_copy(update={"surrogates": specs})


def load_job(
    config: str | Path, out: str | None = None, sets: Sequence[str] = ()
) -> dict[str, Any] | None:
    """The job in ``config`` with ``--out`` and ``--set`` applied to its shared base, every
    ensemble validated and the output folder checked before any work; ``None`` when the
    config has no ``ensembles`` (a one-ensemble config)."""
    from robens.config import apply_overrides, check_not_empty, load_yaml, parse_set_option
    from robens.validation import check_output_dir

    loaded = load_yaml(config)
    check_not_empty(loaded, config)
    if not is_job(loaded):
        return None
    overrides = dict(parse_set_option(s) for s in sets)
    if any(k == ENSEMBLES or k.startswith(ENSEMBLES + ".") for k in overrides):
        raise ConfigError(
            f"--set cannot change '{ENSEMBLES}'; edit {config} (a --set applies to every ensemble)"
        )
    if out is not None:
        overrides["output_dir"] = out
    job = apply_overrides(loaded, overrides)
    ensemble_configs(job, str(config))
    check_output_dir(base_config(job, str(config))["output_dir"], "output_dir")
    return job


def run_job(
    data: dict[str, Any],
    suite: str | Path | None = None,
    report: bool = True,
    progress: bool = True,
    echo: Echo = print,
    source: str = "",
) -> dict[str, Any]:
    """Train, evaluate and attack every ensemble of the job; one report of all of them."""
    from robens.pipeline import run_pipeline, train_checkpoint

    configs = ensemble_configs(data, source)
    base = base_config(data, source)
    job_dir = Path(base["output_dir"])
    echo(f"job {base['name']!r}: {len(configs)} ensembles ({', '.join(configs)}) in {job_dir}")
    suite_cfg = None
    if suite is not None:
        suite_cfg = shared_surrogates(load_suite(suite), base, job_dir, train_checkpoint,
                                      progress, echo)
    runs: dict[str, Any] = {}
    for i, (key, cfg) in enumerate(configs.items(), 1):
        echo(f"ensemble {i}/{len(configs)} {key!r}: objective {cfg.objective!r},"
             f" strategy {cfg.training.strategy!r}")
        runs[key] = run_pipeline(cfg, suite=suite_cfg, report=False, progress=progress,
                                 echo=echo)
    summary: dict[str, Any] = {"job_dir": str(job_dir), "ensembles": runs}
    if report:
        from robens.report import build_report  # matplotlib: loaded only when reporting

        path = build_report([c.output_dir for c in configs.values()], job_dir / "report")
        summary["report"] = str(path)
        echo(f"report: {path}")
    return summary
