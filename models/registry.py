"""Models by name: the sparse VGGs of asynet and the N-ImageNet ResNet-34 baseline.

=====================  ===================  ==================  ===============================
name                   input (C x H x W)    classes (default)   notes
=====================  ===================  ==================  ===============================
``nmnist_vgg``         2 x 34 x 34          10                  small sparse VGG; async engine
``ncars_vgg12``        2 x 95 x 127         2                   asynet N-Cars; async engine
``ncaltech101_vgg13``  2 x 191 x 255        101                 asynet N-Caltech101; async engine
``nimagenet_resnet34`` 2 x 224 x 224        1000                N-ImageNet baseline (dense)
=====================  ===================  ==================  ===============================

Inputs are event representations ``(N, C, H, W)``: 2-channel event histograms (ON first) for the
sparse VGGs, any 2-channel N-ImageNet representation for the ResNet-34 (``in_channels`` changes
that, e.g. 4 for the event image).

Example::

    model = build_model("nmnist_vgg")                     # 10 classes
    model = build_model("nimagenet_resnet34", num_classes=100)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from .sparse_vgg import ARCHITECTURES, SparseVGG


@dataclass(frozen=True)
class ModelSpec:
    """What a registered model is: its builder, input shape and whether the asynchronous engine
    can run it."""

    name: str
    input_shape: tuple[int, int, int]  # (C, H, W)
    num_classes: int
    asynchronous: bool
    description: str
    build: Callable[..., nn.Module]


class ResNet34Events(nn.Module):
    """N-ImageNet's baseline: torchvision's ResNet-34 whose first convolution takes the
    representation's channels with a 14 x 14 kernel (stride 2, padding 3) instead of RGB 7 x 7,
    and a ``num_classes`` classifier. Input ``(N, in_channels, 224, 224)``."""

    def __init__(self, num_classes: int = 1000, in_channels: int = 2):
        super().__init__()
        from torchvision.models import resnet34

        net = resnet34(weights=None, num_classes=num_classes)
        net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=14, stride=2, padding=3, bias=False)
        self.net = net
        self.in_channels = in_channels

    def forward(self, x):
        return self.net(x)


def _vgg(name: str):
    def build(num_classes: int | None = None, **overrides) -> SparseVGG:
        if num_classes is not None:
            overrides["num_classes"] = num_classes
        return SparseVGG(name, **overrides)

    return build


def _resnet(num_classes: int | None = None, in_channels: int = 2) -> ResNet34Events:
    return ResNet34Events(1000 if num_classes is None else num_classes, in_channels)


MODELS: dict[str, ModelSpec] = {
    **{
        a.name: ModelSpec(
            a.name, (a.in_channels, a.height, a.width), a.num_classes, True, a.description, _vgg(a.name)
        )
        for a in ARCHITECTURES.values()
    },
    "nimagenet_resnet34": ModelSpec(
        "nimagenet_resnet34",
        (2, 224, 224),
        1000,
        False,
        "N-ImageNet baseline: ResNet-34 with a 2-channel 14x14 first convolution",
        _resnet,
    ),
}


def build_model(name: str, num_classes: int | None = None, **options) -> nn.Module:
    """The model registered as ``name`` (see :data:`MODELS`), freshly initialised."""
    try:
        spec = MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; choose from {', '.join(MODELS)}") from None
    return spec.build(num_classes=num_classes, **options)
