"""PNG plots of benchmark results (``evstream bench ... --plots DIR``), drawn with pyqtgraph (the
``viewer`` extra) offscreen, so they need no display:

* ``e2e_latency.png``: histogram of the window latencies at the highest input rate without drops;
* ``e2e_resolution.png``: window latency (p50, p99) against sensor resolution;
* ``async_step.png``: FLOPs per update (four modes) and time per update against step size;
* ``decode_throughput.png``: decoding throughput of evstream, the peers and memcpy per recording;
* ``repr_incremental.png``: incremental step cost against step size, per window size.

Each plot is written only when its benchmark ran.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

COLOURS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75)]


def _qt():
    try:
        import pyqtgraph as pg
        import pyqtgraph.exporters  # noqa: F401 (registers the exporters)
    except ImportError as exc:
        raise ImportError(
            f"--plots needs pyqtgraph and a Qt binding ({exc}): pip install 'evstream[viewer]'"
        ) from None
    from ..viewer import import_qt

    _, _, _, QtWidgets = import_qt()  # the binding check and quiet offscreen warnings
    if QtWidgets.QApplication.instance() is None:
        os.environ["QT_QPA_PLATFORM"] = "offscreen"  # plots are files: never open a window
    pg.mkQApp()
    pg.setConfigOptions(background="w", foreground="k", antialias=True)
    return pg


def _decade_ticks(plot_item) -> None:
    """Log axes labelled at 1, 2 and 5 times the powers of ten in the data's range (pyqtgraph's
    own minor labels overlap)."""
    x_log, y_log = plot_item.ctrl.logXCheck.isChecked(), plot_item.ctrl.logYCheck.isChecked()
    xs, ys = [], []
    for item in plot_item.listDataItems():
        if not hasattr(item, "getOriginalDataset"):
            continue
        x, y = item.getOriginalDataset()
        if x is not None:
            xs.append(np.asarray(x, float))
            ys.append(np.asarray(y, float))
    for on, values, axis in ((x_log, xs, "bottom"), (y_log, ys, "left")):
        v = np.concatenate(values) if values else np.zeros(0)
        v = v[np.isfinite(v) & (v > 0)]
        if not on or not len(v):
            continue
        lo, hi = np.floor(np.log10(v.min())), np.ceil(np.log10(v.max()))
        ticks = [
            (np.log10(m * 10**e), f"{m * 10**e:,.0f}" if m * 10**e >= 1 else f"{m * 10**e:g}")
            for e in np.arange(lo, hi + 1)
            for m in ((1, 2, 5) if hi - lo <= 3 else (1,))
            if v.min() / 2 <= m * 10**e <= v.max() * 2
        ]
        plot_item.getAxis(axis).setTicks([ticks, []])


def _save(pg, widget, path: Path, size=(900, 560)) -> Path:
    """Lays the widget out at ``size`` (shown offscreen) and exports its scene as PNG."""
    items = [widget.getPlotItem()] if hasattr(widget, "getPlotItem") else widget.ci.items.keys()
    for item in items:
        if hasattr(item, "listDataItems"):
            _decade_ticks(item)
    widget.resize(*size)
    widget.show()
    pg.mkQApp().processEvents()
    exporter = pg.exporters.ImageExporter(widget.scene())
    exporter.parameters()["width"] = size[0]
    exporter.export(str(path))
    widget.close()
    widget.deleteLater()
    return path


def _plot(pg, title: str, left: str, bottom: str, log_x=False, log_y=False):
    w = pg.PlotWidget()
    w.setTitle(title)
    w.setLabel("left", left)
    w.setLabel("bottom", bottom)
    w.showGrid(x=True, y=True, alpha=0.25)
    w.addLegend(offset=(-10, 10))
    w.setLogMode(x=log_x, y=log_y)
    return w


def _line(pg, w, x, y, name, i, symbol="o"):
    colour = COLOURS[i % len(COLOURS)]
    w.plot(
        np.asarray(x, float),
        np.asarray(y, float),
        pen=pg.mkPen(colour, width=2),
        symbol=symbol,
        symbolBrush=colour,
        symbolSize=8,
        name=name,
    )


def write_plots(results: dict, out_dir: str) -> list[Path]:
    """Writes the plots of ``results`` (benchmark name -> result) into ``out_dir``."""
    pg = _qt()
    out = Path(out_dir)
    written: list[Path] = []
    if "e2e" in results:
        written += _e2e(pg, results["e2e"], out)
    if "async" in results:
        written.append(_async(pg, results["async"], out))
    if "decode" in results and results["decode"]["results"]:
        written.append(_decode(pg, results["decode"], out))
    if "repr" in results:
        written.append(_repr(pg, results["repr"], out))
    return written


def _e2e(pg, r: dict, out: Path) -> list[Path]:
    paths = []
    row = r["highest_without_drops"] or (r["rows"][0] if r["rows"] else None)
    if row and row.get("latencies_ms"):
        lat = np.asarray(row["latencies_ms"], float)
        hi = float(np.percentile(lat, 99.5))
        counts, edges = np.histogram(np.clip(lat, 0, hi), bins=40, range=(0, hi))
        w = _plot(
            pg,
            f"window latency at {row['input_mevents_s']:.1f} M events/s ({len(lat)} windows; "
            f"p50 {row['latency_ms_p50']:.2f}, p99 {row['latency_ms_p99']:.2f} ms)",
            "windows",
            "latency (ms)",
        )
        w.addItem(pg.BarGraphItem(x0=edges[:-1], x1=edges[1:], height=counts, brush=COLOURS[0]))
        paths.append(_save(pg, w, out / "e2e_latency.png"))
    res = r.get("resolution", {}).get("rows", [])
    if res:
        pixels = [a["sensor"][0] * a["sensor"][1] for a in res]
        w = _plot(
            pg,
            "window latency against sensor resolution (same input rate)",
            "latency (ms)",
            "pixels (QVGA, VGA, 1280x720)",
            log_x=True,
        )
        _line(pg, w, pixels, [a["latency_ms_p50"] for a in res], "p50", 0)
        _line(pg, w, pixels, [a["latency_ms_p99"] for a in res], "p99", 1)
        paths.append(_save(pg, w, out / "e2e_resolution.png"))
    return paths


def _async(pg, r: dict, out: Path) -> Path:
    steps = [s["step_events"] for s in r["steps"]]
    w = pg.GraphicsLayoutWidget()
    w.setBackground("w")
    p1 = w.addPlot(title="FLOPs per update (MFLOP)")
    p1.setLogMode(x=True, y=False)
    p1.addLegend(offset=(-10, 10))
    p1.showGrid(x=True, y=True, alpha=0.25)
    p1.setLabel("bottom", "step (events)")
    p1.getAxis("left").setWidth(60)
    for i, mode in enumerate(("async_sparse", "async_dense", "batch_sparse", "batch_dense")):
        _line(pg, p1, steps, [s["flops"][mode] / 1e6 for s in r["steps"]], mode.replace("_", " "), i)
    p2 = w.addPlot(title="time per update (ms, median)")
    p2.setLogMode(x=True, y=True)
    p2.addLegend(offset=(-10, -10))
    p2.showGrid(x=True, y=True, alpha=0.25)
    p2.setLabel("bottom", "step (events)")
    p2.getAxis("left").setWidth(60)
    for i, (key, name) in enumerate(
        (("async", "async engine"), ("batch", "engine batch"), ("torch_dense", "torch dense"))
    ):
        _line(pg, p2, steps, [s["time_ms"][key]["median"] for s in r["steps"]], name, i)
    return _save(pg, w, out / "async_step.png", (1200, 520))


def _decode(pg, r: dict, out: Path) -> Path:
    rows = r["results"]
    names = [
        "evstream",
        *sorted({p for row in rows for p, v in row["peers"].items() if "mevents_per_s" in v}),
    ]
    w = _plot(pg, "decoding throughput (median; peers only where their output is correct)", "M events/s", "")
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        xs, hs = [], []
        for k, row in enumerate(rows):
            v = row["evstream"] if name == "evstream" else row["peers"].get(name, {})
            if "mevents_per_s" in v and (name == "evstream" or v.get("status") == "ok"):
                xs.append(k - 0.4 + (i + 0.5) * width)
                hs.append(v["mevents_per_s"])
        if xs:
            w.addItem(
                pg.BarGraphItem(
                    x=xs, height=hs, width=width * 0.9, brush=COLOURS[i % len(COLOURS)], name=name
                )
            )
    ticks = [(k, f"{row['format']}: {row['events'] / 1e3:,.0f}k events") for k, row in enumerate(rows)]
    w.getAxis("bottom").setTicks([ticks])
    w.setXRange(-0.6, len(rows) - 0.4, padding=0)
    w.setLabel("bottom", "recording")
    return _save(pg, w, out / "decode_throughput.png", (1200, 560))


def _repr(pg, r: dict, out: Path) -> Path:
    rows = [x for x in r["incremental"]["rows"] if x["representation"] == "event_histogram"]
    w = _plot(
        pg,
        "event histogram: one window step (microseconds, median)",
        "microseconds",
        "step (events)",
        log_x=True,
        log_y=True,
    )
    for i, window in enumerate(sorted({x["window"] for x in rows})):
        sel = sorted((x for x in rows if x["window"] == window), key=lambda x: x["step"])
        _line(pg, w, [x["step"] for x in sel], [x["update_us"] for x in sel], f"update, window {window:,}", i)
        _line(
            pg,
            w,
            [x["step"] for x in sel],
            [x["recompute_us"] for x in sel],
            f"recompute, window {window:,}",
            i,
            symbol="t",
        )
    return _save(pg, w, out / "repr_incremental.png")
