"""ZeroMQ CURVE (issue #9, security): `evstream keys`, an authenticated and encrypted stream on
loopback, and publishers or subscribers without the matching keys refused."""

from __future__ import annotations

import stat
import threading

import numpy as np
import pytest

from conftest import free_port
from evstream.runtime.cli import main
from evstream.runtime.curve import CurveKeyError, generate_keys
from evstream.runtime.publish import publish
from evstream.runtime.sources import FileSource, open_source
from evstream.runtime.zmq_source import ZmqSource

zmq = pytest.importorskip("zmq")
pytestmark = pytest.mark.skipif(not zmq.has("curve"), reason="libzmq without CURVE")


def _url() -> str:
    return f"tcp://127.0.0.1:{free_port()}"


@pytest.fixture
def keys(tmp_path):
    return tmp_path / "keys"


def _publisher(path, url, curve_keys, loop=False):
    """A publisher on a thread (as 'evstream publish' runs it); stop() ends a looping one."""
    source = FileSource(path, speed=None if not loop else 1.0, loop=loop)
    errors = []

    def run():
        try:
            publish(source, url, delay_s=1.0, curve_keys=curve_keys)
        except BaseException as exc:  # reported by the test
            errors.append(exc)

    th = threading.Thread(target=run, daemon=True)
    th.start()
    return source, th, errors


def test_keys_command_writes_two_key_pairs(keys, capsys):
    assert main(["keys", str(keys)]) == 0
    out = capsys.readouterr().out
    assert "publisher.key_secret" in out and "--curve-keys" in out
    for name in ("publisher", "subscriber"):
        assert (keys / f"{name}.key").is_file()
        assert stat.S_IMODE((keys / f"{name}.key_secret").stat().st_mode) == 0o600
        assert "secret-key" not in (keys / f"{name}.key").read_text()  # the public file holds no secret
    assert [p.name for p in (keys / "authorized").iterdir()] == ["subscriber.key"]
    assert main(["keys", str(keys)]) == 1  # never overwritten silently
    assert "--force" in capsys.readouterr().err
    assert main(["keys", str(keys), "--force", "-q"]) == 0


def test_authenticated_stream_on_loopback(recording, keys):
    path, ev = recording
    generate_keys(keys)
    url = _url()
    _, th, errors = _publisher(path, url, keys)
    src = ZmqSource(url, curve_keys=keys, first_message_timeout_s=20)
    got = np.concatenate(list(src.batches()))
    src.close()
    th.join(20)
    assert not errors
    np.testing.assert_array_equal(got, ev)
    assert "CURVE" in src.description


@pytest.mark.parametrize("publisher_keys", ["none", "other"])
def test_publishers_without_the_matching_keys_are_refused(recording, keys, tmp_path, publisher_keys):
    path, _ = recording
    generate_keys(keys)
    other = tmp_path / "other"
    generate_keys(other)
    url = _url()
    source, th, _ = _publisher(path, url, None if publisher_keys == "none" else other, loop=True)
    try:
        with pytest.raises(TimeoutError, match="matching keys"):
            ZmqSource(url, curve_keys=keys, first_message_timeout_s=3)
    finally:
        source.stop()
        th.join(20)


def test_subscribers_without_keys_are_refused(recording, keys):
    path, _ = recording
    generate_keys(keys)
    url = _url()
    source, th, _ = _publisher(path, url, keys, loop=True)
    try:
        with pytest.raises(TimeoutError, match="curve-keys"):
            ZmqSource(url, first_message_timeout_s=3)
    finally:
        source.stop()
        th.join(20)


def test_missing_or_bad_keys_are_named(keys, tmp_path, recording, capsys):
    with pytest.raises(CurveKeyError, match="subscriber.key_secret: no such key file"):
        ZmqSource(_url(), curve_keys=keys, first_message_timeout_s=1)
    generate_keys(keys)
    (keys / "publisher.key").write_text("not a certificate")
    with pytest.raises(CurveKeyError, match="publisher.key"):
        ZmqSource(_url(), curve_keys=keys, first_message_timeout_s=1)
    with pytest.raises(ValueError, match="ZeroMQ sources"):
        open_source(str(recording[0]), curve_keys=keys)
    code = main(["publish", str(recording[0]), "--to", _url(), "--curve-keys", str(tmp_path / "none"), "-q"])
    assert code == 1 and "no such key file" in capsys.readouterr().err
