"""FLOP accounting of the sparse VGGs in the four modes of asynet (Messikommer et al., ECCV 2020).

Conventions (those of the paper's evaluation code, so totals are comparable with its tables):

* A convolution output site costs ``(2 k^2 c_in - 1) c_out`` in a dense network (multiply-adds over
  the window, batch norm folded into the weights and bias, so no extra cost).
* ReLU costs 1 FLOP per channel per site it is applied to.
* Max pooling costs ``k^2`` comparisons per channel per output site.
* A fully connected layer costs ``2 n_in n_out``; global average pooling ``n_in`` additions.

The four modes:

``batch_dense``
    the dense network on the whole input, independent of the data (asynet N-Caltech101 VGG-13 on
    191x255: 1621.2 MFLOP; N-Cars VGG-12 on 95x127: 321.2 MFLOP).
``batch_sparse``
    the sparse network on the whole input: a submanifold convolution costs ``(2 R c_in - N) c_out``
    for ``R`` rules (pairs of an active output and an active input in its window) over ``N`` active
    outputs; ReLU and pooling count active output sites only; the dense tail is dense.
``async_sparse``
    what the asynchronous engine computes in one update (counted by the engine itself): each rule
    over a changed input costs ``2 c c_out``, plus ``c_in`` per changed site for the difference
    ``x_new - x_old``; outputs that become active cost every rule of their window (each its
    ``2 c c_out``); ReLU and pooling count the sites recomputed. ``c`` is ``c_in``, or the row's
    non-zero channels when the engine skipped the zero ones (its ``channel_skip``; all-zero rows
    then cost nothing); the engine also reports the count with ``c = c_in`` throughout
    (``async_sparse_full_rows``, the paper's count, which ``channel_skip=0`` computes).
``async_dense``
    a dense network recomputing only the cone of influence of the changed input sites: each layer
    recomputes every site (active or not) whose window holds a changed site.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .sparse_vgg import Architecture, Conv, active_mask, sparse_max_pool

MODES = ("async_sparse", "async_dense", "batch_sparse", "batch_dense")


def _conv_site(k: int, cin: int, cout: int) -> int:
    return (2 * k * k * cin - 1) * cout


def batch_dense_flops(arch: Architecture) -> list[tuple[str, int]]:
    """``(layer, FLOPs)`` of the dense network on a whole ``arch.height x arch.width`` input, one
    entry per engine layer (a ``Conv`` block counts its convolution and ReLU)."""
    c = arch.in_channels
    out = []
    for (name, ch, oh, ow), layer in zip(arch.shapes()[1:], arch.features, strict=False):
        if isinstance(layer, Conv):
            out.append((name, oh * ow * (_conv_site(3, c, ch) + ch)))
        else:
            out.append((name, oh * ow * layer.size * layer.size * c))
        c = ch
    th, tw = arch.tail_size
    t = arch.tail_channels
    out.append(("tail", th * tw * (_conv_site(3, c, t) + t)))
    n_in = arch.fc_inputs
    fc = 2 * n_in * arch.num_classes + (t * th * tw if arch.head == "avgpool" else 0)
    out.append(("logits", fc))
    return out


def batch_sparse_flops(arch: Architecture, x: torch.Tensor) -> list[tuple[str, int]]:
    """``(layer, FLOPs)`` of the sparse network on the input ``x`` (``(C, H, W)`` or
    ``(1, C, H, W)``), from the activity of every layer."""
    x = x if x.ndim == 4 else x[None]
    mask = active_mask(x.float())
    ones3 = torch.ones(1, 1, 3, 3, dtype=mask.dtype)
    c = arch.in_channels
    out = []
    for (name, ch, _, _), layer in zip(arch.shapes()[1:], arch.features, strict=False):
        n = int(mask.sum())
        if isinstance(layer, Conv):
            rules = int((F.conv2d(mask, ones3, padding=1) * mask).sum())
            out.append((name, max(2 * rules * c - n, 0) * ch + n * ch))
        else:
            pooled = F.max_pool2d(mask, layer.size, layer.stride)
            out.append((name, int(pooled.sum()) * layer.size * layer.size * c))
            _, mask = sparse_max_pool(mask, mask, layer.size, layer.stride)
        c = ch
    dense = batch_dense_flops(arch)
    return out + dense[-2:]


def total(flops: list[tuple[str, int]]) -> int:
    return sum(f for _, f in flops)
