"""Kept for the commands in older notes: runs `evstream bench ring`, `zmq` and `e2e` with the same
arguments (`--recording FILE` is `--source FILE`; `--json FILE.json` writes FILE_ring.json,
FILE_zmq.json and FILE_e2e.json). `evstream bench all` runs every benchmark."""

import sys

from evstream.runtime.cli import main


def _args_for(name: str, argv: list[str]) -> list[str]:
    out, it = [], iter(argv)
    for a in it:
        if a == "--recording":
            if name == "e2e":
                out += ["--source", next(it)]
            else:
                next(it)
        elif a == "--json":
            path = next(it)
            stem = path[:-5] if path.endswith(".json") else path
            out += ["--json", f"{stem}_{name}.json"]
        else:
            out.append(a)
    return out


if __name__ == "__main__":
    sys.exit(max(main(["bench", name, *_args_for(name, sys.argv[1:])]) for name in ("ring", "zmq", "e2e")))
