"""Real event sensors through their vendors' SDKs (imported only when used)."""

from __future__ import annotations

from .sources import Source


class DvSource(Source):
    """iniVation sensors through dv-processing: ``dv:`` (the first camera), ``dv:SERIAL``, or a DV
    network stream ``dv-net://HOST:PORT`` (dv-processing's NetworkWriter, DV software)."""

    live = True

    def __init__(self, spec: str):
        super().__init__()
        try:
            import dv_processing as dv
        except ImportError:
            raise ImportError(
                f"{spec}: iniVation sources need dv-processing: pip install dv-processing"
            ) from None
        self._dv = dv
        if spec.startswith("dv-net://"):
            host, _, port = spec[len("dv-net://") :].rpartition(":")
            if not host or not port.isdigit():
                raise ValueError(f"{spec}: expected dv-net://HOST:PORT")
            try:
                self._cap = dv.io.NetworkReader(host, int(port))
            except RuntimeError as exc:
                raise ValueError(f"{spec}: cannot connect to the DV stream ({exc})") from None
        else:
            serial = spec.partition(":")[2]
            try:
                self._cap = dv.io.camera.open(serial) if serial else dv.io.camera.open()
            except IndexError:  # dv-processing's way of saying that no camera is connected
                raise ValueError(
                    f"{spec}: no iniVation camera found"
                    + (f" with serial {serial}" if serial else "")
                    + " (is it plugged in, and may this user open USB devices?)"
                ) from None
            except RuntimeError as exc:
                raise ValueError(f"{spec}: cannot open the iniVation camera ({exc})") from None
        if not self._cap.isEventStreamAvailable():
            raise ValueError(f"{spec}: the device or stream has no event stream")
        self.width, self.height = (int(v) for v in self._cap.getEventResolution())
        self.description = f"{spec} ({self.width}x{self.height}, dv-processing)"

    def batches(self):
        from ..kernels.events import make_events

        while not self._stop.is_set() and self._cap.isRunning():
            batch = self._cap.getNextEventBatch()
            if batch is None:
                self._stop.wait(0.001)
                continue
            a = batch.numpy()
            if len(a):
                yield make_events(a["x"], a["y"], a["timestamp"], a["polarity"])


class MetavisionSource(Source):
    """Prophesee sensors through the Metavision SDK: ``metavision:`` (the first camera) or
    ``metavision:SERIAL``."""

    live = True

    def __init__(self, spec: str, delta_t_us: int = 1000):
        super().__init__()
        try:
            from metavision_core.event_io import EventsIterator
        except ImportError:
            raise ImportError(
                f"{spec}: Prophesee cameras need the Metavision SDK's Python bindings (metavision_core); "
                "install the SDK from Prophesee"
            ) from None
        serial = spec.partition(":")[2]
        try:
            self._it = EventsIterator(input_path=serial, delta_t=delta_t_us)
        except Exception as exc:  # the SDK raises its own exception types
            raise ValueError(f"{spec}: cannot open the Prophesee camera ({exc})") from None
        self.height, self.width = (int(v) for v in self._it.get_size())
        self.description = f"{spec} ({self.width}x{self.height}, Metavision SDK)"

    def batches(self):
        from ..kernels.events import make_events

        for evs in self._it:
            if self._stop.is_set():
                return
            if len(evs):
                yield make_events(evs["x"], evs["y"], evs["t"], evs["p"])
