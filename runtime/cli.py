"""The ``evstream`` command line. Each subcommand parses its arguments and calls the library.

Exit status: 0 success, 1 the input could not be read or written (a message names the file and
the byte offset or event index), 2 wrong command-line arguments.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys

from .. import __version__

EXIT_DATA_ERROR = 1
EXIT_USAGE = 2


class UsageError(ValueError):
    """Options that contradict each other or do not apply: exit 2, like the parser's own errors."""


def _sensor_size(text: str) -> tuple[int, int]:
    """Parses ``WIDTHxHEIGHT`` (e.g. ``640x480``)."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT such as 640x480, got {text!r}") from None
    if not (0 < w <= 65535 and 0 < h <= 65535):
        raise argparse.ArgumentTypeError(f"sensor size must be between 1x1 and 65535x65535, got {text!r}")
    return w, h


def _progress_bar(path: str, enabled: bool, desc: str):
    """A tqdm bar over the input's bytes (disabled when not on a terminal or for small files)."""
    from tqdm import tqdm

    size = os.path.getsize(path)
    bar = tqdm(
        total=size,
        unit="B",
        unit_scale=True,
        desc=desc,
        disable=not enabled or size < (32 << 20),
        leave=False,
        file=sys.stderr,
    )
    state = {"done": 0}

    def update(bytes_done: int, events_done: int) -> None:
        bar.update(max(0, min(bytes_done, size) - state["done"]))
        state["done"] = min(bytes_done, size)
        bar.set_postfix_str(f"{events_done:,} events", refresh=False)

    return bar, update


def _fmt_us(t: int | None) -> str:
    return "-" if t is None else f"{t:,} us"


def _fmt_rate(hz: float | None) -> str:
    if hz is None:
        return "-"
    if hz >= 1e6:
        return f"{hz / 1e6:.3f} M events/s"
    if hz >= 1e3:
        return f"{hz / 1e3:.3f} k events/s"
    return f"{hz:.1f} events/s"


def _print_info(s: dict) -> None:
    rows = [
        ("file", s["path"]),
        ("format", f"{s['format']} ({s['description']})"),
        ("sensor", f"{s['width']} x {s['height']} px"),
        ("events", f"{s['events']:,}"),
        ("first / last t", f"{_fmt_us(s['t_first_us'])} / {_fmt_us(s['t_last_us'])}"),
        ("duration", "-" if s["duration_us"] is None else f"{s['duration_us'] / 1e6:.6f} s"),
        ("mean rate", _fmt_rate(s["mean_rate_hz"])),
        (
            "polarity",
            "-"
            if s["on_fraction"] is None
            else f"ON {s['on_events']:,} ({100 * s['on_fraction']:.1f} %), OFF {s['off_events']:,}",
        ),
    ]
    damage = {k: v for k, v in s["counters"].items() if v}
    rows.append(("skipped / damage", ", ".join(f"{k}={v:,}" for k, v in damage.items()) or "none"))
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}} : {v}")


def cmd_info(args) -> int:
    from ..replay import open_events
    from ..replay.tools import summarize

    bar, update = _progress_bar(args.file, sys.stderr.isatty() and not args.json, "reading")
    with bar, open_events(args.file, args.format, args.sensor) as reader:
        summary = summarize(reader, progress=update)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        _print_info(summary)
    return 0


def cmd_convert(args) -> int:
    from ..replay import open_events
    from ..replay.tools import convert

    if os.path.exists(args.output) and not args.force:
        print(f"evstream convert: error: {args.output} exists (use --force to overwrite)", file=sys.stderr)
        return EXIT_USAGE
    if os.path.exists(args.output) and os.path.samefile(args.input, args.output):
        print("evstream convert: error: input and output are the same file", file=sys.stderr)
        return EXIT_USAGE
    bar, update = _progress_bar(args.input, sys.stderr.isatty() and not args.quiet, "converting")
    with bar, open_events(args.input, args.in_format, args.sensor) as reader:
        result = convert(reader, args.output, args.to, progress=update)
    if not args.quiet:
        print(f"wrote {result['events']:,} events to {args.output} ({result['format']})")
        damage = {k: v for k, v in result["counters"].items() if v}
        if damage:
            print("input skipped / damage: " + ", ".join(f"{k}={v:,}" for k, v in damage.items()))
    return 0


def _speed(text: str) -> float | None:
    if text == "max":
        return None
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number or 'max', got {text!r}") from None
    if not v > 0:
        raise argparse.ArgumentTypeError(f"speed must be positive, got {text!r}")
    return v


def _max_gap(text: str) -> float:
    from .sources import checked_max_gap

    try:
        return checked_max_gap(float(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected positive seconds or 'inf', got {text!r}") from None


def _max_gap_option(p: argparse.ArgumentParser) -> None:
    """``--max-gap`` of the commands that replay a recording (run, view, publish)."""
    from .sources import DEFAULT_MAX_GAP_S

    p.add_argument(
        "--max-gap",
        type=_max_gap,
        default=DEFAULT_MAX_GAP_S,
        metavar="SECONDS",
        help="longest jump between consecutive timestamps that a paced replay follows; longer ones, "
        "forwards or backwards (a paused recording, a damaged timestamp, a clock reset), are skipped "
        "and counted (seconds, default %(default)g; 'inf': wait through every gap)",
    )


def _number(text: str, kind, ok, expected: str):
    """``kind(text)`` (int or float) if ``ok`` of it holds, else the parser's error "expected ...";
    text that is no such number fails the same way."""
    try:
        v = kind(text)
    except ValueError:
        v = None
    if v is None or not ok(v):
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
    return v


def _positive_int(text: str) -> int:
    return _number(text, int, lambda v: v > 0, "a positive integer")


def _nonneg_int(text: str) -> int:
    return _number(text, int, lambda v: v >= 0, "an integer >= 0")


def _nonneg_seconds(text: str) -> float:
    return _number(text, float, lambda v: math.isfinite(v) and v >= 0, "a number of seconds >= 0")


def _pos_seconds(text: str) -> float:
    return _number(text, float, lambda v: math.isfinite(v) and v > 0, "a number of seconds > 0")


def _share(text: str) -> float:
    return _number(text, float, lambda v: 0 <= v <= 1, "a number between 0 and 1")


def _open_share(text: str) -> float:
    return _number(text, float, lambda v: 0 < v < 1, "a number between 0 and 1 (both excluded)")


RING_MAX_EVENTS = 1 << 30  # 16 GiB of events


def _ring_size(text: str) -> int:
    v = _positive_int(text)
    if v > RING_MAX_EVENTS:
        raise argparse.ArgumentTypeError(f"at most {RING_MAX_EVENTS:,} events (16 GiB), got {text!r}")
    return v


def _classifier_for(args, source, clip: str | None, labels: list[str] | None):
    """The run's classifier and a notice for the user: --model CKPT (``clip``: the CLIP weights of
    --model clip:WEIGHTS, with the class ``labels``), else the bundled classifier when it fits the
    source's sensor, else none. The options were checked by :func:`_check_run_options`."""
    if args.no_model:
        return None, None
    from ..models.default import DEFAULT_CHECKPOINTS, DEFAULT_SENSORS

    if not args.model and tuple(DEFAULT_SENSORS["nmnist"]) != (source.width, source.height):
        w, h = DEFAULT_SENSORS["nmnist"]
        return None, (
            f"the bundled classifier is for {w}x{h} N-MNIST recordings, the source is "
            f"{source.width}x{source.height}: running without a model (give --model CHECKPOINT)"
        )
    if clip:
        from .classifier import ClipStreamClassifier

        zs = _zero_shot(args, clip, labels, progress=not args.quiet and sys.stderr.isatty())
        return ClipStreamClassifier(zs, (source.width, source.height), top_k=args.top_k), None
    from ..models.checkpoint import load_checkpoint  # imports torch: only when a model will run
    from .classifier import StreamClassifier

    size = (source.width, source.height)
    options = {"dense": args.dense, "threads": args.threads, "top_k": args.top_k}
    if args.model:
        return StreamClassifier(load_checkpoint(args.model), size, **options), None
    path = DEFAULT_CHECKPOINTS["nmnist"]
    if not path.exists():
        return None, f"the bundled classifier ({path.name}) is missing from this installation; no model"
    return StreamClassifier(load_checkpoint(path), size, **options), None


def _check_run_options(args) -> tuple[str | None, list[str] | None]:
    """The option checks of run/view that need no source (usage errors, exit 2), made before the
    source is opened (a ZeroMQ source waits for its publisher). Returns the CLIP weights of
    ``--model clip:WEIGHTS`` and the class names, or (None, None)."""
    clip = _check_clip_options(args)
    if args.no_model and args.model:
        raise UsageError("--no-model and --model contradict each other")
    labels = _clip_labels(args) if clip else None
    _check_window_options(args)
    if args.summary_json:  # a path that cannot be written fails now, not after the whole run
        folder = os.path.dirname(os.path.abspath(args.summary_json))
        if not os.path.isdir(folder):
            raise FileNotFoundError(2, "No such file or directory", args.summary_json)
        if not os.access(folder, os.W_OK) or os.path.isdir(args.summary_json):
            raise PermissionError(13, "Permission denied or not a file", args.summary_json)
    return clip, labels


def _clip_model(args) -> str | None:
    """The weights of ``--model clip:WEIGHTS``, else None."""
    model = getattr(args, "model", None) or ""
    if not model.startswith("clip:"):
        return None
    if not model[5:]:
        raise UsageError("--model clip: needs the CLIP weights after the colon, e.g. clip:ViT-B-32.pt")
    return model[5:]


def _check_clip_options(args) -> str | None:
    """The weights of ``--model clip:WEIGHTS`` (else None); CLIP options without a CLIP model are a
    mistake worth naming."""
    clip = _clip_model(args)
    if clip:
        return clip
    given = [
        flag
        for flag, value in (
            ("--labels", args.labels),
            ("--prompt", args.prompt),
            ("--clip-arch", args.clip_arch),
            ("--clip-preprocess", args.clip_preprocess),
            ("--no-text-cache", args.no_text_cache),
        )
        if value
    ]
    if given:
        raise UsageError(f"{', '.join(given)} go with a CLIP model: --model clip:WEIGHTS")
    return None


def _clip_labels(args) -> list[str]:
    from ..models.clip.zeroshot import parse_labels

    if not args.labels:
        raise UsageError("a CLIP model needs the class names: --labels 'dog,cat,car' (or @FILE)")
    return parse_labels(args.labels)


def _zero_shot(args, weights: str, labels: list[str], progress: bool):
    """The zero-shot classifier of ``--model clip:WEIGHTS`` and its CLIP options."""
    from ..models.clip.model import load_clip
    from ..models.clip.zeroshot import ZeroShotClassifier, parse_templates

    clip = load_clip(weights, arch=args.clip_arch)
    preprocess = args.clip_preprocess or ("ezsr" if clip.arch.startswith("EVA") else "eventclip")
    templates = parse_templates(args.prompt, preprocess)
    return ZeroShotClassifier(
        clip,
        labels,
        preprocess=preprocess,
        templates=templates,
        cache=not args.no_text_cache,
        progress=progress,
    )


def _clip_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``--model clip:WEIGHTS`` (run and eval)."""
    g = p.add_argument_group(
        "CLIP zero-shot models (--model clip:WEIGHTS; pip install -c constraints.txt 'evstream[clip]')"
    )
    g.add_argument(
        "--labels",
        metavar="NAMES",
        help="class names, 'dog,cat,car' or @FILE with one per line (eval: default from the dataset)",
    )
    g.add_argument(
        "--prompt",
        action="append",
        metavar="TEMPLATE",
        help="prompt template with {} for the class name, repeatable, or 'openai-imagenet' for OpenAI's "
        "80 ImageNet templates (default: 'a point cloud image of a {}' with eventclip, the 80 with ezsr)",
    )
    g.add_argument(
        "--clip-arch",
        metavar="ARCH",
        help="open_clip architecture of a state dict (ViT-B-32, ViT-B-32-quickgelu for OpenAI's "
        "weights, ViT-B-16, ViT-L-14, EVA02-E-14-plus, or a model config .json); OpenAI archives, "
        "model folders, EZSR's checkpoint and files saved by evstream name their own",
    )
    g.add_argument(
        "--clip-preprocess",
        choices=["eventclip", "ezsr"],
        help="event images as EventCLIP or EZSR make them "
        "(default: ezsr for EZSR's EVA model, else eventclip)",
    )
    g.add_argument(
        "--no-text-cache",
        action="store_true",
        help="do not keep the class embeddings in $EVSTREAM_CACHE/clip-text (default ~/.cache/evstream)",
    )


def _check_window_options(args) -> None:
    time_options = [
        name
        for name, given in (
            ("--window-us", args.window_us),
            ("--stride-us", args.stride_us),
            ("--trailing", args.trailing),
        )
        if given
    ]
    if args.window_events and time_options:
        raise UsageError(
            f"--window-events (count windows) and {', '.join(time_options)} (time windows) contradict"
        )
    if args.stride_events and not args.window_events:
        raise UsageError("--stride-events goes with --window-events (count windows)")


def _run_window(args, classifier):
    """Window options of the command line; without any, the classifier's streaming window (from its
    checkpoint) or 10 ms time windows."""
    from .windows import CountWindowSpec, TimeWindowSpec

    if args.window_events:
        return CountWindowSpec(args.window_events, args.stride_events)
    if args.window_us or args.stride_us:
        return TimeWindowSpec(args.window_us or 10_000, args.stride_us, trailing=args.trailing)
    stream = (classifier.meta.get("stream_window") if classifier is not None else None) or {}
    if stream.get("kind") == "time":
        stride, trailing = int(stream.get("stride_us") or stream["us"]), bool(stream.get("trailing"))
        return TimeWindowSpec(int(stream["us"]), stride, trailing=trailing or args.trailing)
    if stream.get("kind") == "count":
        return CountWindowSpec(int(stream["events"]), int(stream.get("stride_events") or stream["events"]))
    return TimeWindowSpec(10_000, None, trailing=args.trailing)


def cmd_run(args) -> int:
    import logging

    from .pipeline import Pipeline, RunConfig, check_sensor_pixels, write_jsonl
    from .sources import open_source
    from .windows import CountWindowSpec

    logging.basicConfig(level=logging.WARNING, format="evstream: %(message)s")
    use_viewer = args.viewer or args.screenshot is not None
    clip, labels = _check_run_options(args)
    if args.screenshot is not None:
        _check_screenshot_path(args.screenshot)
        if args.after is None or not args.after >= 0:
            raise UsageError(f"--after must be a number of seconds >= 0, got {args.after}")
    if use_viewer and not 0 < args.fps <= 240:
        raise UsageError(f"--fps must be in (0, 240], got {args.fps}")
    if use_viewer:
        from .viewer import NO_DISPLAY_ADVICE, ViewerUnavailable, import_qt, probe_display

        import_qt()  # ImportError naming the extra, before anything runs

        def no_window(problem) -> int:
            print(
                f"evstream {args.command}: error: --viewer cannot open a window: {problem}.", file=sys.stderr
            )
            print(f"evstream {args.command}: {NO_DISPLAY_ADVICE}", file=sys.stderr)
            return EXIT_USAGE

        if args.screenshot is None and (problem := probe_display()):
            return no_window(problem)
    source = open_source(
        args.source,
        speed=args.speed,
        loop=args.loop,
        max_gap_s=args.max_gap,
        zmq_pattern=args.zmq,
        follow=args.follow,
        sensor_size=args.sensor,
        format=args.format,
        connect_timeout_s=args.connect_timeout,
        curve_keys=args.curve_keys,
    )
    check_sensor_pixels(source.width, source.height)  # (before the viewer's frame is allocated)
    classifier, notice = _classifier_for(args, source, clip, labels)
    if notice and not args.quiet:
        print(f"evstream {args.command}: {notice}", file=sys.stderr)
    window = _run_window(args, classifier)
    sinks = []
    if args.predictions:
        sinks.append(write_jsonl(args.predictions))
    if args.publish:
        sinks.append(_result_publisher(args.publish))
    status = None
    if not args.quiet and sys.stderr.isatty() and not use_viewer:

        def status(line: str) -> None:
            print("\r" + line + " " * 8, end="", file=sys.stderr, flush=True)

    config = RunConfig(
        window=window, ring_capacity=args.ring, policy=args.policy, max_seconds=args.max_seconds
    )
    tap = None
    if use_viewer:
        from .viewer_state import ViewerTap

        tap = ViewerTap()
    pipeline = Pipeline(
        source,
        config,
        on_window=(lambda r: [s(r) for s in sinks]) if sinks else None,
        on_status=status,
        classifier=classifier,
        tap=tap,
    )
    viewer_stats = None
    try:
        if use_viewer:
            from .viewer import run_viewer

            try:
                summary, viewer_stats = run_viewer(
                    pipeline,
                    tap,
                    screenshot=args.screenshot,
                    after_s=args.after,
                    top_k=args.top_k,
                    fps=args.fps,
                )
            except ViewerUnavailable as exc:
                return no_window(exc)
        else:
            summary = pipeline.run()
    finally:
        for s in sinks:
            s.close()
    if status:
        print(file=sys.stderr)
    result = summary.to_dict()
    if viewer_stats is not None:
        result["viewer"] = viewer_stats.to_dict()
    if args.summary_json:
        with open(args.summary_json, "w") as f:
            json.dump(result, f, indent=2)
    if not args.quiet and result.get("prediction"):
        top = result["prediction"]["top"]
        print(
            f"prediction: {top[0]['class']} ({top[0]['probability']:.2f})"
            + "".join(f", {t['class']} ({t['probability']:.2f})" for t in top[1:])
            + f" | {classifier.mode}: {result['flops_per_window'] / 1e6:.3f} MFLOP per window, "
            f"{result['flops_per_event'] / 1e3:.1f} kFLOP per event"
        )
    if not args.quiet:
        p50 = result["latency_ms_p50"]
        print(
            f"{source.description}: {result['events_processed']:,} events in {result['windows']:,} windows, "
            f"{result['events_dropped']:,} dropped, {result['wall_s']:.2f} s"
            + (
                f", window latency p50 {p50:.3f} ms, p99 {result['latency_ms_p99']:.3f} ms"
                if p50 is not None
                else ""
            )
        )
        notes = _stream_notes(result)
        if notes:
            print("stream: " + ", ".join(notes), file=sys.stderr)
        if classifier is not None and not result["windows"] and isinstance(window, CountWindowSpec):
            print(
                f"no window filled: windows of {window.size:,} events, the stream had "
                f"{result['events_processed']:,} (--window-events N or --window-us US set another window)",
                file=sys.stderr,
            )
        if summary.cancelled:
            print(
                f"stopped early (viewer closed): {result['events_unprocessed']:,} events received "
                "but not processed",
                file=sys.stderr,
            )
        if viewer_stats is not None:
            fps = viewer_stats.fps_median
            print(
                f"viewer: {viewer_stats.frames:,} frames"
                + (f", median {fps:.1f} frames/s" if fps else "")
                + (
                    f", {viewer_stats.undrawn_events:,} events not drawn (viewer behind)"
                    if viewer_stats.undrawn_events
                    else ""
                )
                + (f", screenshot {viewer_stats.screenshot}" if viewer_stats.screenshot else "")
            )
    if summary.error == "interrupted":
        return 130
    if summary.error:
        print(f"evstream {args.command}: error: {summary.error}", file=sys.stderr)
        return EXIT_DATA_ERROR
    return 0


def cmd_keys(args) -> int:
    from .curve import generate_keys

    paths = generate_keys(args.dir, force=args.force)
    if not args.quiet:
        print(
            f"publisher key pair : {paths['publisher']['public']} (public), "
            f"{paths['publisher']['secret']} (secret, 0600)\n"
            f"subscriber key pair: {paths['subscriber']['public']} (public), "
            f"{paths['subscriber']['secret']} (secret, 0600)\n"
            f"authorized subscribers: {paths['authorized']}/*.key\n"
            f"use: evstream publish FILE --curve-keys {args.dir}   and   "
            f"evstream run --source tcp://... --curve-keys {args.dir}"
        )
    return 0


def cmd_view(args) -> int:
    args.source, args.viewer = args.file, True
    return cmd_run(args)


def _check_screenshot_path(path: str) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise UsageError(f"--screenshot {path}: folder {folder} does not exist")
    if not path.lower().endswith(".png"):
        raise UsageError(f"--screenshot {path}: give a .png file name")


def _result_publisher(url: str):
    import zmq

    from .publish import bind, bind_warning

    if warning := bind_warning(url):
        print(f"evstream run: warning: {warning}", file=sys.stderr)
    sock = zmq.Context.instance().socket(zmq.PUB)
    bind(sock, url)  # ValueError naming the address

    def sink(result: dict) -> None:
        sock.send_string(json.dumps(result))

    sink.close = lambda: sock.close(linger=500)
    return sink


def _stream_notes(result: dict) -> list[str]:
    """The irregularities of a run worth a line of their own (network damage, restarts, gaps)."""
    stats = result.get("source_stats") or {}
    counts = {**stats, "windows_skipped": result.get("windows_skipped")}
    labels = [  # (count, text for one, text for more)
        ("malformed", "malformed message skipped", "malformed messages skipped"),
        ("gap_events", "event lost in sequence gaps", "events lost in sequence gaps"),
        ("out_of_bounds", "event outside the sensor dropped", "events outside the sensor dropped"),
        ("restarts", "publisher restart", "publisher restarts"),
        (
            "unended_streams",
            "stream cut off without an end (its last events may be lost uncounted)",
            "streams cut off without an end (their last events may be lost uncounted)",
        ),
        (
            "gaps_skipped",
            "gap in the recording's timestamps longer than --max-gap skipped, not waited through",
            "gaps in the recording's timestamps longer than --max-gap skipped, not waited through",
        ),
        ("windows_skipped", "empty window skipped in a long gap", "empty windows skipped in long gaps"),
        (
            "joined_after_events",
            "event sent before this subscriber joined the stream",
            "events sent before this subscriber joined the stream",
        ),
    ]
    notes = [
        f"{counts[key]:,} {one if counts[key] == 1 else many}" for key, one, many in labels if counts.get(key)
    ]
    return notes + _reader_notes(stats.get("reader") or {})


# A file reader's counters worth a note (the others, such as time_loops or other_words, describe
# the recording, not damage); `evstream info FILE` lists them all.
_READER_LABELS = {
    "out_of_bounds": ("event outside the sensor dropped", "events outside the sensor dropped"),
    "truncated_bytes": ("byte of a cut-off last record skipped", "bytes of a cut-off last record skipped"),
    "before_time": (
        "event before the first time reference dropped",
        "events before the first time reference dropped",
    ),
    "unknown_words": ("word of an unknown type skipped", "words of unknown types skipped"),
    "t_backwards": (
        "event whose timestamp went backwards (kept)",
        "events whose timestamps went backwards (kept)",
    ),
    "invalid_events": ("invalid event skipped", "invalid events skipped"),
    "truncated_packets": ("cut-off packet skipped", "cut-off packets skipped"),
    "bad_polarity": (
        "event with a polarity byte other than 0/1 (read as ON)",
        "events with polarity bytes other than 0/1 (read as ON)",
    ),
    "trailing_bytes": ("trailing byte ignored", "trailing bytes ignored"),
}


def _reader_notes(counts: dict) -> list[str]:
    """Notes for the damage a file reader recovered from (see README, Bad input)."""
    return [
        f"{counts[key]:,} {one if counts[key] == 1 else many} in the recording"
        for key, (one, many) in _READER_LABELS.items()
        if counts.get(key)
    ]


def cmd_publish(args) -> int:
    from .publish import bind_warning, publish
    from .sources import FileSource

    if warning := bind_warning(args.to):
        print(f"evstream publish: warning: {warning}", file=sys.stderr)
    source = FileSource(
        args.file,
        speed=args.speed,
        loop=args.loop,
        format=args.format,
        sensor_size=args.sensor,
        max_gap_s=args.max_gap,
    )
    result = publish(source, args.to, pattern=args.zmq, delay_s=args.delay, curve_keys=args.curve_keys)
    if not args.quiet:
        print(f"published {result['events']:,} events in {result['messages']:,} messages to {args.to}")
        if notes := _reader_notes(source.reader_counters):
            print("evstream publish: " + ", ".join(notes), file=sys.stderr)
        if gaps := source.pacer.gaps_skipped:
            print(
                f"evstream publish: {gaps:,} gap{'s' * (gaps != 1)} in the recording's timestamps longer "
                f"than --max-gap skipped ({source.pacer.gap_seconds_skipped:,.1f} s), not waited through",
                file=sys.stderr,
            )
    return 0


def _render_size(text: str) -> tuple[int, int]:
    """Parses ``HEIGHTxWIDTH`` for ``render --size`` (rows first, unlike ``--sensor``)."""
    from .render import RenderArgumentError, parse_size_hw

    try:
        return parse_size_hw(text)
    except RenderArgumentError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _render_window(text: str):
    """``all`` (None) or a window length ``<N>ev`` / ``<T>us|ms|s``."""
    from .render import RenderArgumentError, parse_window_length

    if text.strip().lower() == "all":
        return None
    try:
        return parse_window_length(text)
    except RenderArgumentError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _render_stride(text: str):
    from .render import RenderArgumentError, parse_window_length

    try:
        return parse_window_length(text, "stride")
    except RenderArgumentError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _render_param(text: str) -> tuple[str, object]:
    """``NAME=VALUE``; VALUE is a Python literal (5, 0.5, True) or else a string (polarity)."""
    import ast

    name, sep, value = text.partition("=")
    if not sep or not name.strip().isidentifier():
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE such as num_bins=5, got {text!r}")
    try:
        parsed = ast.literal_eval(value.strip())
    except (ValueError, SyntaxError):
        parsed = value.strip()
    return name.strip(), parsed


def cmd_render(args) -> int:
    from .render import OutputDirError, RenderArgumentError, RenderConfig, render, resolve_kernel, window_spec

    flags = {"param": "--param", "window": "--window", "stride": "--stride", "size": "--size"}
    try:
        config = RenderConfig(
            path=args.file,
            representation=args.representation,
            out_dir=args.out,
            window=window_spec(args.window, args.stride),
            size=args.size,
            backend=args.backend,
            params=dict(args.param or []),
            png=args.png,
            force=args.force,
            format=args.format,
            sensor_size=args.sensor,
        )
        resolve_kernel(config)  # argument errors before any reading or writing
    except RenderArgumentError as exc:
        flag = flags.get(exc.argument, f"--{exc.argument}")
        print(f"evstream render: error: argument {flag}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    bar, update = _progress_bar(args.file, sys.stderr.isatty() and not args.quiet, "rendering")
    try:
        with bar:
            result = render(config, progress=update)
    except OutputDirError as exc:
        print(f"evstream render: error: argument --out: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if not args.quiet:
        size = result["size"]
        shape = f"{result['channels']} x {size['height']} x {size['width']}" if result["channels"] else "-"
        sensor = result["sensor"]
        rescaled = f", rescaled from {sensor['width']}x{sensor['height']}" if result["rescaled"] else ""
        print(
            f"wrote {result['windows']:,} window{'' if result['windows'] == 1 else 's'} of "
            f"{result['representation']} ({shape}, float32) "
            f"to {args.out}{rescaled}"
        )
    return 0


def cmd_bench(args) -> int:
    from .bench import BENCHMARKS, machine_info

    names = [n for n, b in BENCHMARKS.items() if b.in_all] if args.benchmark == "all" else [args.benchmark]
    if args.source is not None and not set(names) & {"async", "e2e", "soak"}:
        raise UsageError(f"--source applies to the async, e2e and soak benchmarks, not to {args.benchmark}")
    options = {"quick": args.quick, "progress": sys.stderr.isatty(), "threads": args.threads}
    if args.minutes is not None:
        if args.benchmark != "soak" or not args.minutes > 0:
            raise UsageError("--minutes applies to 'evstream bench soak' and must be positive")
        options["minutes"] = args.minutes
    if args.rate is not None:
        if args.benchmark != "soak" or not args.rate > 0:
            raise UsageError("--rate applies to 'evstream bench soak' and must be positive")
        options["rate"] = args.rate
    if args.source is not None:
        options.update(source=args.source, format=args.format, sensor_size=args.sensor)
    if args.channel_skip is not None:
        if args.benchmark != "async":
            raise UsageError("--channel-skip applies to 'evstream bench async'")
        options["channel_skip"] = args.channel_skip
    if args.runs is not None:
        options["runs"] = args.runs
    if args.warmup is not None:
        options["warmup"] = args.warmup
    options["peers_enabled"] = not args.no_peers
    if args.plots:
        import importlib.util

        if importlib.util.find_spec("pyqtgraph") is None:  # found out now, not after the run
            raise ImportError("--plots needs pyqtgraph and a Qt binding: pip install 'evstream[viewer]'")
        os.makedirs(args.plots, exist_ok=True)
    if args.readme:
        from .bench.report import check_markers

        with open(args.readme) as f:  # checked before the run, not after it
            check_markers(f"--readme {args.readme}", f.read())
    results = {}
    for name in names:
        bench = BENCHMARKS[name]
        if len(names) > 1 and sys.stderr.isatty():
            print(f"evstream bench: {name} ({bench.what}) ...", file=sys.stderr, flush=True)
        results[name] = bench.run(**options)
        if args.json != "-":
            print(bench.format(results[name]) + ("\n" if len(names) > 1 else ""), flush=True)
    result = (
        results[names[0]]
        if len(names) == 1
        else {"benchmark": "all", "quick": args.quick, "machine": machine_info(), "benchmarks": results}
    )
    if args.json == "-":
        print(json.dumps(result, indent=2))
    elif args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    plots = []
    if args.plots:
        from .bench.plots import write_plots

        plots = write_plots(results, args.plots)
        if args.json != "-":
            for path in plots:
                print(f"plot: {path}")
    if args.markdown or args.readme:
        from pathlib import Path

        from .bench.report import markdown_report, update_readme

        command = "evstream " + " ".join(sys.argv[1:]) if sys.argv[1:2] == ["bench"] else "evstream bench"
        target = Path(args.markdown or args.readme)
        text = markdown_report(results, command, plots, target.resolve().parent)
        if args.markdown:
            target.write_text(text)
        else:
            update_readme(target, text)
    return 0


def cmd_train(args) -> int:
    from ..models.train import TrainConfig, train

    cfg = TrainConfig(
        dataset=args.dataset,
        root=args.root,
        out=args.out,
        list_file=args.list,
        model=args.model,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        weight_decay=args.weight_decay,
        val_fraction=args.val_fraction,
        seed=args.seed,
        augment=not args.no_augment,
        max_shift=args.max_shift,
        workers=args.workers,
        resume=args.resume,
        export=args.export,
        label_smoothing=args.label_smoothing,
        skip_bad=args.skip_bad,
        command=["evstream", *sys.argv[1:]],
    )
    quiet = args.quiet
    log = (lambda *a: None) if quiet else print
    metrics = train(cfg, progress=not quiet and sys.stderr.isatty(), log=log)
    if args.json and int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps(metrics, indent=2))
    return 0


def cmd_eval(args) -> int:
    from ..models.datasets import build_dataset
    from ..models.train import eval_checkpoint

    clip = _check_clip_options(args)
    checkpoint = args.model or _default_checkpoint(args.dataset)
    options = {"skip_bad": args.skip_bad}
    if args.list:
        options["list_file"] = args.list
    dataset = build_dataset(args.dataset, args.root, **options)
    progress = not args.quiet and not args.json and sys.stderr.isatty()
    if clip:
        from ..models.clip.eval import eval_zero_shot
        from ..models.clip.zeroshot import dataset_labels, parse_labels

        labels = parse_labels(args.labels) if args.labels else dataset_labels(dataset)
        if len(labels) != len(dataset.classes):
            raise UsageError(
                f"--labels gives {len(labels)} names, the dataset has {len(dataset.classes)} classes"
            )
        zs = _zero_shot(args, clip, labels, progress)
        result = eval_zero_shot(
            zs, dataset, batch_size=args.batch_size, workers=args.workers, progress=progress
        )
    else:
        result = eval_checkpoint(
            checkpoint, dataset, batch_size=args.batch_size, workers=args.workers, progress=progress
        )
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"{result['checkpoint']} ({result['model']}) on {result['samples']:,} {args.dataset} samples:")
    print(f"  top-1 {result['top1']:.4f}   top-5 {result['top5']:.4f}")
    print("  per class: " + ", ".join(f"{c} {a:.3f}" for c, a in result["per_class"].items()))
    return 0


def _default_checkpoint(dataset: str) -> str:
    from ..models.default import DEFAULT_CHECKPOINTS

    if dataset not in DEFAULT_CHECKPOINTS:
        raise UsageError(f"no bundled model for {dataset}: give --model CHECKPOINT")
    return str(DEFAULT_CHECKPOINTS[dataset])


def _dataset_arguments(p: argparse.ArgumentParser, datasets: list[str]) -> None:
    """The dataset options train and eval share."""
    p.add_argument("--dataset", required=True, choices=datasets, help="dataset layout (see README)")
    p.add_argument("--root", required=True, help="dataset folder")
    p.add_argument("--list", metavar="FILE", help="label list (N-MNIST: '<id> <class>' lines)")
    p.add_argument("--workers", type=_nonneg_int, default=0, help="data loader processes (default 0)")
    p.add_argument("--skip-bad", action="store_true", help="skip missing or unreadable recordings")


def _run_options(p: argparse.ArgumentParser) -> None:
    """Options shared by ``run`` and ``view``."""
    from ..replay.formats import READERS

    p.add_argument(
        "--speed", type=_speed, default=1.0, help="replay speed: 1 real time, 0.1 slower, 'max' (default 1)"
    )
    p.add_argument("--loop", action="store_true", help="replay the recording again and again")
    _max_gap_option(p)
    p.add_argument(
        "--window-us",
        type=_positive_int,
        help="time window length in us (default: the model's streaming window, else 10000)",
    )
    p.add_argument("--stride-us", type=_positive_int, help="time window stride in us (default: the length)")
    p.add_argument(
        "--trailing",
        action="store_true",
        help="time windows that end one stride after the first event and fill up (results from the start)",
    )
    p.add_argument(
        "--window-events", type=_positive_int, help="count windows of N events instead of time windows"
    )
    p.add_argument(
        "--stride-events", type=_positive_int, help="count window stride (default: the window size)"
    )
    p.add_argument(
        "--zmq", choices=["sub", "pull"], default="sub", help="ZeroMQ socket type for tcp:// and ipc://"
    )
    p.add_argument("--follow", action="store_true", help="keep listening after the publisher's end of stream")
    p.add_argument(
        "--connect-timeout",
        type=_pos_seconds,
        default=10.0,
        metavar="S",
        help="seconds to wait for the first ZeroMQ message (default 10)",
    )
    p.add_argument(
        "--curve-keys",
        metavar="DIR",
        help="ZeroMQ sources: authenticate and encrypt with CURVE, keys from 'evstream keys DIR' "
        "(publishers without the matching keys are refused)",
    )
    p.add_argument(
        "--ring", type=_ring_size, default=1 << 22, help="ring buffer capacity in events (default 4,194,304)"
    )
    p.add_argument(
        "--policy",
        choices=["block", "drop-oldest", "drop-newest"],
        help="when the ring is full (default: block for recordings, drop-oldest for live streams)",
    )
    p.add_argument("--predictions", metavar="FILE.jsonl", help="write one JSON line per window")
    p.add_argument(
        "--publish", metavar="URL", help="send per-window results on a ZeroMQ PUB socket bound to URL"
    )
    p.add_argument("--summary-json", metavar="FILE", help="write the run summary as JSON")
    p.add_argument("--max-seconds", type=_pos_seconds, help="stop after this many seconds")
    p.add_argument("--format", choices=sorted(READERS), help="recording format (default: detected)")
    p.add_argument(
        "--sensor", type=_sensor_size, metavar="WxH", help="sensor size, for files that do not state it"
    )
    p.add_argument(
        "--model",
        metavar="CKPT",
        help="classifier checkpoint, or clip:WEIGHTS for zero-shot CLIP with --labels (default: the bundled "
        "N-MNIST classifier when the sensor is 34x34)",
    )
    p.add_argument("--no-model", action="store_true", help="run without a classifier (histogram only)")
    p.add_argument(
        "--dense", action="store_true", help="recompute with the torch model every window (for comparison)"
    )
    p.add_argument("--threads", type=_positive_int, default=1, help="threads of the asynchronous engine")
    p.add_argument("-q", "--quiet", action="store_true", help="no status line or summary")
    p.add_argument(
        "--top-k", type=_positive_int, default=3, help="classes reported with their probability (default 3)"
    )
    _clip_arguments(p)
    viewer = p.add_argument_group("viewer (pip install 'evstream[viewer]')")
    viewer.add_argument(
        "--viewer", action="store_true", help="open the Qt viewer (events, model input, predictions, plots)"
    )
    viewer.add_argument(
        "--screenshot",
        metavar="PNG",
        help="open the viewer (offscreen when there is no display), save a screenshot and exit",
    )
    viewer.add_argument(
        "--fps", type=float, default=30.0, help="viewer frames per second to aim for (default 30)"
    )
    viewer.add_argument(
        "--after",
        type=float,
        default=3.0,
        metavar="SECONDS",
        help="with --screenshot: seconds after the replay starts (default 3; earlier if the stream ends)",
    )


def build_parser() -> argparse.ArgumentParser:
    from ..replay.formats import READERS, WRITE_EXTENSIONS, WRITERS

    readable = ", ".join(sorted(READERS))
    parser = argparse.ArgumentParser(
        prog="evstream",
        description="Real-time recognition runtime for event cameras.",
        epilog="Run 'evstream COMMAND --help' for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"evstream {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser(
        "info",
        help="describe a recording: format, sensor, events, time span, rate, polarity",
        description="Reads a recording once (streaming) and prints its format, sensor size, event count, "
        "first/last timestamp, duration, mean event rate, polarity balance and any skipped or damaged data.",
    )
    p.add_argument("file", help="event recording (format detected from content)")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    p.add_argument("--format", choices=sorted(READERS), help=f"skip detection; one of: {readable}")
    p.add_argument(
        "--sensor", type=_sensor_size, metavar="WxH", help="sensor size, for files that do not state it"
    )
    p.set_defaults(func=cmd_info)

    p = sub.add_parser(
        "convert",
        help="convert a recording to another format",
        description="Streams every event of INPUT into OUTPUT. The output format comes from --to or OUTPUT's "
        f"extension ({', '.join(f'{k}={v}' for k, v in sorted(WRITE_EXTENSIONS.items()))}).",
    )
    p.add_argument("input", help="event recording to read (any readable format)")
    p.add_argument("output", help="file to write")
    p.add_argument("--to", choices=sorted(WRITERS), help="output format (default: from the extension)")
    p.add_argument("--in-format", choices=sorted(READERS), help="input format (default: detected)")
    p.add_argument(
        "--sensor", type=_sensor_size, metavar="WxH", help="input sensor size, if the file lacks it"
    )
    p.add_argument("--force", action="store_true", help="overwrite OUTPUT if it exists")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar or summary")
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser(
        "run",
        help="run the streaming loop on a recording or a live stream",
        description="Streams events from SOURCE through a ring buffer into sliding windows, an "
        "incrementally updated event histogram and a classifier whose predictions refresh at every "
        "window step (the asynchronous sparse CNN engine, or the torch model with --dense), with a live "
        "status line (prediction, latency, FLOPs per window and per event), per-window results and a "
        "summary. Without --model the bundled N-MNIST classifier runs on 34x34 sources.",
    )
    p.add_argument(
        "--source",
        required=True,
        help="a recording (any readable format), tcp://HOST:PORT or ipc://PATH (an evstream publisher), "
        "camera:N or video:FILE (frames turned into events), dv:, dv-net://HOST:PORT or metavision: "
        "(a sensor)",
    )
    _run_options(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser(
        "keys",
        help="make ZeroMQ CURVE key pairs for authenticated, encrypted streams (--curve-keys DIR)",
        description="Writes a publisher and a subscriber key pair (ZeroMQ certificate files; secret "
        "files mode 0600) and DIR/authorized with the subscriber's public key. 'evstream publish "
        "--curve-keys DIR' then admits only authorized subscribers, and 'evstream run --curve-keys DIR' "
        "reads only from the publisher with the matching key. Copy DIR (or the files each side needs) "
        "to both machines.",
    )
    p.add_argument("dir", help="folder for the keys (created if missing)")
    p.add_argument("--force", action="store_true", help="replace keys that exist")
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing")
    p.set_defaults(func=cmd_keys)

    p = sub.add_parser(
        "view",
        help="replay a recording in the viewer (evstream run --source FILE --viewer)",
        description="Replays FILE through the streaming loop with the Qt viewer open: the decaying event "
        "frame, the model's input, top-k predictions and rolling plots of event rate, window latency and "
        "FLOPs per event. Keys: Space pause/resume, + and - speed, 1 real time, H help, Q quit. Takes the "
        "options of 'evstream run'.",
    )
    p.add_argument("file", help="event recording (any readable format), or any --source value")
    _run_options(p)
    p.set_defaults(func=cmd_view)

    p = sub.add_parser(
        "publish",
        help="replay a recording onto ZeroMQ (for 'evstream run --source tcp://...')",
        description="Sends the events of FILE in evstream's wire format (see README) on a ZeroMQ socket "
        "bound to --to, paced by the recording's timestamps, then an end-of-stream message.",
    )
    p.add_argument("file", help="event recording")
    p.add_argument(
        "--to", default="tcp://127.0.0.1:5555", help="address to bind (default tcp://127.0.0.1:5555)"
    )
    p.add_argument("--speed", type=_speed, default=1.0, help="replay speed: 1 real time, 'max' (default 1)")
    p.add_argument("--loop", action="store_true", help="replay again and again")
    _max_gap_option(p)
    p.add_argument("--zmq", choices=["pub", "push"], default="pub", help="socket type (default pub)")
    p.add_argument(
        "--delay", type=_nonneg_seconds, default=0.5, help="seconds to wait for subscribers before sending"
    )
    p.add_argument(
        "--curve-keys",
        metavar="DIR",
        help="authenticate and encrypt with CURVE, keys from 'evstream keys DIR' (only the subscribers "
        "whose public keys are in DIR/authorized are admitted)",
    )
    p.add_argument("--format", choices=sorted(READERS), help="recording format (default: detected)")
    p.add_argument(
        "--sensor", type=_sensor_size, metavar="WxH", help="sensor size, for files that do not state it"
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no summary")
    p.set_defaults(func=cmd_publish)

    from ..kernels.representations import BACKENDS, REPRESENTATIONS

    p = sub.add_parser(
        "render",
        help="write a recording's event representation per window as .npy (and PNG previews)",
        description="Computes an event representation of FILE for the whole recording or for each "
        "window (count or time windows, optionally overlapping) and writes DIR/window_000000.npy, ... "
        "(float32, C x H x W), with --png a preview per window (2-channel ON/OFF as red/blue, other "
        "representations as grey tiles of each channel side by side, each channel normalised on its own), "
        "and DIR/render.json describing the run and every window (t_start_us, t_end_us, events). "
        "Count and time windows stream the file; --window all holds the whole recording in memory.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
        "  evstream render rec.raw -r event_histogram --out hist/              # one window: everything\n"
        "  evstream render rec.npz -r dist --size 224x224 --out x/             # N-ImageNet input size\n"
        "  evstream render rec.aedat4 -r voxel_grid --param num_bins=5 --window 50ms --out v/ --png\n"
        "  evstream render rec.bin -r time_surface --window 2000ev --stride 500ev --out t/\n"
        "\n"
        "--size is HEIGHTxWIDTH (rows first, e.g. 191x255 is 191 rows of 255 pixels); --sensor is "
        "WIDTHxHEIGHT\nlike the other commands. Exit status: 0 done, 1 unreadable input or "
        "unwritable output, 2 bad arguments\n(including a non-empty --out directory without --force).",
    )
    p.add_argument("file", help="event recording (any readable format)")
    p.add_argument(
        "-r",
        "--representation",
        required=True,
        choices=list(REPRESENTATIONS),
        metavar="NAME",
        help=f"one of: {', '.join(REPRESENTATIONS)}",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="output directory (created if missing)")
    p.add_argument(
        "--size",
        type=_render_size,
        metavar="HxW",
        help="output size HEIGHTxWIDTH, rows first (e.g. 224x224); events are rescaled N-ImageNet-style "
        "(x * W / sensor width, truncated). Default: the sensor size",
    )
    p.add_argument(
        "--window",
        type=_render_window,
        default="all",
        metavar="all|<N>ev|<T>ms",
        help="'all' (default: the whole recording as one window), <N>ev (N events per window) or a "
        "duration <T>ms, <T>us or <T>s (e.g. 50ms, 2500us, 0.5s)",
    )
    p.add_argument(
        "--stride",
        type=_render_stride,
        metavar="<N>ev|<T>ms",
        help="window start-to-start distance, same kind as --window (default: the window length, no "
        "overlap; smaller overlaps, larger leaves gaps)",
    )
    p.add_argument("--png", action="store_true", help="also write a PNG preview per window")
    p.add_argument("--backend", choices=list(BACKENDS), default="cpu", help="kernel backend (default cpu)")
    p.add_argument(
        "--param",
        type=_render_param,
        action="append",
        metavar="NAME=VALUE",
        help="a representation parameter, repeatable (e.g. --param num_bins=5 --param measurement=polarity)",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="write into a non-empty DIR, replacing earlier window_* files and render.json there",
    )
    p.add_argument("--format", choices=sorted(READERS), help="recording format (default: detected)")
    p.add_argument(
        "--sensor",
        type=_sensor_size,
        metavar="WxH",
        help="sensor size WIDTHxHEIGHT, for files that do not state it",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar or summary")
    p.set_defaults(func=cmd_render)

    p = sub.add_parser(
        "bench",
        help="measure evstream beside its baselines in one run (decode, repr, ring, zmq, async, e2e, all)",
        description="Runs benchmarks and prints tables (or JSON). Each figure has a baseline measured in "
        "the same run (memcpy, numpy's bincount, raw pyzmq, the engine's batch mode and a dense torch "
        "recompute, the peer libraries of the 'bench' extra, whose outputs are checked), medians of "
        "repeated runs after a warm-up with their spread, and the machine's description. decode: file "
        "decoding; repr: event representations; ring: the ring buffer; zmq: the ZeroMQ source; async: the "
        "asynchronous sparse CNN engine (FLOPs in four modes, time per update); e2e: the pipeline's window "
        "latency distribution and drops at rising input rates; all: every one of them. --quick: a smoke "
        "run (all of them in under two minutes).",
    )
    from .bench import BENCHMARKS

    p.add_argument(
        "benchmark",
        choices=[*BENCHMARKS, "all"],
        help=f"which benchmark: {', '.join(BENCHMARKS)} or all (every one but soak)",
    )
    p.add_argument("--json", metavar="FILE", help="write the results as JSON to FILE ('-': to stdout)")
    p.add_argument("--plots", metavar="DIR", help="write PNG plots of the results into DIR")
    p.add_argument("--markdown", metavar="FILE", help="write a Markdown report (tables, machine, command)")
    p.add_argument(
        "--readme",
        metavar="FILE",
        help="put the Markdown report into FILE between '<!-- bench:begin -->' and '<!-- bench:end -->'",
    )
    p.add_argument("--quick", action="store_true", help="a small run (fewer sizes, updates and repeats)")
    p.add_argument(
        "--source",
        metavar="FILE",
        help="async, e2e: event recording to use (any readable format; default: a synthetic stream)",
    )
    p.add_argument("--format", choices=sorted(READERS), help="recording format (default: detected)")
    p.add_argument(
        "--sensor", type=_sensor_size, metavar="WxH", help="sensor size, for files that do not state it"
    )
    p.add_argument(
        "--threads",
        type=_positive_int,
        metavar="N",
        default=1,
        help="async: threads of the asynchronous engine (default: 1)",
    )
    p.add_argument(
        "--channel-skip",
        type=_share,
        metavar="SHARE",
        help="async: product rows with at most this share of non-zero channels skip the zero ones "
        "(default 0.6; 0 multiplies every channel, as the paper counts)",
    )
    p.add_argument("--runs", type=_positive_int, metavar="N", help="decode: timed runs (default 15)")
    p.add_argument("--warmup", type=_nonneg_int, metavar="N", help="decode: untimed runs first (default 2)")
    p.add_argument("--no-peers", action="store_true", help="decode: evstream and memcpy only")
    p.add_argument("--minutes", type=float, help="soak: how long to run (default 10; --quick 0.33)")
    p.add_argument(
        "--rate", type=float, metavar="EV_PER_S", help="soak: replay rate in events/s (default 10e6)"
    )
    p.set_defaults(func=cmd_bench)

    datasets = ["nmnist", "ncaltech101", "ncars", "nimagenet", "mini_nimagenet"]
    p = sub.add_parser(
        "train",
        help="train a model on an event dataset (runs under torchrun for several GPUs or nodes)",
        description="Trains a model on an event dataset with a seeded per-class validation hold-out, "
        "N-ImageNet's augmentations (random time flip, horizontal flip, shift) as the dataset allows, "
        "and a checkpoint after every epoch (OUT, the best one also as OUT.best) that carries its "
        "metadata and resumes with --resume. Under 'torchrun [--standalone] --nproc_per_node N -m "
        "evstream.runtime.cli train ...' the same command trains with DistributedDataParallel "
        "(NCCL on GPUs, gloo on CPUs).",
    )
    _dataset_arguments(p, datasets)
    p.add_argument("--out", required=True, metavar="CKPT", help="checkpoint to write")
    p.add_argument("--model", help="model name (default: the dataset's usual model)")
    p.add_argument("--epochs", type=_positive_int, default=30, help="epochs (default 30)")
    p.add_argument("--batch-size", type=_positive_int, default=32, help="batch size per process (default 32)")
    p.add_argument("--lr", type=float, default=2e-3, help="peak learning rate, one cycle (default 2e-3)")
    p.add_argument("--weight-decay", type=float, default=1e-4, help="AdamW weight decay (default 1e-4)")
    p.add_argument(
        "--val-fraction", type=_open_share, default=0.1, help="fraction of every class held out (default 0.1)"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the split, augmentation and shuffling")
    p.add_argument("--no-augment", action="store_true", help="train without augmentation")
    p.add_argument("--max-shift", type=int, help="largest random shift in pixels (default: per dataset)")
    p.add_argument("--resume", metavar="CKPT", help="continue the training saved in CKPT")
    p.add_argument(
        "--export", metavar="FILE", help="also write the final model without optimizer state (to ship)"
    )
    p.add_argument("--label-smoothing", type=float, default=0.0, help="cross-entropy label smoothing")
    p.add_argument("--json", action="store_true", help="print the final metrics as JSON")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars or epoch lines")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser(
        "eval",
        help="evaluate a checkpoint on an event dataset (top-1, top-5, per class)",
        description="Evaluates a checkpoint (default: the bundled classifier for the dataset) with the "
        "fixed evaluation protocol: every recording whole, no augmentation, no randomness.",
    )
    _dataset_arguments(p, datasets)
    p.add_argument(
        "--model",
        metavar="CKPT",
        help="checkpoint (default: the bundled one for the dataset), or clip:WEIGHTS for zero-shot CLIP",
    )
    p.add_argument("--batch-size", type=_positive_int, default=64, help="batch size (default 64)")
    _clip_arguments(p)
    p.add_argument("--json", action="store_true", help="print the results as JSON (top1, top5, samples, ...)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_eval)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``evstream`` command."""
    from ..replay.errors import EventFileError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except OSError as exc:  # missing file, directory given, permission denied, disk full
        what = exc.strerror.lower() if exc.strerror else str(exc)
        name = f"{exc.filename}: " if exc.filename else ""
        print(f"evstream {args.command}: error: {name}{what}", file=sys.stderr)
        return EXIT_DATA_ERROR
    except EventFileError as exc:
        print(f"evstream {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_DATA_ERROR
    except UsageError as exc:
        print(f"evstream {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (ValueError, TimeoutError, ImportError) as exc:  # bad values, no publisher, missing SDK
        print(f"evstream {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_DATA_ERROR
    except MemoryError as exc:  # a buffer or frame larger than this machine's memory
        print(
            f"evstream {args.command}: error: out of memory ({exc or 'allocation failed'})", file=sys.stderr
        )
        return EXIT_DATA_ERROR
    except KeyboardInterrupt:
        print(f"evstream {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
