"""Clean accuracy of a checkpoint: every member and the ensemble, as a table and records."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from robens.data import load_dataset
from robens.errors import InputError
from robens.factory import load_ensemble
from robens.metrics.accuracy import evaluate_accuracy
from robens.records import make_record, records_from_meta, write_json_records
from robens.utils import atomic_write_json, resolve_device


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
) -> dict[str, Any]:
    """Evaluate clean accuracy; writes ``evaluate.json`` and ``records.jsonl`` under ``out``."""
    dev = resolve_device(device)
    ens, meta = load_ensemble(checkpoint)
    ens.to(dev)
    data = checkpoint_test_set(meta, dataset, root, test_size, seed)
    acc = evaluate_accuracy(ens, data.batches(batch_size, shuffle=False), device=dev)
    ckpt = Path(checkpoint)
    out_dir = Path(out) if out else (ckpt if ckpt.is_dir() else ckpt.parent)
    base = records_from_meta(meta, dataset=data.name)
    records = [make_record(**base, metric="clean_accuracy", value=acc["ensemble"], n=acc["n"])]
    for i, a in enumerate(acc["members"]):
        records.append(
            make_record(**base, metric="member_clean_accuracy", value=a, member=i, n=acc["n"])
        )
    records_path = out_dir / "records.jsonl"
    write_json_records(records_path, records)
    summary = {
        "checkpoint": str(checkpoint),
        "dataset": data.name,
        "n": acc["n"],
        "ensemble": acc["ensemble"],
        "members": acc["members"],
        "records_path": str(records_path),
        "config": meta.get("config"),
        "seed": meta.get("seed"),
        "versions": records[0]["versions"],
    }
    atomic_write_json(out_dir / "evaluate.json", summary)
    return summary
