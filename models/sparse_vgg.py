"""Sparse VGGs of asynet ("Event-based Asynchronous Sparse Convolutional Networks", ECCV 2020) in
plain PyTorch: the torch reference of the asynchronous engine, and trainable as it is.

A sparse feature map is a dense tensor ``(N, C, H, W)`` plus an activity mask ``(N, 1, H, W)``:
a site is *active* when the input has any non-zero channel there, and inactive sites hold zeros.

Layers (semantics of SparseConvNet, which asynet trained with):

* ``Conv(c)``: submanifold 3x3 convolution to ``c`` channels, no bias, followed by batch norm over the
  active sites and ReLU. A submanifold convolution is a dense 3x3 convolution (padding 1) whose
  output is kept only at the active sites; the set of active sites does not change.
* ``MaxPool(k, s)``: sparse max pooling, ``k x k`` windows with stride ``s`` and no padding
  ('valid'); an output site is active when its window holds an active site, and its value is the
  maximum over the active sites of the window (inactive sites do not take part).
* The tail is dense: a 3x3 strided convolution (no padding, no bias) over the zero-filled map,
  batch norm and ReLU at every site, then either flatten + fully connected (asynet) or global
  average pooling + fully connected.

Batch norm is folded into the convolution when the engine is built (``scale * W``, ``shift`` as
the bias), so a ``Conv`` block computes ``relu(W' * x + b')`` at active sites and 0 elsewhere.

Architectures (:data:`ARCHITECTURES`, input ``2 x H x W`` event histograms, ON channel first):

==================  ==============  ===================================================
name                input (H x W)   layers
==================  ==============  ===================================================
ncaltech101_vgg13   191 x 255       C16 C16 MP C32 C32 MP C64 C64 MP C128 C128 MP C256
                                    C256 MP C512, tail conv 512->256 s2 (2 x 3), FC 1536->101
ncars_vgg12         95 x 127        C16 C16 MP C32 C32 MP C64 C64 MP C128 C128 MP C256,
                                    tail conv 256->128 s2 (2 x 3), FC 768->2
nmnist_vgg          34 x 34         C32 C32 MP2 C64 C64 MP2 C128 C128, tail conv 128->128 s2
                                    (3 x 3), global average pooling, FC 128->10
==================  ==============  ===================================================

(MP is asynet's 3x3 stride-2 'valid' pooling, MP2 a 2x2 stride-2 pooling.)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

#: SparseConvNet's batch-norm epsilon (asynet keeps it).
BN_EPS = 1e-4


@dataclass(frozen=True)
class Conv:
    """Submanifold 3x3 convolution to ``channels`` outputs + batch norm + ReLU."""

    channels: int


@dataclass(frozen=True)
class MaxPool:
    """Sparse max pooling, ``size x size`` windows, ``stride``, no padding."""

    size: int = 3
    stride: int = 2


@dataclass(frozen=True)
class Architecture:
    """A sparse VGG: sparse ``features``, then a dense strided 3x3 convolution to
    ``tail_channels`` (+ batch norm + ReLU), then ``head`` (``"flatten"`` or ``"avgpool"``) and a
    fully connected layer to ``num_classes``."""

    name: str
    height: int
    width: int
    features: tuple[Conv | MaxPool, ...]
    tail_channels: int
    num_classes: int
    head: str = "flatten"
    in_channels: int = 2
    description: str = field(default="", compare=False)

    def shapes(self) -> list[tuple[str, int, int, int]]:
        """``(layer, channels, height, width)`` of every layer's output, input first."""
        c, h, w = self.in_channels, self.height, self.width
        out = [("input", c, h, w)]
        for layer in self.features:
            if isinstance(layer, Conv):
                c = layer.channels
                out.append((f"conv{c}", c, h, w))
            else:
                h, w = pooled_size(h, layer.size, layer.stride), pooled_size(w, layer.size, layer.stride)
                out.append((f"maxpool{layer.size}", c, h, w))
        h, w = pooled_size(h, 3, 2), pooled_size(w, 3, 2)
        out.append(("tail", self.tail_channels, h, w))
        out.append(("logits", self.num_classes, 1, 1))
        return out

    @property
    def tail_size(self) -> tuple[int, int]:
        _, _, h, w = self.shapes()[-2]
        return h, w

    @property
    def fc_inputs(self) -> int:
        h, w = self.tail_size
        return self.tail_channels * (h * w if self.head == "flatten" else 1)


def pooled_size(n: int, size: int, stride: int) -> int:
    """Output length of a 'valid' window of ``size`` with ``stride`` over ``n`` sites."""
    if n < size:
        raise ValueError(f"a {size}-wide window does not fit in {n} sites")
    return (n - size) // stride + 1


def _vgg(widths: list[int | str]) -> tuple[Conv | MaxPool, ...]:
    return tuple(
        MaxPool(3, 2) if w == "MP" else MaxPool(2, 2) if w == "MP2" else Conv(int(w)) for w in widths
    )


ARCHITECTURES: dict[str, Architecture] = {
    a.name: a
    for a in (
        Architecture(
            "ncaltech101_vgg13",
            191,
            255,
            _vgg([16, 16, "MP", 32, 32, "MP", 64, 64, "MP", 128, 128, "MP", 256, 256, "MP", 512]),
            tail_channels=256,
            num_classes=101,
            description="asynet's N-Caltech101 VGG-13 (191x255 input)",
        ),
        Architecture(
            "ncars_vgg12",
            95,
            127,
            _vgg([16, 16, "MP", 32, 32, "MP", 64, 64, "MP", 128, 128, "MP", 256]),
            tail_channels=128,
            num_classes=2,
            description="asynet's N-Cars VGG-12 (95x127 input)",
        ),
        Architecture(
            "nmnist_vgg",
            34,
            34,
            _vgg([32, 32, "MP2", 64, 64, "MP2", 128, 128]),
            tail_channels=128,
            num_classes=10,
            head="avgpool",
            description="small sparse VGG for N-MNIST (34x34 input)",
        ),
    )
}


def architecture(name: str, **overrides) -> Architecture:
    """The architecture called ``name`` (see :data:`ARCHITECTURES`), with fields replaced by
    ``overrides`` (e.g. ``num_classes=10``, ``height=64``)."""
    try:
        arch = ARCHITECTURES[name]
    except KeyError:
        raise ValueError(f"unknown architecture {name!r}; choose from {', '.join(ARCHITECTURES)}") from None
    if overrides:
        arch = Architecture(**{**arch.__dict__, **overrides})
        arch.shapes()  # raises if the input is too small for the layers
    return arch


# --------------------------------------------------------------------------------------------
# Layers


def active_mask(x: torch.Tensor) -> torch.Tensor:
    """``(N, 1, H, W)`` float mask of the sites where any channel of ``x`` is non-zero."""
    return (x != 0).any(dim=1, keepdim=True).to(x.dtype)


class SubmanifoldConv2d(nn.Module):
    """3x3 submanifold convolution without bias: a dense convolution (padding 1) kept at the
    active sites."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, 3, 3))
        nn.init.kaiming_normal_(self.weight, nonlinearity="relu")

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight, padding=1) * mask


class SparseBatchNorm(nn.BatchNorm2d):
    """Batch norm whose training statistics are taken over the active sites only (as in
    SparseConvNet); inactive sites stay zero."""

    def __init__(self, channels: int):
        super().__init__(channels, eps=BN_EPS)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.training:
            count = mask.sum()
            if count > 1:
                mean = (x * mask).sum(dim=(0, 2, 3)) / count
                centred = (x - mean[None, :, None, None]) * mask
                var = (centred**2).sum(dim=(0, 2, 3)) / count
                with torch.no_grad():
                    m = self.momentum
                    self.running_mean.mul_(1 - m).add_(m * mean)
                    self.running_var.mul_(1 - m).add_(m * var * count / (count - 1))
                    self.num_batches_tracked += 1
            else:  # too few active sites for statistics: use the running ones
                mean, var = self.running_mean, self.running_var
        else:
            mean, var = self.running_mean, self.running_var
        scale = self.weight / torch.sqrt(var + self.eps)
        shift = self.bias - mean * scale
        return (x * scale[None, :, None, None] + shift[None, :, None, None]) * mask


def sparse_max_pool(x: torch.Tensor, mask: torch.Tensor, size: int, stride: int):
    """Max over the active sites of each ``size x size`` window (stride ``stride``, no padding);
    returns ``(values, mask)`` with zeros at inactive outputs."""
    masked = x.masked_fill(mask == 0, float("-inf"))
    out = F.max_pool2d(masked, size, stride)
    out_mask = F.max_pool2d(mask, size, stride)
    return torch.where(out_mask > 0, out, torch.zeros((), dtype=x.dtype)), out_mask


class SparseVGG(nn.Module):
    """A sparse VGG of :data:`ARCHITECTURES`.

    ``forward(x)`` takes ``(N, 2, H, W)`` event histograms (ON channel first; any non-zero channel
    makes a site active) and returns ``(N, num_classes)`` logits. ``layer_outputs(x)`` returns
    every layer's ``(values, mask)`` at the granularity of the asynchronous engine (one entry per
    ``Conv`` block, pooling, the tail and the logits).

    Example::

        model = SparseVGG("nmnist_vgg").eval()
        logits = model(torch.zeros(1, 2, 34, 34))
    """

    def __init__(self, arch: str | Architecture, **overrides):
        super().__init__()
        self.arch = architecture(arch, **overrides) if isinstance(arch, str) else arch
        a = self.arch
        self.convs = nn.ModuleList()
        self.norms = nn.ModuleList()
        c = a.in_channels
        for layer in a.features:
            if isinstance(layer, Conv):
                self.convs.append(SubmanifoldConv2d(c, layer.channels))
                self.norms.append(SparseBatchNorm(layer.channels))
                c = layer.channels
        self.tail_conv = nn.Conv2d(c, a.tail_channels, 3, stride=2, bias=False)
        self.tail_norm = nn.BatchNorm2d(a.tail_channels, eps=BN_EPS)
        self.fc = nn.Linear(a.fc_inputs, a.num_classes)

    def _check(self, x: torch.Tensor) -> None:
        a = self.arch
        if x.ndim != 4 or tuple(x.shape[1:]) != (a.in_channels, a.height, a.width):
            raise ValueError(
                f"{a.name} expects input (N, {a.in_channels}, {a.height}, {a.width}), got {tuple(x.shape)}"
            )

    def layer_outputs(self, x: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        self._check(x)
        mask = active_mask(x)
        outputs = []
        convs = iter(zip(self.convs, self.norms, strict=True))
        for layer in self.arch.features:
            if isinstance(layer, Conv):
                conv, norm = next(convs)
                x = F.relu(norm(conv(x, mask), mask))
            else:
                x, mask = sparse_max_pool(x, mask, layer.size, layer.stride)
            outputs.append((x, mask))
        x = F.relu(self.tail_norm(self.tail_conv(x)))
        outputs.append((x, torch.ones_like(x[:, :1])))
        x = x.flatten(1) if self.arch.head == "flatten" else x.mean(dim=(2, 3))
        logits = self.fc(x)
        outputs.append((logits[:, :, None, None], torch.ones_like(logits[:, :1, None, None])))
        return outputs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer_outputs(x)[-1][0][:, :, 0, 0]
