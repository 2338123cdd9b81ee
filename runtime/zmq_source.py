"""ZeroMQ event source: the wire format over SUB or PULL (see wire.py)."""

from __future__ import annotations

import logging
import time

from .sources import Source
from .wire import check_address

log = logging.getLogger("evstream.sources")


class ZmqSource(Source):
    """Receives events in the wire format from a ZeroMQ PUB (with SUB) or PUSH (with PULL).

    Malformed messages are counted and skipped with a warning; sequence gaps and events outside
    the sensor are counted as dropped. A publisher that restarts (a new stream id) is picked up;
    if the previous stream had not ended with an end-of-stream message (the publisher was killed),
    it is counted in ``unended_streams``: its last messages may be lost without a count, since
    only the publisher knew how many it sent. The stream ends at an end-of-stream message unless
    ``follow`` is set.
    """

    live = True

    def __init__(
        self,
        url: str,
        pattern: str = "sub",
        follow: bool = False,
        timeout_s: float | None = None,
        first_message_timeout_s: float = 10.0,
        curve_keys=None,
    ):
        super().__init__()
        import zmq

        if pattern not in ("sub", "pull"):
            raise ValueError(f"pattern must be 'sub' or 'pull', got {pattern!r}")
        check_address(url, "connect to")
        self.url, self.pattern, self.follow = url, pattern, follow
        self.timeout_s = timeout_s
        self._ctx = zmq.Context.instance()
        self._sock = self._ctx.socket(zmq.SUB if pattern == "sub" else zmq.PULL)
        self._sock.setsockopt(zmq.RCVHWM, 1000)
        self._sock.setsockopt(zmq.MAXMSGSIZE, (1 << 24) * 32 + (1 << 16))
        if pattern == "sub":
            self._sock.setsockopt(zmq.SUBSCRIBE, b"")
        self.curve_keys = curve_keys
        if curve_keys is not None:
            from .curve import make_client

            try:
                make_client(self._sock, curve_keys)  # only the publisher with the matching key
            except BaseException:
                self._sock.close(linger=0)
                raise
        try:
            self._sock.connect(url)
        except zmq.ZMQError as exc:
            self._sock.close(linger=0)
            raise ValueError(f"cannot connect to {url}: {exc}") from None
        self.description = f"{url} (ZeroMQ {pattern.upper()}{', CURVE' if curve_keys is not None else ''})"
        self.counters = {
            "messages": 0,
            "malformed": 0,
            "gap_events": 0,
            "out_of_bounds": 0,
            "restarts": 0,
            "unended_streams": 0,
            "joined_after_events": 0,  # a running stream's events sent before this subscriber joined
        }
        self._stream = None
        self._ended = False  # the current stream sent its end-of-stream message
        self._expect = 0
        # The sensor size arrives with the first message.
        try:
            self._first = self._receive_first(first_message_timeout_s)
        except BaseException:
            self._sock.close(linger=0)
            raise

    def _recv(self, timeout_s: float):
        import zmq

        if not self._sock.poll(int(timeout_s * 1000)):
            return None
        return self._sock.recv_multipart(copy=False, flags=zmq.NOBLOCK)

    def _receive_first(self, timeout_s: float):
        from .wire import WireError, decode

        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            frames = self._recv(min(0.2, max(0.0, deadline - time.monotonic())))
            if frames is None:
                continue
            try:
                msg = decode(frames)
            except WireError as exc:
                self._malformed(exc)
                continue
            self.width, self.height = msg.width, msg.height
            return msg
        hint = (
            "is the publisher running, with --curve-keys and the matching keys? A publisher without "
            "them is refused"
            if self.curve_keys is not None
            else "is the publisher running? If it uses --curve-keys, give the same keys here"
        )
        raise TimeoutError(f"{self.url}: no evstream message within {timeout_s:g} s ({hint})")

    def _malformed(self, exc) -> None:
        self.counters["malformed"] += 1
        if self.counters["malformed"] <= 10:
            log.warning("%s: skipped a malformed message: %s", self.url, exc)

    def _account(self, msg) -> None:
        self.counters["messages"] += 1
        if msg.stream != self._stream:
            if self._stream is not None:
                self.counters["restarts"] += 1
                self.counters["unended_streams"] += not self._ended
                how = "" if self._ended else " without ending its previous stream: events may be lost"
                log.warning("%s: publisher restarted (new stream %s)%s", self.url, msg.stream, how)
            if self._stream is None:  # joined a running stream: what it published before is not ours
                self.counters["joined_after_events"] += msg.first
                self._expect = msg.first
            else:  # a new stream counts from 0: what it sent before this message was lost
                self._expect = 0
            self._stream, self._ended = msg.stream, False
        if msg.kind == "eos":
            self._ended = True
        if msg.first > self._expect:
            self.counters["gap_events"] += msg.first - self._expect
        self._expect = max(
            self._expect,
            msg.first + (len(msg.events) + msg.dropped_out_of_bounds if msg.events is not None else 0),
        )
        self.counters["out_of_bounds"] += msg.dropped_out_of_bounds

    def batches(self):
        from .wire import WireError, decode

        msg, idle = self._first, 0.0
        self._first = None
        while not self._stop.is_set():
            if msg is None:
                frames = self._recv(0.1)
                if frames is None:
                    idle += 0.1
                    if self.timeout_s is not None and idle >= self.timeout_s:
                        log.warning("%s: no message for %g s; stopping", self.url, self.timeout_s)
                        return
                    continue
                idle = 0.0
                try:
                    msg = decode(frames)
                except WireError as exc:
                    self._malformed(exc)
                    msg = None
                    continue
            self._account(msg)
            if msg.kind == "eos":
                if not self.follow:
                    return
            elif len(msg.events):
                yield msg.events
            msg = None

    def stats(self):
        return dict(self.counters)

    def close(self):
        super().close()
        self._sock.close(linger=0)
