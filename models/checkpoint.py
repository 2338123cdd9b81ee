"""Checkpoints that carry their metadata and load without running code.

A checkpoint is a ``torch.save`` file holding only tensors, numbers and strings::

    {"format": "evstream-checkpoint", "version": 1,
     "meta": "<JSON text>",            # model, classes, representation, window, sensor size, ...
     "model": state_dict,
     "optimizer": state_dict | None,   # for resuming training
     "scheduler": state_dict | None}

It is read with ``torch.load(..., weights_only=True)``, which refuses anything but those types
(no pickled code runs), and the metadata is JSON. The metadata keys:

``model`` (registry name), ``model_options`` (e.g. ``num_classes``), ``classes`` (names, index =
label), ``representation`` (``{"name": ..., "params": {...}}``), ``window`` (``{"kind": "all"}``,
``{"kind": "count", "events": N}`` or ``{"kind": "time", "us": T}``), ``sensor_size``
(``[width, height]`` of the recordings), ``input_size`` (``[height, width]`` of the model input),
``dataset``, ``data`` (where it came from), ``command`` (the training command line), ``seed``,
``epoch``, ``metrics``, ``evstream_version``, ``created``.
"""

from __future__ import annotations

import datetime
import json
import os
import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .registry import MODELS, build_model

FORMAT = "evstream-checkpoint"
VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: unreadable, not ours, or for another set-up."""


@dataclass
class Checkpoint:
    meta: dict
    model_state: dict
    optimizer_state: dict | None = None
    scheduler_state: dict | None = None
    path: str = field(default="", compare=False)

    @property
    def classes(self) -> list[str]:
        return list(self.meta["classes"])

    def build(self) -> torch.nn.Module:
        """The model with the checkpoint's weights, in eval mode."""
        name = self.meta.get("model")
        if name not in MODELS:
            raise CheckpointError(f"{self.path}: unknown model {name!r} (known: {', '.join(MODELS)})")
        model = build_model(name, **self.meta.get("model_options", {}))
        try:
            model.load_state_dict(self.model_state, strict=True)
        except RuntimeError as exc:
            raise CheckpointError(f"{self.path}: weights do not fit model {name!r}: {exc}") from None
        return model.eval()

    def check(
        self,
        *,
        model: str | None = None,
        representation: str | None = None,
        sensor_size=None,
        input_size=None,
    ) -> None:
        """Raises :class:`CheckpointError` naming the mismatch when the checkpoint was made for
        another model, representation, sensor size or input size (``None``: not checked)."""
        m = self.meta
        wants = [
            ("model", model, m.get("model")),
            ("representation", representation, (m.get("representation") or {}).get("name")),
            ("sensor size", None if sensor_size is None else list(sensor_size), m.get("sensor_size")),
            ("input size", None if input_size is None else list(input_size), m.get("input_size")),
        ]
        for what, want, have in wants:
            if want is not None and want != have:
                raise CheckpointError(f"{self.path or 'checkpoint'} was made for {what} {have}, not {want}")


def save_checkpoint(path, model: torch.nn.Module, meta: dict, optimizer=None, scheduler=None) -> None:
    """Writes a checkpoint (atomically: a temporary file renamed into place)."""
    from .. import __version__

    meta = {
        **meta,
        "evstream_version": __version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    module = model.module if hasattr(model, "module") else model  # DDP
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "meta": json.dumps(meta),
        "model": {k: v.detach().cpu() for k, v in module.state_dict().items()},
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
    }
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def load_checkpoint(path) -> Checkpoint:
    """Reads a checkpoint safely (``weights_only=True``: tensors, numbers and strings only)."""
    path = str(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such checkpoint") from None
    except pickle.UnpicklingError as exc:
        # (torch's message advises loading with weights_only=False, which can run the file's code)
        found = re.search(r"GLOBAL ([\w.]+)", str(exc))
        raise CheckpointError(
            f"{path}: not an evstream checkpoint: it holds Python objects"
            + (f" ({found.group(1)})" if found else "")
            + " beyond the tensors, numbers and strings evstream reads, and evstream does not unpickle "
            "them (a file from elsewhere could run code)"
        ) from None
    except Exception as exc:  # torch raises many kinds for a bad file
        raise CheckpointError(
            f"{path}: not a readable evstream checkpoint ({type(exc).__name__}: {exc})"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an evstream checkpoint")
    if payload.get("version") != VERSION:
        raise CheckpointError(
            f"{path}: checkpoint version {payload.get('version')} (this evstream reads {VERSION})"
        )
    try:
        meta = json.loads(payload["meta"])
        state = dict(payload["model"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: damaged checkpoint ({exc})") from None
    for key in ("model", "classes", "representation", "input_size"):
        if key not in meta:
            raise CheckpointError(f"{path}: checkpoint metadata lacks {key!r}")
    return Checkpoint(meta, state, payload.get("optimizer"), payload.get("scheduler"), path)
