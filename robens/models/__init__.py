"""Models: LeNet-5 variant, GAL Conv-3/Conv-4, CIFAR ResNets, and the registry that builds them.

Every model takes float NCHW inputs in [0, 1] (normalization is its first layer), returns scores
[B, num_classes] in its declared ``output_convention`` (:mod:`robens.models.convention`; logits
unless a Max-Mahalanobis head or the RCE wrapper says otherwise), and exposes ``features(x) ->
[B, feature_dim]`` and ``classifier`` with ``forward(x) == classifier(features(x))``.
"""

from robens.models.convention import (
    CONVENTIONS,
    LOGITS,
    MM_SCORES,
    RCE_NEGATED,
    output_convention,
)
from robens.models.convnet import Conv3, Conv4, ConvNet
from robens.models.layers import (
    ACTIVATIONS,
    ImageClassifier,
    Normalize,
    make_activation,
)
from robens.models.lenet import LeNet5
from robens.models.rce import RCEModel
from robens.models.registry import (
    MODELS,
    build_model,
    build_model_from_spec,
    list_models,
    register_model,
    resolve_model_name,
)
from robens.models.resnet import BasicBlock, CifarResNet, ResNet20, ResNet26

__all__ = [
    "ACTIVATIONS",
    "CONVENTIONS",
    "LOGITS",
    "MM_SCORES",
    "MODELS",
    "RCE_NEGATED",
    "RCEModel",
    "BasicBlock",
    "CifarResNet",
    "Conv3",
    "Conv4",
    "ConvNet",
    "ImageClassifier",
    "LeNet5",
    "Normalize",
    "ResNet20",
    "ResNet26",
    "build_model",
    "build_model_from_spec",
    "list_models",
    "make_activation",
    "output_convention",
    "register_model",
    "resolve_model_name",
]
