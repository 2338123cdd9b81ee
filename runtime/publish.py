"""``evstream publish``: replay a recording onto ZeroMQ in the wire format (see wire.py)."""

from __future__ import annotations

import contextlib
import logging
import time
from urllib.parse import urlparse

from . import wire
from .sources import FileSource

log = logging.getLogger("evstream.publish")

LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")


def bind_warning(url: str) -> str | None:
    """A warning if ``url`` binds beyond this machine's loopback interface."""
    if not url.startswith("tcp://"):
        return None
    host = urlparse(url).hostname or ""
    if host in LOOPBACK or host.startswith("127."):
        return None
    return f"{url} is reachable from other machines (bind to tcp://127.0.0.1:PORT to keep it local)"


def bind(sock, url: str, patience_s: float = 3.0) -> None:
    """Binds, retrying briefly while a previous publisher's socket on the address closes; on
    failure closes ``sock`` and raises ValueError naming the address."""
    import zmq

    try:
        wire.check_address(url, "bind")
    except ValueError:
        sock.close(linger=0)
        raise
    deadline = time.monotonic() + patience_s
    while True:
        try:
            sock.bind(url)
            return
        except zmq.ZMQError as exc:
            if exc.errno != zmq.EADDRINUSE or time.monotonic() >= deadline:
                sock.close(linger=0)
                raise ValueError(f"cannot bind {url}: {exc}") from None
            time.sleep(0.05)


def publish(
    source: FileSource,
    url: str,
    pattern: str = "pub",
    chunk_events: int = 1 << 16,
    delay_s: float = 0.5,
    on_progress=None,
    curve_keys=None,
) -> dict:
    """Sends every event of ``source`` to ``url`` (bound here), then an end-of-stream message.

    ``delay_s`` gives SUB sockets time to connect before the first message (ZeroMQ PUB drops
    messages for subscribers that have not connected yet). Returns counters.
    """
    import zmq

    if pattern not in ("pub", "push"):
        raise ValueError(f"pattern must be 'pub' or 'push', got {pattern!r}")
    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.PUB if pattern == "pub" else zmq.PUSH)
    sock.setsockopt(zmq.SNDHWM, 1000)
    sock.setsockopt(zmq.LINGER, 2000)
    auth = None
    try:
        if curve_keys is not None:
            from .curve import make_server

            auth = make_server(sock, curve_keys)  # admits the authorized subscribers only
        bind(sock, url)
    except BaseException:
        sock.close(linger=0)
        if auth is not None:
            auth.stop()
        raise
    stream = wire.new_stream_id()
    seq = sent = 0
    try:
        time.sleep(delay_s)
        try:
            for batch in source.batches():
                for i in range(0, len(batch), chunk_events):
                    part = batch[i : i + chunk_events]
                    sock.send_multipart(
                        wire.encode_events(part, stream, seq, sent, source.width, source.height), copy=False
                    )
                    seq += 1
                    sent += len(part)
                if on_progress:
                    on_progress(sent)
        except BaseException:
            # The source failed part-way (a damaged file) or was interrupted: end the stream
            # anyway, so that subscribers stop with what they received instead of waiting for more.
            with contextlib.suppress(zmq.ZMQError):
                sock.send_multipart(
                    wire.encode_eos(stream, seq, sent, source.width, source.height), flags=zmq.NOBLOCK
                )
            raise
        sock.send_multipart(wire.encode_eos(stream, seq, sent, source.width, source.height))
    finally:
        sock.close()
        if auth is not None:
            auth.stop()
    return {"events": sent, "messages": seq + 1, "stream": stream}
