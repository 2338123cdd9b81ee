"""Zero-shot classification of events with a CLIP model: class names in words, logits per recording
or window, as EventCLIP and EZSR compute them.

=============  ==========================  ===============================  =====================
preprocess     event images                image embedding                  default prompts
=============  ==========================  ===============================  =====================
``eventclip``  up to 2 chunks of 70k       as it comes (EventCLIP does not  "a point cloud image
               events, grey on white,      normalise it); logits averaged   of a {}"
               bicubic resize              over the frames
``ezsr``       the middle 15k events,      normalised                       OpenAI's 80 ImageNet
               grey on black, nearest                                       templates, averaged
               resize
=============  ==========================  ===============================  =====================

Logits are ``exp(logit_scale) * image_embedding @ class_embeddings.T`` with the class embeddings
normalised (:class:`~evstream.models.clip.model.TextEmbeddings`).
"""

from __future__ import annotations

import numpy as np
import torch

from . import preprocess as pp
from .model import ClipModel, TextEmbeddings

PREPROCESS = ("eventclip", "ezsr")
EVENTCLIP_PROMPT = "a point cloud image of a {}"
#: ``--prompt`` value naming OpenAI's 80 ImageNet templates (open_clip ships them)
OPENAI_TEMPLATES = "openai-imagenet"


#: events per window in the papers (the default count window of ``evstream run``)
WINDOW_EVENTS = {"eventclip": pp.EVENTCLIP_CHUNK, "ezsr": pp.EZSR_WINDOW}


def event_images(events: np.ndarray, width: int, height: int, preprocess: str) -> list[np.ndarray]:
    """The event images of ``events`` as ``preprocess`` makes them (one for EZSR, one per chunk
    for EventCLIP)."""
    if preprocess == "ezsr":
        return [pp.ezsr_image(pp.ezsr_window(events), width, height)]
    return pp.eventclip_images(events, width, height)


def clip_inputs(events: np.ndarray, width: int, height: int, preprocess: str, size: int) -> torch.Tensor:
    """CLIP inputs ``(frames, 3, size, size)`` of ``events``: the event images through CLIP's
    transform (nearest resize for EZSR, bicubic for EventCLIP, as their code does)."""
    mode = "nearest" if preprocess == "ezsr" else "bicubic"
    return torch.stack(
        [pp.clip_input(im, size, mode) for im in event_images(events, width, height, preprocess)]
    )


def default_templates(preprocess: str) -> list[str]:
    return [EVENTCLIP_PROMPT] if preprocess == "eventclip" else openai_templates()


def openai_templates() -> list[str]:
    from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES

    return [t("{}") for t in OPENAI_IMAGENET_TEMPLATES]


def parse_templates(prompts: list[str] | None, preprocess: str) -> list[str]:
    """Prompt templates from ``--prompt`` values (each holding one ``{}``, or ``openai-imagenet``)."""
    if not prompts:
        return default_templates(preprocess)
    out: list[str] = []
    for p in prompts:
        if p == OPENAI_TEMPLATES:
            out.extend(openai_templates())
        elif p.count("{}") != 1 or "{" in p.replace("{}", "") or "}" in p.replace("{}", ""):
            raise ValueError(f"a prompt needs exactly one '{{}}' where the class name goes, got {p!r}")
        else:
            out.append(p)
    return out


def parse_labels(text: str) -> list[str]:
    """Class names from ``"dog,cat,car"`` or ``@FILE`` (one per line). Raises ValueError for empty
    or repeated names."""
    if text.startswith("@"):
        try:
            with open(text[1:], encoding="utf-8") as f:
                names = [line.strip() for line in f if line.strip() and not line.lstrip().startswith("#")]
        except OSError as exc:
            raise ValueError(f"cannot read the label file {text[1:]}: {exc.strerror or exc}") from None
    else:
        names = [n.strip() for n in text.split(",")]
    if not names or any(not n for n in names):
        raise ValueError(f"labels must be non-empty names separated by commas, got {text!r}")
    seen: set[str] = set()
    repeated = [n for n in names if n in seen or seen.add(n)]
    if repeated:
        raise ValueError(f"labels repeat: {', '.join(sorted(set(repeated)))}")
    if len(names) < 2:
        raise ValueError("zero-shot classification needs at least two labels")
    return names


def dataset_labels(dataset) -> list[str]:
    """Words for a dataset's classes: ImageNet's names (open_clip's) for N-ImageNet WordNet ids,
    digit names for N-MNIST, otherwise the class names with underscores as spaces."""
    from ..datasets.nimagenet import WNID

    classes = list(dataset.classes)
    if all(WNID.fullmatch(c) for c in classes):
        from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES
        from timm.data import ImageNetInfo

        names = dict(zip(ImageNetInfo("imagenet-1k").label_names(), IMAGENET_CLASSNAMES, strict=True))
        unknown = [c for c in classes if c not in names]
        if unknown:
            raise ValueError(f"no ImageNet name for {', '.join(unknown[:5])}: give --labels")
        return [names[c] for c in classes]
    digits = "zero one two three four five six seven eight nine".split()
    if classes == [str(i) for i in range(10)]:
        return [f"digit {d}" for d in digits]
    return [c.replace("_", " ") for c in classes]


class ZeroShotClassifier:
    """A CLIP model, class names and prompts: :meth:`logits` of a recording's (or window's) events.

    ``preprocess``: ``"eventclip"`` or ``"ezsr"`` (see the module docstring).
    ``templates``: prompt templates (default: the preprocessing's).
    ``cache``: keep the class embeddings on disk (they are always computed once per instance)."""

    def __init__(
        self,
        clip: ClipModel,
        labels: list[str],
        *,
        preprocess: str = "eventclip",
        templates: list[str] | None = None,
        cache: bool = True,
        progress: bool = False,
    ):
        if preprocess not in PREPROCESS:
            raise ValueError(f"preprocess must be one of {', '.join(PREPROCESS)}, got {preprocess!r}")
        self.clip = clip
        self.labels = list(labels)
        self.preprocess = preprocess
        self.templates = list(templates) if templates else default_templates(preprocess)
        self.text, self.text_source = TextEmbeddings.get(
            clip, self.labels, self.templates, cache=cache, progress=progress
        )

    def inputs(self, events: np.ndarray, width: int, height: int) -> torch.Tensor:
        """CLIP inputs ``(frames, 3, S, S)``."""
        return clip_inputs(events, width, height, self.preprocess, self.clip.image_size)

    def frame_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits ``(frames, L)`` of each of the CLIP inputs ``(frames, 3, S, S)``."""
        feats = self.clip.encode_images(x)
        if self.preprocess == "ezsr":
            feats = feats / feats.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        return self.clip.logit_scale * feats @ self.text.T

    def logits_of_inputs(self, x: torch.Tensor) -> np.ndarray:
        """Class logits ``(L,)`` from CLIP inputs ``(frames, 3, S, S)``, averaged over the frames."""
        return self.batch_logits([x])[0].numpy()

    def batch_logits(self, xs: list[torch.Tensor]) -> torch.Tensor:
        """:meth:`logits_of_inputs` of several recordings at once (one image-encoder batch): ``(B, L)``."""
        counts = [len(x) for x in xs]
        per = self.frame_logits(torch.cat(xs)).split(counts)
        return torch.stack([p.mean(dim=0) for p in per])

    def logits(self, events: np.ndarray, width: int, height: int) -> np.ndarray:
        return self.logits_of_inputs(self.inputs(events, width, height))

    def flops(self, frames: int) -> int:
        """FLOPs of one prediction from ``frames`` images: the image encoder per frame plus the
        products with the class embeddings (2 per multiply-add)."""
        return frames * (self.clip.image_flops() + 2 * self.text.numel())

    def describe(self) -> str:
        return f"CLIP {self.clip.arch} zero-shot ({self.preprocess}, {len(self.labels)} labels)"
