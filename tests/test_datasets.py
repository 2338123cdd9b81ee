"""Event datasets (models/datasets/): every layout built as a small fake dataset in tmp_path with
evstream's own writers, the augmentations' invariants, reproducible randomness, bad-input reports,
and the real N-MNIST recordings in ../shared/data/nmnist_small."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from conftest import random_events, shared_file
from evstream.kernels.events import EVENT_DTYPE, make_events
from evstream.kernels.representations import compute
from evstream.kernels.representations.geometry import rescale_events, resize_nearest_image
from evstream.models.datasets import (
    DATASETS,
    Augment,
    BadSampleWarning,
    EventDataset,
    build_dataset,
    flip_horizontal,
    flip_time,
    mini_nimagenet,
    ncaltech101,
    ncars,
    nimagenet,
    nimagenet_variant_folder,
    nmnist,
    shift_events,
)
from evstream.replay import EventFileError, write_events

NPZ_DTYPE = np.dtype([("x", "<u2"), ("y", "<u2"), ("t", "<i8"), ("p", "?")])


def _events(seed: int, n: int, width: int, height: int) -> np.ndarray:
    return random_events(np.random.default_rng(seed), n, width, height)


def _write(path, events, width, height, format) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_events(path, events, width, height, format=format)


def _nimagenet_npz(path, events) -> None:
    """An N-ImageNet file as the official loader reads it: ``np.load(path)['event_data']``, a
    structured array with fields x, y, t (microseconds), p."""
    rec = np.empty(len(events), NPZ_DTYPE)
    for field in "xyt":
        rec[field] = events[field]
    rec["p"] = events["p"] != 0
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, event_data=rec)


@pytest.fixture
def nmnist_list(tmp_path):
    """slayerPytorch's layout: <id>.bs2 files and a label list with a '#' header and CRLF lines."""
    root = tmp_path / "nmnist"
    root.mkdir()
    labels = [3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8]
    lines = ["#sample\t#class"]
    for k, label in enumerate(labels, 1):
        suffix = ".bin" if k == 7 else ".bs2"  # both N-MNIST extensions
        write_events(root / f"{k}{suffix}", _events(k, 50 + 10 * k, 34, 34), 34, 34, format="bin")
        lines.append(f"{k}\t{label}")
    (root / "labels.txt").write_text("\r\n".join(lines) + "\r\n")
    return root, labels


@pytest.fixture
def nimagenet_root(tmp_path):
    """N_Imagenet/: extracted_{train,val}/<wnid>/*.npz, a train list with the authors' absolute
    paths (rebased), and two robustness variants."""
    root = tmp_path / "N_Imagenet"
    wnids = ["n01443537", "n01440764", "n01484850"]  # not sorted on purpose
    train_lines = []
    for c, wnid in enumerate(wnids):
        for k in range(2):
            name = f"{wnid}_{k}.npz"
            _nimagenet_npz(root / "extracted_train" / wnid / name, _events(10 * c + k, 300, 640, 480))
            train_lines.append(f"/home/jhkim/Datasets/N_Imagenet/extracted_train/{wnid}/{name}")
        _nimagenet_npz(root / "extracted_val" / wnid / f"v_{c}.npz", _events(100 + c, 200, 640, 480))
        _nimagenet_npz(root / "extracted_val_mode_1" / wnid / f"m_{c}.npz", _events(200 + c, 90, 640, 480))
        _nimagenet_npz(
            root / "extracted_val_brightness_4" / wnid / f"b_{c}.npz", _events(300 + c, 80, 640, 480)
        )
    (root / "train_list.txt").write_text("\n".join(train_lines) + "\n")
    return root, sorted(wnids)


# --------------------------------------------------------------------------------------------
# Layouts


def test_nmnist_list_layout(nmnist_list):
    root, labels = nmnist_list
    ds = nmnist(root, "labels.txt")
    assert ds.classes == [str(d) for d in range(10)]
    assert ds.targets == labels and len(ds) == len(labels)
    assert ds.samples[6][0].name == "7.bin" and ds.samples[0][0].name == "1.bs2"
    assert ds.sensor_size == (34, 34) and ds.input_size == (34, 34) and ds.num_channels == 2
    for i in range(len(ds)):
        x, label = ds[i]
        assert isinstance(x, torch.Tensor) and x.dtype == torch.float32 and tuple(x.shape) == (2, 34, 34)
        assert label == labels[i]
        ev = ds.events(i)
        assert ev.dtype == EVENT_DTYPE and len(ev) == 50 + 10 * (i + 1)
        assert float(x.sum()) == len(ev)  # the histogram conserves events
    assert ds.metadata()["classes"] == ds.classes


def test_nmnist_release_layout(tmp_path):
    train = tmp_path / "Train"
    for digit in (0, 3, 7):
        for k in (2, 10, 1):
            _write(train / str(digit) / f"{k}.bin", _events(digit + k, 30, 34, 34), 34, 34, format="bin")
    ds = nmnist(train)
    assert ds.targets == [0] * 3 + [3] * 3 + [7] * 3
    assert [p.name for p, _ in ds.samples[:3]] == ["1.bin", "2.bin", "10.bin"]  # natural order
    with pytest.raises(FileNotFoundError, match="Train or Test"):
        nmnist(tmp_path)


def test_ncaltech101_follows_asynet(tmp_path):
    root = tmp_path / "Caltech101"
    names = ["accordion", "BACKGROUND_Google", "Faces_easy", "airplanes"]
    for c, name in enumerate(names):
        for k in range(2):
            ev = _events(c * 10 + k, 400, 240, 180)
            ev["x"][:3] = 239  # the right border of asynet's 240x180 grid
            _write(root / name / f"image_{k + 1:04d}.bin", ev, 240, 180, format="bin")
    ds = ncaltech101(root)
    assert ds.classes == ["BACKGROUND_Google", "Faces_easy", "accordion", "airplanes"]
    assert ds.targets == [0, 0, 1, 1, 2, 2, 3, 3]
    assert ds.sensor_size == (240, 180) and ds.input_size == (191, 255) and ds.max_events == 50_000
    x, _ = ds[0]
    hist = compute("event_histogram", ds.events(0), 240, 180)
    np.testing.assert_array_equal(x.numpy(), resize_nearest_image(hist, 191, 255))
    assert ncaltech101(root, exclude_background=True).classes == ["Faces_easy", "accordion", "airplanes"]
    small = ncaltech101(root, max_events=100)
    np.testing.assert_array_equal(
        small[0][0].numpy(),
        resize_nearest_image(compute("event_histogram", ds.events(0)[:100], 240, 180), 191, 255),
    )


def test_ncaltech101_names_other_file_types(tmp_path):
    (tmp_path / "ant").mkdir()
    np.save(tmp_path / "ant" / "a.npy", np.zeros((3, 4)))
    with pytest.raises(ValueError, match=r"no \.bin files.*1 '\.npy'"):
        ncaltech101(tmp_path)


def test_ncars(tmp_path):
    for c, name in enumerate(["cars", "background"]):
        for k in range(3):
            ev = _events(c * 10 + k, 200, 120, 100)
            _write(tmp_path / name / f"obj_{k:06d}_td.dat", ev, 120, 100, format="dat")
    # A file whose events reach past asynet's 120x100 crop: they are dropped by the reader.
    wide = make_events([5, 150, 119], [5, 10, 120], [1, 2, 3], [1, 1, 0])
    write_events(tmp_path / "cars" / "obj_000009_td.dat", wide, 304, 240, format="dat")
    ds = ncars(tmp_path)
    assert ds.classes == ["background", "cars"]
    assert ds.targets == [0, 0, 0, 1, 1, 1, 1]
    assert ds.input_size == (95, 127) and ds.max_events == 25_000
    x, label = ds[0]
    assert tuple(x.shape) == (2, 95, 127) and label == 0
    assert ds.events(6)[["x", "y"]].tolist() == [(5, 5)]
    with pytest.raises(FileNotFoundError, match="missing class folder"):
        ncars(tmp_path / "cars")


def test_nimagenet_list_rebased_and_rescaled(nimagenet_root):
    root, wnids = nimagenet_root
    ds = nimagenet(root, "train")
    assert ds.classes == wnids
    assert len(ds) == 6 and all(p.is_file() and root in p.parents for p, _ in ds.samples)
    assert ds.targets == [1, 1, 0, 0, 2, 2]  # list order, labels from the sorted wnids
    assert ds.sensor_size == (640, 480) and ds.input_size == (224, 224) and ds.max_events == 30_000
    x, _ = ds[0]
    want = compute("event_histogram", rescale_events(ds.events(0), 640, 480), 224, 224)
    np.testing.assert_array_equal(x.numpy(), want)
    assert float(x.sum()) == 300
    val = nimagenet(root, "val", classes=ds.classes)  # no val_list.txt: extracted_val/ is scanned
    assert val.targets == [0, 1, 2]
    (root / "few.txt").write_text(f"extracted_val/{wnids[2]}/v_2.npz\n")  # relative to root
    few = build_dataset("nimagenet", root, split="val", list_file="few.txt", classes=wnids)
    assert few.targets == [2] and few.samples[0][0] == root / "extracted_val" / wnids[2] / "v_2.npz"


def test_nimagenet_variants(nimagenet_root):
    root, wnids = nimagenet_root
    for variant in (1, "val_mode_1", "extracted_val_mode_1"):
        assert nimagenet_variant_folder(root, variant).name == "extracted_val_mode_1"
    for variant in (6, "val_brightness_4", "val_mode_brightness_4"):
        assert nimagenet_variant_folder(root, variant).name == "extracted_val_brightness_4"
    ds = nimagenet(root, "val", variant=6, classes=wnids)
    assert len(ds) == 3 and all(p.parent.parent.name == "extracted_val_brightness_4" for p, _ in ds.samples)
    with pytest.raises(FileNotFoundError, match="extracted_val_mode_5"):
        nimagenet(root, "val", variant=2)
    with pytest.raises(ValueError, match="1..9"):
        nimagenet_variant_folder(root, 10)
    with pytest.raises(ValueError, match="split='val'"):
        nimagenet(root, "train", variant=1)


def test_mini_nimagenet_keeps_first_100_sorted_classes(tmp_path):
    root = tmp_path / "N_Imagenet"
    wnids = [f"n{10_000_000 + 7 * k:08d}" for k in range(101)]
    for k, wnid in enumerate(wnids):
        _nimagenet_npz(root / "extracted_train" / wnid / "a.npz", _events(k, 5, 640, 480))
    full = nimagenet(root)
    mini = build_dataset("mini_nimagenet", root)
    assert len(full.classes) == 101 and mini.classes == sorted(wnids)[:100] and len(mini) == 100
    assert mini.name == "mini_nimagenet" and mini_nimagenet(root).classes == mini.classes


def test_nimagenet_npz_is_never_unpickled(tmp_path):
    root = tmp_path / "N_Imagenet"
    folder = root / "extracted_val" / "n01440764"
    folder.mkdir(parents=True)
    np.savez(folder / "evil.npz", event_data=np.array([{"x": 1}], dtype=object))  # a pickled member
    ds = nimagenet(root, "val")
    with pytest.raises(EventFileError, match="object arrays are refused"):
        ds.events(0)


def test_registry_and_build_dataset(nmnist_list):
    assert set(DATASETS) == {"nmnist", "ncaltech101", "ncars", "nimagenet", "mini_nimagenet"}
    root, labels = nmnist_list
    ds = build_dataset(
        "nmnist", root, list_file="labels.txt", representation="voxel_grid", params={"num_bins": 3}
    )
    x, _ = ds[0]
    assert x.shape[0] == ds.num_channels and tuple(x.shape[1:]) == (34, 34)
    with pytest.raises(ValueError, match="unknown dataset 'mnist'"):
        build_dataset("mnist", root)
    with pytest.raises(ValueError, match="unknown representation"):
        nmnist(root, "labels.txt", representation="histogram")
    with pytest.raises(ValueError, match="bad params"):
        nmnist(root, "labels.txt", params={"num_bins": 3})
    with pytest.raises(TypeError, match="fixes 'rescale_to'"):
        nmnist(root, "labels.txt", rescale_to=(10, 10))


# --------------------------------------------------------------------------------------------
# Augmentations


def test_flip_horizontal_mirrors_x():
    ev = _events(1, 500, 17, 11)
    out = flip_horizontal(ev, 17)
    assert out["x"].tolist() == (16 - ev["x"].astype(int)).tolist()
    for field in "ytp":
        np.testing.assert_array_equal(out[field], ev[field])
    np.testing.assert_array_equal(flip_horizontal(out, 17), ev)  # an involution
    assert not np.shares_memory(out, ev)
    with pytest.raises(ValueError, match="outside"):
        flip_horizontal(ev, 10)


def test_shift_moves_and_drops():
    ev = _events(2, 1000, 20, 10)
    for dx, dy in [(0, 0), (3, -2), (-19, 9), (25, 0)]:
        out = shift_events(ev, dx, dy, 20, 10)
        x, y = ev["x"].astype(int) + dx, ev["y"].astype(int) + dy
        keep = (x >= 0) & (x < 20) & (y >= 0) & (y < 10)
        assert len(out) == int(keep.sum())  # exactly the events shifted out are dropped
        np.testing.assert_array_equal(out["x"], x[keep])
        np.testing.assert_array_equal(out["y"], y[keep])
        np.testing.assert_array_equal(out["t"], ev["t"][keep])  # order and time kept
        np.testing.assert_array_equal(out["p"], ev["p"][keep])
    assert len(shift_events(ev, 25, 0, 20, 10)) == 0


def test_time_flip_reverses_time_and_polarity():
    ev = _events(3, 300, 8, 8)
    ev["t"] += 1000
    out = flip_time(ev)
    assert len(out) == len(ev)
    np.testing.assert_array_equal(out["x"], ev["x"][::-1])
    np.testing.assert_array_equal(out["t"], ev["t"][0] + ev["t"][-1] - ev["t"][::-1])
    np.testing.assert_array_equal(out["p"], 1 - ev["p"][::-1])
    assert np.all(np.diff(out["t"]) >= 0) and out["t"][0] == ev["t"][0] and out["t"][-1] == ev["t"][-1]
    np.testing.assert_array_equal(flip_time(out), ev)  # an involution
    assert len(flip_time(ev[:0])) == 0


def test_augment_applies_what_it_draws():
    ev = _events(4, 400, 30, 20)
    rng = np.random.default_rng
    np.testing.assert_array_equal(Augment(1.0, 0.0, 0)(ev, 30, 20, rng(0)), flip_time(ev))
    np.testing.assert_array_equal(Augment(0.0, 1.0, 0)(ev, 30, 20, rng(0)), flip_horizontal(ev, 30))
    same = Augment(0.0, 0.0, 0)(ev, 30, 20, rng(0))
    np.testing.assert_array_equal(same, ev)
    assert not np.shares_memory(same, ev)
    # The documented draw order: u_time, u_flip, then (dx, dy).
    aug = Augment(0.5, 0.5, 5)
    r = rng(7)
    u_time, u_flip = r.random(), r.random()
    dx, dy = r.integers(-5, 6, size=2)
    want = flip_time(ev) if u_time < 0.5 else ev
    want = flip_horizontal(want, 30) if u_flip < 0.5 else want
    np.testing.assert_array_equal(aug(ev, 30, 20, rng(7)), shift_events(want, dx, dy, 30, 20))


def test_augment_frequencies_and_shift_range():
    aug = Augment(time_flip=0.3, horizontal_flip=0.7, max_shift=2)
    ev = make_events([5], [20], [0], [1])  # on 41x41: mirrored x is 35, so nothing is shifted out
    n, time_flips, mirrors, shifts = 2000, 0, 0, set()
    for seed in range(n):
        out = aug(ev, 41, 41, np.random.default_rng(seed))
        assert len(out) == 1
        mirrored = int(out["x"][0]) > 20
        time_flips += int(out["p"][0] == 0)
        mirrors += mirrored
        shifts.add((int(out["x"][0]) - (35 if mirrored else 5), int(out["y"][0]) - 20))
    assert abs(time_flips / n - 0.3) < 0.05 and abs(mirrors / n - 0.7) < 0.05
    assert shifts == {(dx, dy) for dx in range(-2, 3) for dy in range(-2, 3)}  # both ends included


@pytest.mark.parametrize(
    "kwargs", [{"time_flip": 1.5}, {"horizontal_flip": -0.1}, {"max_shift": -1}, {"max_shift": 2.5}]
)
def test_augment_rejects_bad_parameters(kwargs):
    with pytest.raises(ValueError, match="Augment"):
        Augment(**kwargs)


# --------------------------------------------------------------------------------------------
# Randomness


def test_evaluation_is_deterministic(nmnist_list):
    root, _ = nmnist_list
    ds = nmnist(root, "labels.txt", max_events=40)
    first = [ds[i][0] for i in range(len(ds))]
    ds.set_epoch(5)
    for i in range(len(ds)):
        assert torch.equal(ds[i][0], first[i])
        assert float(first[i].sum()) == 40  # the first 40 events, every time
    np.testing.assert_array_equal(first[2].numpy(), compute("event_histogram", ds.events(2)[:40], 34, 34))


def test_augmentation_reproducible_per_seed_epoch_index(nmnist_list):
    root, _ = nmnist_list
    aug = Augment(max_shift=4)
    a = nmnist(root, "labels.txt", augment=aug, seed=3, max_events=60)
    b = nmnist(root, "labels.txt", augment=aug, seed=3, max_events=60)
    c = nmnist(root, "labels.txt", augment=aug, seed=4, max_events=60)
    n = len(a)
    a.set_epoch(2)
    b.set_epoch(2)
    epoch2 = [a[i][0] for i in range(n)]
    for i in reversed(range(n)):  # any access order gives the same sample
        assert torch.equal(b[i][0], epoch2[i])
        assert torch.equal(a[i][0], epoch2[i])
    a.set_epoch(3)
    assert any(not torch.equal(a[i][0], epoch2[i]) for i in range(n))
    c.set_epoch(2)
    assert any(not torch.equal(c[i][0], epoch2[i]) for i in range(n))
    # The same draw as item_rng(i, epoch) explains every sample.
    i = 4
    want = a.transform(a.events(i), a.item_rng(i, epoch=2))
    np.testing.assert_array_equal(epoch2[i].numpy(), want)


def test_set_epoch_reaches_persistent_workers(nmnist_list):
    root, _ = nmnist_list
    ds = nmnist(root, "labels.txt", augment=Augment(max_shift=3), seed=1)
    loader = torch.utils.data.DataLoader(ds, batch_size=4, num_workers=2, persistent_workers=True)
    for epoch in (0, 1):
        ds.set_epoch(epoch)
        got = torch.cat([x for x, _ in loader])
        want = torch.stack(
            [torch.from_numpy(ds.transform(ds.events(i), ds.item_rng(i, epoch))) for i in range(len(ds))]
        )
        assert torch.equal(got, want)


# --------------------------------------------------------------------------------------------
# Bad input


def test_missing_files_are_listed(nmnist_list):
    root, labels = nmnist_list
    for k in (2, 5):
        os.remove(root / f"{k}.bs2")
    with pytest.raises(
        FileNotFoundError, match=r"2 of 12 files are missing: .*2\.bs2, .*5\.bs2 \(skip them with --skip-bad"
    ):
        nmnist(root, "labels.txt")
    with pytest.warns(BadSampleWarning, match="2 of 12 files are missing"):
        ds = nmnist(root, "labels.txt", skip_bad=True)
    assert len(ds) == 10 and ds.targets == [labels[i] for i in range(12) if i not in (1, 4)]


def test_many_missing_files_are_counted(tmp_path):
    (tmp_path / "labels.txt").write_text("#sample #class\n" + "".join(f"{k} {k % 10}\n" for k in range(25)))
    with pytest.raises(FileNotFoundError, match=r"25 of 25 files are missing: .* and 15 more"):
        nmnist(tmp_path, "labels.txt")


def test_unreadable_file_is_named_or_skipped(nimagenet_root):
    root, wnids = nimagenet_root
    bad = root / "extracted_train" / wnids[1] / f"{wnids[1]}_0.npz"  # sample 0 in list order
    bad.write_bytes(b"PK\x03\x04 this is not a zip archive")
    ds = nimagenet(root)
    with pytest.raises(EventFileError, match=rf"{wnids[1]}_0\.npz: sample 0 of dataset 'nimagenet'"):
        ds[0]
    skipping = nimagenet(root, skip_bad=True)
    with pytest.warns(BadSampleWarning, match="skipping unreadable sample 0"):
        x, label = skipping[0]
    assert label == skipping.targets[1]
    assert torch.equal(x, skipping[1][0])  # the next readable sample took its place
    found = ds.check(progress=False, workers=2)
    assert [(b.index, b.path) for b in found] == [(0, bad)] and "not a readable" in found[0].reason
    assert len(ds) == 5 and bad not in [p for p, _ in ds.samples]
    assert ds.check(progress=False) == []


def test_unopenable_file_is_reported(nmnist_list):
    root, _ = nmnist_list
    os.remove(root / "3.bs2")
    (root / "3.bs2").mkdir()  # exists, but is not a recording
    ds = nmnist(root, "labels.txt")
    with pytest.raises(IsADirectoryError):
        ds[2]
    [found] = ds.check(progress=False, drop=False)
    assert found.index == 2 and len(ds) == 12


@pytest.mark.parametrize(
    "line, message",
    [
        ("13 1 extra", r"line 3: expected '<sample id> <class>', got '13 1 extra'"),
        ("13", r"line 3: expected"),
        ("13 12", r"line 3: unknown class '12'"),
        ("1 4", r"line 3: sample '1' is already listed on line 2"),
    ],
)
def test_malformed_label_list(nmnist_list, line, message):
    root, _ = nmnist_list
    (root / "bad.txt").write_text(f"#sample #class\n1 3\n{line}\n")
    with pytest.raises(ValueError, match=message):
        nmnist(root, "bad.txt")


def test_malformed_nimagenet_list(nimagenet_root):
    root, wnids = nimagenet_root
    good = f"extracted_train/{wnids[0]}/{wnids[0]}_0.npz"
    (root / "train_list.txt").write_text(f"{good}\n\nextracted_train/cats/a.npz\n")
    with pytest.raises(ValueError, match=r"train_list.txt, line 3: .*WordNet id.*'cats'"):
        nimagenet(root)
    (root / "train_list.txt").write_text(f"{good}\nextracted_train/n09999999/a.npz\n")
    with pytest.raises(ValueError, match=r"line 2: class 'n09999999' is not in the given classes"):
        nimagenet(root, classes=wnids)


def test_dataset_arguments_are_checked(nmnist_list):
    root, _ = nmnist_list
    samples = [(root / "1.bs2", 0)]
    with pytest.raises(ValueError, match="label 10 is not a class index"):
        EventDataset([(root / "1.bs2", 10)], [str(d) for d in range(10)], (34, 34))
    with pytest.raises(ValueError, match="seed"):
        EventDataset(samples, ["a"], (34, 34), seed=-1)
    with pytest.raises(ValueError, match="max_events"):
        EventDataset(samples, ["a"], (34, 34), max_events=0)
    with pytest.raises(TypeError, match="Augment"):
        EventDataset(samples, ["a"], (34, 34), augment={"time_flip": 0.5})
    with pytest.raises(ValueError, match="backend"):
        EventDataset(samples, ["a"], (34, 34), backend="cuda")
    ds = EventDataset(samples, ["a"], (34, 34))
    with pytest.raises(IndexError):
        ds[1]
    with pytest.raises(ValueError, match="epoch"):
        ds.set_epoch(-1)


# --------------------------------------------------------------------------------------------
# Real data


@pytest.mark.shared_data
def test_real_nmnist_small():
    labels = shared_file("nmnist_small/train1K.txt")
    ds = nmnist(labels.parent, labels.name)
    assert len(ds) == 1000 and ds.classes == [str(d) for d in range(10)]
    assert set(ds.targets) == set(range(10))
    assert ds.check(progress=False) == []
    for i in range(len(ds)):
        x, label = ds[i]
        assert label == ds.targets[i] and tuple(x.shape) == (2, 34, 34)
        assert float(x.sum()) == len(ds.events(i))  # every event lands in the histogram


@pytest.mark.shared_data
def test_real_nmnist_augmented_conserves_or_drops():
    labels = shared_file("nmnist_small/train1K.txt")
    ds = nmnist(labels.parent, labels.name, augment=Augment(max_shift=0), seed=9)
    for i in range(0, 1000, 50):
        x, _ = ds[i]
        assert float(x.sum()) == len(ds.events(i))  # flips alone never lose an event
    ds = nmnist(labels.parent, labels.name, augment=Augment(max_shift=8), seed=9)
    assert all(float(ds[i][0].sum()) <= len(ds.events(i)) for i in range(0, 1000, 50))
