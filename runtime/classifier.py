"""Predictions per window step in ``evstream run``: a checkpoint's model fed by an incrementally
updated event histogram.

Asynchronous (default): each step adds the entering events to the histogram and removes the
leaving ones, and hands only the changed pixels to the C++ engine
(:class:`~evstream.models.async_engine.AsyncSparseVGG`), whose FLOPs are those of the update.
Dense (``dense=True``): the torch model recomputes the whole histogram at every step, costing the
network's batch-dense FLOPs. Both give the same predictions (the engine equals the torch model).

When the model's input is not the sensor's size the histogram is resized by nearest neighbour as
asynet does (:func:`~evstream.kernels.representations.geometry.resize_nearest_image`); a changed
sensor pixel then changes every input site copied from it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..kernels.representations.geometry import nearest_source_index, resize_nearest_image
from ..models.checkpoint import Checkpoint, CheckpointError
from ..models.sparse_vgg import SparseVGG
from .pipeline import Histogram


@dataclass(frozen=True)
class Prediction:
    """The classifier's answer for one window: ``top`` is ``[(class, probability), ...]``, best
    first; ``flops`` what computing it cost; ``changed_sites`` the input sites updated."""

    top: list[tuple[str, float]]
    flops: int
    changed_sites: int

    def to_dict(self) -> dict:
        return {
            "top": [{"class": c, "probability": round(p, 6)} for c, p in self.top],
            "flops": self.flops,
            "changed_sites": self.changed_sites,
        }


def _inverse(index: np.ndarray, size: int) -> list[np.ndarray]:
    """For each source position, the output positions copying it."""
    out: list[list[int]] = [[] for _ in range(size)]
    for i, src in enumerate(index.tolist()):
        out[src].append(i)
    return [np.asarray(o, np.int64) for o in out]


class StreamClassifier:
    """A checkpoint's classifier on a stream of ``sensor_size`` (width, height).

    Raises :class:`~evstream.models.checkpoint.CheckpointError` before any computation when the
    checkpoint was made for another sensor size or representation."""

    image_input = False  # the model's input is the histogram (the CLIP classifier's is an image)

    def __init__(
        self,
        checkpoint: Checkpoint,
        sensor_size: tuple[int, int],
        *,
        dense: bool = False,
        top_k: int = 3,
        threads: int = 1,
    ):
        meta = checkpoint.meta
        rep = (meta.get("representation") or {}).get("name")
        if rep != "event_histogram":
            raise CheckpointError(
                f"{checkpoint.path}: evstream run streams event-histogram models; this one takes {rep}"
            )
        want = [int(v) for v in meta.get("sensor_size", [])]
        if want and want != [int(sensor_size[0]), int(sensor_size[1])]:
            raise CheckpointError(
                f"{checkpoint.path} was made for a {want[0]}x{want[1]} sensor; the source is "
                f"{sensor_size[0]}x{sensor_size[1]}"
            )
        self.classes = checkpoint.classes
        self.meta = meta
        self.width, self.height = int(sensor_size[0]), int(sensor_size[1])
        self.in_h, self.in_w = (int(v) for v in meta["input_size"])
        self.model = checkpoint.build()
        self.top_k = max(1, min(top_k, len(self.classes)))
        # counts[p, y, x] (OFF = p 0 first); the models take ON first
        self.hist = Histogram(self.width, self.height)
        self.identity = (self.in_h, self.in_w) == (self.height, self.width)
        self.rows = nearest_source_index(self.height, self.in_h)
        self.cols = nearest_source_index(self.width, self.in_w)
        self._rows_of = _inverse(self.rows, self.height)
        self._cols_of = _inverse(self.cols, self.width)
        self.dense = dense or not isinstance(self.model, SparseVGG)
        self.engine = None
        if not self.dense:
            from ..models.async_engine import AsyncSparseVGG

            self.engine = AsyncSparseVGG(self.model, threads=threads)
        self.dense_flops = self._dense_flops()
        self.logits = self._logits_dense() if self.dense else self.engine.logits()
        self.mode = "dense (torch)" if self.dense else "asynchronous (C++ engine)"

    def _dense_flops(self) -> int | None:
        if isinstance(self.model, SparseVGG):
            from ..models.flops import batch_dense_flops, total

            return total(batch_dense_flops(self.model.arch))
        return None

    def _logits_dense(self) -> np.ndarray:
        on_first = self.hist.counts[::-1].astype(np.float32)
        x = torch.from_numpy(resize_nearest_image(on_first, self.in_h, self.in_w))
        with torch.no_grad():
            return self.model(x[None])[0].numpy()

    def _changed_sites(self, enter: np.ndarray, leave: np.ndarray) -> np.ndarray:
        """``(N, 2)`` (row, column) model-input sites whose value the step changed."""
        flat = np.unique(
            np.concatenate(
                [
                    enter["y"].astype(np.int64) * self.width + enter["x"],
                    leave["y"].astype(np.int64) * self.width + leave["x"],
                ]
            )
        )
        r, c = flat // self.width, flat % self.width
        if self.identity:
            return np.stack([r, c], 1)
        parts = [
            np.stack(np.meshgrid(self._rows_of[y], self._cols_of[x], indexing="ij"), -1).reshape(-1, 2)
            for y, x in zip(r.tolist(), c.tolist(), strict=True)
        ]
        return np.concatenate(parts) if parts else np.zeros((0, 2), np.int64)

    def step(self, enter: np.ndarray, leave: np.ndarray, window: np.ndarray | None = None) -> Prediction:
        """Slides the histogram by one window step and returns the new prediction (``window``, the
        window's events, is not needed: the histogram follows ``enter`` and ``leave``)."""
        self.hist.update(enter, leave)
        sites = self._changed_sites(enter, leave)
        if self.dense:
            self.logits = self._logits_dense()
            flops = self.dense_flops or 0
        else:
            values = self.hist.counts[::-1, self.rows[sites[:, 0]], self.cols[sites[:, 1]]].T
            self.logits = self.engine.update(sites, np.ascontiguousarray(values, dtype=np.float32))
            flops = self.engine.last_cost().async_sparse
        return Prediction(self.top(), int(flops), len(sites))

    def top(self) -> list[tuple[str, float]]:
        return top_classes(self.logits, self.classes, self.top_k)


def top_classes(logits: np.ndarray, classes: list[str], k: int) -> list[tuple[str, float]]:
    """The ``k`` most probable classes (softmax of ``logits``), best first."""
    z = logits.astype(np.float64)
    p = np.exp(z - z.max())
    p /= p.sum()
    best = np.argsort(-p, kind="stable")[:k]
    return [(classes[i], float(p[i])) for i in best]


class ClipStreamClassifier:
    """Zero-shot CLIP predictions per window step (``evstream run --model clip:WEIGHTS``): every
    step makes the window's event image(s) and recomputes the image embedding (a CLIP image encoder
    has no incremental update); the class embeddings are computed once.

    Attributes shared with :class:`StreamClassifier` for the pipeline and the viewer: ``classes``,
    ``meta`` (its ``stream_window`` is the preprocessing's event count), ``hist`` (the window's
    histogram, for the viewer), ``mode``, ``dense``, ``identity``."""

    dense = True
    identity = True  # the viewer shows the histogram as it is (no rows / cols mapping)
    image_input = True  # the model's input is an event image, not the histogram (for the viewer)

    def __init__(self, zeroshot, sensor_size: tuple[int, int], *, top_k: int = 3):
        from ..models.clip.zeroshot import WINDOW_EVENTS

        self.zs = zeroshot
        self.classes = zeroshot.labels
        self.width, self.height = int(sensor_size[0]), int(sensor_size[1])
        self.meta = {"stream_window": {"kind": "count", "events": WINDOW_EVENTS[zeroshot.preprocess]}}
        self.hist = Histogram(self.width, self.height)
        self.top_k = max(1, min(top_k, len(self.classes)))
        self.logits = np.zeros(len(self.classes), np.float32)
        self.mode = zeroshot.describe()
        zeroshot.clip.image_flops()  # counted now (a forward pass), not in the first window's time

    def step(self, enter: np.ndarray, leave: np.ndarray, window: np.ndarray | None = None) -> Prediction:
        if window is None:
            raise ValueError("the CLIP classifier needs the window's events")
        self.hist.update(enter, leave)
        x = self.zs.inputs(window, self.width, self.height)
        self.logits = self.zs.logits_of_inputs(x)
        return Prediction(self.top(), self.zs.flops(len(x)), len(x) * self.zs.clip.image_size**2)

    def top(self) -> list[tuple[str, float]]:
        return top_classes(self.logits, self.classes, self.top_k)
