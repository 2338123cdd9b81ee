"""Training and evaluation behind ``evstream train`` / ``evstream eval``.

One code path for one process and for many: under ``torchrun`` (environment ``WORLD_SIZE`` > 1)
the model is wrapped in ``DistributedDataParallel`` (NCCL on GPUs, gloo on CPUs), each process
trains on its shard of every epoch (``DistributedSampler``), and process 0 evaluates, prints and
writes checkpoints.

Reproducibility: the train/validation split is a seeded, per-class hold-out; the augmentation of
sample ``i`` in epoch ``e`` depends only on ``(seed, e, i)`` (see ``datasets.EventDataset``), and
the sampler's shuffle on ``(seed, e)``, so a resumed run continues exactly as an uninterrupted one
would (up to floating-point reduction order). Evaluation has no randomness at all: each
recording's whole stream, no augmentation, the model in eval mode.
"""

from __future__ import annotations

import copy
import math
import os
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Subset

from .checkpoint import load_checkpoint, save_checkpoint
from .registry import MODELS, build_model


@dataclass
class TrainConfig:
    """Options of ``evstream train`` (the CLI only fills this in)."""

    dataset: str
    root: str
    out: str
    list_file: str | None = None
    model: str | None = None  # default: the dataset's usual model
    epochs: int = 30
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 1e-4
    label_smoothing: float = 0.0
    val_fraction: float = 0.1
    seed: int = 0
    augment: bool = True
    max_shift: int | None = None  # None: the dataset's default
    workers: int = 0
    resume: str | None = None
    export: str | None = None  # also write the final model without optimizer state (to ship)
    skip_bad: bool = False
    command: list[str] = field(default_factory=lambda: list(sys.argv))


#: The model each dataset trains by default, and its augmentation defaults: digits are not
#: mirror-symmetric and 34x34 leaves little room to shift, unlike N-ImageNet's 224x224 scenes.
DATASET_DEFAULTS = {
    "nmnist": {
        "model": "nmnist_vgg",
        "horizontal_flip": 0.0,
        "time_flip": 0.0,
        "max_shift": 3,
        # evstream run: 310 ms trailing windows (an N-MNIST recording: three ~100 ms saccades)
        "stream_window": {"kind": "time", "us": 310_000, "stride_us": 10_000, "trailing": True},
    },
    "ncaltech101": {"model": "ncaltech101_vgg13", "horizontal_flip": 0.5, "time_flip": 0.0, "max_shift": 20},
    "ncars": {"model": "ncars_vgg12", "horizontal_flip": 0.5, "time_flip": 0.0, "max_shift": 10},
    "nimagenet": {"model": "nimagenet_resnet34", "horizontal_flip": 0.5, "time_flip": 0.5, "max_shift": 20},
    "mini_nimagenet": {
        "model": "nimagenet_resnet34",
        "horizontal_flip": 0.5,
        "time_flip": 0.5,
        "max_shift": 20,
    },
}


# --------------------------------------------------------------------------------------------
# Distributed set-up


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed() -> Dist:
    """Joins the process group when launched by ``torchrun`` (``WORLD_SIZE`` > 1)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    import torch.distributed as dist

    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if backend == "nccl":
        torch.cuda.set_device(local)
    return Dist(dist.get_rank(), dist.get_world_size(), local)


def _device(d: Dist) -> torch.device:
    return torch.device(f"cuda:{d.local_rank}") if torch.cuda.is_available() else torch.device("cpu")


# --------------------------------------------------------------------------------------------
# Data


def split_indices(labels: list[int], fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """A seeded per-class hold-out: ``(train, validation)`` indices, ``fraction`` of every class
    (at least one sample of each class with two or more) in validation."""
    if not 0 <= fraction < 1:
        raise ValueError(f"the validation fraction must be in [0, 1), got {fraction}")
    rng = np.random.default_rng(seed)
    train, val = [], []
    labels_arr = np.asarray(labels)
    for c in np.unique(labels_arr):
        idx = np.flatnonzero(labels_arr == c)
        rng.shuffle(idx)
        k = int(round(fraction * len(idx)))
        if fraction > 0 and len(idx) > 1:
            k = max(k, 1)
        val += idx[:k].tolist()
        train += idx[k:].tolist()
    return sorted(train), sorted(val)


def _dataset(cfg: TrainConfig, augment: bool):
    from .datasets import Augment, build_dataset

    defaults = DATASET_DEFAULTS.get(cfg.dataset, {})
    aug = None
    if augment:
        shift = defaults.get("max_shift", 20) if cfg.max_shift is None else cfg.max_shift
        aug = Augment(
            time_flip=defaults.get("time_flip", 0.5),
            horizontal_flip=defaults.get("horizontal_flip", 0.5),
            max_shift=shift,
        )
    options = {"augment": aug, "seed": cfg.seed, "skip_bad": cfg.skip_bad}
    if cfg.list_file:
        options["list_file"] = cfg.list_file
    return build_dataset(cfg.dataset, cfg.root, **options)


# --------------------------------------------------------------------------------------------
# Evaluation


@torch.no_grad()
def evaluate(
    model,
    dataset,
    *,
    batch_size: int = 64,
    workers: int = 0,
    progress: bool = True,
    device: torch.device | None = None,
    classes: list[str] | None = None,
) -> dict:
    """Top-1, top-5 and per-class accuracy of ``model`` on ``dataset`` (deterministic)."""
    from tqdm import tqdm

    device = device or torch.device("cpu")
    model.eval()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers)
    batches = tqdm(loader, desc="eval", unit="batch", disable=not progress, leave=False)
    return accuracy(
        ((model(x.to(device)).float().cpu(), y) for x, y in batches),
        classes or list(getattr(dataset, "classes", [])) or None,
    )


def accuracy(batches, classes: list[str] | None = None) -> dict:
    """Top-1, top-5 and per-class accuracy from ``(logits (B, classes), labels (B,))`` batches."""
    top1 = top5 = total = 0
    per_correct: dict[int, int] = {}
    per_total: dict[int, int] = {}
    for logits, y in batches:
        k = min(5, logits.shape[1])
        best = logits.topk(k, dim=1).indices
        hit1 = best[:, 0] == y
        top1 += int(hit1.sum())
        top5 += int((best == y[:, None]).any(dim=1).sum())
        total += len(y)
        for label, ok in zip(y.tolist(), hit1.tolist(), strict=True):
            per_total[label] = per_total.get(label, 0) + 1
            per_correct[label] = per_correct.get(label, 0) + int(ok)
    name = (lambda i: classes[i]) if classes else str
    return {
        "samples": total,
        "top1": top1 / total if total else None,
        "top5": top5 / total if total else None,
        "per_class": {name(c): per_correct[c] / per_total[c] for c in sorted(per_total)},
        "per_class_samples": {name(c): per_total[c] for c in sorted(per_total)},
    }


# --------------------------------------------------------------------------------------------
# Training


def _meta(
    cfg: TrainConfig, dataset, model_name: str, val_files: list[str], epoch: int, metrics: dict, world: int
) -> dict:
    data = dataset.metadata()
    return {
        "model": model_name,
        "model_options": {"num_classes": len(data["classes"])},
        "classes": data["classes"],
        "representation": {"name": data["representation"], "params": data["params"]},
        # evaluation reads each recording whole, or its first max_events events
        "window": (
            {"kind": "all"} if data["max_events"] is None else {"kind": "count", "events": data["max_events"]}
        ),
        "stream_window": DATASET_DEFAULTS.get(cfg.dataset, {}).get("stream_window"),
        "sensor_size": data["sensor_size"],
        "input_size": data["input_size"],
        "dataset": cfg.dataset,
        "data": {"root": str(cfg.root), "list": cfg.list_file, "validation_files": val_files},
        "command": cfg.command,
        "config": asdict(cfg),
        "seed": cfg.seed,
        "epoch": epoch,
        "metrics": metrics,
        "world_size": world,
    }


def train(cfg: TrainConfig, *, progress: bool = True, log=print) -> dict:
    """Trains (or resumes) as ``cfg`` says; writes ``cfg.out`` after every epoch (the best by
    validation top-1 also to ``<out>.best``) and returns the last metrics."""
    from tqdm import tqdm

    d = init_distributed()
    device = _device(d)
    torch.manual_seed(cfg.seed)
    model_name = cfg.model or DATASET_DEFAULTS.get(cfg.dataset, {}).get("model")
    if model_name not in MODELS:
        raise ValueError(f"unknown model {model_name!r}; choose from {', '.join(MODELS)}")
    train_set = _dataset(cfg, augment=cfg.augment)
    eval_set = copy.copy(train_set)  # the same samples (scanned once), without augmentation
    eval_set.augment = None
    labels = [label for _, label in train_set.samples]
    tr_idx, val_idx = split_indices(labels, cfg.val_fraction, cfg.seed)
    val_files = [str(train_set.samples[i][0].name) for i in val_idx]
    model = build_model(model_name, num_classes=len(train_set.classes)).to(device)
    spec = MODELS[model_name]
    if tuple(train_set.input_size) != tuple(spec.input_shape[1:]):
        raise ValueError(
            f"dataset {cfg.dataset} gives {train_set.input_size} inputs, model {model_name} takes "
            f"{spec.input_shape[1:]}"
        )
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = max(1, math.ceil(len(tr_idx) / (cfg.batch_size * d.world)))
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=cfg.lr, epochs=cfg.epochs, steps_per_epoch=steps_per_epoch, pct_start=0.15
    )
    start_epoch, best = 0, -1.0
    if cfg.resume:
        ck = load_checkpoint(cfg.resume)
        ck.check(model=model_name, input_size=spec.input_shape[1:])
        if ck.classes != list(train_set.classes):
            raise ValueError(f"{cfg.resume} was trained on other classes than {cfg.dataset}")
        planned = (ck.meta.get("config") or {}).get("epochs")
        if planned is not None and int(planned) != cfg.epochs:
            raise ValueError(
                f"{cfg.resume} belongs to a {planned}-epoch run; resume it with --epochs {planned} "
                "(the learning-rate schedule spans the planned epochs)"
            )
        model.load_state_dict(ck.model_state)
        if ck.optimizer_state:
            opt.load_state_dict(ck.optimizer_state)
        if ck.scheduler_state:
            sched.load_state_dict(ck.scheduler_state)
        start_epoch = int(ck.meta.get("epoch", 0))
        best = float((ck.meta.get("metrics") or {}).get("best_top1", -1.0))
        if d.main:
            log(f"resuming {cfg.resume} after epoch {start_epoch}")
    net = model
    if d.world > 1:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[d.local_rank] if device.type == "cuda" else None
        )
    train_sub = Subset(train_set, tr_idx)
    if d.world > 1:
        from torch.utils.data.distributed import DistributedSampler

        sampler = DistributedSampler(
            train_sub, num_replicas=d.world, rank=d.rank, shuffle=True, seed=cfg.seed
        )
    else:
        sampler = None
    metrics: dict = {}
    for epoch in range(start_epoch, cfg.epochs):
        train_set.set_epoch(epoch)
        if sampler is not None:
            sampler.set_epoch(epoch)
            loader = DataLoader(
                train_sub, batch_size=cfg.batch_size, sampler=sampler, num_workers=cfg.workers
            )
        else:
            g = torch.Generator().manual_seed(cfg.seed * 1000 + epoch)
            loader = DataLoader(
                train_sub, batch_size=cfg.batch_size, shuffle=True, generator=g, num_workers=cfg.workers
            )
        net.train()
        loss_sum, seen, correct = 0.0, 0, 0
        bar = tqdm(
            loader,
            desc=f"epoch {epoch + 1}/{cfg.epochs}",
            unit="batch",
            disable=not (progress and d.main),
            leave=False,
        )
        for x, y in bar:
            x, y = x.to(device), y.to(device)
            logits = net(x)
            loss = F.cross_entropy(logits, y, label_smoothing=cfg.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            loss_sum += loss.item() * len(y)
            seen += len(y)
            correct += int((logits.argmax(1) == y).sum())
            bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{correct / seen:.3f}")
        if d.world > 1:
            import torch.distributed as dist

            t = torch.tensor([loss_sum, seen, correct], dtype=torch.float64)
            dist.all_reduce(t)
            loss_sum, seen, correct = float(t[0]), int(t[1]), int(t[2])
        metrics = {
            "epoch": epoch + 1,
            "train_loss": loss_sum / max(seen, 1),
            "train_top1": correct / max(seen, 1),
        }
        if d.main:
            if val_idx:
                val = evaluate(
                    model,
                    Subset(eval_set, val_idx),
                    batch_size=64,
                    workers=cfg.workers,
                    progress=progress,
                    device=device,
                    classes=list(train_set.classes),
                )
                metrics.update(val_top1=val["top1"], val_top5=val["top5"], val_samples=val["samples"])
            improved = metrics.get("val_top1", 0.0) >= best
            best = max(best, metrics.get("val_top1", 0.0))
            metrics["best_top1"] = best
            meta = _meta(cfg, train_set, model_name, val_files, epoch + 1, metrics, d.world)
            save_checkpoint(cfg.out, model, meta, opt, sched)
            if improved:
                save_checkpoint(str(cfg.out) + ".best", model, meta)
            log(
                f"epoch {epoch + 1}/{cfg.epochs}: loss {metrics['train_loss']:.4f}, train top-1 "
                f"{metrics['train_top1']:.3f}"
                + (
                    f", validation top-1 {metrics['val_top1']:.3f} ({metrics['val_samples']})"
                    if val_idx
                    else ""
                )
            )
        if d.world > 1:
            import torch.distributed as dist

            dist.barrier()
    if d.main and cfg.export and metrics:
        meta = _meta(cfg, train_set, model_name, val_files, cfg.epochs, metrics, d.world)
        save_checkpoint(cfg.export, model, meta)
    if d.world > 1:
        import torch.distributed as dist

        dist.destroy_process_group()
    return metrics


def eval_checkpoint(
    checkpoint: str | Path, dataset, *, batch_size: int = 64, workers: int = 0, progress: bool = True
) -> dict:
    """Evaluates a checkpoint on a dataset, after checking they fit each other."""
    ck = load_checkpoint(checkpoint)
    ck.check(input_size=tuple(dataset.input_size))
    if list(dataset.classes) != ck.classes:
        raise ValueError(
            f"{checkpoint} knows classes {ck.classes[:5]}..., the dataset has {dataset.classes[:5]}..."
        )
    rep = (ck.meta.get("representation") or {}).get("name")
    if rep and rep != getattr(dataset, "representation", rep):
        raise ValueError(f"{checkpoint} was trained on {rep}, the dataset gives {dataset.representation}")
    model = ck.build()
    result = evaluate(
        model, dataset, batch_size=batch_size, workers=workers, progress=progress, classes=ck.classes
    )
    result["model"] = ck.meta["model"]
    result["checkpoint"] = str(checkpoint)
    return result
