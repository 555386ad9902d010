"""Property-based fuzzing of every parser of untrusted input.

Malformed configs, IDX files, CIFAR batches, checkpoints and command lines must produce only
robens' own documented exceptions (subclasses of RobensError), never a raw traceback from
deep inside, never a hang. The default suite runs a few hundred cases per target; the
``fuzz`` marker runs thousands: ``pytest -m fuzz tests/test_fuzz.py``.
"""

from __future__ import annotations

import gzip
import io
import os
import pickle
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from robens.checkpoint import load_checkpoint, save_checkpoint
from robens.config import validate_config
from robens.data.cifar import read_cifar_batch
from robens.data.idx import read_idx, write_idx
from robens.errors import RobensError

QUICK = int(os.environ.get("ROBENS_FUZZ_EXAMPLES", "150"))
LONG = 3000


def fuzz_settings(n: int):
    return settings(
        max_examples=n,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        database=None,
    )


def expect_only_robens_errors(fn, *args):
    try:
        fn(*args)
    except RobensError as exc:
        assert str(exc), "an error must say what is wrong"


# ----------------------------------------------------------------------------- configs
KEYS = ["name", "seed", "data", "model", "objective", "terms", "optimizer", "schedule",
        "training", "output_dir", "dataset", "members", "arch", "lr", "epochs", "weights",
        "adversarial", "eps", "augment", "batch_size", "combine", "strategy", "bogus"]
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-10**6, 10**6),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=6), inner, max_size=4),
    ),
    max_leaves=12,
)
configs = st.dictionaries(st.sampled_from(KEYS), values, max_size=6)


def _check_config(data):
    expect_only_robens_errors(validate_config, data)


@fuzz_settings(QUICK)
@given(configs)
def test_fuzz_config_mappings(data):
    _check_config(data)


@fuzz_settings(QUICK)
@given(st.text(max_size=200))
def test_fuzz_config_yaml_text(text):
    from robens.config import load_config

    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "c.yaml"
        p.write_text(text, encoding="utf-8")
        expect_only_robens_errors(load_config, p)


# ----------------------------------------------------------------------------- IDX
def _valid_idx(kind: str) -> bytes:
    buf = io.BytesIO()
    with tempfile.TemporaryDirectory() as d:
        if kind == "images":
            write_idx(Path(d) / "f", np.arange(3 * 28 * 28, dtype=np.uint8).reshape(3, 28, 28))
        else:
            write_idx(Path(d) / "f", np.array([1, 2, 3], dtype=np.uint8))
        buf.write((Path(d) / "f").read_bytes())
    return buf.getvalue()


VALID_IDX = {"images": _valid_idx("images"), "labels": _valid_idx("labels")}


@st.composite
def mutated(draw, base: bytes):
    data = bytearray(base)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "truncate", "append", "header"]))
        if op == "flip" and data:
            i = draw(st.integers(0, len(data) - 1))
            data[i] = draw(st.integers(0, 255))
        elif op == "truncate":
            data = data[: draw(st.integers(0, len(data)))]
        elif op == "append":
            data += draw(st.binary(max_size=16))
        elif op == "header" and len(data) >= 4:
            i = draw(st.integers(0, min(15, len(data) - 1)))
            data[i] = draw(st.integers(0, 255))
    return bytes(data)


def idx_inputs():
    return st.one_of(
        st.binary(max_size=64),
        mutated(VALID_IDX["images"]),
        mutated(VALID_IDX["labels"]),
        mutated(gzip.compress(VALID_IDX["labels"])),
    )


def _check_idx(blob: bytes):
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "x-idx3-ubyte"
        p.write_bytes(blob)
        expect_only_robens_errors(read_idx, p)


@fuzz_settings(QUICK)
@given(idx_inputs())
def test_fuzz_idx_reader(blob):
    _check_idx(blob)


# ----------------------------------------------------------------------------- CIFAR
VALID_CIFAR = pickle.dumps(
    {b"data": np.zeros((2, 3072), np.uint8), b"labels": [1, 2]}, protocol=2
)


def cifar_inputs():
    evil = pickle.dumps(os.system.__self__ if False else {"x": 1})
    return st.one_of(st.binary(max_size=64), mutated(VALID_CIFAR), mutated(evil))


def _check_cifar(blob: bytes):
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "data_batch_1"
        p.write_bytes(blob)
        expect_only_robens_errors(read_cifar_batch, p)


@fuzz_settings(QUICK)
@given(cifar_inputs())
def test_fuzz_cifar_reader(blob):
    _check_cifar(blob)


# ----------------------------------------------------------------------------- checkpoints
def _valid_checkpoint() -> bytes:
    with tempfile.TemporaryDirectory() as d:
        p = save_checkpoint(
            Path(d) / "c.safetensors",
            {"model/w": torch.arange(12.0).reshape(3, 4), "model/b": torch.ones(3)},
            {"epoch": 1, "config": {"a": 1}},
        )
        return p.read_bytes()


VALID_CKPT = _valid_checkpoint()


def _check_checkpoint(blob: bytes):
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "c.safetensors"
        p.write_bytes(blob)
        try:
            load_checkpoint(p)
        except RobensError:
            return
        assert blob == VALID_CKPT, "a modified checkpoint was accepted"


@fuzz_settings(QUICK)
@given(st.one_of(st.binary(max_size=64), mutated(VALID_CKPT)))
def test_fuzz_checkpoint_loader(blob):
    _check_checkpoint(blob)


# ----------------------------------------------------------------------------- CLI
COMMANDS = [["train"], ["evaluate"], ["attack"], ["data", "info"], ["data", "download"], []]
TOKENS = ["--dataset", "--model", "--members", "--epochs", "--lr", "--set", "--out", "--eps",
          "--attack", "--steps", "--seed", "--batch-size", "--resume", "--objective",
          "--combine", "--test-size", "--strategy", "synthetic", "mnist", "lenet", "vgg", "-1",
          "0", "3", "1e9", "nan", "pgd", "x=1", "model.members=0", "cifar10", "--help",
          "/nonexistent/ckpt", "ce + 0.5*gal", "ce + *", "probs", "bagging"]


class _StopBeforeTraining(RobensError):
    """Raised instead of training: the fuzzer tests argument handling, not training."""


def _check_cli(argv, tmp: Path):
    from robens.cli import main
    from robens.data import datasets as ds
    from robens.training import trainer as tr

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ds, "SYSTEM_DIRS", {}, raising=False)
        mp.setenv("ROBENS_DATA", str(tmp / "data"))
        mp.setenv("HOME", str(tmp))
        mp.chdir(tmp)

        def stop(self, resume=False):
            raise _StopBeforeTraining("fuzz: stop before training")

        mp.setattr(tr.Trainer, "fit", stop)
        mp.setattr("robens.data.download.download_dataset",
                   lambda *a, **k: (_ for _ in ()).throw(_StopBeforeTraining("no network")))
        rc = main(argv)
    assert isinstance(rc, int)


@fuzz_settings(max(30, QUICK // 3))
@given(st.sampled_from(COMMANDS), st.lists(st.sampled_from(TOKENS), max_size=6))
def test_fuzz_cli_arguments(cmd, tokens):
    with tempfile.TemporaryDirectory() as d:
        _check_cli(cmd + tokens, Path(d))


# ----------------------------------------------------------------------------- long runs
@pytest.mark.fuzz
@pytest.mark.parametrize(
    "target, strategy",
    [
        (_check_config, configs),
        (_check_idx, idx_inputs()),
        (_check_cifar, cifar_inputs()),
        (_check_checkpoint, st.one_of(st.binary(max_size=64), mutated(VALID_CKPT))),
    ],
    ids=["config", "idx", "cifar", "checkpoint"],
)
def test_fuzz_long(target, strategy):
    fuzz_settings(LONG)(given(strategy)(target))()
