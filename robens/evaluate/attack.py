"""``robens attack``: attack a checkpoint on its test set, write records, optionally save examples.

Every robust accuracy comes from the evaluation engine (:mod:`robens.evaluate.engine`).

White-box by default; ``surrogate`` crafts the examples on another checkpoint (transfer, the
GAL paper's black-box protocol); ``attack="uap"`` fits SGD-UAP on the training split and
evaluates it on the test set. Defences with MMC heads or RCE inference are attacked
adaptively (:func:`robens.attacks.adaptive.adaptive_attack`).

It reads a run as ``robens evaluate`` does: under the run's shared lock (and the surrogate's),
with a loud warning on an unfinished checkpoint. Its records are named after their identity
(attack, eps, threat model, sample size and a hash of every identifying field), so a transfer
record never replaces the white-box one of the same attack and eps, nor a 100-image record a
10,000-image one.
"""

from __future__ import annotations

import io
import os
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np
import torch

from robens.attacks import (
    ATTACKS,
    SGDUAP,
    adaptive_attack,
    attack_parameters,
    canonical_attack_name,
    gradient_masking_checks,
    uap_metrics,
)
from robens.attacks.masking import NO_REPEAT
from robens.data import load_dataset
from robens.errors import InputError
from robens.evaluate.clean import (
    checkpoint_test_set,
    reading_lock,
    run_dir_of,
    subset_seed,
    unfinished_warning,
)
from robens.evaluate.engine import evaluate_attack, merge_stage_logs
from robens.evaluate.storage import slug
from robens.factory import load_ensemble
from robens.progress import Progress
from robens.records import (
    ThreatModel,
    identity_key,
    make_record,
    merge_json_records,
    records_from_meta,
)
from robens.utils import atomic_write_bytes, resolve_device

#: attacks whose result is a minimum-norm search; ``eps`` bounds them only with ``--norm l2``
#: (CW) and is otherwise not a budget
_MIN_NORM = ("cw", "ead", "jsma")
_MASKING_SAMPLES = 64
#: ``--attack uap`` by default = the universal entry of configs/suites/main.yaml (SGD-UAP fitted
#: on 2,000 seeded training images; tests/test_cli_progress.py keeps the two equal)
UAP_FIT_SIZE = 2000
UAP_PARAMS: dict[str, Any] = {"iterations": 10, "seeds": 3, "batch_size": 200}


def record_filename(fields: dict[str, Any]) -> str:
    """``attack-<attack>-eps<eps>-<threat model>-n<n>-<identity hash>.json`` of a record's
    identifying ``fields`` (its metric and value aside)."""
    ident = {k: v for k, v in fields.items() if k not in ("metric", "value")}
    return (f"attack-{slug(str(fields['attack']))}-eps{float(fields['eps']):g}"
            f"-{fields.get('threat_model')}-n{fields.get('n')}-{identity_key(ident)}.json")


def _record_path(checkpoint: Path, out: Path | None, fields: dict[str, Any]) -> Path:
    if out is not None and Path(out).suffix in (".json", ".jsonl"):
        return Path(out)  # an explicit file: records of other identities in it are kept
    return (run_dir_of(checkpoint) if out is None else Path(out)) / record_filename(fields)


def _attack_params(
    name: str,
    eps: float,
    steps: int | None,
    alpha: float | None,
    loss: str,
    norm: str,
    seed: int,
    warnings: list[str],
) -> dict[str, Any]:
    accepted = set(attack_parameters(name))
    params: dict[str, Any] = {}
    if name in _MIN_NORM:
        if name == "cw" and norm == "l2":
            params["eps"] = eps
        elif name == "ead" and norm == "l1":
            params["eps"] = eps
        else:
            warnings.append(
                f"{name} is a minimum-norm attack: eps={eps} is not used as a budget"
                + (" (pass --norm l2 to bound CW in L2)" if name == "cw" else "")
            )
    else:
        params["eps"] = eps
    for key, value in (("steps", steps), ("alpha", alpha)):
        if value is None:
            continue
        if key not in accepted:
            raise InputError(
                f"attack {name!r} takes no --{key} (it accepts {', '.join(sorted(accepted))})"
            )
        params[key] = value
    fixed = getattr(ATTACKS[name], "supported_losses", ())
    if loss != "ce" and not (loss in fixed and "loss" not in accepted):
        if "loss" not in accepted:
            raise InputError(f"attack {name!r} takes no --loss (its loss is fixed)")
        params["loss"] = loss
    if "norm" in accepted:
        params["norm"] = norm
    elif norm != "linf" and name not in _MIN_NORM:
        raise InputError(f"attack {name!r} supports --norm linf only")
    if "seed" in accepted:
        params["seed"] = seed
    return params


def _check_compatible(meta: dict, other: dict, label: str) -> None:
    a, b = meta.get("dataset", {}), other.get("dataset", {})
    for key in ("num_classes", "in_shape"):
        if a.get(key) is not None and b.get(key) is not None and a[key] != b[key]:
            raise InputError(f"the {label} checkpoint has {key} {b[key]}, the target {a[key]}")


def _save_npz(path: Path, **arrays: np.ndarray) -> None:
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())


def attack_checkpoint(
    checkpoint: str | os.PathLike,
    attack: str = "pgd",
    eps: float = 0.1,
    steps: int | None = None,
    alpha: float | None = None,
    loss: str = "ce",
    norm: str = "linf",
    surrogate: str | os.PathLike | None = None,
    save: str | os.PathLike | None = None,
    test_size: int | None = None,
    batch_size: int = 250,
    out: str | os.PathLike | None = None,
    device: str = "auto",
    seed: int = 0,
    progress: bool = False,
    warn: Callable[[str], None] | None = None,
    echo: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Attack a trained checkpoint on (a seeded subset of) its test set.

    ``progress`` shows bars (the CLI turns it on for a terminal) over the batches, SGD-UAP's
    fitting steps and C&W's binary search; without it, ``echo`` gets one line per stage.
    ``attack="uap"`` fits as the main suite does (:data:`UAP_FIT_SIZE` training images,
    :data:`UAP_PARAMS`; ``steps`` sets the iterations). A cascade
    (``autoattack``) adds ``"stages"``: per stage, the robust accuracy after it over all
    images, the images it attacked and broke, and its seconds (summed over batches).

    Returns ``{"attack", "eps", "n", "clean_accuracy", "robust_accuracy", "threat_model",
    "record_path", "warnings", ...}``. Robust accuracy counts a sample when the target
    classifies it correctly both clean and attacked. Records (``clean_accuracy``,
    ``robust_accuracy``, ``attack_success_rate``; JSON lines) go to ``out`` (a ``.json`` file,
    merged by record identity, or a folder) or the run directory, named by
    :func:`record_filename`. ``save`` writes ``x_adv``, ``y``, ``predictions`` (and
    ``clean_predictions``) with ``numpy.savez_compressed`` (no pickle: read with
    ``np.load(path, allow_pickle=False)``).

    The run directories of ``checkpoint`` and ``surrogate`` are held with a shared lock
    (:class:`~robens.errors.RunLockedError` while one is being trained). Warnings known before
    the attack runs (an unfinished checkpoint, eps not a budget) go to ``warn`` at once; all of
    them are in ``"warnings"`` and in every record.
    """
    with ExitStack() as stack:
        stack.enter_context(reading_lock(checkpoint))
        if surrogate is not None:
            stack.enter_context(reading_lock(surrogate))
        return _attack_checkpoint(
            checkpoint, attack, eps, steps, alpha, loss, norm, surrogate, save, test_size,
            batch_size, out, device, seed, progress, warn, echo,
        )


def _attack_checkpoint(
    checkpoint: str | os.PathLike,
    attack: str,
    eps: float,
    steps: int | None,
    alpha: float | None,
    loss: str,
    norm: str,
    surrogate: str | os.PathLike | None,
    save: str | os.PathLike | None,
    test_size: int | None,
    batch_size: int,
    out: str | os.PathLike | None,
    device: str,
    seed: int,
    progress: bool,
    warn: Callable[[str], None] | None,
    echo: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    start = time.perf_counter()
    name = canonical_attack_name(attack)
    if batch_size < 1:
        raise InputError(f"batch_size must be >= 1, got {batch_size}")
    dev = resolve_device(device)
    ckpt = Path(checkpoint)
    model, meta = load_ensemble(ckpt)
    warnings: list[str] = [w for w in [unfinished_warning(meta, ckpt)] if w]
    model.to(dev).eval()
    data = checkpoint_test_set(meta, None, None, test_size, seed)
    craft = model
    threat = ThreatModel.WHITE_BOX.value
    surrogate_fields: dict[str, Any] = {}
    if surrogate is not None:
        craft, sur_meta = load_ensemble(Path(surrogate))
        craft.to(dev).eval()
        _check_compatible(meta, sur_meta, "surrogate")
        threat = ThreatModel.TRANSFER.value
        sur = records_from_meta(sur_meta)
        surrogate_fields = {"surrogate": str(surrogate), "surrogate_model": sur["model"],
                            "surrogate_epoch": sur["epoch"],
                            "surrogate_complete": sur["complete"]}
        warnings += [w for w in [unfinished_warning(sur_meta, surrogate)] if w]
    info: dict[str, Any] = {}

    if name == "uap":  # the main suite's universal attack (the same settings and data)
        if norm != "linf" or loss != "ce" or alpha is not None:
            raise InputError("uap (SGD-UAP) takes --norm linf, --loss ce and no --alpha")
        params = {**UAP_PARAMS, **({"iterations": steps} if steps is not None else {})}
        uap = SGDUAP(craft, eps, **params, seed=seed)
        cfg = meta.get("config", {}).get("data", {})
        train = load_dataset(data.name, "train", root=cfg.get("root"), size=UAP_FIT_SIZE,
                             seed=seed)
        info["uap_fit_split"] = "train"
        info["uap_fit_size"] = len(train)
        atk = uap
    else:
        params = _attack_params(name, eps, steps, alpha, loss, norm, seed, warnings)
        atk = adaptive_attack(craft, name, **params)
    for w in warnings:  # before the work
        if warn is not None:
            warn(w)
    early = len(warnings)

    first: list[tuple[torch.Tensor, torch.Tensor, Any]] = []
    stage_logs: list[tuple[int, list[dict[str, Any]]]] = []

    def keep_first(i: int, x: torch.Tensor, y: torch.Tensor, result: Any) -> None:
        if i == 0:
            first.append((x, y, result))
        if result.info.get("stages"):
            stage_logs.append((int(y.shape[0]), result.info["stages"]))

    batches = list(data.batches(batch_size))
    with Progress(progress, echo=echo) as bar:
        if name == "uap":
            fitting = bar.task(f"fitting SGD-UAP eps={eps:g} on {len(train)} train images",
                               uap.iterations * uap.seeds)
            uap.on_step = fitting.advance
            delta = uap.fit(train)
            uap.on_step = None
            fitting.close()
            info["uap"] = uap_metrics(model, delta, data.batches(batch_size))
        if hasattr(atk, "binary_search_steps"):  # C&W / EAD: a bar over the search's steps
            search = bar.task(f"{name} binary search",
                              atk.binary_search_steps * atk.steps * len(batches))
            atk.on_step = search.advance
        outcome = evaluate_attack(
            model, atk, batches, device=dev, keep_adv=save is not None, on_batch=keep_first,
            track=lambda items: bar.track(items, f"{name} eps={eps:g}", len(batches)),
            early_exit=threat == ThreatModel.WHITE_BOX.value,  # as the suite's default
        )
    if stage_logs:
        info["stages"] = merge_stage_logs(stage_logs)
    n = outcome.n
    clean_ok, robust_ok = int(outcome.clean_ok.sum()), int(outcome.robust.sum())

    if first and threat == ThreatModel.WHITE_BOX.value:
        x0, y0, r0 = first[0]
        k = min(_MASKING_SAMPLES, x0.shape[0])
        repeat = name not in NO_REPEAT
        warnings += gradient_masking_checks(
            model, x0[:k], y0[:k], r0.select(slice(0, k)), repeat=repeat
        )

    clean_acc, robust_acc = clean_ok / n, robust_ok / n
    desc = atk.describe()
    extra = {k: v for k, v in desc.items() if k not in ("attack", "eps", "seed") and v is not None}
    extra["attack_seed"] = desc.get("seed")
    base = records_from_meta(meta, dataset=data.name)
    common = {"attack": name, "eps": eps, "n": n, "sample_seed": subset_seed(test_size, seed),
              "threat_model": threat, **surrogate_fields, **extra}
    if "stages" in info:
        common["stages"] = info["stages"]
    records = [
        make_record(**base, metric="clean_accuracy", value=clean_acc, **common),
        make_record(**base, metric="robust_accuracy", value=robust_acc, **common),
        make_record(
            **base,
            metric="attack_success_rate",
            value=(clean_ok - robust_ok) / clean_ok if clean_ok else 0.0,
            **common,
        ),
    ]
    if "uap" in info:
        for key in ("fooling_rate_changed", "fooling_rate_misclassified"):
            records.append(make_record(**base, metric=key, value=info["uap"][key], **common))
    for rec in records:
        rec["warnings"] = list(warnings)
    record_path = _record_path(ckpt, Path(out) if out is not None else None,
                               {**base, **common})
    merge_json_records(record_path, records)

    save_path = None
    if save is not None:
        save_path = Path(save)
        _save_npz(
            save_path,
            x_adv=outcome.x_adv.numpy(),
            y=outcome.y.numpy(),
            predictions=outcome.adv_pred.numpy(),
            clean_predictions=outcome.clean_pred.numpy(),
        )
    return {
        "attack": name,
        "eps": eps,
        "n": n,
        "clean_accuracy": clean_acc,
        "robust_accuracy": robust_acc,
        "threat_model": threat,
        **surrogate_fields,
        "record_path": str(record_path),
        "warnings": warnings,
        "warned": warnings[:early] if warn is not None else [],
        "epoch": base["epoch"],
        "complete": base["complete"],
        "save_path": str(save_path) if save_path else None,
        "attack_params": desc,
        "seconds": time.perf_counter() - start,
        **info,
    }
