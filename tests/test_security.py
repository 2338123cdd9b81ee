"""Security properties of issue #9 that are not tested elsewhere: nothing in the package starts a
shell, evaluates text or unpickles (the readers' and checkpoints' own refusals are tested in
test_npz.py, test_datasets.py and test_train.py); sockets bind to loopback by default and say so
when bound wider; bad addresses give a clear error."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from evstream.runtime.cli import build_parser, main
from evstream.runtime.publish import bind_warning

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = [p for folder in ("runtime", "replay", "kernels", "models") for p in (ROOT / folder).rglob("*.py")]
FORBIDDEN = {
    r"shell\s*=\s*True": "a shell",
    r"\bos\.(system|popen|exec\w*)\(": "a shell or exec",
    r"\bpickle\.loads?\(": "unpickling",
    r"allow_pickle\s*=\s*True": "unpickling",
    r"weights_only\s*=\s*False": "unpickling",
    r"(?<![\w.])(eval|exec)\(": "evaluated text",
}


def test_no_shell_no_eval_no_unpickling_in_the_package():
    assert len(PACKAGE) > 30
    found = []
    for path in PACKAGE:
        for n, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#")[0]
            for pattern, what in FORBIDDEN.items():
                if re.search(pattern, code):
                    found.append(f"{path.relative_to(ROOT)}:{n}: {what}: {line.strip()}")
    assert not found, "\n".join(found)


def test_sockets_bind_to_loopback_by_default_and_warn_when_wider():
    args = build_parser().parse_args(["publish", "file.raw"])
    assert args.to.startswith("tcp://127.0.0.1:") and bind_warning(args.to) is None
    for url in ("tcp://127.0.0.1:5555", "tcp://localhost:5555", "ipc:///tmp/x", "inproc://x"):
        assert bind_warning(url) is None
    for url in ("tcp://*:5555", "tcp://0.0.0.0:5555", "tcp://192.168.1.10:5555", "tcp://eth0:5555"):
        assert "reachable from other machines" in bind_warning(url)


@pytest.mark.parametrize(
    "argv,words",
    [
        (
            ["run", "--source", "tests/data/nmnist_digit7.bs2", "--publish", "tcp://127.0.0.1:notaport"],
            "bind",
        ),
        (["run", "--source", "tcp://127.0.0.1:notaport"], "cannot connect to tcp://127.0.0.1:notaport"),
        (["publish", "tests/data/nmnist_digit7.bs2", "--to", "tcp://127.0.0.1:notaport"], "cannot bind"),
    ],
)
def test_bad_addresses_give_a_clear_error(argv, words, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    assert main([*argv, "-q", *(["--no-model"] if argv[0] == "run" else [])]) == 1
    err = capsys.readouterr().err
    assert words in err and "notaport" in err and "Traceback" not in err
