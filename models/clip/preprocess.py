"""Event images for CLIP-style zero-shot recognition, made as two papers make them.

**EZSR** (Yang et al., 2024, "Event-based Zero-Shot Recognition"; code: Yan98/Event-based-Zero-Shot-
Recognition, ``dataset/event_utlities.py``): one window of 15,000 events; a 2-channel histogram
(ON, OFF) at sensor resolution; counts clipped at the 75th percentile (linear interpolation) of
the non-zero counts of both channels together; each channel divided by its own maximum + 1;
the two channels averaged to one grey image in [0, 1) on a black background; then CLIP's resize
of the shortest side to 224 (nearest neighbour, as their transform), centre crop and
normalisation with OpenAI CLIP's mean and standard deviation.

**EventCLIP** (Wu et al., 2023; code: Wuziyi616/EventCLIP, ``datasets/vis.py``): the recording
split into chunks of N events (70,000 on N-ImageNet): ``[k*N, (k+1)*N)``, plus an overlapping last
chunk ``[n-N, n)`` when more than N/2 events remain, a recording shorter than N being one chunk;
up to ``max_frames`` (2 on N-ImageNet) chunks; per chunk ON and OFF counts, hot pixels removed
(every count above mean + 10 std of all 2*H*W counts, zeros included, set to 0), divided by the
largest count, drawn grey (127 per unit of ON + OFF) on a white background
(``img * w + 255 * (1 - w)`` with ``w = min(ON + OFF, 1)``), rounded to uint8; then CLIP's bicubic
resize, centre crop and normalisation; the logits are averaged over the frames.

Deterministic at evaluation, where the originals draw at random: the EZSR window is the middle
15,000 events (the original takes a random start), and EventCLIP keeps evenly spaced chunks when
a recording has more than ``max_frames`` (the original picks a random subset). An empty window
gives an empty (black / white) image where EZSR's code raises and EventCLIP's divides by zero.
"""

from __future__ import annotations

import numpy as np

#: OpenAI CLIP's normalisation (also open_clip's default for OpenAI and OpenCLIP weights).
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

EZSR_WINDOW = 15_000
EVENTCLIP_CHUNK = 70_000
EVENTCLIP_MAX_FRAMES = 2
EVENTCLIP_HOT_STD = 10.0


def polarity_counts(events: np.ndarray, width: int, height: int) -> np.ndarray:
    """ON and OFF event counts per pixel, ``(2, height, width)`` float32 (exact integers): the
    project's event histogram (kernels/representations), which also checks the coordinates."""
    from ...kernels.representations.cpu import event_histogram

    return event_histogram(events, width, height)


def ezsr_window(events: np.ndarray, n: int = EZSR_WINDOW) -> np.ndarray:
    """The middle ``n`` events (all of them if there are fewer)."""
    if len(events) <= n:
        return events
    start = (len(events) - n) // 2
    return events[start : start + n]


def ezsr_image(events: np.ndarray, width: int, height: int) -> np.ndarray:
    """EZSR's grey event image of ``events`` (already windowed): ``(height, width)`` float32 in [0, 1)."""
    hist = polarity_counts(events, width, height)
    nonzero = hist[hist > 0]
    if not len(nonzero):
        return np.zeros((height, width), np.float32)
    cap = np.float32(np.quantile(nonzero, 0.75))  # linear interpolation, as torch.quantile
    hist = np.minimum(hist, cap)
    hist /= hist.reshape(2, -1).max(axis=1)[:, None, None] + np.float32(1)
    return hist.mean(axis=0, dtype=np.float32)


def eventclip_chunks(n: int, chunk: int = EVENTCLIP_CHUNK, max_frames: int = EVENTCLIP_MAX_FRAMES):
    """EventCLIP's event-count chunks of a recording of ``n`` events, as ``(start, stop)`` pairs;
    at most ``max_frames``, evenly spaced when there are more."""
    if n == 0:
        return []
    if n < chunk:
        spans = [(0, n)]
    else:
        starts = list(range(0, n, chunk))
        spans = [(a, b) for a, b in zip(starts, starts[1:], strict=False)]
        if n - starts[-1] > chunk / 2:
            spans.append((n - chunk, n))
    if len(spans) > max_frames:
        keep = np.round(np.linspace(0, len(spans) - 1, max_frames)).astype(int)
        spans = [spans[i] for i in keep]
    return spans


def eventclip_image(events: np.ndarray, width: int, height: int, hot_std: float = EVENTCLIP_HOT_STD):
    """EventCLIP's grey event image of one chunk: ``(height, width)`` uint8, white background."""
    hist = polarity_counts(events, width, height)
    hot = hist.mean(dtype=np.float64) + hot_std * hist.std(dtype=np.float64)
    hist = np.where(hist > hot, np.float32(0), hist)
    peak = hist.max()
    if peak == 0:
        return np.full((height, width), 255, np.uint8)
    norm = hist / peak
    s = norm[0] + norm[1]
    w = np.clip(s, 0, 1)
    img = 127 * s * w + 255 * (1 - w)
    return np.round(img).astype(np.uint8)


def eventclip_images(
    events: np.ndarray,
    width: int,
    height: int,
    chunk: int = EVENTCLIP_CHUNK,
    max_frames: int = EVENTCLIP_MAX_FRAMES,
) -> list[np.ndarray]:
    """EventCLIP's frames of a recording (see :func:`eventclip_chunks`)."""
    spans = eventclip_chunks(len(events), chunk, max_frames)
    if not spans:
        return [eventclip_image(events[:0], width, height)]
    return [eventclip_image(events[a:b], width, height) for a, b in spans]


def clip_input(image: np.ndarray, size: int = 224, interpolation: str = "bicubic"):
    """CLIP's evaluation transform of a grey image: the shortest side resized to ``size``, the
    centre ``size x size`` cropped, three identical channels normalised with CLIP's mean and std.
    Returns a float32 tensor ``(3, size, size)``.

    ``image``: uint8 (0..255, as EventCLIP's; resized with PIL's bicubic filter exactly as CLIP's
    and open_clip's transforms do) or float in [0, 1] (as EZSR's; resized as a tensor).
    ``interpolation``: ``"bicubic"`` (CLIP, EventCLIP) or ``"nearest"`` (EZSR's transform).
    """
    import torch
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms import functional as F

    modes = {"bicubic": InterpolationMode.BICUBIC, "nearest": InterpolationMode.NEAREST}
    if interpolation not in modes:
        raise ValueError(f"interpolation must be 'bicubic' or 'nearest', got {interpolation!r}")
    if image.ndim != 2:
        raise ValueError(f"expected a grey (H, W) image, got shape {image.shape}")
    if image.dtype == np.uint8:
        from PIL import Image

        pil = F.resize(Image.fromarray(image), size, interpolation=modes[interpolation])
        x = F.to_tensor(F.center_crop(pil, [size, size]))
    else:
        x = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None]
        x = F.resize(x, size, interpolation=modes[interpolation], antialias=interpolation != "nearest")
        x = F.center_crop(x, [size, size])
    return F.normalize(x.expand(3, size, size), CLIP_MEAN, CLIP_STD)
