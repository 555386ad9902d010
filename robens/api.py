"""Bring your own model: train, attack-evaluate, save and load a user's ``nn.Module``s.

* :func:`fit` trains a list of modules (or an :class:`~robens.ensemble.Ensemble`) on a
  ``DataLoader`` with any objective (``"ce + 0.5*gal"``) and strategy, through the same
  strategy step as ``robens train`` (:mod:`robens.training.strategies`): this module only
  adapts ``(modules, loader)`` to a :class:`~robens.training.context.StrategyContext`.
* :func:`evaluate` runs an attack suite (a YAML path or a suite config) on a model object
  (:class:`robens.evaluate.runner.ModelTarget`).
* :func:`save_model` / :func:`load_model` store the weights in safetensors and each member's
  constructor as ``module:qualname`` plus its keyword arguments as JSON; loading imports that
  constructor only when the caller passes it or ``trust_constructor=True`` (never pickle).
"""

from __future__ import annotations

import importlib
import json
import math
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from robens.checkpoint import (
    load_checkpoint,
    module_from_tensors,
    module_to_tensors,
    save_checkpoint,
    tensors_digest,
)
from robens.config import validate_config
from robens.data.base import ImageDataset
from robens.ensemble import Ensemble
from robens.errors import CheckpointError, ConfigError, InputError, TrainingError
from robens.objectives import parse_objective
from robens.progress import Progress
from robens.training.context import BatchAugment, NonFiniteStep, StrategyContext
from robens.training.schedules import learning_rate
from robens.training.strategies import make_strategy
from robens.utils import derive_seed, make_generator, resolve_device

__all__ = ["FitResult", "evaluate", "fit", "load_model", "save_model"]

USER_KIND = "user_ensemble"
Echo = Callable[[str], None]


# ---------------------------------------------------------------------------- models
def as_ensemble(models: nn.Module | Sequence[nn.Module], combine: str = "logits") -> Ensemble:
    """An :class:`Ensemble` as given, or one over a module or a list of modules."""
    if isinstance(models, Ensemble):
        return models
    if isinstance(models, nn.Module):
        models = [models]
    if isinstance(models, (str, bytes)) or not isinstance(models, Sequence):
        raise InputError(
            f"expected an nn.Module, a list of nn.Modules or an Ensemble, got"
            f" {type(models).__name__}"
        )
    return Ensemble(list(models), combine=combine)  # type: ignore[arg-type]


def _member_spec(member: nn.Module) -> dict[str, Any]:
    cls = type(member)
    return {"constructor": f"{cls.__module__}:{cls.__qualname__}"}


# ---------------------------------------------------------------------------- data
class LoaderData:
    """A ``DataLoader`` (or any sized iterable of ``(x, y)`` batches) seen as a training set by
    the strategies: ``batches()`` iterates the loader (its own shuffling), and ``len()`` is
    ``batches * batch_size``, so a strategy's ``steps_per_epoch`` is the loader's length."""

    def __init__(self, loader: Iterable, batch_size: int) -> None:
        self.loader = loader
        self.batch_size = batch_size
        self.num_batches = len(loader)  # type: ignore[arg-type]
        self.name = "loader"

    def __len__(self) -> int:
        return self.num_batches * self.batch_size

    def batches(self, batch_size: int, shuffle: bool = False,
                generator: torch.Generator | None = None) -> Iterator:
        for i, batch in enumerate(self.loader):
            if not isinstance(batch, (tuple, list)) or len(batch) < 2:
                raise InputError(f"train_loader batch {i} is not an (images, labels) pair")
            yield batch[0], batch[1]


def _train_data(loader: Any, batch_size: int | None) -> tuple[Any, int]:
    if isinstance(loader, ImageDataset):
        return loader, batch_size or 128
    if not hasattr(loader, "__iter__") or not hasattr(loader, "__len__"):
        raise InputError(
            "train_loader must be a DataLoader (or a sized iterable of (x, y) batches) or a"
            f" robens ImageDataset, got {type(loader).__name__}"
        )
    if len(loader) == 0:
        raise InputError("train_loader has no batches")
    bs = batch_size or getattr(loader, "batch_size", None)
    if bs is None:
        first = next(iter(loader))
        bs = int(first[0].shape[0])
    return LoaderData(loader, int(bs)), int(bs)


# ---------------------------------------------------------------------------- fit
@dataclass
class FitResult:
    """What :func:`fit` returns: the trained ensemble and one record per epoch."""

    ensemble: Ensemble
    history: list[dict[str, Any]] = field(default_factory=list)
    objective: str = "ce"


def _optimizer(
    optimizer: torch.optim.Optimizer | str | None, lr: float | None, params: list[nn.Parameter]
) -> tuple[torch.optim.Optimizer, str, float]:
    if optimizer is None or isinstance(optimizer, str):
        name = optimizer or "adam"
        cfg = validate_config({"optimizer": {"name": name, "lr": lr or 1e-3}}, source="fit()")
        o = cfg.optimizer
        if o.name == "adam":
            return torch.optim.Adam(params, lr=o.lr), o.name, o.lr
        return torch.optim.SGD(params, lr=o.lr, momentum=o.momentum), o.name, o.lr
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise InputError(f"optimizer must be 'adam', 'sgd' or a torch optimizer, got"
                         f" {type(optimizer).__name__}")
    rates = {g["lr"] for g in optimizer.param_groups}
    if len(rates) != 1:
        raise InputError("the optimizer's parameter groups have different learning rates;"
                         " robens.fit schedules one learning rate for all of them")
    if lr is not None and lr not in rates:
        raise InputError(f"lr={lr} differs from the optimizer's own lr {rates.pop()}: give one")
    name = "sgd" if isinstance(optimizer, torch.optim.SGD) else "adam"
    return optimizer, name, float(rates.pop())


def fit(
    models_or_ensemble: nn.Module | Sequence[nn.Module],
    train_loader: Any,
    objective: str = "ce",
    epochs: int = 1,
    optimizer: torch.optim.Optimizer | str | None = None,
    *,
    lr: float | None = None,
    strategy: str = "joint",
    terms: dict[str, dict[str, Any]] | None = None,
    schedule: str = "constant",
    adversarial: dict[str, Any] | None = None,
    grad_clip: float | None = None,
    combine: str = "logits",
    batch_size: int | None = None,
    seed: int = 0,
    device: str = "auto",
    progress: bool | None = None,
    echo: Echo | None = print,
) -> FitResult:
    """Train the members of ``models_or_ensemble`` on ``train_loader``.

    ``objective`` is robens' objective grammar (``"ce + 0.5*gal + 0.1*jr"``; ``terms`` holds
    keyword arguments per term), ``strategy`` one of the registered strategies (``bagging``
    needs a robens :class:`ImageDataset`, whose indices it resamples), ``optimizer`` a name
    (``adam`` | ``sgd``, with ``lr``) or a torch optimizer over the members' parameters,
    ``adversarial`` a ``training.adversarial`` section. The modules are trained in place;
    the returned :class:`FitResult` holds the :class:`Ensemble` (a list of modules is wrapped
    in one, combining ``combine``) and the per-epoch mean loss and accuracy.
    """
    ens = as_ensemble(models_or_ensemble, combine)
    data, bs = _train_data(train_loader, batch_size)
    if strategy == "bagging" and not isinstance(data, ImageDataset):
        raise ConfigError("strategy 'bagging' resamples training indices: pass a robens"
                          " ImageDataset (robens.data.load_dataset) instead of a DataLoader")
    dev = resolve_device(device)
    ens.to(dev)
    params = list(ens.parameters())
    opt, opt_name, base_lr = _optimizer(optimizer, lr, params)
    cfg = validate_config({
        "seed": seed, "objective": objective, "terms": terms or {},
        "data": {"batch_size": bs}, "model": {"members": ens.num_members, "combine": combine},
        "optimizer": {"name": opt_name, "lr": base_lr}, "schedule": {"name": schedule},
        "training": {"epochs": epochs, "strategy": strategy, "grad_clip": grad_clip,
                     "adversarial": adversarial or {}},
    }, source="fit()")
    say = echo or (lambda _m: None)
    for note in cfg.notes:
        say(note)
    ctx = StrategyContext(
        config=cfg, ensemble=ens, member_specs=[_member_spec(m) for m in ens.members],
        train_set=data, val_set=None,  # type: ignore[arg-type]
        objective=parse_objective(cfg.objective, cfg.terms), optimizer=opt,
        make_optimizer=lambda ps: type(opt)(list(ps), **opt.defaults),
        augment=BatchAugment.from_config(cfg.data.augment), device=dev, echo=say,
    )
    strat = make_strategy(ctx)
    show = sys.stderr.isatty() if progress is None else progress
    history: list[dict[str, Any]] = []
    step, per_epoch = 0, strat.steps_per_epoch()
    for epoch in range(epochs):
        torch.manual_seed(derive_seed(seed, "torch", epoch))
        gen = make_generator(seed, "augment", epoch)
        strat.on_epoch_start(epoch)
        sums: dict[str, float] = {}
        count = 0
        with Progress(show, "loss {task.fields[loss]:.4f}") as bar:
            task = bar.task(f"epoch {epoch + 1}", per_epoch, loss=math.nan)
            for x, y in strat.epoch_batches(epoch):
                x, y = strat.transform_batch(x.to(dev), y.to(dev), gen)
                rate = learning_rate(cfg.schedule, base_lr, step, per_epoch, epochs)
                try:
                    logs = strat.train_step(x, y, rate, step)
                except NonFiniteStep as exc:
                    raise TrainingError(f"training stopped at step {step}: {exc} (lower the"
                                        " learning rate or set grad_clip)") from None
                step, count = step + 1, count + 1
                for k, v in logs.items():
                    sums[k] = sums.get(k, 0.0) + v
                task.advance(loss=logs["loss"])
        strat.on_epoch_end(epoch)
        record = {"epoch": epoch + 1, **{k: v / max(count, 1) for k, v in sums.items()}}
        history.append(record)
        say(f"epoch {epoch + 1}: loss {record.get('loss', math.nan):.4f}"
            f" acc {record.get('acc', math.nan):.3f}")
    strat.on_fit_end()
    ens.eval()
    return FitResult(ens, history, cfg.objective)


# ---------------------------------------------------------------------------- evaluate
def as_image_dataset(data: Any, name: str = "data", num_classes: int | None = None
                     ) -> ImageDataset:
    """An :class:`ImageDataset` from one, an ``(x, y)`` pair of tensors, or an iterable of
    ``(x, y)`` batches; float images must lie on the 1/255 grid of 8-bit images."""
    if isinstance(data, ImageDataset):
        return data
    if isinstance(data, (tuple, list)) and len(data) == 2 and isinstance(data[0], torch.Tensor):
        xs, ys = [data[0]], [data[1]]
    else:
        if not hasattr(data, "__iter__"):
            raise InputError(f"data must be an ImageDataset, an (x, y) pair or batches, got"
                             f" {type(data).__name__}")
        pairs = [(b[0], b[1]) for b in data]
        if not pairs:
            raise InputError("data has no batches")
        xs, ys = [p[0] for p in pairs], [p[1] for p in pairs]
    x, y = torch.cat(xs).detach().cpu(), torch.cat(ys).detach().cpu()
    if x.dtype != torch.uint8:
        scaled = x.float() * 255.0
        images = scaled.round()
        if (scaled - images).abs().max() > 1e-3 or images.min() < 0 or images.max() > 255:
            raise InputError("evaluation images must be floats in [0, 1] on the 1/255 grid of"
                             " 8-bit images (e.g. torchvision's ToTensor()); pass uint8 images"
                             " in an ImageDataset otherwise")
        x = images.to(torch.uint8)
    k = num_classes if num_classes is not None else int(y.max()) + 1
    return ImageDataset(x, y.long(), k, name=name, split="test")


def model_meta(ens: Ensemble, test: ImageDataset, name: str, objective: str | None
               ) -> dict[str, Any]:
    """Metadata in a checkpoint's layout for a model object (records read it)."""
    arch = type(ens.members[0]).__name__
    return {
        "kind": USER_KIND,
        "config": {"name": name, "objective": objective or "unknown",
                   "model": {"members": ens.num_members, "arch": arch},
                   "data": {"dataset": test.name}},
        "dataset": {"name": test.name, "num_classes": test.num_classes,
                    "in_shape": list(test.in_shape)},
        "model": {"members": [_member_spec(m) for m in ens.members],
                  "weights": ens.weights.tolist(), "combine": ens.combine},
        "sha256": tensors_digest(module_to_tensors(ens)),
        "seed": None,
    }


def evaluate(
    model: nn.Module | Sequence[nn.Module],
    suite: Any,
    data: Any,
    *,
    out: str | os.PathLike,
    train_data: Any = None,
    name: str = "user-model",
    objective: str | None = None,
    test_size: int | None = None,
    device: str = "auto",
    progress: bool | None = None,
    echo: Echo | None = print,
) -> dict[str, Any]:
    """Run an attack suite (a YAML path, mapping or :class:`SuiteConfig`) on a model object.

    ``data`` is the test set (an :class:`ImageDataset`, a DataLoader or an ``(x, y)`` pair);
    ``train_data`` feeds universal perturbations fitted on training images. Records go to
    ``out`` (``results.jsonl``, resumable as for a checkpoint); returns the runner's summary.
    """
    from robens.evaluate.runner import ModelTarget, SuiteRunner
    from robens.evaluate.suite_config import load_suite

    ens = as_ensemble(model)
    cfg = load_suite(suite)
    if test_size is not None:
        cfg = cfg.model_copy(update={"test_size": test_size})
    test = as_image_dataset(data, name="data")
    train = None if train_data is None else as_image_dataset(train_data, "data", test.num_classes)
    meta = model_meta(ens, test, name, objective)
    target = ModelTarget(ens, meta, test, train)
    show = sys.stderr.isatty() if progress is None else progress
    runner = SuiteRunner(None, cfg, out, show, echo, device=device, target=target)
    return runner.run()


# ---------------------------------------------------------------------------- save / load
def save_model(
    model: nn.Module | Sequence[nn.Module],
    path: str | os.PathLike,
    kwargs: dict[str, Any] | Sequence[dict[str, Any]] | None = None,
) -> Path:
    """Save a user's ensemble: weights in safetensors, each member's constructor
    (``module:qualname``) and its keyword arguments ``kwargs`` (one mapping for all members,
    or one per member) as JSON metadata. No pickle."""
    ens = as_ensemble(model)
    m = ens.num_members
    per = [dict(kwargs or {})] * m if kwargs is None or isinstance(kwargs, dict) else list(kwargs)
    if len(per) != m:
        raise InputError(f"kwargs lists {len(per)} mappings for {m} members")
    members = []
    for member, kw in zip(ens.members, per, strict=True):
        spec = _member_spec(member)
        if "<locals>" in spec["constructor"]:
            raise InputError(f"{spec['constructor']} is defined inside a function: loading"
                             " could not import it; define the class at module level")
        try:
            json.dumps(kw)
        except TypeError as exc:
            raise InputError(f"constructor kwargs must be JSON values: {exc}") from None
        members.append({**spec, "kwargs": kw})
    meta = {"kind": USER_KIND, "model": {
        "members": members, "weights": ens.weights.tolist(), "combine": ens.combine,
        "in_shape": list(ens.in_shape) if ens.in_shape else None}}
    return save_checkpoint(path, module_to_tensors(ens), meta)


def _import_constructor(ref: str) -> Callable[..., nn.Module]:
    module_name, _, qualname = ref.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise CheckpointError(f"cannot import the constructor {ref}: {exc}") from None
    return obj


def load_model(
    path: str | os.PathLike,
    constructor: Callable[..., nn.Module] | Sequence[Callable[..., nn.Module]] | None = None,
    trust_constructor: bool = False,
) -> Ensemble:
    """Load what :func:`save_model` wrote (eval mode).

    ``constructor`` (one for all members, or one per member) builds the members; it must be
    the class named in the file. Without it, ``trust_constructor=True`` imports the named
    ``module:qualname`` (this runs that module's code: only for files you trust).
    """
    tensors, meta = load_checkpoint(path)
    if meta.get("kind") != USER_KIND:
        raise CheckpointError(f"{path} is not a saved user model (use robens.factory."
                              "load_ensemble for robens checkpoints)")
    specs = meta["model"]["members"]
    if constructor is None and not trust_constructor:
        names = ", ".join(sorted({s["constructor"] for s in specs}))
        raise CheckpointError(f"{path} is built by {names}: pass constructor=... or"
                              " trust_constructor=True to import it")
    if constructor is None:
        ctors = [_import_constructor(s["constructor"]) for s in specs]
    elif isinstance(constructor, Sequence):
        ctors = list(constructor)
    else:
        ctors = [constructor] * len(specs)
    if len(ctors) != len(specs):
        raise InputError(f"{len(ctors)} constructors for {len(specs)} members")
    members = []
    for i, (ctor, spec) in enumerate(zip(ctors, specs, strict=True)):
        qual = getattr(ctor, "__qualname__", type(ctor).__name__)
        if spec["constructor"].partition(":")[2] != qual:
            raise CheckpointError(f"member {i} was saved as {spec['constructor']}, not {qual}")
        members.append(ctor(**spec.get("kwargs", {})))
    ens = Ensemble(members, weights=meta["model"].get("weights"),
                   combine=meta["model"].get("combine", "logits"),
                   in_shape=meta["model"].get("in_shape"))
    module_from_tensors(ens, tensors, "model")
    return ens.eval()
