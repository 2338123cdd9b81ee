"""The asynchronous engine equals the torch sparse VGG after any sequence of updates (additions,
changes, deletions), on random streams and on windows sliding over real recordings; its FLOP
counts follow the paper's conventions; bad arguments raise ValueError."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import shared_file
from evstream.models.async_engine import AsyncSparseVGG
from evstream.models.flops import batch_dense_flops, batch_sparse_flops, total
from evstream.models.sparse_vgg import ARCHITECTURES, Architecture, Conv, MaxPool, SparseVGG, sparse_max_pool
from evstream.replay import read_events

TESTS_DATA = Path(__file__).parent / "data"

RTOL = 1e-4

#: Small architectures covering both poolings and both heads, odd sizes (border handling).
SMALL = {
    "flatten": Architecture(
        "small_flatten", 17, 23, (Conv(8), Conv(8), MaxPool(3, 2), Conv(16), MaxPool(2, 2), Conv(16)), 12, 5
    ),
    "avgpool": Architecture(
        "small_avgpool", 20, 16, (Conv(8), MaxPool(2, 2), Conv(12), MaxPool(3, 2), Conv(8)), 10, 3, "avgpool"
    ),
}


def random_model(arch, seed=0) -> SparseVGG:
    """A model with random weights and non-trivial batch-norm statistics (so folding matters)."""
    torch.manual_seed(seed)
    model = SparseVGG(arch)
    with torch.no_grad():
        for norm in [*model.norms, model.tail_norm]:
            norm.running_mean.uniform_(-0.3, 0.3)
            norm.running_var.uniform_(0.5, 2.0)
            norm.weight.uniform_(0.5, 1.5)
            norm.bias.uniform_(-0.2, 0.2)
        model.fc.bias.uniform_(-0.5, 0.5)
    return model.eval()


def assert_matches_torch(engine: AsyncSparseVGG, model: SparseVGG, x: np.ndarray, where="") -> None:
    """Every layer (values and activity) and the prediction equal the torch model on input x."""
    with torch.no_grad():
        ref = model.layer_outputs(torch.from_numpy(x)[None])
    got = engine.layer_outputs()
    assert len(got) == len(ref)
    for i, ((rv, rm), (gv, ga)) in enumerate(zip(ref, got, strict=True)):
        rv = rv[0].numpy()
        assert gv.shape == rv.shape, f"{where} layer {i}"
        np.testing.assert_array_equal(ga, rm[0, 0].numpy() > 0, err_msg=f"{where} layer {i} activity")
        scale = max(float(np.abs(rv).max()), 1e-3)
        err = float(np.abs(gv - rv).max()) / scale
        assert err <= RTOL, f"{where} layer {i}: relative error {err:.2e}"
    assert int(np.argmax(got[-1][0])) == int(np.argmax(ref[-1][0].numpy())), where


def sites_values(x: np.ndarray, ys, xs):
    """The (row, column) sites given and their current values in x (C, H, W)."""
    sites = np.stack([np.asarray(ys), np.asarray(xs)], 1).astype(np.int64)
    return sites, np.ascontiguousarray(x[:, sites[:, 0], sites[:, 1]].T, dtype=np.float32)


# --------------------------------------------------------------------------------------------
# Exactness


@pytest.mark.parametrize("name", list(SMALL))
def test_async_equals_torch_after_random_additions_and_deletions(name):
    arch = SMALL[name]
    model = random_model(arch, seed=1)
    engine = AsyncSparseVGG(model)
    rng = np.random.default_rng(2)
    x = np.zeros((2, arch.height, arch.width), np.float32)
    for step in range(150):
        k = int(rng.integers(1, 8))
        ys, xs = rng.integers(0, arch.height, k), rng.integers(0, arch.width, k)
        values = rng.integers(0, 4, (k, 2)).astype(np.float32)
        if rng.random() < 0.35:  # deletions
            values[:] = 0
        sites = np.stack([ys, xs], 1)
        for (yy, xx), v in zip(sites, values, strict=True):  # a repeated site keeps its last value
            x[:, yy, xx] = v
        engine.update(sites, values)
        assert_matches_torch(engine, model, x, f"step {step}")
    # and back to empty: deleting every site gives the empty-input state
    ys, xs = np.nonzero(x.any(0))
    x[:] = 0
    engine.update(*sites_values(x, ys, xs))
    assert_matches_torch(engine, model, x, "emptied")
    empty = AsyncSparseVGG(model)
    np.testing.assert_allclose(engine.logits(), empty.logits(), rtol=0, atol=1e-5)


def test_long_sequences_do_not_drift():
    """Thousands of small updates at the same sites: differences do not accumulate error."""
    arch = SMALL["flatten"]
    model = random_model(arch, seed=3)
    engine = AsyncSparseVGG(model)
    rng = np.random.default_rng(4)
    x = np.zeros((2, arch.height, arch.width), np.float32)
    hot = np.stack([rng.integers(4, 12, 6), rng.integers(4, 16, 6)], 1)
    for _ in range(3000):
        i = rng.integers(0, len(hot))
        y, xx = hot[i]
        x[int(rng.integers(0, 2)), y, xx] += float(rng.choice([-1.0, 1.0]) if x[:, y, xx].sum() else 1.0)
        x[:, y, xx] = np.maximum(x[:, y, xx], 0)
        engine.update(*sites_values(x, [y], [xx]))
    assert_matches_torch(engine, model, x, "after 3000 updates")


@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_batch_equals_torch_for_every_architecture(name):
    arch = ARCHITECTURES[name]
    model = random_model(arch, seed=5)
    engine = AsyncSparseVGG(model)
    rng = np.random.default_rng(6)
    x = (rng.random((2, arch.height, arch.width)) < 0.1) * rng.integers(1, 5, (2, arch.height, arch.width))
    x = x.astype(np.float32)
    engine.batch(x)
    assert_matches_torch(engine, model, x, name)


def test_edge_cases_empty_single_event_borders_and_full_input():
    arch = SMALL["flatten"]
    model = random_model(arch, seed=7)
    engine = AsyncSparseVGG(model)
    h, w = arch.height, arch.width
    x = np.zeros((2, h, w), np.float32)
    assert_matches_torch(engine, model, x, "empty (new engine)")
    engine.batch(x)
    assert_matches_torch(engine, model, x, "empty (batch)")
    engine.update(np.zeros((0, 2), np.int64), np.zeros((0, 2), np.float32))
    assert_matches_torch(engine, model, x, "empty update")
    x[0, 5, 7] = 1
    engine.update(*sites_values(x, [5], [7]))
    assert_matches_torch(engine, model, x, "single event")
    corners = ([0, 0, h - 1, h - 1, 0, h // 2], [0, w - 1, 0, w - 1, w // 2, 0])
    x[1, corners[0], corners[1]] = 2
    engine.update(*sites_values(x, *corners))
    assert_matches_torch(engine, model, x, "border sites")
    x[:] = 1
    ys, xs = np.nonzero(np.ones((h, w)))
    engine.update(*sites_values(x, ys, xs))
    assert_matches_torch(engine, model, x, "fully active")
    engine.reset()
    assert_matches_torch(engine, model, np.zeros_like(x), "reset")


def test_a_site_changing_without_changing_nothing_costs_nothing():
    arch = SMALL["flatten"]
    engine = AsyncSparseVGG(random_model(arch))
    values = np.array([[1.0, 2.0]], np.float32)
    engine.update(np.array([[3, 3]]), values)
    assert engine.last_cost().async_sparse > 0
    engine.update(np.array([[3, 3]]), values)  # same value again
    cost = engine.last_cost()
    assert cost.async_sparse == 0 and cost.async_dense == 0 and cost.changed_sites == 0


# --------------------------------------------------------------------------------------------
# Sliding windows over real recordings


def sliding_window_check(path, arch, window, steps, seed):
    """Events mapped onto the model's input; a count window of `window` events slides by each
    step size in `steps`; the engine is updated with the changed sites and compared with torch."""
    ev = read_events(path)
    width, height = int(ev["x"].max()) + 1, int(ev["y"].max()) + 1
    ys = (ev["y"].astype(np.int64) * arch.height) // height
    xs = (ev["x"].astype(np.int64) * arch.width) // width
    ch = 1 - ev["p"].astype(np.int64)  # channel 0 = ON
    model = random_model(arch, seed=seed)
    engine = AsyncSparseVGG(model)
    x = np.zeros((2, arch.height, arch.width), np.float32)
    np.add.at(x, (ch[:window], ys[:window], xs[:window]), 1)
    engine.batch(x)
    assert_matches_torch(engine, model, x, "first window")
    start, checked = 0, 0
    for step in steps:
        if start + window + step > len(ev):
            break
        enter = slice(start + window, start + window + step)
        leave = slice(start, start + step)
        np.add.at(x, (ch[enter], ys[enter], xs[enter]), 1)
        np.add.at(x, (ch[leave], ys[leave], xs[leave]), -1)
        flat = ys * arch.width + xs
        changed = np.unique(np.concatenate([flat[enter], flat[leave]]))
        engine.update(*sites_values(x, changed // arch.width, changed % arch.width))
        assert_matches_torch(engine, model, x, f"window at event {start + step}")
        start += step
        checked += 1
    return checked


def test_sliding_windows_over_a_shipped_recording():
    """The MIT-licensed DAVIS346 recording shipped in tests/data, on the N-Cars VGG-12."""
    steps = [1, 1, 2, 5, 10, 50, 100, 1, 500, 3, 1000, 7, 2000, 1] * 2
    path = TESTS_DATA / "davis346_aestream.aedat4"
    assert sliding_window_check(path, ARCHITECTURES["ncars_vgg12"], 5000, steps, 8) == len(steps)


@pytest.mark.shared_data
def test_sliding_windows_over_real_nmnist():
    path = shared_file("bin/tonic_sample_nmnist.bin")
    steps = [1, 2, 3, 10, 1, 25, 100, 1, 5, 50] * 3
    assert sliding_window_check(path, ARCHITECTURES["nmnist_vgg"], 1500, steps, 9) == len(steps)


@pytest.mark.shared_data
def test_sliding_windows_over_a_real_prophesee_recording():
    path = shared_file("raw_evt3/expelliarmus_evt3_sample.raw")
    steps = [1, 10, 100, 1000, 1, 3000, 1]
    arch = SMALL["flatten"]
    arch = Architecture("prophesee_small", 72, 128, arch.features, 12, 5)
    assert sliding_window_check(path, arch, 20000, steps, 10) == len(steps)


# --------------------------------------------------------------------------------------------
# FLOPs


def test_dense_flops_match_the_paper():
    """Regression: the paper's formulas give 1621.2 MFLOP (N-Caltech101 VGG-13, 191x255) and
    321.2 MFLOP (N-Cars VGG-12, 95x127)."""
    assert round(total(batch_dense_flops(ARCHITECTURES["ncaltech101_vgg13"])) / 1e6, 1) == 1621.2
    assert round(total(batch_dense_flops(ARCHITECTURES["ncars_vgg12"])) / 1e6, 1) == 321.2


def test_flop_modes_on_one_changed_site():
    """One changed interior site: the first convolution's dense cone is its 3x3 neighbourhood, the
    sparse update touches only the active neighbours."""
    arch = SMALL["flatten"]
    engine = AsyncSparseVGG(random_model(arch))
    x = np.zeros((2, arch.height, arch.width), np.float32)
    x[0, 8, 8:11] = 1  # three active sites in a row
    engine.batch(x)
    x[0, 8, 9] = 2
    engine.update(*sites_values(x, [8], [9]))
    first = engine.last_cost().per_layer[0]
    c_in, c_out = 2, 8
    assert first["cone_out"] == 9
    assert first["dense_flops"] == 9 * ((2 * 9 * c_in - 1) * c_out + c_out)
    assert first["rules"] == 3  # the three active outputs whose window holds the site
    # the difference (1, 0) has one non-zero channel, but its list (padded to 4) is no shorter than
    # the 2-channel row: multiplied in full
    assert first["flops"] == first["full_flops"] == 3 * 2 * c_in * c_out + c_in + 3 * c_out
    sparse, dense = total(batch_sparse_flops(arch, torch.from_numpy(x))), total(batch_dense_flops(arch))
    assert engine.last_cost().async_sparse < sparse < dense


def test_channel_skipping_counts_the_channels_multiplied():
    """A difference with 3 of 16 channels non-zero is multiplied over those 3 (the FLOPs say so and
    the output equals torch); all-zero rows (ReLU outputs of an active site) are left out; with
    channel_skip 0 every row is multiplied in full and the count is the paper's."""
    from evstream.kernels import _core

    rng = np.random.default_rng(31)
    h, w, c, c_mid, c_out = 9, 11, 16, 16, 40
    w1 = rng.standard_normal((3, 3, c, c_mid)).astype(np.float32)
    w2 = rng.standard_normal((3, 3, c_mid, c_out)).astype(np.float32)
    b2 = rng.standard_normal(c_out).astype(np.float32)
    x = np.zeros((h, w, c), np.float32)
    x[4, 4:7] = rng.integers(1, 3, (3, c))
    x1 = x.copy()
    x1[4, 5, [2, 7, 11]] += 1  # 3 of the 16 channels change
    x1[2, 2, 0] = 1  # a new active site
    sites, values = np.array([[4, 5], [2, 2]]), np.ascontiguousarray(x1[[4, 2], [5, 2]])
    xt = torch.from_numpy(x1).permute(2, 0, 1)[None]
    mask = (xt != 0).any(1, keepdim=True).float()
    ref = (F.conv2d(xt, torch.from_numpy(w1).permute(3, 2, 0, 1), padding=1) * mask)[0].permute(1, 2, 0)

    def run(skip: float, relu: bool) -> list[dict]:
        eng = _core.AsyncEngine(h, w, c)
        eng.channel_skip = skip
        # with the ReLU and a bias of -100 every output of the first convolution is zero: its active
        # sites are all-zero rows of the second one's products
        eng.add_conv(w1, np.full(c_mid, -100 if relu else 0, np.float32), 1, 1, "submanifold", relu)
        eng.add_conv(w2, b2, 1, 1, "submanifold", False)
        eng.batch(x)
        eng.update(sites, values)
        if not relu:
            np.testing.assert_allclose(eng.output(0)[0], ref.numpy(), rtol=1e-5, atol=1e-4)
        else:
            np.testing.assert_array_equal(eng.output(0)[0], 0)
            np.testing.assert_allclose(eng.output(1)[0][[2, 4], [2, 5]], [b2, b2], rtol=1e-6)
        return eng.layers()

    # first convolution: 3 outputs stay active (difference: 3 channels), 1 becomes active (its one
    # active input has 1 non-zero channel); differences of the 2 changed sites; ReLU on 4 outputs
    extras = 2 * c + 4 * c_mid
    for relu in (False, True):
        skipping, full = run(0.6, relu), run(0.0, relu)
        assert skipping[0]["rules"] == full[0]["rules"] == 4
        relu_flops = 0 if relu else -4 * c_mid
        assert skipping[0]["flops"] == 2 * (3 * 3 + 1) * c_mid + extras + relu_flops
        assert skipping[0]["full_flops"] == full[0]["flops"] == full[0]["full_flops"]
        assert full[0]["flops"] == 2 * 4 * c * c_mid + extras + relu_flops
    # second convolution (after the zeroing ReLU): its new output's window holds one all-zero row
    assert skipping[1]["rules"] == full[1]["rules"] == 1
    assert skipping[1]["flops"] == 0 and full[1]["flops"] == full[1]["full_flops"] == 2 * c_mid * c_out


# --------------------------------------------------------------------------------------------
# Boundary


def test_bad_arguments_raise_value_error_and_leave_the_state_alone():
    arch = SMALL["flatten"]
    model = random_model(arch)
    engine = AsyncSparseVGG(model)
    engine.update(np.array([[1, 1]]), np.array([[1.0, 0.0]], np.float32))
    before = engine.logits()
    good_sites, good_values = np.array([[2, 2]]), np.array([[1.0, 1.0]], np.float32)
    bad = [
        (good_sites, good_values.astype(np.float64), "float32"),
        (good_sites.astype(np.float32), good_values, "integer"),
        (np.array([[2, 2, 2]]), good_values, "shape"),
        (good_sites, np.ones((1, 3), np.float32), "shape"),
        (good_sites, np.ones((2, 2), np.float32), "shape"),
        (np.array([[arch.height, 0]]), good_values, "outside"),
        (np.array([[0, -1]]), good_values, "outside"),
        (good_sites, np.array([[np.nan, 1.0]], np.float32), "non-finite"),
    ]
    for sites, values, words in bad:
        with pytest.raises(ValueError, match=words):
            engine.update(sites, values)
    np.testing.assert_array_equal(engine.logits(), before)
    with pytest.raises(ValueError, match="shape"):
        engine.batch(np.zeros((2, arch.height + 1, arch.width), np.float32))
    with pytest.raises(ValueError, match="eval"):
        AsyncSparseVGG(SparseVGG(arch))  # training mode: batch norm not folded
    for share in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="channel-skipping share"):
            engine.channel_skip = share
    assert engine.channel_skip == pytest.approx(0.6)


def test_reference_model_semantics():
    """Submanifold convolutions keep the active set; max pooling ignores inactive sites (even with
    negative values around); batch norm in training uses the active sites' statistics."""
    arch = SMALL["flatten"]
    model = random_model(arch)
    x = torch.zeros(1, 2, arch.height, arch.width)
    x[0, 0, 3, 4] = 1
    x[0, 1, 10, 20] = 3
    outs = model.layer_outputs(x)
    active = (x != 0).any(1)[0]
    torch.testing.assert_close(outs[0][1][0, 0] > 0, active)
    torch.testing.assert_close(outs[1][1][0, 0] > 0, active)
    v = -torch.ones(1, 1, 3, 3)
    m = torch.zeros(1, 1, 3, 3)
    m[0, 0, 1, 1] = 1
    v[0, 0, 1, 1] = -5
    pooled, pmask = sparse_max_pool(v * m, m, 3, 2)
    assert pooled.item() == -5 and pmask.item() == 1
    model.train()
    norm = model.norms[0]
    y = torch.randn(2, 8, 9, 9) * 3 + 2
    mask = (torch.rand(2, 1, 9, 9) < 0.3).float()
    out = norm(y * mask, mask)
    mean = (out * mask).sum(dim=(0, 2, 3)) / mask.sum()
    torch.testing.assert_close(mean, norm.bias.detach(), atol=1e-4, rtol=0)
    loss = torch.nn.functional.cross_entropy(model(x), torch.tensor([1]))
    loss.backward()
    assert model.convs[0].weight.grad is not None and model.fc.weight.grad is not None


def test_threads_give_identical_results():
    """Threads split each product by output channels, so every value is summed in the same order:
    results are bit-identical for any thread count."""
    arch = Architecture("wide", 24, 24, (Conv(48), Conv(64), MaxPool(3, 2), Conv(96)), 40, 7)
    model = random_model(arch, seed=11)
    engines = [AsyncSparseVGG(model, threads=n) for n in (1, 2, 3)]
    assert [e.threads for e in engines] == [1, 2, 3]
    rng = np.random.default_rng(12)
    x = np.zeros((2, arch.height, arch.width), np.float32)
    for step in range(40):
        k = int(rng.integers(1, 60))
        ys, xs = rng.integers(0, arch.height, k), rng.integers(0, arch.width, k)
        x[:, ys, xs] = 0 if step % 4 == 3 else rng.integers(1, 3, (2, k))
        args = sites_values(x, ys, xs)
        for e in engines:
            e.update(*args)
        for e in engines[1:]:
            np.testing.assert_array_equal(e.logits(), engines[0].logits())
            for (a, ma), (b, mb) in zip(e.layer_outputs(), engines[0].layer_outputs(), strict=True):
                np.testing.assert_array_equal(a, b)
                np.testing.assert_array_equal(ma, mb)
    assert_matches_torch(engines[2], model, x, "threads=3")


def test_every_product_kernel_equals_torch():
    """The products are compiled for AVX-512, AVX2 and portable x86-64 and the best the CPU runs is
    picked; set_gemm_kernel chooses another, so each one this CPU runs is checked here (register
    blocks of 12, 3 and 2 rows, padded remainders, partial weight panels, 1 and 2 threads), with
    rows multiplied in full (channel_skip 0), over their non-zero channels (1) and mixed (0.6)."""
    from evstream.kernels._core import AsyncEngine

    best, kernels = AsyncEngine.gemm_kernel, AsyncEngine.gemm_kernels
    assert kernels[0] == best and kernels[-1] == "portable"
    arch = Architecture("wide", 24, 24, (Conv(48), Conv(40), MaxPool(3, 2), Conv(96)), 72, 7)
    model = random_model(arch, seed=21)
    try:
        for name, skip in itertools.product(kernels, (0.0, 0.6, 1.0)):
            AsyncEngine.set_gemm_kernel(name)
            assert AsyncEngine.gemm_kernel == name
            engines = [AsyncSparseVGG(model, threads=n, channel_skip=skip) for n in (1, 2)]
            rng = np.random.default_rng(22)
            x = np.zeros((2, arch.height, arch.width), np.float32)
            for step in range(25):
                k = int(rng.integers(1, 40))
                ys, xs = rng.integers(0, arch.height, k), rng.integers(0, arch.width, k)
                x[:, ys, xs] = 0 if step % 4 == 3 else rng.integers(1, 3, (2, k))
                for e in engines:
                    e.update(*sites_values(x, ys, xs))
                if step % 8 == 0:
                    assert_matches_torch(engines[0], model, x, f"{name} skip {skip} step {step}")
            np.testing.assert_array_equal(engines[0].logits(), engines[1].logits())
            assert_matches_torch(engines[1], model, x, f"{name} skip {skip} threads=2")
    finally:
        AsyncEngine.set_gemm_kernel(best)
    assert AsyncEngine.gemm_kernel == best
    with pytest.raises(ValueError, match="unknown product kernel 'neon'"):
        AsyncEngine.set_gemm_kernel("neon")


def test_sparse_strided_convolution_equals_torch():
    """The engine's sparse (non-submanifold) strided convolution: an output is active when its
    window holds an active input; after random updates it equals a masked dense convolution."""
    from evstream.kernels import _core

    rng = np.random.default_rng(13)
    h, w, cin, cout, k, stride, pad = 19, 22, 3, 16, 3, 2, 1
    weight = rng.standard_normal((k, k, cin, cout)).astype(np.float32)
    bias = rng.standard_normal(cout).astype(np.float32)
    eng = _core.AsyncEngine(h, w, cin)
    eng.threads = 2
    eng.add_conv(weight, bias, stride, pad, "sparse", False)
    eng.add_maxpool(2, 2)
    x = np.zeros((h, w, cin), np.float32)
    tw = torch.from_numpy(weight).permute(3, 2, 0, 1)
    for step in range(60):
        n = int(rng.integers(1, 10))
        sites = np.stack([rng.integers(0, h, n), rng.integers(0, w, n)], 1)
        values = rng.integers(-2, 3, (n, cin)).astype(np.float32) * (step % 5 != 4)
        for (yy, xx), v in zip(sites, values, strict=True):
            x[yy, xx] = v
        eng.update(sites, values)
        xt = torch.from_numpy(x).permute(2, 0, 1)[None]
        mask = (xt != 0).any(1, keepdim=True).float()
        out_mask = F.max_pool2d(F.pad(mask, (pad,) * 4), k, stride)
        ref = F.conv2d(xt, tw, bias=torch.from_numpy(bias), stride=stride, padding=pad) * out_mask
        got, active = eng.output(0)
        np.testing.assert_array_equal(active, out_mask[0, 0].numpy() > 0)
        np.testing.assert_allclose(got, ref[0].permute(1, 2, 0).numpy(), rtol=1e-5, atol=1e-4)
        pooled, pmask = sparse_max_pool(ref, out_mask, 2, 2)
        got, active = eng.output(1)
        np.testing.assert_array_equal(active, pmask[0, 0].numpy() > 0)
        np.testing.assert_allclose(got, pooled[0].permute(1, 2, 0).numpy(), rtol=1e-5, atol=1e-4)
