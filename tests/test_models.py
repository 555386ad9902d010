"""Tests of robens.models: shapes, feature/classifier contract, activations, Normalize, registry."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from robens.errors import ConfigError, RobensError
from robens.models import (
    CifarResNet,
    Conv3,
    Conv4,
    LeNet5,
    Normalize,
    ResNet20,
    ResNet26,
    build_model,
    build_model_from_spec,
    list_models,
    make_activation,
    register_model,
)
from robens.models import registry as registry_mod

SHAPES = [(1, 28, 28), (3, 32, 32)]
BASE_MODELS = ["lenet", "conv3", "conv4", "resnet20", "resnet26"]


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def rand_images(shape: tuple[int, int, int], batch: int = 2, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(batch, *shape, generator=g)


def test_list_models_contains_required_names():
    names = list_models()
    assert names == sorted(names)
    for name in BASE_MODELS:
        assert name in names


@pytest.mark.parametrize("num_classes", [10, 4])
@pytest.mark.parametrize("in_shape", SHAPES)
@pytest.mark.parametrize("name", list_models())
def test_logits_features_classifier_contract(name, in_shape, num_classes):
    model = build_model(name, in_shape=in_shape, num_classes=num_classes, seed=0).eval()
    x = rand_images(in_shape)
    with torch.no_grad():
        logits = model(x)
        feats = model.features(x)
        again = model.classifier(feats)
    assert logits.shape == (2, num_classes)
    assert isinstance(model.feature_dim, int)
    assert feats.shape == (2, model.feature_dim)
    assert isinstance(model.classifier, nn.Linear)
    assert model.classifier.in_features == model.feature_dim
    assert model.classifier.out_features == num_classes
    assert torch.isfinite(logits).all()
    torch.testing.assert_close(again, logits, rtol=0, atol=0)
    assert isinstance(model.normalize, Normalize)
    assert json.loads(json.dumps(model.robens_spec)) == model.robens_spec


def test_head_swap():
    model = build_model("conv3", seed=0).eval()
    model.classifier = nn.Linear(model.feature_dim, 3)
    assert model(rand_images((1, 28, 28))).shape == (2, 3)


@pytest.mark.parametrize(
    "name,expected",
    [("lenet", 3), ("conv3", 4), ("conv4", 5), ("resnet20", 1 + 2 * 9), ("resnet26", 1 + 2 * 12)],
)
def test_activation_choice_is_used(name, expected):
    model = build_model(name, activation="leaky_relu", leaky_slope=0.2, seed=0)
    acts = [m for m in model.modules() if isinstance(m, nn.LeakyReLU)]
    assert len(acts) == expected
    assert all(a.negative_slope == 0.2 for a in acts)
    assert not any(isinstance(m, nn.ReLU) for m in model.modules())
    relu = build_model(name, seed=0)
    assert sum(isinstance(m, nn.ReLU) for m in relu.modules()) == expected
    assert not any(isinstance(m, nn.LeakyReLU) for m in relu.modules())
    assert len({id(a) for a in acts}) == expected  # fresh module per use, hooks stay per-layer


def test_make_activation():
    leaky = make_activation("Leaky-ReLU", slope=0.15)
    assert isinstance(leaky, nn.LeakyReLU) and leaky.negative_slope == 0.15
    assert not leaky.inplace
    assert isinstance(make_activation("relu"), nn.ReLU)
    for name, cls in [("elu", nn.ELU), ("tanh", nn.Tanh), ("softplus", nn.Softplus)]:
        assert isinstance(make_activation(name), cls)
    with pytest.raises(ConfigError, match="relu.*leaky_relu"):
        make_activation("swishy")
    with pytest.raises(ConfigError, match="leaky_slope"):
        make_activation("leaky_relu", slope=float("nan"))


def test_architectures_follow_papers():
    lenet = LeNet5()
    convs = [m for m in lenet.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.out_channels, c.kernel_size, c.padding) for c in convs] == [
        (32, (5, 5), (2, 2)),
        (64, (5, 5), (2, 2)),
    ]
    assert sum(isinstance(m, nn.MaxPool2d) for m in lenet.modules()) == 2
    for cls, widths in [(Conv3, [32, 64, 128]), (Conv4, [32, 64, 128, 128])]:
        model = cls(in_shape=(3, 32, 32))
        convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
        assert [c.out_channels for c in convs] == widths
        assert all(c.kernel_size == (3, 3) and c.padding == (1, 1) for c in convs)
        assert sum(isinstance(m, nn.MaxPool2d) for m in model.modules()) == 2
        assert model.feature_dim == 1024
    for cls, depth in [(ResNet20, 20), (ResNet26, 26)]:
        model = cls()
        convs = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]
        assert len(convs) + 1 == depth  # 3x3 convs + the classifier
        assert {c.out_channels for c in convs} == {16, 32, 64}
        assert model.feature_dim == 64
        assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert CifarResNet(depth=32).depth == 32


def test_parameter_counts():
    # LeNet: 832 + 51,264 + (64*7*7)*1024 + 1024 + 10,250
    assert n_params(build_model("lenet")) == 3_274_634
    # Conv-3 on MNIST: 320 + 18,496 + 73,856 + 6,423,552 + 10,250
    assert n_params(build_model("conv3")) == 6_526_474
    assert 6e6 < n_params(build_model("conv4", in_shape=(3, 32, 32))) < 1e7
    # He et al. 2016 option A: ResNet-20 0.27M
    assert n_params(build_model("resnet20", in_shape=(3, 32, 32))) == 269_722
    assert 0.35e6 < n_params(build_model("resnet26", in_shape=(3, 32, 32))) < 0.38e6
    option_b = n_params(build_model("resnet20", in_shape=(3, 32, 32), shortcut="B"))
    assert option_b == 269_722 + (16 * 32 + 2 * 32) + (32 * 64 + 2 * 64)


def test_resnet_shortcut_b_runs_and_odd_sizes():
    model = build_model("resnet20", in_shape=(1, 28, 28), shortcut="B", seed=0).eval()
    assert model(rand_images((1, 28, 28))).shape == (2, 10)
    small = build_model("resnet20", in_shape=(3, 7, 9), seed=0).eval()
    assert small(rand_images((3, 7, 9))).shape == (2, 10)
    odd = build_model("lenet", in_shape=(1, 13, 17), seed=0)
    assert odd(rand_images((1, 13, 17))).shape == (2, 10)


def test_normalize_maths():
    mean, std = [0.5, 0.25, 0.1], [0.5, 0.5, 0.2]
    norm = Normalize(mean, std)
    x = rand_images((3, 4, 4))
    expected = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    torch.testing.assert_close(norm(x), expected)
    torch.testing.assert_close(Normalize(0.5, 0.25)(x), (x - 0.5) / 0.25)
    assert Normalize(0.5, 0.25, num_channels=3).num_channels == 3
    assert torch.equal(Normalize()(x), x)
    assert set(norm.state_dict()) == {"mean", "std"}
    assert norm.double()(x.double()).dtype == torch.float64
    with pytest.raises(ConfigError, match="std"):
        Normalize(0.0, [1.0, 0.0])
    with pytest.raises(ConfigError, match="mean"):
        Normalize([0.1, 0.2], [1.0, 1.0, 1.0])


def test_normalize_inside_model():
    mean, std = (0.4914, 0.4822, 0.4465), (0.247, 0.243, 0.261)
    model = build_model("conv4", in_shape=(3, 32, 32), normalize=(mean, std), seed=1).eval()
    plain = build_model("conv4", in_shape=(3, 32, 32), seed=1).eval()
    assert model.robens_spec["normalize"] == [list(mean), list(std)]
    x = rand_images((3, 32, 32))
    z = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(model(x), plain(z))
    scalar = build_model("lenet", in_shape=(3, 8, 8), normalize=(0.5, 0.5))
    assert scalar.robens_spec["normalize"] == [[0.5] * 3, [0.5] * 3]
    dict_form = build_model("lenet", normalize={"mean": 0.1307, "std": 0.3081})
    assert dict_form.robens_spec["normalize"] == [[0.1307], [0.3081]]
    with pytest.raises(ConfigError, match="normalize"):
        build_model("lenet", normalize=([0.1, 0.2], [0.3, 0.4]))  # 2 values for 1 channel
    with pytest.raises(ConfigError, match="normalize"):
        build_model("lenet", normalize="imagenet")


@pytest.mark.parametrize("name", list_models())
def test_spec_round_trip(name):
    kw = dict(
        in_shape=(3, 32, 32),
        num_classes=4,
        activation="leaky_relu",
        leaky_slope=0.2,
        normalize=((0.5, 0.4, 0.3), (0.2, 0.25, 0.3)),
    )
    model = build_model(name, seed=0, **kw).eval()
    spec = json.loads(json.dumps(model.robens_spec))
    assert spec["name"] == name and spec["in_shape"] == [3, 32, 32]
    assert spec["activation"] == "leaky_relu" and spec["leaky_slope"] == 0.2
    torch.manual_seed(1)  # a draw other than build_model(seed=0)'s
    clone = build_model_from_spec(spec).eval()
    assert clone.robens_spec == model.robens_spec
    assert repr(clone) == repr(model)
    assert {k: v.shape for k, v in clone.state_dict().items()} == {
        k: v.shape for k, v in model.state_dict().items()
    }
    x = rand_images((3, 32, 32))
    with torch.no_grad():
        assert not torch.equal(clone(x), model(x))  # fresh init differs
    clone.load_state_dict(model.state_dict())
    with torch.no_grad():
        assert torch.equal(clone(x), model(x))


def test_spec_keeps_extra_kwargs():
    model = build_model("resnet", in_shape=(3, 8, 8), depth=8, shortcut="B")
    assert model.robens_spec["depth"] == 8 and model.robens_spec["shortcut"] == "B"
    clone = build_model_from_spec(model.robens_spec)
    assert isinstance(clone, CifarResNet) and clone.depth == 8 and clone.shortcut_type == "B"
    with pytest.raises(ConfigError, match="name"):
        build_model_from_spec({"in_shape": [1, 28, 28]})
    with pytest.raises(ConfigError):
        build_model_from_spec(["lenet"])


def test_seed_is_reproducible_and_leaves_global_rng_alone():
    state = torch.random.get_rng_state()
    a = build_model("lenet", seed=3)
    b = build_model("lenet", seed=3)
    assert torch.equal(torch.random.get_rng_state(), state)
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert ka == kb and torch.equal(va, vb)
    c = build_model("lenet", seed=4)
    assert not torch.equal(a.classifier.weight, c.classifier.weight)


@pytest.mark.parametrize(
    "alias,canonical",
    [
        ("LeNet5", "lenet"),
        ("lenet-5", "lenet"),
        ("resnet-20", "resnet20"),
        ("ResNet_26", "resnet26"),
        ("Conv-3", "conv3"),
        ("CONV4", "conv4"),
    ],
)
def test_aliases(alias, canonical):
    model = build_model(alias, in_shape=(3, 8, 8))
    assert model.robens_spec["name"] == canonical


def test_unknown_model_lists_available():
    with pytest.raises(ConfigError) as info:
        build_model("vgg16")
    msg = str(info.value)
    assert "vgg16" in msg
    for name in BASE_MODELS:
        assert name in msg
    assert isinstance(info.value, RobensError)


@pytest.mark.parametrize(
    "kwargs,word",
    [
        (dict(in_shape=(1, 28)), "in_shape"),
        (dict(in_shape=(0, 28, 28)), "in_shape"),
        (dict(in_shape=(1, 28.0, 28)), "in_shape"),
        (dict(in_shape="1x28x28"), "in_shape"),
        (dict(in_shape=(1, 3, 28)), "in_shape"),  # too small for two 2x2 pools
        (dict(num_classes=1), "num_classes"),
        (dict(num_classes=True), "num_classes"),
        (dict(activation="sigmoidal"), "activation"),
        (dict(leaky_slope=-0.5), "leaky_slope"),
        (dict(depth=20), "depth"),  # lenet takes no depth
    ],
)
def test_bad_arguments(kwargs, word):
    with pytest.raises(ConfigError, match=word):
        build_model("lenet", **kwargs)


def test_bad_resnet_arguments():
    with pytest.raises(ConfigError, match="depth"):
        build_model("resnet", in_shape=(3, 8, 8), depth=21)
    with pytest.raises(ConfigError, match="shortcut"):
        build_model("resnet20", in_shape=(3, 8, 8), shortcut="C")
    with pytest.raises(ConfigError, match="in_shape"):
        Conv3(in_shape=(1, 2, 2))


def test_register_custom_model(monkeypatch):
    monkeypatch.setattr(registry_mod.MODELS, "_items", dict(registry_mod.MODELS._items))
    monkeypatch.setattr(registry_mod.MODELS, "_aliases", dict(registry_mod.MODELS._aliases))

    @register_model("tiny-mlp", aliases=("tiny",))
    class TinyMLP(nn.Module):
        def __init__(self, in_shape, num_classes, activation, leaky_slope, normalize, width=8):
            super().__init__()
            self.normalize = Normalize(*(normalize or (0.0, 1.0)))
            self.feature_dim = width
            d = in_shape[0] * in_shape[1] * in_shape[2]
            self.body = nn.Sequential(
                nn.Flatten(), nn.Linear(d, width), make_activation(activation, leaky_slope)
            )
            self.classifier = nn.Linear(width, num_classes)

        def features(self, x):
            return self.body(self.normalize(x))

        def forward(self, x):
            return self.classifier(self.features(x))

    assert "tiny-mlp" in list_models()
    model = build_model("TINY", in_shape=(1, 4, 4), num_classes=3, width=5)
    assert model.robens_spec["name"] == "tiny-mlp" and model.robens_spec["width"] == 5
    assert model(rand_images((1, 4, 4))).shape == (2, 3)
    with pytest.raises(ConfigError, match="already registered"):
        register_model("lenet")(TinyMLP)


def test_double_backward_through_input_gradient():
    """GAL and Jacobian regularization differentiate input gradients (create_graph=True)."""
    model = build_model("lenet", in_shape=(1, 8, 8), activation="leaky_relu", seed=0)
    x = rand_images((1, 8, 8)).requires_grad_(True)
    loss = nn.functional.cross_entropy(model(x), torch.tensor([0, 1]))
    (gx,) = torch.autograd.grad(loss, x, create_graph=True)
    gx.pow(2).sum().backward()
    assert model.classifier.weight.grad is not None
    assert model.classifier.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("name", ["conv3", "resnet20"])
def test_vmap_over_stacked_members(name):
    """Members of one architecture can be evaluated with torch.func (the Ensemble fast path)."""
    from torch.func import functional_call, stack_module_state, vmap

    members = [build_model(name, in_shape=(3, 8, 8), seed=s).eval() for s in range(2)]
    params, buffers = stack_module_state(members)
    base = build_model(name, in_shape=(3, 8, 8)).to("meta").eval()
    x = rand_images((3, 8, 8))

    def call(p, b, inp):
        return functional_call(base, (p, b), (inp,))

    with torch.no_grad():
        out = vmap(call, in_dims=(0, 0, None))(params, buffers, x)
        ref = torch.stack([m(x) for m in members])
    torch.testing.assert_close(out, ref)
