"""Clean accuracy of a checkpoint: every member and the ensemble, as a table and records.

Also the two guards every reader of a run shares (``robens evaluate``, ``robens attack``): a
shared :class:`~robens.runlock.RunLock` on the checkpoint's run directory (refused while
training or a suite writes it) and a loud warning on an unfinished checkpoint.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from robens.data import DATASETS, canonical_name, load_dataset
from robens.errors import InputError
from robens.factory import load_ensemble
from robens.metrics.accuracy import evaluate_accuracy
from robens.records import make_record, merge_json_records, records_from_meta
from robens.runlock import RunLock
from robens.utils import atomic_write_json, resolve_device

#: the file of a run's clean records (merged by record identity, never replaced wholesale)
CLEAN_RECORDS = "records.jsonl"


def run_dir_of(checkpoint: str | os.PathLike) -> Path:
    """The run directory of a checkpoint file or of a run directory itself."""
    path = Path(checkpoint)
    return path if path.is_dir() else path.parent


def reading_lock(checkpoint: str | os.PathLike) -> RunLock:
    """A shared lock on ``checkpoint``'s run directory (use it as a context manager)."""
    return RunLock(run_dir_of(checkpoint), shared=True)


def unfinished_warning(meta: dict[str, Any], checkpoint: str | os.PathLike) -> str | None:
    """A warning when the checkpoint's training had not finished (``complete: false``)."""
    if meta.get("complete") is not False:
        return None
    epochs = meta.get("config", {}).get("training", {}).get("epochs")
    return (
        f"UNFINISHED CHECKPOINT {checkpoint}: complete: false, epoch {meta.get('epoch')}"
        f" of {epochs if epochs is not None else '?'} (its training was interrupted or is"
        " still running); these results describe that epoch, and their records say so"
    )


def warn_if_unfinished(checkpoint: str | os.PathLike, warn: Callable[[str], None]) -> None:
    """Pass :func:`unfinished_warning` of ``checkpoint`` to ``warn`` (for the suite's path)."""
    from robens.checkpoint import load_checkpoint

    message = unfinished_warning(load_checkpoint(checkpoint)[1], checkpoint)
    if message:
        warn(message)


def subset_seed(test_size: int | None, seed: int) -> int | None:
    """The seed that drew a test subset (``None`` for the whole split, where it plays no part)."""
    return None if test_size is None else int(seed)


def trained_dataset(meta: dict[str, Any]) -> str | None:
    """The dataset a checkpoint was trained on (canonical name), if its metadata says."""
    name = meta.get("dataset", {}).get("name") or meta.get("config", {}).get("data", {}).get(
        "dataset")
    return canonical_name(name) if isinstance(name, str) and name in DATASETS else name


def check_dataset_override(meta: dict[str, Any], dataset: str | None, force: bool) -> None:
    """Refuse ``dataset`` when it is not the one the checkpoint was trained on, unless
    ``force``: accuracy on another dataset of the same shape is meaningless, not an error."""
    if dataset is None or force:
        return
    trained = trained_dataset(meta)
    if trained is not None and canonical_name(dataset) != trained:
        raise InputError(
            f"the checkpoint was trained on {trained}, not {canonical_name(dataset)}; evaluating"
            " it on another dataset needs --force (force=True)"
        )


def checkpoint_test_set(
    meta: dict[str, Any],
    dataset: str | None = None,
    root: str | None = None,
    test_size: int | None = None,
    seed: int = 0,
):
    """The test split a checkpoint was trained for (or ``dataset``), validated against it."""
    cfg = meta.get("config", {}).get("data", {})
    name = dataset or cfg.get("dataset") or meta.get("dataset", {}).get("name")
    data = load_dataset(name, "test", root=root or cfg.get("root"), size=test_size, seed=seed)
    expected = meta.get("dataset", {})
    if expected.get("num_classes") not in (None, data.num_classes):
        raise InputError(
            f"the checkpoint predicts {expected['num_classes']} classes but {name} has"
            f" {data.num_classes}"
        )
    if expected.get("in_shape") and list(expected["in_shape"]) != list(data.in_shape):
        raise InputError(
            f"the checkpoint expects images of shape {tuple(expected['in_shape'])}, {name} has"
            f" {tuple(data.in_shape)}"
        )
    return data


def evaluate_clean_checkpoint(
    checkpoint: str | os.PathLike,
    dataset: str | None = None,
    root: str | None = None,
    test_size: int | None = None,
    batch_size: int = 500,
    out: str | os.PathLike | None = None,
    device: str = "auto",
    seed: int = 0,
    warn: Callable[[str], None] | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """Evaluate clean accuracy (a ``dataset`` other than the trained one needs ``force``);
    writes ``evaluate.json`` and merges records into
    ``records.jsonl`` under ``out`` (records of another sample or checkpoint are kept).

    Holds the run directory's shared lock throughout (:class:`~robens.errors.RunLockedError`
    while it is being trained). An unfinished checkpoint is evaluated with a warning, passed to
    ``warn`` as soon as it is known and returned in ``"warnings"``.
    """
    with reading_lock(checkpoint):
        return _evaluate_clean(checkpoint, dataset, root, test_size, batch_size, out,
                               resolve_device(device), seed, warn, force)


def _evaluate_clean(
    checkpoint: str | os.PathLike,
    dataset: str | None,
    root: str | None,
    test_size: int | None,
    batch_size: int,
    out: str | os.PathLike | None,
    dev: Any,
    seed: int,
    warn: Callable[[str], None] | None,
    force: bool = False,
) -> dict[str, Any]:
    ens, meta = load_ensemble(checkpoint)
    check_dataset_override(meta, dataset, force)
    warnings = [w for w in [unfinished_warning(meta, checkpoint)] if w]
    for w in warnings:
        if warn is not None:
            warn(w)
    ens.to(dev)
    data = checkpoint_test_set(meta, dataset, root, test_size, seed)
    acc = evaluate_accuracy(ens, data.batches(batch_size, shuffle=False), device=dev)
    out_dir = Path(out) if out else run_dir_of(checkpoint)
    base = records_from_meta(meta, dataset=data.name)
    sample: dict[str, Any] = {"n": acc["n"], "sample_seed": subset_seed(test_size, seed)}
    if warnings:
        sample["warnings"] = warnings
    records = [make_record(**base, metric="clean_accuracy", value=acc["ensemble"], **sample)]
    for i, a in enumerate(acc["members"]):
        records.append(
            make_record(**base, metric="member_clean_accuracy", value=a, member=i, **sample)
        )
    records_path = out_dir / CLEAN_RECORDS
    merge_json_records(records_path, records)
    summary = {
        "checkpoint": str(checkpoint),
        "dataset": data.name,
        "n": acc["n"],
        "ensemble": acc["ensemble"],
        "members": acc["members"],
        "records_path": str(records_path),
        "config": meta.get("config"),
        "seed": meta.get("seed"),
        "epoch": base["epoch"],
        "complete": base["complete"],
        "warnings": warnings,
        "versions": records[0]["versions"],
    }
    atomic_write_json(out_dir / "evaluate.json", summary)
    return summary
