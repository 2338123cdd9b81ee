"""The asynchronous sparse CNN engine (C++, ``kernels/csrc/async_engine.cpp``) built from a trained
:class:`~evstream.models.sparse_vgg.SparseVGG`.

The engine keeps every layer's state. ``update(sites, values)`` changes input sites (additions,
changes and, with all-zero values, deletions) and updates each layer only where its input changed;
``batch(x)`` computes from scratch. After any sequence of updates every layer equals the torch model
on the current input (tested to a relative error of 1e-4, predictions identical).

Example::

    model = SparseVGG("nmnist_vgg").eval()
    engine = AsyncSparseVGG(model)
    engine.update(np.array([[3, 4]]), np.array([[1.0, 0.0]], np.float32))   # one ON event at row 3, column 4
    engine.logits()                                                          # (10,) float32
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..kernels import _core
from .sparse_vgg import Conv, SparseBatchNorm, SparseVGG


def fold_batch_norm(weight: torch.Tensor, norm: torch.nn.BatchNorm2d) -> tuple[np.ndarray, np.ndarray]:
    """A convolution without bias followed by batch norm (running statistics) as one convolution:
    ``(k, k, in, out)`` float32 weights in the engine's layout and ``(out,)`` bias."""
    w = weight.detach().double()
    scale = norm.weight.detach().double() / torch.sqrt(norm.running_var.detach().double() + norm.eps)
    bias = norm.bias.detach().double() - norm.running_mean.detach().double() * scale
    w = w * scale[:, None, None, None]
    return (
        np.ascontiguousarray(w.permute(2, 3, 1, 0).numpy(), dtype=np.float32),
        np.ascontiguousarray(bias.numpy(), dtype=np.float32),
    )


@dataclass(frozen=True)
class UpdateCost:
    """Operation counts of one update, summed over the layers (see :mod:`evstream.models.flops`).

    ``async_sparse`` is what the engine computed; ``async_sparse_full_rows`` the same updates with
    every channel of every rule multiplied (the paper's count, ``channel_skip=0``); ``async_dense``
    what a dense network recomputing the cone of influence of the changed input sites would compute;
    ``rules`` the (input, output, kernel offset) rules of the update; ``changed_sites`` the input
    sites that changed."""

    async_sparse: int
    async_sparse_full_rows: int
    async_dense: int
    rules: int
    changed_sites: int
    per_layer: tuple[dict, ...]


class AsyncSparseVGG:
    """The C++ asynchronous engine holding the weights of ``model`` (batch norm folded; the model
    must be in eval mode, its running statistics are used). ``threads`` > 1 share each
    convolution's products by output channels (results are bit-identical). The default is 1: the
    engine leaves the other cores to the ingestion loop and the viewer (an idle worker spins
    briefly after each update). On the 2-vCPU development machine two threads took a 1-event
    update of the N-Caltech101 VGG from 2.3 to 1.6 ms (2026-11-30, when both vCPUs ran AVX-512
    multiply-adds at full speed at once; an earlier measurement found them sharing one core, 43 +
    42 GFLOP/s against 125 alone: a virtual machine's placement can change).

    ``channel_skip``: a row of a convolution's products (a changed site's difference, or an input of
    a newly active output) whose share of non-zero channels is at most this is multiplied over those
    channels only. After a ReLU about half the channels of a site are zero before and after a
    change, so their differences are zero too; all-zero rows are left out. 0 multiplies every row
    in full (the paper's count: ``last_cost().async_sparse == async_sparse_full_rows``); the default
    0.6 does a third fewer multiply-adds on the N-Caltech101 VGG at the same speed (see the README).
    Results agree up to float rounding; :meth:`last_cost` counts the channels multiplied."""

    def __init__(self, model: SparseVGG, threads: int = 1, channel_skip: float | None = None):
        if model.training:
            raise ValueError("put the model in eval mode (model.eval()) before building the engine")
        self.arch = a = model.arch
        self.model_name = a.name
        self._engine = eng = _core.AsyncEngine(a.height, a.width, a.in_channels)
        eng.threads = threads
        if channel_skip is not None:  # (None: the engine's default, 0.6)
            eng.channel_skip = channel_skip
        convs = iter(zip(model.convs, model.norms, strict=True))
        for layer in a.features:
            if isinstance(layer, Conv):
                conv, norm = next(convs)
                assert isinstance(norm, SparseBatchNorm)
                w, b = fold_batch_norm(conv.weight, norm)
                eng.add_conv(w, b, 1, 1, "submanifold", True)
            else:
                eng.add_maxpool(layer.size, layer.stride)
        w, b = fold_batch_norm(model.tail_conv.weight, model.tail_norm)
        eng.add_conv(w, b, 2, 0, "dense", True)
        th, tw = a.tail_size
        fc_w = model.fc.weight.detach().double()
        n_out, c = a.num_classes, a.tail_channels
        if a.head == "flatten":
            # torch flattens (C, H, W): feature c * H * W + site
            w = fc_w.reshape(n_out, c, th * tw).permute(2, 1, 0)
            dense_flops = 2 * c * th * tw * n_out
        else:  # global average pooling folded into the weights
            w = (fc_w.T / (th * tw))[None].expand(th * tw, c, n_out)
            dense_flops = c * th * tw + 2 * c * n_out
        eng.add_linear(
            np.ascontiguousarray(w.numpy(), dtype=np.float32),
            model.fc.bias.detach().numpy().astype(np.float32),
            dense_flops,
        )

    # ----------------------------------------------------------------------------------------

    def update(self, sites: np.ndarray, values: np.ndarray) -> np.ndarray:
        """Sets input ``sites`` (``(N, 2)`` integer ``(row, column)``) to ``values`` (``(N, C)``
        float32; an all-zero row deactivates its site) and returns the logits."""
        self._engine.update(sites, values)
        return self._engine.logits()

    def batch(self, x) -> np.ndarray:
        """Computes from scratch for a dense input ``(C, H, W)`` (numpy or torch) and returns the
        logits."""
        x = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
        self._engine.batch(np.ascontiguousarray(np.moveaxis(x, 0, -1), dtype=np.float32))
        return self._engine.logits()

    @property
    def gemm_kernel(self) -> str:
        """Instruction set of the engine's matrix products on this CPU (avx512, avx2, portable)."""
        return _core.AsyncEngine.gemm_kernel

    @property
    def threads(self) -> int:
        return self._engine.threads

    @threads.setter
    def threads(self, n: int) -> None:
        self._engine.threads = n

    @property
    def channel_skip(self) -> float:
        return self._engine.channel_skip

    @channel_skip.setter
    def channel_skip(self, share: float) -> None:
        self._engine.channel_skip = share

    def reset(self) -> None:
        """Empties the input and every layer (the state of an empty input)."""
        self._engine.reset()

    def logits(self) -> np.ndarray:
        return self._engine.logits()

    def input(self) -> np.ndarray:
        """The current input ``(C, H, W)``."""
        values, _ = self._engine.input()
        return np.moveaxis(values, -1, 0)

    def layer_outputs(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """Every layer's ``(values (C, H, W), active (H, W))``, in the order of
        :meth:`SparseVGG.layer_outputs`."""
        out = []
        for i in range(self._engine.num_layers):
            values, active = self._engine.output(i)
            out.append((np.moveaxis(values, -1, 0), active))
        return out

    def last_cost(self) -> UpdateCost:
        """Operation counts of the last update (or batch)."""
        layers = tuple(self._engine.layers())
        return UpdateCost(
            async_sparse=sum(d["flops"] for d in layers),
            async_sparse_full_rows=sum(d["full_flops"] for d in layers),
            async_dense=sum(d["dense_flops"] for d in layers),
            rules=sum(d["rules"] for d in layers),
            changed_sites=layers[0]["changed_in"] if layers else 0,
            per_layer=layers,
        )
