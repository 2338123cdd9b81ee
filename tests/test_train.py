"""Training and evaluation: checkpoints carry their metadata and load safely, training is
reproducible and resumes exactly, evaluation is deterministic, the same command runs under
torchrun with 2 CPU processes (gloo), and bad input gets clear errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from evstream.kernels.events import make_events
from evstream.models.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from evstream.models.registry import MODELS, build_model
from evstream.models.train import TrainConfig, split_indices, train
from evstream.replay import write_events
from evstream.runtime.cli import main


def fake_nmnist(root: Path, per_class: int = 12, classes: int = 10, seed: int = 0) -> Path:
    """An N-MNIST-layout folder of 34x34 recordings whose class is the position of a blob
    (learnable in a few epochs), plus its label list; returns the list's path."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    lines = ["#sample #class"]
    i = 0
    for c in range(classes):
        cy, cx = 6 + 22 * (c // 5) // 1, 4 + 6 * (c % 5)
        for _ in range(per_class):
            i += 1
            n = int(rng.integers(300, 600))
            x = np.clip(cx + rng.integers(-2, 3, n), 0, 33)
            y = np.clip(cy + rng.integers(-3, 4, n), 0, 33)
            t = np.sort(rng.integers(0, 300_000, n))
            write_events(root / f"{i}.bin", make_events(x, y, t, rng.integers(0, 2, n)), 34, 34, format="bin")
            lines.append(f"{i} {c}")
    (root / "labels.txt").write_text("\n".join(lines) + "\n")
    return root / "labels.txt"


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("nmnist")
    return root, fake_nmnist(root)


def config(root, labels, out, **kw) -> TrainConfig:
    base = dict(dataset="nmnist", root=str(root), list_file=str(labels), out=str(out), epochs=3)
    return TrainConfig(**{**base, "batch_size": 16, **kw, "command": ["test"]})


# --------------------------------------------------------------------------------------------
# Checkpoints


def test_checkpoint_round_trip_and_checks(tmp_path):
    model = build_model("nmnist_vgg").eval()
    meta = {
        "model": "nmnist_vgg",
        "model_options": {"num_classes": 10},
        "classes": [str(i) for i in range(10)],
        "representation": {"name": "event_histogram", "params": {}},
        "input_size": [34, 34],
        "sensor_size": [34, 34],
    }
    save_checkpoint(tmp_path / "m.pt", model, meta)
    ck = load_checkpoint(tmp_path / "m.pt")
    assert ck.meta["classes"] == meta["classes"] and ck.meta["evstream_version"]
    x = torch.rand(1, 2, 34, 34) * (torch.rand(1, 1, 34, 34) < 0.2)
    torch.testing.assert_close(ck.build()(x), model(x))
    ck.check(model="nmnist_vgg", representation="event_histogram", sensor_size=(34, 34), input_size=(34, 34))
    for kw, words in [
        ({"model": "ncars_vgg12"}, "model"),
        ({"representation": "dist"}, "representation"),
        ({"sensor_size": (346, 260)}, "sensor size"),
    ]:
        with pytest.raises(CheckpointError, match=words):
            ck.check(**kw)


class Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_checkpoints_never_unpickle_code(tmp_path):
    evil = {"format": "evstream-checkpoint", "version": 1, "meta": "{}", "model": Evil()}
    torch.save(evil, tmp_path / "evil.pt")
    with pytest.raises(
        CheckpointError, match=r"holds Python objects \(\w+\.system\) .* does not unpickle"
    ) as exc:
        load_checkpoint(tmp_path / "evil.pt")
    assert "weights_only" not in str(exc.value)  # not torch's advice to load it unsafely
    torch.save({"weights": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not an evstream checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    (tmp_path / "garbage.pt").write_bytes(b"\x00" * 100)
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "garbage.pt")
    with pytest.raises(CheckpointError, match="no such"):
        load_checkpoint(tmp_path / "missing.pt")


def test_registry_models_take_their_documented_inputs():
    for name, spec in MODELS.items():
        model = build_model(name, num_classes=7).eval()
        with torch.no_grad():
            out = model(torch.zeros(1, *spec.input_shape))
        assert out.shape == (1, 7), name
    with pytest.raises(ValueError, match="unknown model"):
        build_model("vgg_nonexistent")


# --------------------------------------------------------------------------------------------
# Training


def test_split_is_seeded_per_class_and_disjoint():
    labels = [i % 4 for i in range(40)]
    tr, val = split_indices(labels, 0.3, seed=3)
    assert not set(tr) & set(val) and len(tr) + len(val) == 40
    assert sorted(labels[i] for i in val) == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
    assert split_indices(labels, 0.3, seed=3) == (tr, val)
    assert split_indices(labels, 0.3, seed=4) != (tr, val)


def test_training_learns_checkpoints_and_resumes_exactly(dataset_dir, tmp_path):
    root, labels = dataset_dir
    full = train(config(root, labels, tmp_path / "full.pt"), progress=False, log=lambda *a: None)
    assert full["epoch"] == 3 and full["val_samples"] > 0
    ck = load_checkpoint(tmp_path / "full.pt")
    assert ck.meta["model"] == "nmnist_vgg" and ck.meta["classes"] == [str(i) for i in range(10)]
    assert ck.meta["sensor_size"] == [34, 34] and ck.meta["input_size"] == [34, 34]
    assert ck.meta["command"] == ["test"] and ck.meta["epoch"] == 3 and ck.optimizer_state
    assert (tmp_path / "full.pt.best").exists()
    # a run interrupted after two epochs, resumed: the same weights as the uninterrupted run

    def interrupt(line):
        if line.startswith("epoch 2/3"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(config(root, labels, tmp_path / "part.pt"), progress=False, log=interrupt)
    assert load_checkpoint(tmp_path / "part.pt").meta["epoch"] == 2
    with pytest.raises(ValueError, match="--epochs 3"):
        bad = config(root, labels, tmp_path / "x.pt", epochs=5, resume=str(tmp_path / "part.pt"))
        train(bad, progress=False)
    cfg = config(root, labels, tmp_path / "part.pt", resume=str(tmp_path / "part.pt"))
    train(cfg, progress=False, log=lambda *a: None)
    resumed = load_checkpoint(tmp_path / "part.pt")
    assert resumed.meta["epoch"] == 3
    for k, v in ck.model_state.items():
        torch.testing.assert_close(resumed.model_state[k], v, rtol=1e-5, atol=1e-6, msg=k)


def test_eval_cli_prints_top1_top5_and_is_deterministic(dataset_dir, tmp_path, capsys):
    root, labels = dataset_dir
    cfg = config(root, labels, tmp_path / "m.pt", epochs=6, val_fraction=0.0)
    train(cfg, progress=False, log=lambda *a: None)
    args = ["eval", "--dataset", "nmnist", "--root", str(root), "--list", str(labels)]
    assert main([*args, "--model", str(tmp_path / "m.pt"), "--json"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["samples"] == 120 and 0 <= first["top1"] <= first["top5"] <= 1
    assert set(first["per_class"]) == {str(i) for i in range(10)}
    assert first["top1"] > 0.5  # the blobs are easy
    assert main([*args, "--model", str(tmp_path / "m.pt"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == first
    assert main([*args, "--model", str(tmp_path / "m.pt")]) == 0
    assert "top-1" in capsys.readouterr().out


def test_eval_refuses_a_checkpoint_for_another_model(dataset_dir, tmp_path, capsys):
    root, labels = dataset_dir
    model = build_model("ncars_vgg12").eval()
    meta = {
        "model": "ncars_vgg12",
        "model_options": {"num_classes": 2},
        "classes": ["background", "cars"],
        "representation": {"name": "event_histogram", "params": {}},
        "input_size": [95, 127],
        "sensor_size": [120, 100],
    }
    save_checkpoint(tmp_path / "cars.pt", model, meta)
    code = main(["eval", "--dataset", "nmnist", "--root", str(root), "--list", str(labels), "--model",
                 str(tmp_path / "cars.pt")])  # fmt: skip
    assert code != 0
    assert "input size" in capsys.readouterr().err


def test_missing_recordings_are_named_and_can_be_skipped(tmp_path, capsys):
    root = tmp_path / "broken"
    labels = fake_nmnist(root, per_class=3)
    (root / "4.bin").unlink()
    (root / "7.bin").write_bytes(b"\x01\x02")  # truncated: not a whole 5-byte event
    base = ["train", "--dataset", "nmnist", "--root", str(root), "--list", str(labels), "--epochs", "1", "-q"]
    assert main([*base, "--out", str(tmp_path / "a.pt")]) != 0
    assert "broken/4.b" in capsys.readouterr().err
    with pytest.warns(UserWarning, match=r"4\.b"):
        assert main([*base, "--out", str(tmp_path / "b.pt"), "--skip-bad"]) == 0


def test_training_runs_under_torchrun_with_two_cpu_processes(dataset_dir, tmp_path):
    """The same command under torchrun: DistributedDataParallel on 2 processes, gloo backend."""
    root, labels = dataset_dir
    out = tmp_path / "ddp.pt"
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "evstream.runtime.cli", "train", "--dataset", "nmnist", "--root", str(root),
        "--list", str(labels), "--out", str(out), "--epochs", "2", "--batch-size", "8", "-q",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-4000:]
    ck = load_checkpoint(out)
    assert ck.meta["world_size"] == 2 and ck.meta["epoch"] == 2
