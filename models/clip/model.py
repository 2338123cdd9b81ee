"""CLIP image and text encoders through open_clip, loaded from weight files the user supplies.

Nothing is downloaded: open_clip builds the architecture with random weights
(``pretrained=None``), the user's file fills it, and a missing or unreadable file is a
:class:`ClipError` naming the file. Hugging Face access is switched off (``HF_HUB_OFFLINE=1``
unless the user set it) on importing :mod:`evstream.models.clip`, before open_clip is.

Weight files (:func:`load_clip`):

* **OpenAI CLIP** TorchScript archives (``ViT-B-32.pt``, ``ViT-B-16.pt``, ``ViT-L-14.pt``, as
  OpenAI's ``clip`` package downloads them): the architecture (QuickGELU) is read from the
  weights' shapes; the tensors are taken out of the archive by a restricted unpickler
  (:mod:`.torchscript`), never with ``torch.jit.load``, so nothing in the archive runs.
* **OpenCLIP** state dicts (``open_clip_pytorch_model.bin``, ``open_clip_model.safetensors``,
  a ``torch.save``\\ d ``state_dict()``): give the open_clip architecture name
  (``arch="ViT-B-32"``; ``"ViT-B-32-quickgelu"`` for OpenAI's weights saved as a state dict). A
  model folder with ``open_clip_config.json`` (a Hugging Face snapshot) names its own. Files
  written by :func:`save_clip` carry the name in their metadata.
* **EZSR**'s released event encoder ``EZSR-CLIP-bigE-14-plus.pt``: EVA-CLIP's own key names
  (``visual.blocks.*``, ``text.*``), renamed to open_clip's ``EVA02-E-14-plus`` with timm's EVA
  converter; recognised from its keys.

``torch.load`` runs with ``weights_only=True``; a file holding anything but tensors is refused.
Model configs (``--clip-arch FILE.json``, a folder's ``open_clip_config.json``, the metadata of
:func:`save_clip`'s files) are checked before open_clip sees them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

from ..default import cache_dir
from .torchscript import TorchScriptError, is_torchscript, read_torchscript_tensors

#: open_clip architectures of the OpenAI / OpenCLIP ViTs, keyed by (width, patch, layers, image size).
_VIT_GEOMETRY = {
    (768, 32, 12, 224): "ViT-B-32",
    (768, 16, 12, 224): "ViT-B-16",
    (1024, 14, 24, 224): "ViT-L-14",
    (1024, 14, 24, 336): "ViT-L-14-336",
}
#: EVA-CLIP vision towers, keyed by (width, layers).
_EVA_GEOMETRY = {(1792, 64): "EVA02-E-14-plus"}

ARCH_METADATA_KEY = "open_clip_arch"
CONFIG_METADATA_KEY = "open_clip_config"


class ClipError(ValueError):
    """A CLIP weight file that cannot be used, with the reason and what to do."""


def _open_clip():
    try:
        import open_clip
    except ImportError as exc:
        raise ClipError(
            f"CLIP models need open_clip ({exc}): pip install -c constraints.txt 'evstream[clip]'"
        ) from None
    return open_clip


_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,99}")


def _check_config(config, source) -> dict:
    if (
        not isinstance(config, dict)
        or not all(isinstance(config.get(k), dict) for k in ("vision_cfg", "text_cfg"))
        or not isinstance(config.get("embed_dim"), int)
    ):
        raise ClipError(f"{source}: not an open_clip model config (needs embed_dim, vision_cfg and text_cfg)")
    return config


def _read_config_file(path: Path) -> dict:
    if not path.is_file():
        raise ClipError(f"{path}: no such model config file")
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ClipError(f"{path}: not a JSON model config ({exc})") from None
    return _check_config(config, path)


def _register(name: str, config: dict, source) -> str:
    """Registers ``config`` with open_clip as ``name`` (a config that names a built-in
    architecture must be that architecture's)."""
    open_clip = _open_clip()
    if not _NAME.fullmatch(name):
        raise ClipError(f"{source}: {name!r} is not a usable architecture name (letters, digits, ._@+-)")
    if open_clip.get_model_config(name) == config:
        return name
    if (Path(open_clip.__file__).parent / "model_configs" / f"{name}.json").is_file():  # one it ships
        raise ClipError(
            f"{source}: its config is named {name} but differs from open_clip's {name}; rename it"
        )
    with tempfile.TemporaryDirectory(prefix="evstream-clip-") as folder:
        file = Path(folder) / f"{name}.json"  # open_clip reads it now and keeps it in memory
        file.write_text(json.dumps(config))
        open_clip.add_model_config(file)
    return name


def _resolve_arch(arch: str) -> str:
    """An open_clip name, or a model config ``.json`` registered under its file's stem."""
    open_clip = _open_clip()
    if arch.endswith(".json"):
        path = Path(arch)
        return _register(path.stem, _read_config_file(path), path)
    if arch not in open_clip.list_models():
        raise ClipError(
            f"unknown open_clip architecture {arch!r} (e.g. ViT-B-32, ViT-B-32-quickgelu, ViT-B-16, "
            "ViT-L-14, EVA02-E-14-plus; or a model config .json file)"
        )
    return arch


def read_weights(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict]:
    """The tensors of a weight file (or model folder) and what the file says about itself:
    ``{"format": "openai-torchscript" | "safetensors" | "torch", "arch": name or None}``."""
    path = Path(path)
    if path.is_dir():
        config = path / "open_clip_config.json"
        if not config.is_file():
            raise ClipError(f"{path}: a model folder needs open_clip_config.json (a Hugging Face snapshot)")
        for name in ("open_clip_model.safetensors", "open_clip_pytorch_model.bin"):
            if (path / name).is_file():
                state, info = read_weights(path / name)
                try:
                    cfg = json.loads(config.read_text())["model_cfg"]
                except (OSError, ValueError, KeyError, TypeError) as exc:
                    raise ClipError(f"{config}: not an open_clip config ({exc})") from None
                info["config"] = _check_config(cfg, config)
                info["arch"] = None
                return state, info
        raise ClipError(
            f"{path}: no open_clip_model.safetensors or open_clip_pytorch_model.bin in the folder"
        )
    if not path.exists():
        raise ClipError(
            f"{path}: no such file. evstream downloads nothing: supply the CLIP weights yourself "
            "(e.g. OpenAI's ViT-B-32.pt, an OpenCLIP open_clip_pytorch_model.bin, or "
            "EZSR-CLIP-bigE-14-plus.pt)"
        )
    try:
        with open(path, "rb") as f:
            head = f.read(16)
        if len(head) >= 9 and head[8:9] == b"{":  # safetensors: u64 header length, JSON header
            from safetensors import SafetensorError, safe_open

            try:
                with safe_open(str(path), framework="pt") as f:
                    meta = f.metadata() or {}
                    state = {k: f.get_tensor(k) for k in f.keys()}
            except SafetensorError as exc:
                raise ClipError(f"{path}: damaged safetensors file ({exc})") from None
            info = {"format": "safetensors", "arch": meta.get(ARCH_METADATA_KEY), "file": path}
            if CONFIG_METADATA_KEY in meta:
                try:
                    config = json.loads(meta[CONFIG_METADATA_KEY])
                except ValueError as exc:
                    raise ClipError(f"{path}: its model config metadata is not JSON ({exc})") from None
                info["config"] = _check_config(config, path)
            return state, info
        if is_torchscript(path):
            # OpenAI's archives: only the tensors are read, nothing in the archive runs
            try:
                state = read_torchscript_tensors(path)
            except TorchScriptError as exc:
                raise ClipError(f"{path}: a TorchScript archive evstream cannot read ({exc})") from None
            return state, {"format": "openai-torchscript", "arch": None, "file": path}
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except ClipError:
        raise
    except OSError as exc:
        raise ClipError(f"{path}: cannot read ({exc})") from None
    except Exception as exc:  # torch raises RuntimeError / UnpicklingError / EOFError for bad files
        raise ClipError(f"{path}: not a readable weight file ({type(exc).__name__}: {exc})") from None
    state, arch = _unwrap(obj, path)
    return state, {"format": "torch", "arch": arch, "file": path}


def _unwrap(obj, path: Path) -> tuple[dict[str, torch.Tensor], str | None]:
    arch = None
    if isinstance(obj, dict):
        arch = obj.get(ARCH_METADATA_KEY) if isinstance(obj.get(ARCH_METADATA_KEY), str) else None
        for key in ("state_dict", "model", "module"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj:
        raise ClipError(f"{path}: holds no state dict (a dict of tensors)")
    state = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not state:
        raise ClipError(f"{path}: holds no tensors")
    if all(k.startswith("module.") for k in state):  # saved from DistributedDataParallel
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state, arch


def _layers(state, prefix: str) -> int:
    idx = {int(k[len(prefix) :].split(".")[0]) for k in state if k.startswith(prefix)}
    return max(idx) + 1 if idx else 0


def infer_arch(state: dict[str, torch.Tensor]) -> tuple[str | None, str]:
    """The open_clip architecture whose shapes the weights have (without the activation, which
    weights do not show), and a description for messages: ``(name or None, description)``."""
    if "visual.pos_embed" in state and any(k.startswith("visual.blocks.") for k in state):
        width, layers = state["visual.pos_embed"].shape[-1], _layers(state, "visual.blocks.")
        name = _EVA_GEOMETRY.get((width, layers))
        return name, f"an EVA-CLIP vision tower (width {width}, {layers} blocks)"
    if "visual.conv1.weight" in state and "visual.positional_embedding" in state:
        width, _, patch, _ = state["visual.conv1.weight"].shape
        layers = _layers(state, "visual.transformer.resblocks.")
        grid = round((state["visual.positional_embedding"].shape[0] - 1) ** 0.5)
        name = _VIT_GEOMETRY.get((width, patch, layers, grid * patch))
        return name, f"a ViT (width {width}, patch {patch}, {layers} layers, {grid * patch} px)"
    return None, "no CLIP ViT or EVA-CLIP tower"


def convert_eva_clip(state: dict[str, torch.Tensor], model) -> dict[str, torch.Tensor]:
    """EVA-CLIP's key names (EZSR's checkpoint) -> open_clip's EVA models: the vision tower through
    timm's EVA converter into ``visual.trunk.*``; the text tower already has open_clip's names."""
    from timm.models.eva import checkpoint_filter_fn

    visual = {k: v for k, v in state.items() if k.startswith("visual.")}
    trunk = checkpoint_filter_fn(visual, model.visual.trunk)
    out = {f"visual.trunk.{k}": v for k, v in trunk.items()}
    out.update({k: v for k, v in state.items() if not k.startswith("visual.")})
    if "logit_scale" in out:
        out["logit_scale"] = out["logit_scale"].reshape(model.logit_scale.shape)
    return out


def _fit_state(state: dict[str, torch.Tensor], model, expected: dict) -> dict[str, torch.Tensor]:
    """``state`` in the key names of ``model`` (whose own state dict is ``expected``)."""
    from open_clip.model import CustomTextCLIP, convert_to_custom_text_state_dict

    # OpenAI's integer entries and causal masks are not weights: open_clip builds its own
    state = {
        k: v
        for k, v in state.items()
        if k not in ("input_resolution", "context_length", "vocab_size")
        and not (k.split(".")[-1] == "attn_mask" and k not in expected)
    }
    if "visual.pos_embed" in state and hasattr(model.visual, "trunk"):
        state = convert_eva_clip(state, model)
    if isinstance(model, CustomTextCLIP):
        state = convert_to_custom_text_state_dict(state)
    return state


def _cpu_flash_attention_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    from torch.utils.flop_counter import sdpa_flop_count

    return sdpa_flop_count(query_shape, key_shape, value_shape)


#: torch's FlopCounterMode has no formula for the CPU attention kernel: the one of CUDA's
_CPU_ATTENTION_FLOPS = {
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_flash_attention_flops
}


class ClipModel:
    """An open_clip model with its tokenizer, in evaluation mode on ``device``.

    Attributes: ``model`` (the torch module), ``arch`` (open_clip name), ``path`` (the weights),
    ``image_size`` (pixels of the square input), ``logit_scale`` (CLIP's temperature, exp'ed)."""

    def __init__(self, model, tokenizer, arch: str, path: Path, device: str = "cpu"):
        self.model = model.eval().to(device)
        self.tokenizer = tokenizer
        self.arch = arch
        self.path = Path(path)
        self.device = device
        size = getattr(model.visual, "image_size", 224)
        self.image_size = int(size[0] if isinstance(size, (tuple, list)) else size)
        self.logit_scale = float(model.logit_scale.detach().exp())
        self._image_flops: int | None = None

    @torch.no_grad()
    def encode_images(self, x: torch.Tensor) -> torch.Tensor:
        """Image embeddings ``(N, D)`` (not normalised) of CLIP inputs ``(N, 3, S, S)``."""
        return self.model.encode_image(x.to(self.device)).float().cpu()

    @torch.no_grad()
    def encode_texts(self, texts: list[str], batch: int = 256, progress: bool = False) -> torch.Tensor:
        """Text embeddings ``(N, D)`` (not normalised)."""
        from tqdm import tqdm

        out = []
        steps = range(0, len(texts), batch)
        for i in tqdm(steps, desc="text embeddings", unit="batch", disable=not progress or len(steps) < 2):
            tokens = self.tokenizer(texts[i : i + batch]).to(self.device)
            out.append(self.model.encode_text(tokens).float().cpu())
        return torch.cat(out) if out else torch.zeros((0, 0))

    def image_flops(self) -> int:
        """FLOPs of one image embedding (torch's FlopCounterMode: 2 per multiply-add of the
        matrix products and convolutions), counted once."""
        if self._image_flops is None:
            from torch.utils.flop_counter import FlopCounterMode

            x = torch.zeros((1, 3, self.image_size, self.image_size), device=self.device)
            counter = FlopCounterMode(display=False, custom_mapping=_CPU_ATTENTION_FLOPS)
            # with gradients on, nn.MultiheadAttention takes its composite path, whose matrix
            # products the counter sees (its fused inference kernel is invisible to it)
            with torch.enable_grad(), counter:
                self.model.encode_image(x)
            self._image_flops = int(counter.get_total_flops())
        return self._image_flops

    def identity(self) -> dict:
        """What text embeddings depend on besides the prompts: for the embedding cache."""
        import open_clip

        st = self.path.stat()
        config = json.dumps(open_clip.get_model_config(self.arch), sort_keys=True)
        return {
            "file": str(self.path.resolve()),
            "size": st.st_size,
            "mtime_ns": st.st_mtime_ns,
            "ctime_ns": st.st_ctime_ns,
            "inode": st.st_ino,
            "arch": self.arch,
            "config": hashlib.sha256(config.encode()).hexdigest(),
            "open_clip": open_clip.__version__,
        }


def load_clip(path: str | os.PathLike, arch: str | None = None, device: str = "cpu") -> ClipModel:
    """Builds the open_clip model for the weights in ``path`` (file or model folder) and loads them.

    ``arch``: open_clip model name or model config ``.json``; needed for plain state dicts, whose
    activation (GELU or OpenAI's QuickGELU) their shapes do not tell.

    Raises :class:`ClipError` naming the file: missing, unreadable, not CLIP weights, an
    architecture that cannot be told, or weights that do not fit the architecture."""
    open_clip = _open_clip()
    path = Path(path)
    state, info = read_weights(path)
    guess, described = infer_arch(state)
    name = None
    if arch is not None:  # the user's word first
        name = _resolve_arch(arch)
    elif "config" in info:  # the file's own config: a model folder's, or save_clip's metadata
        name = _register(info.get("arch") or "open_clip_config", info["config"], path)
    elif info.get("arch"):
        if info["arch"].endswith(".json"):  # a file's word never makes evstream read another file
            raise ClipError(
                f"{path}: its metadata names the architecture {info['arch']!r}, a config file; a weight "
                "file can name an open_clip architecture only (--clip-arch FILE.json reads a config)"
            )
        name = _resolve_arch(info["arch"])
    elif info["format"] == "openai-torchscript":
        if guess is None:
            raise ClipError(f"{path}: OpenAI archive of an unsupported CLIP model ({described})")
        name = f"{guess}-quickgelu"
    elif guess is not None and guess.startswith("EVA"):
        name = guess
    if name is None:
        hint = (
            f" (it looks like {guess}: --clip-arch {guess}-quickgelu for OpenAI's weights, "
            f"--clip-arch {guess} for OpenCLIP's)"
            if guess
            else ""
        )
        raise ClipError(f"{path}: a state dict of {described}; say which open_clip architecture it is{hint}")
    if info["format"] == "openai-torchscript" and "quickgelu" not in name:
        warnings.warn(
            f"{path} is OpenAI's, trained with QuickGELU; {name} uses GELU (accuracy suffers): "
            f"use {name}-quickgelu",
            stacklevel=2,
        )
    try:
        with _quiet_random_init():
            model = open_clip.create_model(name, pretrained=None, device="cpu")
    except Exception as exc:  # open_clip's own errors for configs it cannot build
        raise ClipError(f"{path}: open_clip cannot build {name} ({type(exc).__name__}: {exc})") from None
    expected = model.state_dict()
    state = _fit_state(state, model, expected)
    missing = sorted(k for k in expected if k not in state)
    unexpected = sorted(k for k in state if k not in expected)
    wrong = [k for k, v in expected.items() if k in state and state[k].shape != v.shape]
    if missing or unexpected or wrong:
        parts = [
            f"{label} {len(keys)} ({', '.join(keys[:3])}{', ...' if len(keys) > 3 else ''})"
            for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong))
            if keys
        ]
        raise ClipError(
            f"{path}: the weights ({described}) do not fit open_clip's {name}: " + "; ".join(parts)
        )
    model.load_state_dict(state, strict=True)
    try:
        tokenizer = open_clip.get_tokenizer(name)
    except Exception as exc:  # e.g. a Hugging Face tokenizer that is not on this machine
        raise ClipError(
            f"{path}: no tokenizer for {name} without downloading ({type(exc).__name__}: {exc})"
        ) from None
    return ClipModel(model.float(), tokenizer, name, info["file"], device)


class _quiet_random_init(logging.Filter):
    """Silences open_clip's "No pretrained weights loaded" warning: the user's weights follow."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("No pretrained weights loaded")

    def __enter__(self):
        logging.getLogger().addFilter(self)
        return self

    def __exit__(self, *exc):
        logging.getLogger().removeFilter(self)


def save_clip(model, path: str | os.PathLike, arch: str) -> None:
    """Writes a model's weights as safetensors with its open_clip architecture (name and model
    config) in the metadata, so that :func:`load_clip` needs no ``arch``."""
    from safetensors.torch import save_file

    open_clip = _open_clip()
    module = model.model if isinstance(model, ClipModel) else model
    state = {k: v.detach().contiguous() for k, v in module.state_dict().items()}
    meta = {ARCH_METADATA_KEY: arch}
    config = open_clip.get_model_config(arch)
    if config is not None:
        meta[CONFIG_METADATA_KEY] = json.dumps(config)
    save_file(state, str(path), metadata=meta)


class TextEmbeddings:
    """Class embeddings from prompts: each label in every template, each prompt's embedding
    normalised, averaged over the templates and normalised again (CLIP's zero-shot recipe; one
    template is just the normalised embedding). Computed once per (weights, labels, templates):
    kept in memory and in ``$EVSTREAM_CACHE/clip-text`` (default ``~/.cache/evstream``)."""

    _memory: dict[str, torch.Tensor] = {}

    @staticmethod
    def key(clip: ClipModel, labels: list[str], templates: list[str]) -> str:
        blob = json.dumps(
            {"model": clip.identity(), "labels": labels, "templates": templates}, sort_keys=True
        )
        return hashlib.sha256(blob.encode()).hexdigest()[:32]

    @classmethod
    def get(
        cls,
        clip: ClipModel,
        labels: list[str],
        templates: list[str],
        *,
        cache: bool = True,
        progress: bool = False,
    ) -> tuple[torch.Tensor, str]:
        """``(embeddings (L, D) float32, where from: "computed" | "memory" | "disk")``."""
        key = cls.key(clip, labels, templates)
        if cache and key in cls._memory:
            return cls._memory[key], "memory"
        file = cache_dir("clip-text") / f"{key}.npy"
        if cache and file.is_file():
            try:
                arr = np.load(file, allow_pickle=False)
                if arr.ndim == 2 and arr.shape[0] == len(labels) and arr.dtype == np.float32:
                    cls._memory[key] = torch.from_numpy(arr)
                    return cls._memory[key], "disk"
            except (OSError, ValueError):
                pass  # a damaged cache file is recomputed and replaced
        emb = cls.compute(clip, labels, templates, progress=progress)
        if cache:
            cls._memory[key] = emb
            try:
                file.parent.mkdir(parents=True, exist_ok=True)
                tmp = file.with_suffix(f".{os.getpid()}.tmp")
                with open(tmp, "wb") as f:
                    np.save(f, emb.numpy())
                os.replace(tmp, file)
            except OSError:
                pass  # an unwritable cache only costs the recomputation next time
        return emb, "computed"

    @staticmethod
    def compute(clip: ClipModel, labels: list[str], templates: list[str], progress: bool = False):
        texts = [t.format(label) for label in labels for t in templates]
        emb = clip.encode_texts(texts, progress=progress).reshape(len(labels), len(templates), -1)
        emb = emb / emb.norm(dim=-1, keepdim=True)
        emb = emb.mean(dim=1)
        return (emb / emb.norm(dim=-1, keepdim=True)).float().contiguous()
