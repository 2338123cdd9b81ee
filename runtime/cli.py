"""The ``evstream`` command line. Each subcommand parses its arguments and calls the library.

Exit status: 0 success, 1 the input could not be read or written (a message names the file and
the byte offset or event index), 2 wrong command-line arguments.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from .. import __version__

EXIT_DATA_ERROR = 1
EXIT_USAGE = 2


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
    except ValueError as exc:  # invalid values for the chosen format (sensor too large, ...)
        print(f"evstream {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_DATA_ERROR
    except KeyboardInterrupt:
        print(f"evstream {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
