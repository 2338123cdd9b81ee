"""``evstream bench async``: the asynchronous engine beside its batch mode and a dense torch
recompute, in the same run; :func:`run_async` returns a JSON-ready dict, :func:`format_async`
prints it.

``async`` (issue #5): the asynet N-Caltech101 VGG-13 (random weights: FLOP counts are structural)
on 191x255 2-channel event histograms of a 25,000-event window sliding by 1, 10, 100 and 1000
events. Per step size it reports the FLOPs per update in the four modes of
:mod:`evstream.models.flops`, the wall-clock time per update of the asynchronous engine
(:class:`~evstream.models.async_engine.AsyncSparseVGG`), of the engine recomputing the window
from scratch (its batch mode) and of the torch model recomputing it densely, and the largest
logit difference between the engine and torch on the final window of each step size.

How one step of ``S`` events is measured:

1. bookkeeping (timed separately, not part of the engine's time): the ``S`` entering and ``S``
   leaving events are added to / subtracted from the window's histogram (channel 0 ON, channel 1
   OFF, float32 counts) with ``np.add.at``; the changed sites are the distinct ``(row, col)``
   of those events whose value actually changed, with their new values (zero when emptied);
2. the engine's time is ``engine.update(sites, values)`` alone (it returns the logits);
3. its FLOPs are ``engine.last_cost()`` (``async_sparse``: what it computed; ``async_dense``: a
   dense network recomputing the cone of influence of the changed sites).

Each step size starts from the same first window (``engine.batch``), runs some warm-up updates,
then the timed consecutive updates. On a few windows spread over those updates (between them,
outside their timing) the torch model (dense recompute) and the engine's batch mode (a second
engine, so the first keeps its incremental state) are timed and ``batch_sparse`` FLOPs counted.
On the final window the engine's logits (after all its updates) and its batch mode's are
compared with torch's. Times are medians (and 90th percentiles); FLOPs per update are medians
(means beside them).

Input: ``source`` (any recording :func:`evstream.replay.open_events` reads; only the events
needed are read) or, by default, a deterministic synthetic DAVIS346-sized (346x260) stream made
by the project's event emulator (:mod:`evstream.kernels.emulator`) from a rendered scene: a
bright disc on a Lissajous path, a rotating dark bar and a textured patch crossing a dark
background, plus a little shot noise. Coordinates are mapped to 191x255 by
``x * 255 // width``, ``y * 191 // height``.
"""

from __future__ import annotations

import gc
import os
import sys
import time

import numpy as np

from .common import CpuMeter, machine_info, percent, stats_ms, table

MODEL = "ncaltech101_vgg13"
STEPS = (1, 10, 100, 1000)
WINDOW_EVENTS = 25_000
SYNTHETIC_SENSOR = (346, 260)

# (warm-up updates, timed updates) per step size, full and --quick
_UPDATES = {1: (20, 200), 10: (10, 100), 100: (5, 50), 1000: (3, 20)}
_UPDATES_QUICK = {1: (5, 20), 10: (3, 10), 100: (2, 5), 1000: (1, 3)}
_REPEATS, _REPEATS_QUICK = 10, 2  # timed dense recomputes (torch, engine batch) per step size
#: window sizes of the cost-against-window sweep (1-event steps; FLOPs and engine time only)
WINDOW_SWEEP, WINDOW_SWEEP_QUICK = (5_000, 25_000, 100_000), (5_000, 25_000)
_SWEEP_UPDATES, _SWEEP_UPDATES_QUICK = (10, 100), (3, 10)  # (warm-up, timed) 1-event updates

#: goals of issue #5
GOAL_REDUCTION_1 = 10.0  # FLOP reduction (batch dense / async sparse) at 1-event steps
GOAL_TIME_1_MS = 1.0  # engine time per 1-event update
GOAL_SPEEDUP_FRACTION = 1 / 3  # wall-clock speedup over torch >= this fraction of the FLOP reduction
BUSY_LOAD = 0.1  # other processes' CPU share above which the report warns that times may be inflated


# --------------------------------------------------------------------------------------------
# Input streams


def synthetic_stream(n_events: int, seed: int = 0) -> tuple[np.ndarray, int, int]:
    """At least ``n_events`` deterministic events of an emulated 346x260 camera watching a
    scene: a bright disc on a Lissajous path, a dark bar rotating about a point and a textured
    patch crossing right to left, on a dark background; frames every millisecond, shot noise
    0.2 Hz per pixel. Returns ``(events, width, height)``."""
    from ...kernels.emulator import EmulatorConfig, EventEmulator
    from ...kernels.events import concat_events

    w, h = SYNTHETIC_SENSOR
    rng = np.random.default_rng(seed)
    texture = np.kron(rng.integers(20, 230, (10, 9)), np.ones((8, 8)))[:, :70].astype(np.float32)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)

    def scene(k: int) -> np.ndarray:
        t = k * 1e-3
        img = np.full((h, w), 40.0, np.float32)
        cx = w / 2 + 110 * np.sin(2 * np.pi * 1.3 * t)
        cy = h / 2 + 80 * np.sin(2 * np.pi * 1.9 * t + 0.5)
        img[(xx - cx) ** 2 + (yy - cy) ** 2 < 30**2] = 200.0
        a = 2 * np.pi * 0.8 * t
        across = np.abs((xx - 90) * np.sin(a) - (yy - 80) * np.cos(a))
        along = np.abs((xx - 90) * np.cos(a) + (yy - 80) * np.sin(a))
        img[(across < 6) & (along < 55)] = 5.0
        ox = int(260 - 150 * t)
        x0, x1 = max(ox, 0), min(ox + texture.shape[1], w)
        if x1 > x0:
            img[150 : 150 + texture.shape[0], x0:x1] = texture[:, x0 - ox : x1 - ox]
        return img

    emu = EventEmulator(
        w, h, EmulatorConfig(c_on=0.25, c_off=0.25, refractory_us=100, noise_hz=0.2, seed=seed)
    )
    emu.reset(scene(0), 0)
    parts, have, k = [], 0, 0
    while have < n_events:
        k += 1
        ev = emu.frame(scene(k), k * 1000)
        parts.append(ev)
        have += len(ev)
        if k > 100_000:  # cannot happen with this scene; guards against an endless loop
            raise RuntimeError("the synthetic scene produced too few events")
    return concat_events(parts), w, h


def read_source(
    path: str, n_events: int, format: str | None = None, sensor_size: tuple[int, int] | None = None
) -> tuple[np.ndarray, int, int]:
    """The first ``n_events`` events of a recording (fewer if it is shorter) and its sensor size."""
    from ...kernels.events import concat_events
    from ...replay import open_events

    parts, have = [], 0
    with open_events(path, format, sensor_size) as reader:
        for part in reader:
            parts.append(part)
            have += len(part)
            if have >= n_events:
                break
        width, height = reader.width, reader.height
    return concat_events(parts)[:n_events], width, height


def to_grid(events: np.ndarray, width: int, height: int, out_h: int, out_w: int):
    """``(rows, cols, channels)`` int64 arrays: coordinates scaled to ``out_h x out_w``
    (``x * out_w // width``, truncated) and channel 0 for ON (p == 1), 1 for OFF."""
    cols = (events["x"].astype(np.int64) * out_w) // width
    rows = (events["y"].astype(np.int64) * out_h) // height
    chans = 1 - (events["p"] != 0).astype(np.int64)
    return rows, cols, chans


class SlidingHistogram:
    """The 2-channel count histogram of the ``window`` events starting at ``start``, slid
    forward ``step`` events at a time; :meth:`advance` returns the changed sites and values."""

    def __init__(self, rows, cols, chans, shape: tuple[int, int, int], window: int):
        self.rows, self.cols, self.chans = rows, cols, chans
        self.window = window
        self.hist = np.zeros(shape, np.float32)
        self.start = 0
        np.add.at(self.hist, (chans[:window], rows[:window], cols[:window]), 1.0)

    def advance(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        """Slides by ``step`` events; returns ``sites`` ``(N, 2)`` int64 ``(row, col)`` and
        ``values`` ``(N, C)`` float32 of the sites whose value changed."""
        a, b = self.start, self.start + step
        enter, leave = slice(a + self.window, b + self.window), slice(a, b)
        h, w = self.hist.shape[1:]
        flat = np.unique(
            np.concatenate([self.rows[enter] * w + self.cols[enter], self.rows[leave] * w + self.cols[leave]])
        )
        r, c = flat // w, flat % w
        old = self.hist[:, r, c]
        np.add.at(self.hist, (self.chans[enter], self.rows[enter], self.cols[enter]), 1.0)
        np.add.at(self.hist, (self.chans[leave], self.rows[leave], self.cols[leave]), -1.0)
        self.start = b
        new = self.hist[:, r, c]
        changed = (new != old).any(axis=0)
        sites = np.stack([r[changed], c[changed]], axis=1)
        return sites, np.ascontiguousarray(new[:, changed].T)


# --------------------------------------------------------------------------------------------
# async


def run_async(
    source: str | None = None,
    *,
    format: str | None = None,
    sensor_size: tuple[int, int] | None = None,
    quick: bool = False,
    seed: int = 0,
    steps: tuple[int, ...] = STEPS,
    window: int = WINDOW_EVENTS,
    progress: bool = False,
    threads: int = 1,
    channel_skip: float | None = None,
    **_,
) -> dict:
    """Runs the asynchronous-engine benchmark (see the module docstring) and returns its results.
    ``threads``: the engine's threads; ``channel_skip``: its channel-skipping share
    (:class:`~evstream.models.async_engine.AsyncSparseVGG`; None: its default)."""
    import torch
    from tqdm import tqdm

    from ...models import flops
    from ...models.async_engine import AsyncSparseVGG
    from ...models.sparse_vgg import SparseVGG

    if not steps or min(steps) < 1 or window < 1:
        raise ValueError("steps and the window must be positive event counts")
    table = _UPDATES_QUICK if quick else _UPDATES
    # other step sizes take the plan of the nearest listed one below (or the smallest)
    plan = {s: table[max([k for k in table if k <= s], default=min(table))] for s in steps}
    repeats = _REPEATS_QUICK if quick else _REPEATS
    sweep_windows = WINDOW_SWEEP_QUICK if quick else WINDOW_SWEEP
    sweep_updates = _SWEEP_UPDATES_QUICK if quick else _SWEEP_UPDATES
    needed = max(
        window + max(s * (wu + n) for s, (wu, n) in plan.items()), max(sweep_windows) + sum(sweep_updates)
    )

    if source is None:
        events, width, height = synthetic_stream(needed, seed)
        input_info = {
            "kind": "synthetic",
            "description": f"synthetic {width}x{height} stream from evstream's event emulator "
            f"(moving disc, rotating bar, textured patch; seed {seed})",
        }
    else:
        events, width, height = read_source(source, needed, format, sensor_size)
        input_info = {"kind": "file", "path": os.path.abspath(source), "description": f"file {source}"}
    input_info.update(sensor=[width, height], events_used=int(len(events)))
    for step, (warmup, _) in plan.items():
        if len(events) < window + step * (warmup + 1):
            raise ValueError(
                f"{input_info['description']} has {len(events):,} events; a {window:,}-event window "
                f"sliding by {step:,} needs at least {window + step * (warmup + 1):,}"
            )

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = SparseVGG(MODEL).eval()
    arch = model.arch
    engine = AsyncSparseVGG(model, threads=threads, channel_skip=channel_skip)
    input_info["mapped_to"] = [arch.width, arch.height]
    rows, cols, chans = to_grid(events, width, height, arch.height, arch.width)
    shape = (arch.in_channels, arch.height, arch.width)
    batch_dense = flops.total(flops.batch_dense_flops(arch))

    # the batch mode runs on a second engine, so that recomputing from scratch never resets the
    # state the asynchronous updates built up (their accumulated rounding is part of the check)
    batch_engine = AsyncSparseVGG(model, threads=threads, channel_skip=channel_skip)

    def dense_recomputes(hist: np.ndarray) -> tuple[float, float, int, np.ndarray, np.ndarray]:
        """(torch seconds, engine batch seconds, batch_sparse FLOPs, torch logits, batch logits)
        on one window."""
        x = torch.from_numpy(hist)[None]
        with torch.no_grad():
            t0 = time.perf_counter()
            torch_logits = model(x)[0].numpy()
            t1 = time.perf_counter()
        batch_logits = batch_engine.batch(hist)
        t2 = time.perf_counter()
        return t1 - t0, t2 - t1, flops.total(flops.batch_sparse_flops(arch, x)), torch_logits, batch_logits

    engine.batch(np.zeros(shape, np.float32))
    dense_recomputes(np.zeros(shape, np.float32))  # warm-up (torch and the engine allocate once)
    results = []
    for step in steps:
        warmup, n_updates = plan[step]
        n_updates = min(n_updates, (len(events) - window) // step - warmup)
        # the dense recomputes are timed on windows spread over the updates (not in one burst,
        # which other load on the machine could hit as a whole), outside the updates' timing;
        # the last one is on the final window
        sample_at = set(np.linspace(0, n_updates - 1, min(repeats, n_updates)).round().astype(int).tolist())
        hist = SlidingHistogram(rows, cols, chans, shape, window)
        engine.batch(hist.hist)
        for _ in range(warmup):
            engine.update(*hist.advance(step))
        gc.collect()
        t_book, t_update, sparse, full, dense, n_sites = [], [], [], [], [], []
        t_torch, t_batch, batch_sparse_samples = [], [], []
        bar = tqdm(
            total=n_updates,
            desc=f"async, steps of {step}",
            unit="update",
            disable=not progress,
            leave=False,
            file=sys.stderr,
        )
        meter = CpuMeter()
        with bar:
            for i in range(n_updates):
                t0 = time.perf_counter()
                sites, values = hist.advance(step)
                t1 = time.perf_counter()
                logits = engine.update(sites, values)
                t2 = time.perf_counter()
                cost = engine.last_cost()
                t_book.append(t1 - t0)
                t_update.append(t2 - t1)
                sparse.append(cost.async_sparse)
                full.append(cost.async_sparse_full_rows)
                dense.append(cost.async_dense)
                n_sites.append(len(sites))
                if i in sample_at:
                    tt, tb, fs, reference, batch_logits = dense_recomputes(hist.hist)
                    t_torch.append(tt)
                    t_batch.append(tb)
                    batch_sparse_samples.append(fs)
                bar.update()
        other_load = meter.other_load()

        # correctness on the final window (the last dense recompute ran on it): the engine after
        # all its updates, and its batch mode, against torch
        diff = float(np.abs(logits - reference).max())
        scale = float(np.abs(reference).max())
        batch_sparse = float(np.median(batch_sparse_samples))

        async_sparse, full_rows = float(np.median(sparse)), float(np.median(full))
        times = {
            "async": stats_ms(t_update),
            "bookkeeping": stats_ms(t_book),
            "batch": stats_ms(t_batch),
            "torch_dense": stats_ms(t_torch),
        }
        reduction = batch_dense / max(async_sparse, 1.0)  # (a median of 0 FLOPs: most updates no-ops)
        speedup = times["torch_dense"]["median"] / times["async"]["median"]
        goals = {"speedup_ge_third_of_reduction": bool(speedup >= GOAL_SPEEDUP_FRACTION * reduction)}
        if step == 1:
            goals["reduction_ge_10"] = bool(reduction >= GOAL_REDUCTION_1)
            goals["time_le_1ms"] = bool(times["async"]["median"] <= GOAL_TIME_1_MS)
        results.append(
            {
                "step_events": step,
                "warmup_updates": warmup,
                "updates": n_updates,
                "changed_sites": {"median": float(np.median(n_sites)), "mean": float(np.mean(n_sites))},
                "flops": {
                    "async_sparse": async_sparse,
                    "async_dense": float(np.median(dense)),
                    "batch_sparse": batch_sparse,
                    "batch_dense": batch_dense,
                },
                "flops_mean": {"async_sparse": float(np.mean(sparse)), "async_dense": float(np.mean(dense))},
                # the same updates with every channel multiplied (channel_skip 0: the paper's count)
                "flops_full_rows": full_rows,
                "flop_reduction_full_rows": batch_dense / max(full_rows, 1.0),
                # a window step of `step` events: the FLOPs each entering event costs in every mode
                "flops_per_event": {
                    "async_sparse": async_sparse / step,
                    "async_dense": float(np.median(dense)) / step,
                    "batch_sparse": batch_sparse / step,
                    "batch_dense": batch_dense / step,
                },
                "time_ms": times,
                "flop_reduction": reduction,
                "other_cpu_load": other_load,
                "speedup_vs_torch_dense": speedup,
                "speedup_vs_batch": times["batch"]["median"] / times["async"]["median"],
                "correctness": {
                    "max_abs_difference": diff,
                    "max_abs_logit": scale,
                    "relative_difference": diff / scale if scale > 0 else diff,
                    "argmax_equal": bool(int(np.argmax(logits)) == int(np.argmax(reference))),
                    "batch_max_abs_difference": float(np.abs(batch_logits - reference).max()),
                },
                "goals": goals,
            }
        )

    all_goals = [v for r in results for v in r["goals"].values()]
    window_sweep = []
    for w in sweep_windows:
        if len(events) < w + sum(sweep_updates):
            continue  # a short recording: only the windows it can fill
        hist = SlidingHistogram(rows, cols, chans, shape, w)
        engine.batch(hist.hist)
        for _ in range(sweep_updates[0]):
            engine.update(*hist.advance(1))
        t_update, sparse, dense = [], [], []
        for _ in range(sweep_updates[1]):
            sites, values = hist.advance(1)
            t0 = time.perf_counter()
            engine.update(sites, values)
            t_update.append(time.perf_counter() - t0)
            cost = engine.last_cost()
            sparse.append(cost.async_sparse)
            dense.append(cost.async_dense)
        x = torch.from_numpy(hist.hist)[None]
        window_sweep.append(
            {
                "window_events": w,
                "active_sites": int(np.count_nonzero(hist.hist.any(axis=0))),
                "flops": {
                    "async_sparse": float(np.median(sparse)),
                    "async_dense": float(np.median(dense)),
                    "batch_sparse": float(flops.total(flops.batch_sparse_flops(arch, x))),
                    "batch_dense": batch_dense,
                },
                "time_ms": {"async": stats_ms(t_update)},
            }
        )

    return {
        "benchmark": "async",
        "quick": quick,
        "machine": {
            **machine_info(),
            "engine_threads": engine.threads,
            "engine_kernel": engine.gemm_kernel,
            "engine_channel_skip": engine.channel_skip,
        },
        "model": {
            "name": MODEL,
            "input": list(shape),
            "weights": f"random (torch.manual_seed({seed})), batch norm at its initial statistics",
        },
        "input": input_info,
        "window_events": window,
        "notes": {
            "time_ms.async": "engine.update(sites, values) alone (returns the logits); the histogram "
            "bookkeeping (np.add.at, changed sites) is time_ms.bookkeeping",
            "time_ms.batch": "engine.batch(histogram) (a second engine) on windows spread over the "
            "timed updates",
            "time_ms.torch_dense": "torch model(histogram) under no_grad on the same windows",
            "flops": "per update; async modes are medians over the timed updates (means in "
            "flops_mean), batch_sparse the median over the windows the dense recomputes ran on, "
            "batch_dense constant",
            "correctness": "logits on the final window of each step size: the engine after its "
            "updates and its batch mode against the torch model",
            "flop_reduction": "batch_dense / async_sparse (medians)",
            "flops_full_rows": "async sparse counted with every channel of every rule multiplied, as "
            "the paper counts it (the engine skips the zero channels of rows with at most "
            "engine_channel_skip of their channels non-zero); median, and batch_dense over it",
            "speedup_vs_torch_dense": "median torch dense time / median engine update time",
            "other_cpu_load": "share of all CPUs used by other processes (and hypervisor steal) while "
            "the step size was measured (Linux /proc/stat); above 0.1 the times may be inflated",
        },
        "goals": {
            "reduction_1_event": GOAL_REDUCTION_1,
            "time_1_event_ms": GOAL_TIME_1_MS,
            "speedup_fraction_of_reduction": GOAL_SPEEDUP_FRACTION,
            "all_met": bool(all(all_goals)),
        },
        "steps": results,
        "window_sweep": window_sweep,
    }


def _mflop(v: float) -> str:
    return f"{v / 1e6:,.1f}"


def format_async(r: dict) -> str:
    """A readable report of :func:`run_async`'s results."""
    m, inp = r["machine"], r["input"]
    lines = [
        f"evstream bench async{' (quick)' if r['quick'] else ''}: {r['model']['name']} "
        f"({' x '.join(map(str, r['model']['input']))}, {r['model']['weights']})",
        f"input   : {inp['description']}, {inp['sensor'][0]}x{inp['sensor'][1]} mapped to "
        f"{inp['mapped_to'][0]}x{inp['mapped_to'][1]}, {inp['events_used']:,} events used; "
        f"window {r['window_events']:,} events",
        f"machine : {m['cpu']}, {m['cores']} cores, torch {m['torch']} with {m['torch_threads']} threads, "
        f"engine {m['engine_threads']} thread(s) ({m['engine_kernel']}, channel_skip "
        f"{m['engine_channel_skip']:g}); load {m['load_average_1min']:.2f}; "
        f"{m['date']}",
        "",
        "FLOPs per update (MFLOP; async modes: median over the updates)",
    ]
    head = ("step", "updates", "sites", "async sparse", "full rows", "async dense", "batch sparse")
    head += ("batch dense", "reduction", "full rows")
    rows = [
        (
            f"{s['step_events']:,}",
            f"{s['updates']}",
            f"{s['changed_sites']['median']:.0f}",
            _mflop(s["flops"]["async_sparse"]),
            _mflop(s["flops_full_rows"]),
            _mflop(s["flops"]["async_dense"]),
            _mflop(s["flops"]["batch_sparse"]),
            _mflop(s["flops"]["batch_dense"]),
            f"{s['flop_reduction']:.1f}x",
            f"{s['flop_reduction_full_rows']:.1f}x",
        )
        for s in r["steps"]
    ]
    lines += table(head, rows)
    lines += ["", "Time per update (ms, median / p90; async = engine.update only)"]
    head = (
        "step",
        "async",
        "bookkeeping",
        "engine batch",
        "torch dense",
        "speedup",
        "vs batch",
        "other load",
    )

    def mp(t: dict) -> str:
        return f"{t['median']:.3f} / {t['p90']:.3f}"

    rows = [
        (
            f"{s['step_events']:,}",
            mp(s["time_ms"]["async"]),
            mp(s["time_ms"]["bookkeeping"]),
            mp(s["time_ms"]["batch"]),
            mp(s["time_ms"]["torch_dense"]),
            f"{s['speedup_vs_torch_dense']:.1f}x",
            f"{s['speedup_vs_batch']:.1f}x",
            percent(s["other_cpu_load"]),
        )
        for s in r["steps"]
    ]
    lines += table(head, rows)
    lines += ["", "Correctness on the final window (engine vs torch logits)"]
    head = ("step", "max |diff|", "max |logit|", "relative", "argmax", "batch max |diff|")
    rows = [
        (
            f"{s['step_events']:,}",
            f"{c['max_abs_difference']:.2e}",
            f"{c['max_abs_logit']:.3f}",
            f"{c['relative_difference']:.2e}",
            "same" if c["argmax_equal"] else "DIFFERENT",
            f"{c['batch_max_abs_difference']:.2e}",
        )
        for s in r["steps"]
        for c in [s["correctness"]]
    ]
    lines += table(head, rows)
    if r.get("window_sweep"):
        lines += ["", "Cost against window size (1-event steps; MFLOP per update, engine ms median)"]
        head = (
            "window",
            "active sites",
            "async sparse",
            "async dense",
            "batch sparse",
            "batch dense",
            "async ms",
        )
        rows = [
            (
                f"{w['window_events']:,}",
                f"{w['active_sites']:,}",
                *(
                    _mflop(w["flops"][k])
                    for k in ("async_sparse", "async_dense", "batch_sparse", "batch_dense")
                ),
                f"{w['time_ms']['async']['median']:.3f}",
            )
            for w in r["window_sweep"]
        ]
        lines += table(head, rows)
    lines += ["", "Goals (issue #5)"]
    for s in r["steps"]:
        g = s["goals"]
        if "reduction_ge_10" in g:
            lines.append(
                f"  step 1: FLOP reduction {s['flop_reduction']:.1f}x >= {GOAL_REDUCTION_1:g}x: "
                f"{_verdict(g['reduction_ge_10'])}"
            )
            lines.append(
                f"  step 1: {s['time_ms']['async']['median']:.3f} ms per update <= {GOAL_TIME_1_MS:g} ms: "
                f"{_verdict(g['time_le_1ms'])}"
            )
        lines.append(
            f"  step {s['step_events']:,}: speedup {s['speedup_vs_torch_dense']:.1f}x >= reduction / 3 "
            f"= {s['flop_reduction'] * GOAL_SPEEDUP_FRACTION:.1f}x: "
            f"{_verdict(g['speedup_ge_third_of_reduction'])}"
        )
    busy = [s for s in r["steps"] if (s["other_cpu_load"] or 0) > BUSY_LOAD]
    if busy:
        lines += [
            "",
            "note: other processes used "
            + ", ".join(f"{percent(s['other_cpu_load'])} (step {s['step_events']:,})" for s in busy)
            + " of the CPUs while those steps were measured; their times may be inflated (torch's "
            "threads suffer most). Run again on an idle machine.",
        ]
    return "\n".join(lines)


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"
