"""Zero-shot evaluation of a CLIP model on an event dataset (``evstream eval --model clip:...``):
each recording whole, at its sensor resolution, made into event images as the chosen paper does,
no randomness."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, Dataset

from ..train import accuracy
from .zeroshot import ZeroShotClassifier, clip_inputs


class _ClipInputs(Dataset):
    """``(CLIP inputs (frames, 3, S, S), label)`` per recording of an EventDataset. Holds only the
    preprocessing (not the model), so DataLoader workers can make the images."""

    def __init__(self, dataset, preprocess: str, image_size: int):
        self.dataset = dataset
        self.preprocess = preprocess
        self.image_size = image_size

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int):
        events, label = self.dataset._read(i)  # honours the dataset's skip_bad
        width, height = self.dataset.sensor_size
        return clip_inputs(events, width, height, self.preprocess, self.image_size), label


def _collate(items):
    return [x for x, _ in items], torch.tensor([y for _, y in items])


@torch.no_grad()
def eval_zero_shot(
    zs: ZeroShotClassifier, dataset, *, batch_size: int = 64, workers: int = 0, progress: bool = True
) -> dict:
    """Top-1, top-5 and per-class accuracy of zero-shot predictions (``zs.labels[i]`` names the
    dataset's class ``i``), with the FLOPs of the image encoder."""
    from tqdm import tqdm

    loader = DataLoader(
        _ClipInputs(dataset, zs.preprocess, zs.clip.image_size),
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
        collate_fn=_collate,
    )
    frames = 0

    def batches():
        nonlocal frames
        for xs, y in tqdm(loader, desc="eval", unit="batch", disable=not progress, leave=False):
            frames += sum(len(x) for x in xs)
            yield zs.batch_logits(xs), y

    result = accuracy(batches(), list(dataset.classes))
    result["model"] = zs.describe()
    result["checkpoint"] = str(zs.clip.path)
    result["labels"] = zs.labels
    result["templates"] = len(zs.templates)
    result["frames"] = frames
    result["flops_per_sample"] = zs.flops(frames) / result["samples"] if result["samples"] else None
    return result
