"""Bring your own model (robens.api): the README example runs, and the API's guarantees hold."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import robens
from robens.data import load_dataset
from robens.errors import CheckpointError, ConfigError, InputError, RobensError

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_block(tag: str) -> str:
    text = README.read_text(encoding="utf-8")
    m = re.search(rf"<!-- example: {tag} -->\s*```python\n(.*?)```", text, re.S)
    assert m, f"README has no '{tag}' example"
    return m.group(1)


class Tiny(nn.Module):
    def __init__(self, width: int = 4, num_classes: int = 10):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, width), nn.BatchNorm1d(width),
                                 nn.LeakyReLU(0.1), nn.Dropout(0.2), nn.Linear(width, num_classes))

    def forward(self, x):
        return self.net(x)


@pytest.fixture(scope="module")
def readme_run(tmp_path_factory):
    """Execute the README's bring-your-own-model block in a scratch folder."""
    cwd = tmp_path_factory.mktemp("byom")
    code = readme_block("byom")
    ns: dict = {"__name__": "readme_byom"}
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(cwd)
        torch.manual_seed(0)
        exec(compile(code, str(README), "exec"), ns)  # noqa: S102 - our own README
    ns["cwd"] = cwd
    return ns


def test_readme_example_trains_with_gal_attacks_evaluates_and_round_trips(readme_run):
    ns = readme_run
    cnn = ns["SmallCNN"](**ns["kwargs"])
    kinds = {type(m) for m in cnn.modules()}
    assert nn.BatchNorm2d in kinds and nn.Dropout in kinds
    fit = ns["fit"]
    assert fit.objective == "ce + 0.5*gal"
    assert len(fit.history) == 2 and "gal" in fit.history[0]
    assert fit.history[-1]["loss"] < fit.history[0]["loss"]
    assert ns["ensemble"].members[0] is ns["members"][0]  # the user's modules, trained in place
    # training learned something, and PGD at 8/255 hurts it
    assert ns["clean"] > 0.3
    assert ns["robust"] < ns["clean"]
    assert (ns["x_adv"] - ns["x"]).abs().max() <= 8 / 255 + 1e-6
    recs = ns["summary"]["records"]
    threats = {(r["attack"], r["threat_model"]) for r in recs if r["metric"] == "robust_accuracy"}
    assert {("fgsm", "white_box"), ("pgd", "white_box"), ("uap", "universal")} <= threats
    pgd = next(r for r in ns["robust_records"] if r["attack"] == "pgd")
    assert pgd["eps"] == pytest.approx(8 / 255) and pgd["n"] == 100
    assert pgd["model"] == "3xSmallCNN" and pgd["objective"] == "ce + 0.5*gal"
    assert pgd["reg_term"] == "gal" and pgd["reg_lambda"] == 0.5
    assert any(r["metric"].startswith("gradient") or "cosine" in r["metric"] for r in recs)
    assert (ns["cwd"] / "runs/byom/results.jsonl").is_file()
    assert ns["same"]


def test_saved_model_is_safetensors_naming_the_constructor(readme_run):
    import json

    from safetensors import safe_open

    path = readme_run["cwd"] / "runs/byom/model.safetensors"
    with safe_open(str(path), "pt") as f:
        meta = json.loads(f.metadata()["robens"])
    spec = meta["model"]["members"][0]
    assert spec["constructor"] == "readme_byom:SmallCNN"
    assert spec["kwargs"] == readme_run["kwargs"]
    with pytest.raises(CheckpointError, match="trust_constructor"):
        robens.load_model(path)  # never imports code the caller did not allow
    with pytest.raises(CheckpointError, match="saved as readme_byom:SmallCNN"):
        robens.load_model(path, constructor=Tiny)


def test_trust_constructor_imports_module_level_class(tmp_path):
    torch.manual_seed(0)
    ens = robens.api.as_ensemble([Tiny(), Tiny()])
    path = robens.save_model(ens, tmp_path / "m.safetensors", kwargs={"width": 4})
    loaded = robens.load_model(path, trust_constructor=True)
    assert type(loaded.members[0]) is Tiny
    x = torch.rand(5, 1, 28, 28)
    ens.eval()
    assert torch.equal(loaded(x), ens(x))


def test_fit_bad_inputs_are_clear_errors():
    x, y = torch.rand(32, 1, 28, 28), torch.randint(0, 10, (32,))
    loader = DataLoader(TensorDataset(x, y), batch_size=16)
    with pytest.raises(InputError, match="nn.Module"):
        robens.fit("lenet", loader)
    with pytest.raises(InputError, match="DataLoader"):
        robens.fit([Tiny()], 42)
    with pytest.raises(ConfigError, match="objective|term"):
        robens.fit([Tiny()], loader, objective="ce + 0.5*nosuchterm", echo=None)
    with pytest.raises(ConfigError, match="bagging"):
        robens.fit([Tiny()], loader, strategy="bagging", echo=None)
    opt = torch.optim.SGD(Tiny().parameters(), lr=0.1)
    with pytest.raises(InputError, match="lr=0.01 differs"):
        robens.fit([Tiny()], loader, optimizer=opt, lr=0.01, echo=None)
    with pytest.raises(RobensError):
        robens.evaluate(Tiny(), {"attacks": [{"attack": "fgsm", "eps": [0.1]}]},
                        (torch.rand(4, 1, 28, 28) * 0.37, torch.zeros(4).long()), out="x")


def test_fit_strategies_and_user_optimizer_lr_is_kept():
    train = load_dataset("synthetic", "train", size=64)
    loader = DataLoader(TensorDataset(*train.tensors()), batch_size=32)
    members = [Tiny(), Tiny()]
    opt = torch.optim.SGD([p for m in members for p in m.parameters()], lr=0.05)
    robens.fit(members, loader, objective="ce + 0.5*cosine", optimizer=opt, echo=None)
    assert opt.param_groups[0]["lr"] == 0.05  # the caller's lr, not a default
    before = [p.clone() for p in members[0].parameters()]
    res = robens.fit([Tiny(), Tiny()], train, strategy="bagging", batch_size=32, echo=None)
    assert res.ensemble.num_members == 2
    snap = robens.fit([Tiny(), Tiny()], loader, strategy="snapshot", epochs=2, echo=None)
    a, b = (list(m.parameters()) for m in snap.ensemble.members)
    assert not all(torch.equal(p, q) for p, q in zip(a, b, strict=True))  # two snapshots
    assert all(torch.equal(p, q) for p, q in zip(before, members[0].parameters(), strict=True))
