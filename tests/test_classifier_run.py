"""evstream run with a classifier: the asynchronous engine and the torch model give the same
predictions at every window step, FLOPs reach the status and summary, a checkpoint for another
sensor is refused before any computation, and the bundled N-MNIST classifier recognises the
bundled recording and real N-MNIST recordings it has never seen."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import SHARED_DATA
from evstream.kernels.events import make_events
from evstream.models.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from evstream.models.default import DEFAULT_CHECKPOINTS
from evstream.models.registry import build_model
from evstream.replay import read_events, write_events
from evstream.runtime.classifier import StreamClassifier
from evstream.runtime.cli import main
from evstream.runtime.windows import TimeWindows, TimeWindowSpec

DATA = Path(__file__).parent / "data"
SAMPLE = DATA / "nmnist_digit7.bs2"  # see tests/data/README.md
SAMPLE_DIGIT = "7"


def random_checkpoint(path: Path, sensor=(34, 34), seed=0) -> Path:
    torch.manual_seed(seed)
    model = build_model("nmnist_vgg").eval()
    with torch.no_grad():
        for norm in [*model.norms, model.tail_norm]:
            norm.running_var.uniform_(0.5, 2.0)
            norm.running_mean.uniform_(-0.2, 0.2)
    meta = {
        "model": "nmnist_vgg",
        "model_options": {"num_classes": 10},
        "classes": [str(i) for i in range(10)],
        "representation": {"name": "event_histogram", "params": {}},
        "input_size": [34, 34],
        "sensor_size": list(sensor),
        "stream_window": {"kind": "time", "us": 100_000, "stride_us": 5_000, "trailing": True},
    }
    save_checkpoint(path, model, meta)
    return path


def synthetic_recording(path: Path, width=34, height=34, n=3000, seed=1) -> Path:
    rng = np.random.default_rng(seed)
    t = np.sort(rng.integers(0, 300_000, n))
    cx = (width / 2 + width / 4 * np.sin(t / 40_000)).astype(int)
    x = np.clip(cx + rng.integers(-3, 4, n), 0, width - 1)
    y = np.clip(height // 2 + rng.integers(-6, 7, n), 0, height - 1)
    write_events(path, make_events(x, y, t, rng.integers(0, 2, n)), width, height, format="bin")
    return path


@pytest.mark.parametrize("sensor", [(34, 34), (40, 30)])
def test_async_and_dense_predict_the_same_at_every_step(tmp_path, sensor):
    """Same checkpoint, same windows: the engine (fed changed pixels, nearest-resized when the
    sensor differs from the input) equals the torch model recomputing every window."""
    ck = load_checkpoint(random_checkpoint(tmp_path / "m.pt", sensor))
    ev = read_events(synthetic_recording(tmp_path / "r.bin", *sensor))
    fast = StreamClassifier(ck, sensor)
    slow = StreamClassifier(ck, sensor, dense=True)
    assert fast.engine is not None and slow.engine is None
    windows = TimeWindows(TimeWindowSpec(60_000, 7_000, trailing=True))
    steps = [*windows.push(ev[:1000]), *windows.push(ev[1000:]), *windows.flush()]
    assert len(steps) > 30
    for step in steps:
        a, b = fast.step(step.enter, step.leave), slow.step(step.enter, step.leave)
        np.testing.assert_allclose(fast.logits, slow.logits, rtol=1e-4, atol=1e-4)
        assert a.top[0][0] == b.top[0][0]
        assert a.flops <= b.flops == slow.dense_flops
        assert a.changed_sites == b.changed_sites


def test_run_reports_predictions_and_flops(tmp_path, capsys):
    ck = random_checkpoint(tmp_path / "m.pt")
    rec = synthetic_recording(tmp_path / "r.bin")
    summary, windows = tmp_path / "s.json", tmp_path / "w.jsonl"
    args = ["run", "--source", str(rec), "--model", str(ck), "--speed", "max", "--summary-json", str(summary)]
    assert main([*args, "--predictions", str(windows)]) == 0
    out = capsys.readouterr().out
    assert "prediction:" in out and "kFLOP per event" in out
    s = json.loads(summary.read_text())
    assert s["model"].startswith("asynchronous") and s["flops_per_event"] > 0 and s["flops_per_window"] > 0
    assert s["prediction"]["top"][0]["class"] in {str(i) for i in range(10)}
    rows = [json.loads(line) for line in windows.read_text().splitlines()]
    assert len(rows) == s["windows"] > 1 and all("prediction" in r for r in rows)
    # the checkpoint's streaming window: 100 ms trailing windows every 5 ms
    assert rows[0]["t_end_us"] - rows[0]["t_start_us"] == 100_000
    assert rows[1]["t_start_us"] - rows[0]["t_start_us"] == 5_000
    assert main([*args, "--dense"]) == 0
    dense = json.loads(summary.read_text())
    assert dense["model"].startswith("dense") and dense["prediction"]["top"][0] == s["prediction"]["top"][0]
    assert dense["flops_per_window"] > s["flops_per_window"]


def test_a_checkpoint_for_another_sensor_is_refused_before_running(tmp_path, capsys):
    ck = random_checkpoint(tmp_path / "m.pt")
    davis = str(DATA / "davis346_aestream.aedat4")
    assert main(["run", "--source", davis, "--model", str(ck), "--speed", "max"]) != 0
    assert "34x34 sensor" in capsys.readouterr().err
    with pytest.raises(CheckpointError, match="346x260"):
        StreamClassifier(load_checkpoint(ck), (346, 260))


# --------------------------------------------------------------------------------------------
# The bundled classifier


def test_bundled_classifier_is_installed_small_and_described():
    path = DEFAULT_CHECKPOINTS["nmnist"]
    assert path.exists(), f"the package lacks its bundled classifier {path}"
    assert path.stat().st_size < 5 * 1024 * 1024
    ck = load_checkpoint(path)
    assert ck.meta["model"] == "nmnist_vgg" and ck.meta["classes"] == [str(i) for i in range(10)]
    assert ck.meta["sensor_size"] == [34, 34] and "train" in ck.meta["command"]


def test_run_recognises_the_bundled_recording(capsys, tmp_path):
    summary = tmp_path / "s.json"
    assert main(["run", "--source", str(SAMPLE), "--speed", "max", "--summary-json", str(summary)]) == 0
    assert capsys.readouterr().out.startswith(f"prediction: {SAMPLE_DIGIT} ")
    assert json.loads(summary.read_text())["prediction"]["top"][0]["class"] == SAMPLE_DIGIT


def test_run_without_a_fitting_model_says_so(capsys):
    code = main(["run", "--source", str(DATA / "davis346_aestream.aedat4"), "--speed", "max"])
    assert code == 0
    assert "running without a model" in capsys.readouterr().err


@pytest.mark.shared_data
def test_bundled_classifier_engine_equals_torch_on_unseen_real_recordings():
    """On the N-MNIST recordings held out from its training: the engine's predictions are the torch
    model's, and the accuracy is reported."""
    from evstream.models.async_engine import AsyncSparseVGG
    from evstream.models.datasets import nmnist

    root = SHARED_DATA / "nmnist_small"
    if not root.exists():
        pytest.skip("../shared/data absent")
    ck = load_checkpoint(DEFAULT_CHECKPOINTS["nmnist"])
    held_out = set(ck.meta["data"]["validation_files"])
    ds = nmnist(root, root / "train1K.txt")
    model = ck.build()
    engine = AsyncSparseVGG(model)
    correct = n = 0
    for i, (path, label) in enumerate(ds.samples):
        if path.name not in held_out:
            continue
        x, _ = ds[i]
        with torch.no_grad():
            want = int(model(x[None]).argmax())
        got = int(np.argmax(engine.batch(x.numpy())))
        assert got == want, path.name
        correct += int(got == label)
        n += 1
    assert n == len(held_out) >= 50
    assert correct / n >= 0.9, f"held-out top-1 {correct / n:.3f}"
