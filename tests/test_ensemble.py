"""Ensemble: combination rules, weights, input validation, vectorized == loop path."""

from __future__ import annotations

import pytest
import torch

from robens.ensemble import Ensemble
from robens.errors import InputError
from robens.models import build_model


def make_members(m=3, arch="lenet", seed=0, **kw):
    torch.manual_seed(seed)
    return [build_model(arch, activation="leaky_relu", **kw) for _ in range(m)]


@pytest.fixture(scope="module")
def x():
    g = torch.Generator().manual_seed(1)
    return torch.rand(6, 1, 28, 28, generator=g)


@pytest.mark.parametrize("combine", ["logits", "probs", "log_probs"])
def test_vectorized_equals_loop_logits_and_input_grads(x, combine):
    members = make_members(3)
    loop = Ensemble(members, combine=combine, vectorize=False)
    vec = Ensemble(members, combine=combine, vectorize=True)
    xa = x.clone().requires_grad_(True)
    xb = x.clone().requires_grad_(True)
    la, lb = loop.member_logits(xa), vec.member_logits(xb)
    assert vec.uses_vmap(xb) and not loop.uses_vmap(xa)
    assert (la - lb).abs().max() <= 1e-5
    ya = loop.combine_logits(la)
    yb = vec.combine_logits(lb)
    assert (ya - yb).abs().max() <= 1e-5
    ga, = torch.autograd.grad(ya.logsumexp(-1).sum() + ya[:, 3].sum(), xa)
    gb, = torch.autograd.grad(yb.logsumexp(-1).sum() + yb[:, 3].sum(), xb)
    assert (ga - gb).abs().max() <= 1e-5


def test_vectorized_per_member_inputs_and_param_grads(x):
    members = make_members(3, arch="conv3")
    loop = Ensemble(members, vectorize=False)
    vec = Ensemble(members, vectorize=True)
    xm = x.unsqueeze(0).repeat(3, 1, 1, 1, 1)
    xa = xm.clone().requires_grad_(True)
    xb = xm.clone().requires_grad_(True)
    la, lb = loop.member_logits(xa), vec.member_logits(xb)
    assert (la - lb).abs().max() <= 1e-5
    ga = torch.autograd.grad(la.square().sum(), [xa, *loop.parameters()])
    gb = torch.autograd.grad(lb.square().sum(), [xb, *vec.parameters()])
    for a, b in zip(ga, gb, strict=True):
        assert (a - b).abs().max() <= 1e-4 * max(1.0, a.abs().max().item())


def test_combination_rules(x):
    members = make_members(2)
    w = [0.25, 0.75]
    ens = Ensemble(members, weights=w, combine="logits")
    z = torch.stack([m(x) for m in members])
    assert torch.allclose(ens(x), 0.25 * z[0] + 0.75 * z[1], atol=1e-6)
    ens.combine = "probs"
    p = 0.25 * z[0].softmax(-1) + 0.75 * z[1].softmax(-1)
    assert torch.allclose(ens(x).exp(), p, atol=1e-6)
    assert torch.allclose(ens.predict_proba(x), p, atol=1e-6)
    ens.combine = "log_probs"
    lp = 0.25 * z[0].log_softmax(-1) + 0.75 * z[1].log_softmax(-1)
    assert torch.allclose(ens(x), lp, atol=1e-6)


def test_single_member_and_mixed_architectures(x):
    one = Ensemble(make_members(1))
    assert one(x).shape == (6, 10)
    mixed = Ensemble([build_model("lenet"), build_model("conv3")], vectorize="auto")
    assert mixed.member_logits(x).shape == (2, 6, 10)
    with pytest.raises(InputError, match="one architecture"):
        Ensemble([build_model("lenet"), build_model("conv3")], vectorize=True)


@pytest.mark.parametrize(
    "weights, match",
    [
        ([0.5, 0.6, -0.1], "positive"),
        ([0.2, 0.2, 0.2], "sum to 1"),
        ([0.5, 0.5], "2 entries for 3 members"),
        ([float("nan"), 0.5, 0.5], "finite"),
    ],
)
def test_bad_weights(weights, match):
    with pytest.raises(InputError, match=match):
        Ensemble(make_members(3), weights=weights)


def test_no_members():
    with pytest.raises(InputError, match="at least one member"):
        Ensemble([])


@pytest.mark.parametrize(
    "bad, match",
    [
        (torch.rand(2, 3, 28, 28), r"shape \(3, 28, 28\), expected \(1, 28, 28\)"),
        (torch.rand(1, 28, 28), "4-D NCHW"),
        (torch.rand(2, 1, 28, 28) * 255, r"pixel values in \[.*\], expected \[0, 1\]"),
        (torch.rand(2, 1, 28, 28) - 0.5, r"expected \[0, 1\]"),
        ((torch.rand(2, 1, 28, 28) * 255).to(torch.uint8), "floating-point"),
    ],
)
def test_bad_inputs_named(bad, match):
    ens = Ensemble(make_members(2))
    with pytest.raises(InputError, match=match):
        ens(bad)


def test_members_with_mismatched_outputs(x):
    ens = Ensemble([build_model("lenet", num_classes=10), build_model("lenet", num_classes=5)])
    with pytest.raises(InputError, match="all members must return"):
        ens(x)


def test_auto_picks_loop_on_cpu_and_bn_train_mode_falls_back(x):
    ens = Ensemble(make_members(2, arch="resnet20", in_shape=(1, 28, 28)))
    assert not ens.uses_vmap(x)  # CPU: the benchmark found the loop faster
    vec = Ensemble(ens.members, vectorize=True)
    vec.eval()
    assert vec.uses_vmap(x)
    out = vec(x)
    ref = Ensemble(ens.members, vectorize=False).eval()(x)
    assert (out - ref).abs().max() <= 1e-5
    vec.train()
    with pytest.raises(InputError, match="BatchNorm"):
        vec(x)
