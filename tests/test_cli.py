"""CLI: user errors give one clear line and exit 2 (no traceback); the happy path works."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from robens import __version__
from robens.cli import main
from robens.data.idx import write_idx


def run_cli(*args, cwd=None, env=None):
    proc = subprocess.run(
        [sys.executable, "-m", "robens.cli", *map(str, args)],
        capture_output=True, text=True, cwd=cwd, env=env,
    )
    return proc.returncode, proc.stdout, proc.stderr


def assert_user_error(rc, err, *needles):
    assert rc == 2, err
    assert "Traceback" not in err
    assert err.startswith("error: ")
    for n in needles:
        assert n in err, err


def test_version_and_help(capsys):
    assert main(["--version"]) == 0
    assert __version__ in capsys.readouterr().out
    for cmd in (["--help"], ["train", "--help"], ["evaluate", "--help"], ["attack", "--help"],
                ["data", "--help"], ["data", "info", "--help"]):
        assert main(cmd) == 0


def test_missing_dataset(tmp_path, monkeypatch):
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "ROBENS_DATA": str(tmp_path / "none")}
    rc, _, err = run_cli("train", "--dataset", "mnist", "--out", tmp_path / "r", env=env)
    assert_user_error(rc, err, "mnist", str(tmp_path / "none"), "robens data download")


def test_corrupt_idx(tmp_path):
    import numpy as np

    root = tmp_path / "fm"
    root.mkdir()
    write_idx(root / "train-images-idx3-ubyte", np.zeros((10, 28, 28), np.uint8))
    write_idx(root / "train-labels-idx1-ubyte", np.zeros((10,), np.uint8))
    write_idx(root / "t10k-images-idx3-ubyte", np.zeros((10, 28, 28), np.uint8))
    (root / "t10k-labels-idx1-ubyte").write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x0a\x01")
    rc, _, err = run_cli("train", "--dataset", "fashion-mnist", "--data-root", root,
                         "--out", tmp_path / "r")
    assert_user_error(rc, err, "t10k-labels-idx1-ubyte")


def test_unknown_model(tmp_path):
    rc, _, err = run_cli("train", "--dataset", "synthetic", "--model", "vgg99",
                         "--out", tmp_path / "r")
    assert_user_error(rc, err, "vgg99", "lenet")


def test_malformed_yaml_and_unknown_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed\n")
    rc, _, err = run_cli("train", bad)
    assert_user_error(rc, err, "malformed YAML")
    unk = tmp_path / "unk.yaml"
    unk.write_text("model:\n  membrs: 3\n")
    rc, _, err = run_cli("train", unk)
    assert_user_error(rc, err, "model.membrs", "unknown key")
    rc, _, err = run_cli("train", "--dataset", "synthetic", "--members", "0")
    assert_user_error(rc, err, "model.members")


def test_missing_checkpoint(tmp_path):
    rc, _, err = run_cli("evaluate", tmp_path / "nothing.safetensors")
    assert_user_error(rc, err, "not found")


def test_train_then_evaluate(tmp_path):
    out = tmp_path / "run"
    assert main(["train", "--dataset", "synthetic", "--train-size", "300", "--test-size", "100",
                 "--members", "2", "--epochs", "1", "--out", str(out), "--no-progress"]) == 0
    assert main(["evaluate", str(out), "--test-size", "100"]) == 0
    summary = json.loads((out / "evaluate.json").read_text())
    assert len(summary["members"]) == 2 and 0 <= summary["ensemble"] <= 1
    records = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    assert records[0]["metric"] == "clean_accuracy"
    assert {"method", "dataset", "model", "attack", "eps", "metric", "value", "seed",
            "config_hash", "versions"} <= set(records[0])


@pytest.mark.parametrize("args", [["data", "info", "synthetic"]])
def test_data_info(args, capsys):
    assert main(args) == 0
