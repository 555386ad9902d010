"""Peer defenses end to end: ``robens train`` on configs/trs.yaml and configs/dverge.yaml, and
the ``peers`` recipe at its tiny scale."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from robens.checkpoint import load_checkpoint
from robens.cli import main

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
TINY = ["--dataset", "synthetic", "--train-size", "16", "--test-size", "10", "--batch-size", "8",
        "--epochs", "1", "--threads", "1", "--members", "2", "--no-progress"]


@pytest.fixture
def one_thread():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("name,sets", [
    ("trs", ["terms.trs.steps=1"]),
    ("dverge", ["training.dverge.steps=2", "training.dverge.plus_adv=true",
                "training.dverge.adv_steps=1"]),
])
def test_train_cli_on_peer_configs(name, sets, tmp_path, one_thread):
    out = tmp_path / name
    args = ["train", str(CONFIGS / f"{name}.yaml"), *TINY, "--out", str(out)]
    for item in sets:
        args += ["--set", item]
    assert main(args) == 0
    _, meta = load_checkpoint(out / "checkpoint.safetensors")
    assert meta["complete"] and meta["epoch"] == 1
    assert meta["config"]["data"]["dataset"] == "synthetic"
    train = meta["history"][0]["train"]
    if name == "trs":
        assert meta["config"]["objective"] == "ce + trs" and "trs" in train
    else:
        assert meta["strategy"]["name"] == "dverge" and list(meta["strategy"]["layers"]) == ["1"]
        assert {"dverge_member0", "dverge_member1"} <= set(train)


def test_peers_recipe_tiny_cli(tmp_path, one_thread):
    import json

    out = tmp_path / "peers"
    args = ["reproduce", "peers", "--scale", "tiny", "--dataset", "synthetic", "--out", str(out),
            "--backend", "serial", "--set", "training.threads=1"]
    assert main(args) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["trials_complete"] == summary["trials_total"] == 7
    checks = {c["name"]: c for c in summary["checks"]}
    assert set(checks) == {f"{m} beats Baseline under every transfer attack at eps 0.1"
                           for m in ("DVERGE", "TRS")}
    for c in checks.values():
        assert c["verdict"] == "INCONCLUSIVE" and "tiny scale" in c["detail"]
        assert len(c["cells"]) == 2  # tiny: PGD-CE from surrogate a, MI-FGSM-CW from b
    transfer = summary["data"]["transfer"]
    assert set(transfer["all sources"]) == {"baseline", "adp", "gal", "dverge", "trs"}
    for method, per_eps in transfer["all sources"].items():  # all sources <= every source
        for i, v in enumerate(per_eps):
            assert v is not None
            assert all(v <= cell[method][i] + 1e-12 for k, cell in transfer.items()
                       if k != "all sources")
    keys = {t["key"] for t in summary["tables"]}
    assert {"transfer", "white-box", "transferability", "standing", "published"} <= keys
    tm = next(t for t in summary["tables"] if t["key"] == "transferability")
    assert all(row[1] != "—" for row in tm["rows"])
    from robens.reproduce import plan_recipe

    plan = plan_recipe("peers", "tiny", "synthetic", out, {"training.threads": 1})
    base = plan.stages[1].trials[0].run_dir / "checkpoint.safetensors"
    dverge = next(t for s in plan.stages for t in s.trials if t.config.name == "dverge")
    assert dverge.config.training.dverge.init_checkpoint == str(base) and base.exists()
    assert dverge.config.training.strategy == "dverge"
