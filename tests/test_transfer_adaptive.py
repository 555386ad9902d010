"""Transfer attacks, the transferability matrix, adaptive attacks on MMC/RCE models,
gradient-masking checks, and the ``robens attack`` command end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from robens.attacks import (
    FGSM,
    PGD,
    SPSA,
    adaptive_attack,
    build_attack,
    detect_defenses,
    gradient_masking_checks,
    mmc_loss,
)
from robens.ensemble import Ensemble
from robens.errors import InputError
from robens.metrics.transfer import transfer_attack, transferability_matrix
from tests.conftest import small_config

pytestmark = pytest.mark.usefixtures("one_thread_module")


class Small(nn.Module):
    """A robens-style classifier: ``forward = classifier(features(x))``, 1x6x6 inputs."""

    def __init__(self, seed: int = 0, num_classes: int = 4) -> None:
        super().__init__()
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            self.body = nn.Sequential(nn.Flatten(), nn.Linear(36, 8), nn.Tanh())
            self.classifier = nn.Linear(8, num_classes)
        self.feature_dim = 8
        self.num_classes = num_classes

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class GenericMMHead(nn.Module):
    """A stand-in head following only the duck-typed convention (``mm_centers``)."""

    def __init__(self, centers: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mm_centers", centers.clone())

    def forward(self, z: torch.Tensor) -> torch.Tensor:  # any scores; argmax = nearest centre
        return -torch.cdist(z, self.mm_centers)


def data(n: int = 8, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 6, 6, generator=g), torch.randint(0, 4, (n,), generator=g)


# ---------------------------------------------------------------------------- adaptive
def test_mmc_adaptive_attack_uses_the_mmc_loss():
    heads = pytest.importorskip("robens.models.heads")
    model = heads.attach_mm_head(Small(), kind="mmc", scale=10.0).eval()
    assert detect_defenses(model) == {"mmc": True, "mmlda": False, "rce": False}
    atk = adaptive_attack(model, "pgd", eps=0.1, steps=5, seed=0)
    assert atk.loss == "mmc" and atk.adaptive["mmc_loss"]
    assert any("MMC" in note for note in atk.adaptive["notes"])
    x, y = data()
    with torch.no_grad():
        z = model.features(x)
        expected = 0.5 * (z - model.classifier.mm_centers[y]).pow(2).sum(1)
        assert torch.allclose(atk.objective(x, y), expected, atol=1e-5)
        assert torch.allclose(mmc_loss(z, model.classifier.mm_centers, y), expected)
    # the generic (hook) path gives the same objective
    generic = Small()
    generic.classifier = GenericMMHead(model.classifier.mm_centers)
    generic.load_state_dict(model.state_dict(), strict=False)
    generic.eval()
    hooked = PGD(generic, 0.1, loss="mmc", steps=5, seed=0)
    assert not hooked._mmc_from_scores and atk._mmc_from_scores
    with torch.no_grad():
        assert torch.allclose(hooked.objective(x, y), expected, atol=1e-5)
    res = atk.run(x, y)
    assert (res.loss >= expected - 1e-5).all() and res.loss.mean() > expected.mean()
    assert res.to_record_fields()["adaptive"]["loss"] == "mmc"
    # ensembles of MMC members: the weighted mean of member MMC losses (vectorizable path)
    other = heads.attach_mm_head(Small(seed=1), kind="mmc", scale=10.0).eval()
    ens = Ensemble([model, other], weights=[0.75, 0.25], in_shape=(1, 6, 6)).eval()
    ens_atk = adaptive_attack(ens, "fgsm", eps=0.1)
    with torch.no_grad():
        z2 = other.features(x)
        e2 = 0.5 * (z2 - other.classifier.mm_centers[y]).pow(2).sum(1)
        assert torch.allclose(ens_atk.objective(x, y), 0.75 * expected + 0.25 * e2, atol=1e-4)
    # attacks that work on scores keep them; MMLDA heads keep cross-entropy
    assert adaptive_attack(model, "cw", steps=2, binary_search_steps=1).loss == "cw"
    mmlda = heads.attach_mm_head(Small(), kind="mmlda").eval()
    lda_atk = adaptive_attack(mmlda, "pgd", eps=0.1)
    assert lda_atk.loss == "ce" and any("MMLDA" in n for n in lda_atk.adaptive["notes"])


def test_rce_adaptive_attack_attacks_the_negated_logits():
    rce = pytest.importorskip("robens.objectives.rce")
    inner = Small().eval()
    model = rce.RCEModel(inner).eval()
    assert detect_defenses(model)["rce"]
    atk = adaptive_attack(model, "pgd", eps=0.2, steps=10, seed=0)
    assert atk.adaptive["rce_negated_logits"]
    x, y = data()
    with torch.no_grad():
        assert torch.allclose(atk.logits(x), -inner(x))
    res = atk.run(x, y)
    with torch.no_grad():
        pred = inner(res.x_adv).argmin(-1)  # RCE inference: argmin of the raw logits
    assert torch.equal(res.success, pred != y)


def test_adaptive_on_plain_models_is_the_plain_attack():
    model = Small().eval()
    assert detect_defenses(model) == {"mmc": False, "mmlda": False, "rce": False}
    x, y = data()
    a = adaptive_attack(model, "pgd", eps=0.1, steps=3, seed=1)(x, y)
    b = build_attack("pgd", model, eps=0.1, steps=3, seed=1)(x, y)
    assert torch.equal(a, b)


# ---------------------------------------------------------------------------- transfer
def test_transfer_attack_on_itself_equals_white_box():
    model = Small().eval()
    x, y = data(16)
    atk = PGD(model, 0.2, steps=5, seed=0)
    out = transfer_attack(atk, model, [(x, y)])
    assert set(out) >= {"n", "clean_accuracy", "robust_accuracy", "transfer_success"}
    res = PGD(model, 0.2, steps=5, seed=0).run(x, y)
    with torch.no_grad():
        ok = model(x).argmax(-1) == y
    assert out["n"] == 16
    assert out["clean_accuracy"] == pytest.approx(ok.float().mean().item())
    assert out["robust_accuracy"] == pytest.approx((ok & ~res.success).float().mean().item())
    other = transfer_attack(PGD(Small(seed=3).eval(), 0.2, steps=5, seed=0), model, [(x, y)])
    assert 0 <= other["robust_accuracy"] <= other["clean_accuracy"] <= 1
    with pytest.raises(InputError):
        transfer_attack(model, model, [(x, y)])


def test_transferability_matrix_diagonal_is_white_box():
    members = [Small(seed=s).eval() for s in range(3)]
    ens = Ensemble(members, in_shape=(1, 6, 6))
    x, y = data(12)
    batches = [(x[:6], y[:6]), (x[6:], y[6:])]
    mat = transferability_matrix(ens, lambda m: FGSM(m, 0.2), batches)
    assert mat.shape == (3, 3)
    for i, m in enumerate(members):
        with torch.no_grad():
            acc = (m(FGSM(m, 0.2)(x, y)).argmax(-1) == y).float().mean().item()
        assert mat[i, i].item() == pytest.approx(acc)
    assert torch.equal(transferability_matrix(members, lambda m: FGSM(m, 0.2), batches), mat)


# ---------------------------------------------------------------------------- masking
class Quantized(nn.Module):
    """Input quantization: zero gradients almost everywhere (shattered gradients)."""

    def __init__(self, base: nn.Module) -> None:
        super().__init__()
        self.base = base

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(torch.round(x * 4) / 4)


class Noisy(nn.Module):
    """Randomized in eval mode too."""

    def __init__(self, base: nn.Module) -> None:
        super().__init__()
        self.base = base

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + torch.randn(x.shape[0], 4, device=x.device)


def test_gradient_masking_checks():
    base = Small().eval()
    x, _ = data(32)
    with torch.no_grad():
        y = base(x).argmax(-1)  # attack the model's own predictions: clean success is 0
    healthy = PGD(base, 0.1, steps=10, seed=0).run(x, y)
    assert (
        gradient_masking_checks(
            base, x, y, healthy, spsa_eps=0.1, spsa_params={"steps": 5, "nb_samples": 16}
        )
        == []
    )
    masked = Quantized(base)
    wb = FGSM(masked, 0.3).run(x, y)  # zero gradients: FGSM does not move
    warnings = gradient_masking_checks(
        masked,
        x,
        y,
        wb,
        spsa_eps=0.3,
        surrogate=base,
        spsa_params={"steps": 10, "nb_samples": 32, "lr": 0.05},
    )
    text = " | ".join(warnings)
    assert "exactly zero" in text and "SPSA" in text and "transfer" in text, text
    noisy = Noisy(base)
    r = PGD(noisy, 0.1, steps=3).run(x, y)
    warnings = gradient_masking_checks(noisy, x, y, r)
    assert any("identical" in w for w in warnings), warnings
    with pytest.raises(InputError):
        gradient_masking_checks(base, x[:4], y[:4], healthy)
    assert SPSA(base, 0.1, steps=1, nb_samples=2).run(x, y).queries is not None


# ---------------------------------------------------------------------------- CLI
@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    from robens.config import validate_config
    from robens.training import Trainer

    tmp = tmp_path_factory.mktemp("attack")
    cfg = validate_config(small_config(tmp, **{"training.threads": 1, "data.train_size": 300}))
    Trainer(cfg, progress=False, echo=None).fit()
    torch.set_num_threads(1)
    return tmp / "run" / "checkpoint.safetensors"


def test_cli_attack_writes_record_and_saves_examples(checkpoint, tmp_path):
    from robens.cli import main
    from robens.records import read_json_records

    argv = ["attack", str(checkpoint), "--attack", "fgsm", "--eps", "0.1", "--test-size", "200"]
    assert main(argv) == 0
    (record,) = checkpoint.parent.glob("attack-fgsm-eps0.1-white_box-n200-*.json")
    recs = read_json_records(record)
    by_metric = {r["metric"]: r for r in recs}
    assert {"clean_accuracy", "robust_accuracy"} <= set(by_metric)
    rob = by_metric["robust_accuracy"]
    assert rob["attack"] == "fgsm" and rob["eps"] == 0.1 and rob["n"] == 200
    assert rob["threat_model"] == "white_box" and rob["dataset"] == "synthetic"
    assert rob["value"] <= by_metric["clean_accuracy"]["value"]
    save = tmp_path / "adv.npz"
    out = tmp_path / "rec.json"
    argv = [
        "attack",
        str(checkpoint.parent),
        "--attack",
        "pgd",
        "--loss",
        "cw",
        "--steps",
        "3",
        "--eps",
        "0.05",
        "--test-size",
        "50",
        "--save",
        str(save),
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    with np.load(save, allow_pickle=False) as z:
        assert z["x_adv"].shape == (50, 1, 28, 28) and z["x_adv"].dtype == np.float32
        assert z["y"].shape == (50,) and z["predictions"].shape == (50,)
        assert np.abs(z["x_adv"]).max() <= 1
    assert json.loads(out.read_text().splitlines()[0])["loss"] == "cw"


def test_attack_checkpoint_api_uap_transfer_and_errors(checkpoint, tmp_path):
    from robens.cli import main
    from robens.evaluate.attack import attack_checkpoint

    s = attack_checkpoint(
        checkpoint, attack="uap", eps=0.2, steps=5, test_size=100, out=tmp_path, seed=0
    )
    assert s["attack"] == "uap" and 0 <= s["robust_accuracy"] <= s["clean_accuracy"]
    assert {"fooling_rate_changed", "fooling_rate_misclassified"} <= set(s["uap"])
    assert s["record_path"].rsplit("/", 1)[-1].startswith("attack-uap-eps0.2-white_box-n100-")
    t = attack_checkpoint(
        checkpoint,
        attack="fgsm",
        eps=0.1,
        surrogate=checkpoint,
        test_size=60,
        out=tmp_path / "t.json",
    )
    w = attack_checkpoint(checkpoint, attack="fgsm", eps=0.1, test_size=60, out=tmp_path)
    assert t["threat_model"] == "transfer" and t["surrogate"] == str(checkpoint)
    assert t["robust_accuracy"] == pytest.approx(w["robust_accuracy"])
    assert isinstance(w["warnings"], list)
    assert main(["attack", str(checkpoint), "--attack", "deepfool", "--test-size", "10"]) == 2
    assert main(["attack", str(checkpoint), "--attack", "fgsm", "--alpha", "0.1"]) == 2
    assert main(["attack", str(checkpoint), "--eps", "1.5", "--test-size", "10"]) == 2
