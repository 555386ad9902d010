"""Shared fixtures: tiny real-data helpers and run helpers."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pytest
import torch

FMNIST_DIR = Path("/usr/share/datasets/fashion-mnist")

os.environ.setdefault("OMP_NUM_THREADS", "2")


def small_config(tmp_path: Path, **over) -> dict:
    """A tiny synthetic-data experiment config (seconds to train)."""
    cfg = {
        "name": "tiny",
        "seed": 0,
        "data": {"dataset": "synthetic", "train_size": 400, "test_size": 200, "batch_size": 50},
        "model": {"arch": "lenet", "members": 2, "activation": "leaky_relu"},
        "training": {"epochs": 1, "threads": 2},
        "output_dir": str(tmp_path / "run"),
    }
    for key, value in over.items():
        node = cfg
        parts = key.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    return cfg


@pytest.fixture
def has_fmnist() -> bool:
    if not (FMNIST_DIR / "train-images-idx3-ubyte.gz").exists():
        pytest.skip("Fashion-MNIST Debian package not installed")
    return True


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="module")
def one_thread_module():
    """One intra-op thread for a module of small models: as fast, and immune to oversubscribed
    cores (``pytestmark = pytest.mark.usefixtures("one_thread_module")``)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@contextlib.contextmanager
def interrupt_at_epoch(monkeypatch, epoch: int):
    """Within the block, ``Trainer.run_epoch`` raises ``KeyboardInterrupt`` at ``epoch``
    (0-based) — a kill mid-run; the original method is back after it."""
    from robens.training import Trainer

    original = Trainer.run_epoch

    def killed(self, e):
        if e == epoch:
            raise KeyboardInterrupt
        return original(self, e)

    monkeypatch.setattr(Trainer, "run_epoch", killed)
    try:
        yield
    finally:
        monkeypatch.setattr(Trainer, "run_epoch", original)
