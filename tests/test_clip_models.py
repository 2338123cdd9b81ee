"""CLIP zero-shot models without any downloaded weight: randomly initialised open_clip models
(``pretrained=None``) saved and reloaded in every format evstream reads, the class embeddings and
their cache, the logits of EventCLIP and EZSR against slow references, and the whole path through
``evstream run`` and ``evstream eval``."""

from __future__ import annotations

import json
import math
import pickle
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

open_clip = pytest.importorskip("open_clip")

from conftest import random_events  # noqa: E402
from evstream.models.clip import preprocess as pp  # noqa: E402
from evstream.models.clip.model import (  # noqa: E402
    ClipError,
    TextEmbeddings,
    infer_arch,
    load_clip,
    save_clip,
)
from evstream.models.clip.zeroshot import (  # noqa: E402
    ZeroShotClassifier,
    dataset_labels,
    openai_templates,
    parse_labels,
    parse_templates,
)
from evstream.runtime.cli import main  # noqa: E402

# A ViT small enough for every test: 32 px, patch 8, 2 layers of width 64 (2 heads), a 2-layer text
# tower of width 32 with CLIP's vocabulary (the tokenizer's), 32-d embeddings.
TINY = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "head_width": 32, "patch_size": 8},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 4, "layers": 2},
}


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch):
    """Every test has its own embedding cache, in memory and on disk."""
    monkeypatch.setenv("EVSTREAM_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(TextEmbeddings, "_memory", {})
    return tmp_path / "cache"


def tiny_config(folder, name: str = "tiny_vit", config=TINY):
    path = folder / f"{name}.json"
    path.write_text(json.dumps(config))
    return path


def random_model(arch: str, seed: int = 0, compact: bool = False, **kwargs):
    """A randomly initialised open_clip model. ``compact`` gives a full-size ViT whose files stay
    small (a few MB instead of 600): see ``compact_parameters``."""
    torch.manual_seed(seed)
    model = open_clip.create_model(arch, pretrained=None, **kwargs).eval()
    if compact:
        compact_parameters(model)
    with torch.no_grad():  # a logit scale other than the default, to see it loaded
        model.logit_scale.fill_(math.log(42.0))
    return model


def compact_parameters(model) -> None:
    """Make every parameter of ``model`` a strided view of a short random vector of the parameter's
    mean and spread: element ``[i, j, .., k]`` is ``pool[5 i + 3 j + .. + k]``. Rows and channels
    still differ (no layer sees constant input), but torch.save and TorchScript archives store only
    the short vectors. CI machines may have little free disk; a ViT-B/32 written in full is 600 MB."""
    for module in model.modules():
        for name, p in list(module._parameters.items()):
            if p is None or p.dim() == 0:
                continue
            p = p.detach()
            strides = [5 if k % 2 == 0 else 3 for k in range(p.dim() - 1)] + [1]
            extent = 1 + sum((n - 1) * s for n, s in zip(p.shape, strides, strict=True))
            spread = float(p.std()) if p.numel() > 1 and float(p.std()) > 0 else 0.02
            pool = torch.randn(extent) * spread + float(p.mean())
            module._parameters[name] = torch.nn.Parameter(
                pool.as_strided(p.shape, strides), requires_grad=False
            )


@pytest.fixture
def tiny(tmp_path):
    """``(config file, model, state-dict file)`` of a randomly initialised tiny ViT."""
    config = tiny_config(tmp_path)
    open_clip.add_model_config(config)
    model = random_model(config.stem)
    weights = tmp_path / "tiny.pt"
    torch.save(model.state_dict(), weights)
    return config, model, weights


def images(seed: int, n: int = 2, size: int = 32) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def same_model(a, b, size: int = 32) -> None:
    x = images(1, size=size)
    tokens = open_clip.get_tokenizer("ViT-B-32")(["a photo of a dog", "an event image"])
    with torch.no_grad():
        torch.testing.assert_close(a.encode_image(x), b.encode_image(x), rtol=0, atol=0)
        torch.testing.assert_close(a.encode_text(tokens), b.encode_text(tokens), rtol=0, atol=0)
        assert float(a.logit_scale) == float(b.logit_scale)


# --------------------------------------------------------------------------------------------
# Loading


def test_state_dict_saved_and_reloaded_gives_the_same_model(tiny):
    config, model, weights = tiny
    clip = load_clip(weights, arch=str(config))
    assert clip.arch == "tiny_vit" and clip.image_size == 32
    assert clip.logit_scale == pytest.approx(42.0)
    same_model(clip.model, model)
    for key, value in model.state_dict().items():
        assert torch.equal(clip.model.state_dict()[key], value), key


def test_wrapped_and_data_parallel_state_dicts_load(tiny, tmp_path):
    config, model, _ = tiny
    wrapped = tmp_path / "wrapped.pt"
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}}, wrapped)
    same_model(load_clip(wrapped, arch=str(config)).model, model)


def test_safetensors_from_save_clip_name_their_architecture(tiny, tmp_path):
    config, model, _ = tiny
    out = tmp_path / "tiny.safetensors"
    save_clip(model, out, "tiny_vit")
    # a fresh process has not registered the config: the file's metadata carries it
    open_clip.factory._MODEL_CONFIGS.pop("tiny_vit")
    clip = load_clip(out)
    assert clip.arch == "tiny_vit"
    same_model(clip.model, model)


def test_hugging_face_model_folder_names_its_architecture(tiny, tmp_path):
    _, model, _ = tiny
    folder = tmp_path / "snapshot"
    folder.mkdir()
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": TINY, "preprocess_cfg": {}}))
    torch.save(model.state_dict(), folder / "open_clip_pytorch_model.bin")
    same_model(load_clip(folder).model, model)


@pytest.mark.parametrize("arch", ["ViT-B-32", "ViT-B-16", "ViT-L-14", "ViT-L-14-336"])
def test_the_vit_geometry_is_read_from_the_weights(arch):
    with torch.device("meta"):
        state = open_clip.create_model(arch, pretrained=None, device="meta").state_dict()
    assert infer_arch(state)[0] == arch
    with torch.device("meta"):
        state = open_clip.create_model(f"{arch}-quickgelu", pretrained=None, device="meta").state_dict()
    assert infer_arch(state)[0] == arch  # the activation does not show in the weights


def test_a_vit_b32_state_dict_needs_its_activation_named(tmp_path):
    model = random_model("ViT-B-32-quickgelu", compact=True)
    path = tmp_path / "openai_b32_state_dict.pt"
    # as OpenAI's archives hold them, with three integer entries that are not parameters
    extra = {
        k: torch.tensor(v)
        for k, v in (("input_resolution", 224), ("context_length", 77), ("vocab_size", 49408))
    }
    torch.save({**model.state_dict(), **extra}, path)
    with pytest.raises(ClipError, match="ViT-B-32-quickgelu for OpenAI's weights"):
        load_clip(path)
    clip = load_clip(path, arch="ViT-B-32-quickgelu")
    same_model(clip.model, model, size=224)
    assert clip.image_flops() == vit_flops(width=768, layers=12, patch=32, image=224, mlp=3072, embed=512)


def script(model, path) -> None:
    """A TorchScript archive of ``model``, as OpenAI's are."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # TorchScript is deprecated, OpenAI's files remain
        torch.jit.script(model).save(str(path))


def test_openai_torchscript_archives_load_as_quickgelu_vits(tmp_path):
    """OpenAI distributes TorchScript archives; the parameters are read, the code is not run."""
    model = random_model("ViT-B-32-quickgelu", compact=True)
    archive = tmp_path / "ViT-B-32.pt"
    script(model, archive)
    clip = load_clip(archive)
    assert clip.arch == "ViT-B-32-quickgelu"
    same_model(clip.model, model, size=224)


@pytest.mark.parametrize("arch", ["ViT-B-16", "ViT-L-14"])
def test_larger_openai_vits_load_in_full(arch, tmp_path):
    """ViT-B/16 and ViT-L/14 archives (full size, compact parameters) load with their geometry read
    from the weights and give the saved model's embeddings."""
    model = random_model(f"{arch}-quickgelu", compact=True)
    archive = tmp_path / f"{arch}.pt"
    script(model, archive)
    clip = load_clip(archive)
    assert clip.arch == f"{arch}-quickgelu" and clip.image_size == 224
    same_model(clip.model, model, size=224)


def test_a_torchscript_archive_of_an_unknown_model_is_refused(tiny, tmp_path):
    _, model, _ = tiny
    archive = tmp_path / "odd.pt"
    script(model, archive)
    with pytest.raises(ClipError, match="odd.pt: OpenAI archive of an unsupported CLIP model"):
        load_clip(archive)


def test_torchscript_archives_are_read_without_running_them(tiny, tmp_path, capsys):
    import zipfile

    config, model, _ = tiny
    archive = tmp_path / "good.pt"
    script(model, archive)
    evil = tmp_path / "evil_archive.pt"
    with zipfile.ZipFile(archive) as src, zipfile.ZipFile(evil, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename.endswith("/data.pkl"):
                data = pickle.dumps(_Payload(), protocol=2)
            dst.writestr(item, data)
    with pytest.raises(
        ClipError, match="evil_archive.pt: a TorchScript archive .* refused global __builtin__.print"
    ):
        load_clip(evil, arch=str(config))
    assert "code ran" not in capsys.readouterr().out
    # the tensors come out exactly, under their state-dict names
    from evstream.models.clip.torchscript import read_torchscript_tensors

    tensors = read_torchscript_tensors(archive)
    for key, value in model.state_dict().items():
        assert torch.equal(tensors[key], value), key


def test_openai_archives_warn_when_named_with_gelu(tmp_path):
    model = random_model("ViT-B-32-quickgelu", compact=True)
    archive = tmp_path / "ViT-B-32.pt"
    script(model, archive)
    with pytest.warns(UserWarning, match="trained with QuickGELU; ViT-B-32 uses GELU"):
        load_clip(archive, arch="ViT-B-32")


def test_model_configs_are_checked_before_open_clip_sees_them(tiny, tmp_path):
    from safetensors.torch import save_file

    config, model, weights = tiny
    bad = tmp_path / "bad.json"
    bad.write_text('{"embed_dim": 32}')
    with pytest.raises(ClipError, match="bad.json: not an open_clip model config"):
        load_clip(weights, arch=str(bad))
    notjson = tmp_path / "notjson.json"
    notjson.write_text("{")
    with pytest.raises(ClipError, match="notjson.json: not a JSON model config"):
        load_clip(weights, arch=str(notjson))
    imposter = tiny_config(tmp_path, "ViT-B-32")
    with pytest.raises(ClipError, match="named ViT-B-32 but differs from open_clip's ViT-B-32; rename it"):
        load_clip(weights, arch=str(imposter))
    # a name from a file's metadata never becomes a path
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    for name in ["../../escaped", "/tmp/abs", ".hidden"]:
        sneaky = tmp_path / "sneaky.safetensors"
        save_file(state, str(sneaky), metadata={"open_clip_arch": name, "open_clip_config": json.dumps(TINY)})
        with pytest.raises(ClipError, match="is not a usable architecture name"):
            load_clip(sneaky)
    assert not (tmp_path.parent / "escaped.json").exists()
    # nor does a weight file's architecture name make evstream read a config file (config is a
    # valid one here: it would load)
    named = tmp_path / "named.safetensors"
    save_file(state, str(named), metadata={"open_clip_arch": str(config)})
    with pytest.raises(ClipError, match="a weight file can name an open_clip architecture only"):
        load_clip(named)


def test_nothing_reaches_the_network(tiny, monkeypatch, rng):
    import socket

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    config, _, weights = tiny
    zs = ZeroShotClassifier(load_clip(weights, arch=str(config)), ["a", "b"], templates=openai_templates())
    assert np.isfinite(zs.logits(random_events(rng, 1000, 20, 10), 20, 10)).all()
    from timm.data import ImageNetInfo

    assert len(ImageNetInfo("imagenet-1k").label_names()) == 1000


def test_new_weights_in_a_model_folder_are_new_embeddings(tiny, tmp_path):
    _, model, _ = tiny
    folder = tmp_path / "snapshot"
    folder.mkdir()
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": TINY}))
    torch.save(model.state_dict(), folder / "open_clip_pytorch_model.bin")
    first = ZeroShotClassifier(load_clip(folder), ["a", "b"])
    torch.save(random_model("tiny_vit", seed=1).state_dict(), folder / "open_clip_pytorch_model.bin")
    second = ZeroShotClassifier(load_clip(folder), ["a", "b"])
    assert second.text_source == "computed" and not torch.allclose(first.text, second.text)


def test_bad_weight_files_get_clear_errors(tiny, tmp_path):
    config, model, weights = tiny
    with pytest.raises(ClipError, match=r"missing\.pt: no such file\. evstream downloads nothing"):
        load_clip(tmp_path / "missing.pt", arch=str(config))
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"\x00not a checkpoint" * 100)
    with pytest.raises(ClipError, match="junk.pt: not a readable weight file"):
        load_clip(junk, arch=str(config))
    cut = tmp_path / "cut.pt"
    cut.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(ClipError, match="cut.pt"):
        load_clip(cut, arch=str(config))
    empty = tmp_path / "empty.pt"
    torch.save({}, empty)
    with pytest.raises(ClipError, match="empty.pt: holds no state dict"):
        load_clip(empty, arch=str(config))
    with pytest.raises(ClipError, match="unknown open_clip architecture 'ViT-Q-99'"):
        load_clip(weights, arch="ViT-Q-99")
    with pytest.raises(
        ClipError, match="tiny.pt: the weights .* do not fit open_clip's ViT-B-32: .*wrong shape"
    ):
        load_clip(weights, arch="ViT-B-32")
    partial = tmp_path / "partial.pt"
    state = model.state_dict()
    torch.save({k: v for k, v in state.items() if not k.startswith("transformer.")}, partial)
    with pytest.raises(ClipError, match=r"partial.pt: .* missing \d+ \(transformer\."):
        load_clip(partial, arch=str(config))
    broken = tmp_path / "broken.safetensors"
    save_clip(model, broken, "tiny_vit")
    broken.write_bytes(broken.read_bytes()[:-100])
    with pytest.raises(ClipError, match="broken.safetensors: damaged safetensors file"):
        load_clip(broken)


class _Payload:
    def __reduce__(self):
        return (print, ("code ran",))


def test_pickled_code_is_never_run(tiny, tmp_path, capsys):
    config, model, _ = tiny
    path = tmp_path / "evil.pt"
    with open(path, "wb") as f:
        pickle.dump({"state_dict": model.state_dict(), "x": _Payload()}, f)
    with pytest.raises(ClipError, match="evil.pt: not a readable weight file"):
        load_clip(path, arch=str(config))
    assert "code ran" not in capsys.readouterr().out


# --------------------------------------------------------------------------------------------
# EZSR's checkpoint: EVA-CLIP's own key names (baaivision/EVA, EVA-CLIP/rei/eva_clip), written
# out here from its vision transformer (q/v biases beside a bias-free qkv, post-norm blocks, a
# biased head) and its text transformer, for a tiny model of the same family.

EVA = {
    "width": 64,
    "depth": 2,
    "heads": 4,
    "patch": 14,
    "image": 28,
    "mlp": int(64 * 15360 / 1792),
    "embed": 16,
}
EVA_TEXT = {"width": 32, "layers": 2, "heads": 4, "context": 77, "vocab": 49408}


def eva_clip_native_state(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    W, Hd, E, P = EVA["width"], EVA["mlp"], EVA["embed"], EVA["patch"]
    tW = EVA_TEXT["width"]
    shapes = {
        "visual.cls_token": (1, 1, W),
        "visual.pos_embed": (1, (EVA["image"] // P) ** 2 + 1, W),
        "visual.patch_embed.proj.weight": (W, 3, P, P),
        "visual.patch_embed.proj.bias": (W,),
        "visual.norm.weight": (W,),
        "visual.norm.bias": (W,),
        "visual.head.weight": (E, W),
        "visual.head.bias": (E,),
        "text.token_embedding.weight": (EVA_TEXT["vocab"], tW),
        "text.positional_embedding": (EVA_TEXT["context"], tW),
        "text.ln_final.weight": (tW,),
        "text.ln_final.bias": (tW,),
        "text.text_projection": (tW, E),
        "logit_scale": (),
    }
    for i in range(EVA["depth"]):
        b = f"visual.blocks.{i}."
        shapes.update(
            {
                b + "norm1.weight": (W,),
                b + "norm1.bias": (W,),
                b + "attn.qkv.weight": (3 * W, W),
                b + "attn.q_bias": (W,),
                b + "attn.v_bias": (W,),
                b + "attn.proj.weight": (W, W),
                b + "attn.proj.bias": (W,),
                b + "norm2.weight": (W,),
                b + "norm2.bias": (W,),
                b + "mlp.fc1.weight": (Hd, W),
                b + "mlp.fc1.bias": (Hd,),
                b + "mlp.fc2.weight": (W, Hd),
                b + "mlp.fc2.bias": (W,),
            }
        )
    for i in range(EVA_TEXT["layers"]):
        b = f"text.transformer.resblocks.{i}."
        shapes.update(
            {
                b + "ln_1.weight": (tW,),
                b + "ln_1.bias": (tW,),
                b + "attn.in_proj_weight": (3 * tW, tW),
                b + "attn.in_proj_bias": (3 * tW,),
                b + "attn.out_proj.weight": (tW, tW),
                b + "attn.out_proj.bias": (tW,),
                b + "ln_2.weight": (tW,),
                b + "ln_2.bias": (tW,),
                b + "mlp.c_fc.weight": (4 * tW, tW),
                b + "mlp.c_fc.bias": (4 * tW,),
                b + "mlp.c_proj.weight": (tW, 4 * tW),
                b + "mlp.c_proj.bias": (tW,),
            }
        )
    state = {k: 0.1 * torch.randn(s, generator=g) for k, s in shapes.items()}
    for k in state:
        if k.endswith(".weight") and ("norm" in k or ".ln_" in k):
            state[k] = 1 + state[k]
    state["logit_scale"] = torch.tensor(math.log(50.0))
    return state


def eva_reference_image(x: torch.Tensor, s: dict) -> torch.Tensor:
    """EVA-CLIP's vision forward, one operation at a time (no xattn, post-norm, LayerNorm eps 1e-6)."""
    W, H, P = EVA["width"], EVA["heads"], EVA["patch"]
    x = F.conv2d(x, s["visual.patch_embed.proj.weight"], s["visual.patch_embed.proj.bias"], stride=P)
    x = x.flatten(2).transpose(1, 2)
    x = torch.cat([s["visual.cls_token"].expand(len(x), -1, -1), x], 1) + s["visual.pos_embed"]

    def ln(t, name):
        return F.layer_norm(t, (W,), s[name + ".weight"], s[name + ".bias"], 1e-6)

    for i in range(EVA["depth"]):
        b = f"visual.blocks.{i}."
        B, N, C = x.shape
        bias = torch.cat([s[b + "attn.q_bias"], torch.zeros(W), s[b + "attn.v_bias"]])
        qkv = F.linear(x, s[b + "attn.qkv.weight"], bias).reshape(B, N, 3, H, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0] * (C // H) ** -0.5, qkv[1], qkv[2]
        o = ((q @ k.transpose(-2, -1)).softmax(-1) @ v).transpose(1, 2).reshape(B, N, C)
        x = x + ln(F.linear(o, s[b + "attn.proj.weight"], s[b + "attn.proj.bias"]), b + "norm1")
        h = F.gelu(F.linear(x, s[b + "mlp.fc1.weight"], s[b + "mlp.fc1.bias"]))
        x = x + ln(F.linear(h, s[b + "mlp.fc2.weight"], s[b + "mlp.fc2.bias"]), b + "norm2")
    return F.linear(ln(x, "visual.norm")[:, 0], s["visual.head.weight"], s["visual.head.bias"])


@pytest.fixture
def tiny_eva(tmp_path):
    """A tiny EVA-CLIP of EZSR's family in open_clip (a timm EVA trunk registered for the test),
    its config file and a checkpoint in EVA-CLIP's naming."""
    from timm.models import register_model
    from timm.models.eva import _create_eva

    name = "evstream_test_eva_tiny"

    @register_model
    def evstream_test_eva_tiny(pretrained=False, **kwargs):
        args = dict(
            img_size=EVA["image"],
            patch_size=EVA["patch"],
            embed_dim=EVA["width"],
            depth=EVA["depth"],
            num_heads=EVA["heads"],
            mlp_ratio=15360 / 1792,  # bigE's
            use_post_norm=True,
        )
        return _create_eva(name, pretrained=pretrained, **{**args, **kwargs})

    config = tiny_config(
        tmp_path,
        "tiny_eva",
        {
            "embed_dim": EVA["embed"],
            "vision_cfg": {
                "image_size": EVA["image"],
                "timm_model_name": name,
                "timm_model_pretrained": False,
                "timm_pool": "token",
                "timm_proj": None,
            },
            "text_cfg": {
                "context_length": EVA_TEXT["context"],
                "vocab_size": EVA_TEXT["vocab"],
                "width": EVA_TEXT["width"],
                "heads": EVA_TEXT["heads"],
                "layers": EVA_TEXT["layers"],
            },
            "custom_text": True,
        },
    )
    state = eva_clip_native_state()
    path = tmp_path / "EZSR-tiny.pt"
    torch.save(state, path)
    return config, state, path


def test_ezsr_checkpoints_load_into_open_clips_eva(tiny_eva):
    config, state, path = tiny_eva
    clip = load_clip(path, arch=str(config))
    x = images(3, 2, EVA["image"])
    with torch.no_grad():
        torch.testing.assert_close(clip.encode_images(x), eva_reference_image(x, state), rtol=1e-4, atol=1e-5)
    assert clip.logit_scale == pytest.approx(50.0)
    # the text tower has open_clip's names already: every tensor lands where it was
    loaded = clip.model.state_dict()
    for key, value in state.items():
        if key.startswith("text."):
            assert torch.equal(loaded[key], value), key


def test_ezsrs_full_size_checkpoint_is_recognised_and_every_key_lands():
    """On the meta device: EVA02-E-14-plus with EVA-CLIP's key names (every open_clip name with
    ``visual.trunk.`` as ``visual.``) is recognised and renamed back onto all of the model's keys."""
    from evstream.models.clip.model import _fit_state

    with torch.device("meta"):
        model = open_clip.create_model("EVA02-E-14-plus", pretrained=None, device="meta")
    expected = model.state_dict()
    native = {k.replace("visual.trunk.", "visual.", 1): v for k, v in expected.items()}
    assert any(k.startswith("visual.blocks.63.attn.q_bias") for k in native)
    assert infer_arch(native)[0] == "EVA02-E-14-plus"
    fitted = _fit_state(native, model, expected)
    assert set(fitted) == set(expected)
    assert all(fitted[k].shape == v.shape for k, v in expected.items())


# --------------------------------------------------------------------------------------------
# Prompts, class embeddings and their cache


def test_class_embeddings_follow_clips_recipe_and_are_computed_once(tiny, cache_dir, monkeypatch):
    config, model, weights = tiny
    clip = load_clip(weights, arch=str(config))
    labels, templates = ["dog", "cat", "race car"], ["a photo of a {}.", "an event image of the {}"]
    calls = []
    encode = clip.encode_texts
    monkeypatch.setattr(
        clip, "encode_texts", lambda texts, **kw: calls.append(len(texts)) or encode(texts, **kw)
    )
    zs = ZeroShotClassifier(clip, labels, templates=templates)
    assert zs.text_source == "computed" and calls == [6]
    # the recipe, one prompt at a time
    tok = open_clip.get_tokenizer("ViT-B-32")
    with torch.no_grad():
        for i, label in enumerate(labels):
            per = [model.encode_text(tok([t.format(label)]))[0] for t in templates]
            mean = torch.stack([p / p.norm() for p in per]).mean(0)
            torch.testing.assert_close(zs.text[i], mean / mean.norm(), rtol=1e-5, atol=1e-6)
    assert ZeroShotClassifier(clip, labels, templates=templates).text_source == "memory"
    TextEmbeddings._memory.clear()
    again = ZeroShotClassifier(clip, labels, templates=templates)
    assert again.text_source == "disk" and torch.equal(again.text, zs.text)
    assert calls == [6]
    # other labels or prompts are other embeddings
    assert ZeroShotClassifier(clip, labels[:2], templates=templates).text_source == "computed"
    assert ZeroShotClassifier(clip, labels, templates=templates[:1]).text_source == "computed"
    # a damaged cache file is recomputed and replaced
    TextEmbeddings._memory.clear()
    for f in (cache_dir / "clip-text").glob("*.npy"):
        f.write_bytes(b"garbage")
    assert ZeroShotClassifier(clip, labels, templates=templates).text_source == "computed"
    TextEmbeddings._memory.clear()
    assert ZeroShotClassifier(clip, labels, templates=templates).text_source == "disk"
    # without the cache nothing is written
    TextEmbeddings._memory.clear()
    monkeypatch.setenv("EVSTREAM_CACHE", str(cache_dir.parent / "unused"))
    assert ZeroShotClassifier(clip, labels, templates=templates, cache=False).text_source == "computed"
    assert not (cache_dir.parent / "unused").exists()


def test_prompts_and_labels_are_checked():
    assert parse_templates(None, "eventclip") == ["a point cloud image of a {}"]
    assert parse_templates(None, "ezsr") == openai_templates()
    assert len(openai_templates()) == 80 and all(t.count("{}") == 1 for t in openai_templates())
    assert (
        parse_templates(["a {} seen by an event camera", "openai-imagenet"], "eventclip")[1:]
        == openai_templates()
    )
    for bad in ["no placeholder", "two {} {}", "a {0}", "{}}"]:
        with pytest.raises(ValueError, match="exactly one"):
            parse_templates([bad], "eventclip")
    assert parse_labels(" dog, cat ,car") == ["dog", "cat", "car"]
    for bad, message in [("dog,,cat", "non-empty"), ("dog,cat,dog", "repeat: dog"), ("dog", "at least two")]:
        with pytest.raises(ValueError, match=message):
            parse_labels(bad)
    with pytest.raises(ValueError, match="cannot read the label file"):
        parse_labels("@/nonexistent/labels.txt")


def test_label_files_and_dataset_class_names(tmp_path):
    f = tmp_path / "labels.txt"
    f.write_text("# classes\nairplane\n\ngolden retriever\n")
    assert parse_labels(f"@{f}") == ["airplane", "golden retriever"]

    class D:
        classes = ["n01440764", "n01443537", "n02102040"]

    assert dataset_labels(D) == ["tench", "goldfish", "English Springer Spaniel"]
    D.classes = [str(i) for i in range(10)]
    assert dataset_labels(D)[:2] == ["digit zero", "digit one"]
    D.classes = ["Faces_easy", "accordion"]
    assert dataset_labels(D) == ["Faces easy", "accordion"]


# --------------------------------------------------------------------------------------------
# Logits and FLOPs


def vit_flops(width, layers, patch, image, mlp, embed) -> int:
    """FLOPs (2 per multiply-add) of a CLIP ViT image encoder, written out."""
    grid = (image // patch) ** 2
    n = grid + 1
    macs = grid * width * 3 * patch * patch  # patch embedding
    per_layer = n * width * 3 * width + 2 * n * n * width + n * width * width + 2 * n * width * mlp
    return 2 * (macs + layers * per_layer + width * embed)


def test_image_flops_are_the_vits_own(tiny):
    config, _, weights = tiny
    clip = load_clip(weights, arch=str(config))
    assert clip.image_flops() == vit_flops(width=64, layers=2, patch=8, image=32, mlp=256, embed=32)


@pytest.mark.parametrize("preprocess", ["eventclip", "ezsr"])
def test_zero_shot_logits_equal_a_frame_by_frame_reference(tiny, rng, preprocess):
    config, model, weights = tiny
    clip = load_clip(weights, arch=str(config))
    zs = ZeroShotClassifier(clip, ["dog", "cat", "car", "cup"], preprocess=preprocess)
    width, height = 40, 30
    ev = random_events(rng, 150_000, width, height)  # three EventCLIP chunks, two kept
    if preprocess == "eventclip":
        spans = pp.eventclip_chunks(len(ev))
        frames = [pp.eventclip_image(ev[a:b], width, height) for a, b in spans]
        assert len(frames) == 2
        xs = [pp.clip_input(f, 32, "bicubic") for f in frames]
    else:
        frames = [pp.ezsr_image(ev[67_500:82_500], width, height)]
        xs = [pp.clip_input(frames[0], 32, "nearest")]
    with torch.no_grad():
        per_frame = []
        for x in xs:
            f = model.encode_image(x[None])[0]
            if preprocess == "ezsr":
                f = f / f.norm()
            per_frame.append(42.0 * (zs.text @ f))
        want = torch.stack(per_frame).mean(0).numpy()
    got = zs.logits(ev, width, height)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    batch = zs.batch_logits([zs.inputs(ev, width, height), zs.inputs(ev[:5000], width, height)])
    np.testing.assert_allclose(batch[0].numpy(), got, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(batch[1].numpy(), zs.logits(ev[:5000], width, height), rtol=1e-5, atol=1e-5)
    assert zs.flops(2) == 2 * (clip.image_flops() + 2 * 4 * 32)


def test_empty_windows_give_finite_logits(tiny):
    config, _, weights = tiny
    zs = ZeroShotClassifier(load_clip(weights, arch=str(config)), ["a", "b"], preprocess="ezsr")
    from evstream.kernels.events import empty_events

    assert np.isfinite(zs.logits(empty_events(0), 20, 10)).all()


# --------------------------------------------------------------------------------------------
# The command line


def test_run_with_a_clip_model_predicts_the_labels_per_window(tiny, recording, tmp_path, cache_dir, capsys):
    config, _, weights = tiny
    path, ev = recording
    out = tmp_path / "p.jsonl"
    common = ["run", "--source", str(path), "--speed", "max", "--model", f"clip:{weights}"]
    args = [*common, "--clip-arch", str(config), "--labels", "dog,cat,car", "--window-events", "5000"]
    assert main([*args, "--predictions", str(out), "--summary-json", str(tmp_path / "s.json")]) == 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == 4 and all(len(p["prediction"]["top"]) == 3 for p in lines)
    assert {c["class"] for p in lines for c in p["prediction"]["top"]} == {"dog", "cat", "car"}
    assert all(
        sum(c["probability"] for c in p["prediction"]["top"]) == pytest.approx(1, abs=1e-5) for p in lines
    )
    # the same prediction as the classifier gives the window's events directly
    clip = load_clip(weights, arch=str(config))
    zs = ZeroShotClassifier(clip, ["dog", "cat", "car"])
    logits = zs.logits(ev[5000:10_000], 64, 48)
    p = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    best = lines[1]["prediction"]["top"][0]
    assert best["class"] == ["dog", "cat", "car"][int(np.argmax(p))]
    assert best["probability"] == pytest.approx(p.max(), abs=1e-5)
    assert lines[1]["prediction"]["flops"] == zs.flops(1)
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["model"] == "CLIP tiny_vit zero-shot (eventclip, 3 labels)"
    assert summary["windows"] == 4 and summary["flops_per_window"] == zs.flops(1)
    assert len(list((cache_dir / "clip-text").glob("*.npy"))) == 1
    # the default window is the preprocessing's: EZSR's 15,000 events
    assert main([*common, "--clip-arch", str(config), "--labels", "a,b", "--clip-preprocess", "ezsr", "-q",
                 "--predictions", str(out)]) == 0  # fmt: skip
    assert [json.loads(line)["events"] for line in out.read_text().splitlines()] == [15_000]
    # EventCLIP's 70,000 events never fill on this recording: said, not silent
    capsys.readouterr()
    assert main([*common, "--clip-arch", str(config), "--labels", "a,b"]) == 0
    assert "no window filled: windows of 70,000 events, the stream had 20,000" in capsys.readouterr().err


def test_run_explains_bad_clip_arguments(tiny, recording, capsys):
    config, _, weights = tiny
    path, _ = recording
    base = ["run", "--source", str(path), "--speed", "max", "-q"]
    cases = [
        (["--model", f"clip:{weights}", "--clip-arch", str(config)], "needs the class names: --labels"),
        (["--labels", "a,b"], "--labels go with a CLIP model"),
        (["--clip-arch", "ViT-B-32", "--prompt", "a {}"], "--prompt, --clip-arch go with a CLIP model"),
        (
            ["--no-model", "--model", f"clip:{weights}", "--labels", "a,b"],
            "--no-model and --model contradict",
        ),
        (
            ["--model", f"clip:{weights}", "--clip-arch", "nowhere.json", "--labels", "a,b"],
            "no such model config",
        ),
        (["--model", "clip:", "--labels", "a,b"], "needs the CLIP weights after the colon"),
        (
            ["--model", "clip:nowhere.pt", "--labels", "a,b"],
            "nowhere.pt: no such file. evstream downloads nothing",
        ),
        (["--model", f"clip:{weights}", "--labels", "a,b"], "say which open_clip architecture"),
        (
            ["--model", f"clip:{weights}", "--clip-arch", str(config), "--labels", "a,b", "--prompt", "x"],
            "exactly one",
        ),
    ]
    usage = {  # options that contradict each other or do not apply: exit 2; bad values: exit 1
        "needs the class names: --labels",
        "--labels go with a CLIP model",
        "--prompt, --clip-arch go with a CLIP model",
        "--no-model and --model contradict",
        "needs the CLIP weights after the colon",
    }
    for extra, message in cases:
        assert main([*base, *extra]) == (2 if message in usage else 1), extra
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, (extra, err)


def test_eval_with_a_clip_model_scores_the_datasets_classes(tiny, tmp_path, capsys):
    from test_train import fake_nmnist

    config, _, weights = tiny
    labels = fake_nmnist(tmp_path / "nmnist", per_class=2)
    args = ["eval", "--dataset", "nmnist", "--root", str(tmp_path / "nmnist"), "--list", str(labels)]
    clip_args = ["--model", f"clip:{weights}", "--clip-arch", str(config), "--batch-size", "7"]
    assert main([*args, *clip_args, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["samples"] == 20 and result["labels"][:2] == ["digit zero", "digit one"]
    assert result["frames"] == 20  # one EventCLIP chunk per short recording
    # the same as classifying each recording on its own
    from evstream.models.datasets import build_dataset

    dataset = build_dataset("nmnist", tmp_path / "nmnist", list_file=labels)
    zs = ZeroShotClassifier(load_clip(weights, arch=str(config)), dataset_labels(dataset))
    hits = [int(np.argmax(zs.logits(dataset.events(i), 34, 34))) == dataset.samples[i][1] for i in range(20)]
    assert result["top1"] == pytest.approx(sum(hits) / 20)
    assert result["flops_per_sample"] == zs.flops(1)
    # labels of the user's, checked against the dataset's class count
    assert main([*args, *clip_args, "--labels", "a,b,c"]) == 2
    assert "--labels gives 3 names, the dataset has 10 classes" in capsys.readouterr().err
