"""The Markdown report of a benchmark run (``evstream bench ... --markdown FILE`` or ``--readme
README.md``, which replaces the text between ``<!-- bench:begin -->`` and ``<!-- bench:end -->``):
the machine, the date, the command that reproduces the run, and per benchmark its tables with the
baselines measured in the same run."""

from __future__ import annotations

import os
from pathlib import Path

BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"
MODES = ("async_sparse", "async_dense", "batch_sparse", "batch_dense")
#: representations shown in the report's incremental table (the JSON has all of them)
REPORT_INCREMENTAL = ("event_histogram", "timestamp_image", "voxel_grid")


def _md(head: tuple[str, ...], rows: list[tuple]) -> list[str]:
    out = [
        "| " + " | ".join(head) + " |",
        "|" + "|".join("---" if i == 0 else "---:" for i in range(len(head))) + "|",
    ]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return out


def _machine(m: dict) -> str:
    extra = f", torch {m['torch']}" if m.get("torch") else ""
    return (
        f"{m['cpu']}, {m['cores']} cores, {m['platform']}; Python {m['python']}, numpy {m['numpy']}{extra}, "
        f"evstream {m['evstream']}; {m['date']}"
    )


def _ring(r: dict) -> list[str]:
    from .stream import RATE_HEAD, ring_rows

    return [
        f"**ring** ({r['events']:,} events in 64k batches, median of {r['repeats']} runs after a warm-up, "
        "spread = slowest..fastest run):",
        "",
        *_md(RATE_HEAD, ring_rows(r)),
    ]


def _zmq(r: dict) -> list[str]:
    from .stream import RATE_HEAD, zmq_rows

    return [
        f"**zmq** ({r['events']:,} events over TCP loopback, median of {r['repeats']} runs):",
        "",
        *_md(RATE_HEAD, zmq_rows(r)),
    ]


def _async(r: dict) -> list[str]:
    rows = []
    for s in r["steps"]:
        f, t = s["flops"], s["time_ms"]
        rows.append(
            (
                f"{s['step_events']:,}",
                f"{f['async_sparse'] / 1e6:.1f}",
                f"{f['async_dense'] / 1e6:.1f}",
                f"{f['batch_sparse'] / 1e6:.1f}",
                f"{f['batch_dense'] / 1e6:.1f}",
                f"{f['async_sparse'] / s['step_events'] / 1e3:,.0f}",
                f"{s['flop_reduction']:.1f}x",
                f"{t['async']['median']:.2f}",
                f"{t['batch']['median']:.1f}",
                f"{t['torch_dense']['median']:.1f}",
                f"{s['speedup_vs_torch_dense']:.1f}x",
                f"{s['correctness']['relative_difference']:.1e}",
            )
        )
    per_event = [
        (f"{s['step_events']:,}", *(f"{s['flops_per_event'][k] / 1e3:,.0f}" for k in MODES))
        for s in r["steps"]
        if "flops_per_event" in s
    ]
    m = r["model"]
    return [
        f"**async** ({m['name']} on {' x '.join(map(str, m['input']))}, {r['window_events']:,}-event window; "
        f"{r['input']['description']}; engine {r['machine']['engine_threads']} thread, "
        f"{r['machine']['engine_kernel']}): FLOPs per update (MFLOP) in the four accounting modes, per "
        "event (kFLOP, asynchronous), and time per update (ms, medians) against the engine's batch mode "
        "and a dense torch recompute:",
        "",
        *_md(
            (
                "step",
                "async sparse",
                "async dense",
                "batch sparse",
                "batch dense",
                "kFLOP/event",
                "reduction",
                "async ms",
                "batch ms",
                "torch ms",
                "speedup vs torch",
                "rel. diff vs torch",
            ),
            rows,
        ),
        *(
            [
                "",
                "FLOPs per event of a window step (kFLOP; the update's FLOPs over the events that entered):",
                "",
                *_md(("step", *(k.replace("_", " ") for k in MODES)), per_event),
            ]
            if per_event
            else []
        ),
        *_window_sweep(r.get("window_sweep") or []),
    ]


def _window_sweep(sweep: list[dict]) -> list[str]:
    if not sweep:
        return []
    rows = [
        (
            f"{w['window_events']:,}",
            f"{w['active_sites']:,}",
            *(f"{w['flops'][k] / 1e6:.1f}" for k in MODES),
            f"{w['time_ms']['async']['median']:.2f}",
        )
        for w in sweep
    ]
    head = ("window", "active sites", *(k.replace("_", " ") + " MFLOP" for k in MODES), "async ms")
    return [
        "",
        "Cost against window size (1-event steps; per update, engine time median):",
        "",
        *_md(head, rows),
    ]


def _e2e(r: dict) -> list[str]:
    from .stream import E2E_HEAD, e2e_rate_rows, e2e_resolution_rows

    best = r["highest_without_drops"]
    return [
        f"**e2e** ({r['input']}; {r['window']}; {r['seconds_per_rate']:g} s per rate): window latency "
        "(arrival of a window's newest event to its result) as the input rate rises until events are "
        "dropped; highest rate without drops: "
        + (f"**{best['input_mevents_s']:.2f} M events/s**" if best else "none"),
        "",
        *_md(E2E_HEAD, e2e_rate_rows(r)),
        "",
        f"Cost against sensor resolution ({r['resolution']['input']}):",
        "",
        *_md(("sensor", *E2E_HEAD[1:]), e2e_resolution_rows(r)),
    ]


def _decode(r: dict) -> list[str]:
    from .decode import markdown

    peers = ", ".join(r["peers_installed"]) or ("none installed" if r.get("peers_enabled", True) else "off")
    return [
        f"**decode** (whole file to events, median of {r['runs']} runs after {r['warmup']} warm-up; peers: "
        f"{peers}; a peer whose output differs from evstream's is listed as wrong):",
        "",
        markdown(r["results"]),
    ]


def _repr(r: dict) -> list[str]:
    from .representations import markdown

    shown = {
        **r,
        "incremental": {
            **r["incremental"],
            "rows": [x for x in r["incremental"]["rows"] if x["representation"] in REPORT_INCREMENTAL],
        },
    }
    return [
        f"**repr** (numba CPU backend, {r['machine']['numba_threads']} threads; the incremental table shows "
        f"{', '.join(REPORT_INCREMENTAL)}, the JSON every representation):",
        "",
        markdown(shown),
    ]


SECTIONS = {"decode": _decode, "repr": _repr, "ring": _ring, "zmq": _zmq, "async": _async, "e2e": _e2e}


def markdown_report(
    results: dict, command: str, plots: list[Path] | None = None, base: Path | None = None
) -> str:
    """The report for ``results`` (benchmark name -> result); ``plots`` are linked relative to
    ``base`` (the folder of the Markdown file)."""
    machine = next(iter(results.values()))["machine"]
    quick = any(r.get("quick") for r in results.values())
    lines = [
        f"Generated by `{command}`{' (a --quick smoke run: small sizes, few repeats)' if quick else ''} on "
        f"{_machine(machine)}. Every figure has its baseline measured in the same run.",
    ]
    for name, fn in SECTIONS.items():
        if name in results:
            lines += ["", *fn(results[name])]
    if plots:
        lines += [""]
        for p in plots:
            rel = os.path.relpath(p, base) if base else str(p)
            lines.append(f"![{p.stem}]({rel})")
    return "\n".join(lines) + "\n"


def check_markers(readme, content: str) -> None:
    """ValueError unless ``content`` has the begin marker before the end marker."""
    if BEGIN not in content or END not in content or content.index(BEGIN) > content.index(END):
        raise ValueError(f"{readme}: no '{BEGIN}' ... '{END}' markers to replace between")


def update_readme(readme: Path, text: str) -> None:
    """Replaces the text between the markers in ``readme`` (ValueError when they are missing)."""
    content = readme.read_text()
    check_markers(readme, content)
    a, b = content.index(BEGIN) + len(BEGIN), content.index(END)
    readme.write_text(content[:a] + "\n" + text + content[b:])
