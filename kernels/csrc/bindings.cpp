// The one file that knows about Python: argument checks, GIL release, zero-copy hand-off.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "decoders.hpp"
#include "encoders.hpp"

namespace py = pybind11;
using namespace evs;

namespace {

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "evstream's decoders assume a little-endian host"
#endif

py::dtype& event_dtype() {
    // Defined once, in Python (evstream.kernels.events); fetched on first use.
    static py::dtype* dt = new py::dtype(
        py::module_::import("evstream.kernels.events").attr("EVENT_DTYPE").cast<py::dtype>());
    return *dt;
}

// Wraps the buffer's storage in a numpy array without copying; numpy frees it.
py::array to_numpy(EventBuffer& buf) {
    const size_t n = buf.size();
    if (n == 0) {  // the buffer may never have allocated: return a fresh empty array
        return py::array(event_dtype(), std::vector<py::ssize_t>{0}, std::vector<py::ssize_t>{sizeof(Event)});
    }
    Event* data = buf.release();
    py::capsule owner(data, [](void* p) { std::free(p); });
    return py::array(event_dtype(), {n}, {sizeof(Event)}, data, owner);
}

template <typename T>
py::array_t<T> vector_to_numpy(std::vector<T>&& v) {
    auto* heap = new std::vector<T>(std::move(v));
    py::capsule owner(heap, [](void* p) { delete static_cast<std::vector<T>*>(p); });
    return py::array_t<T>({heap->size()}, {sizeof(T)}, heap->data(), owner);
}

py::buffer_info bytes_arg(const py::buffer& b, const char* name) {
    py::buffer_info info = b.request();
    if (info.ndim != 1 || info.itemsize != 1)
        throw std::invalid_argument(std::string(name) + " must be a 1-D byte buffer");
    if (info.strides[0] != 1) throw std::invalid_argument(std::string(name) + " must be contiguous");
    return info;
}

const Event* events_arg(const py::array& a, const char* name, size_t& n) {
    if (!a.dtype().equal(event_dtype()))
        throw std::invalid_argument(std::string(name) + " must have dtype EVENT_DTYPE, got " +
                                    py::str(a.dtype()).cast<std::string>());
    if (a.ndim() != 1) throw std::invalid_argument(std::string(name) + " must be 1-D");
    if (!(a.flags() & py::array::c_style))
        throw std::invalid_argument(std::string(name) + " must be C-contiguous");
    n = size_t(a.shape(0));
    return static_cast<const Event*>(a.data());
}

py::dict counters_dict(const DecodeCounters& c) {
    py::dict d;
    d["events"] = c.events;
    d["out_of_bounds"] = c.out_of_bounds;
    d["other_words"] = c.other_words;
    d["unknown_words"] = c.unknown_words;
    d["before_time"] = c.before_time;
    d["t_backwards"] = c.t_backwards;
    d["time_loops"] = c.time_loops;
    d["bytes"] = c.bytes;
    return d;
}

// A decoder plus an accumulator, so that a whole file can be decoded into one array without
// concatenating per-block arrays (one copy of every event saved).
template <typename D>
struct Decoding {
    template <typename... Args>
    explicit Decoding(Args... args) : dec(args...) {}
    D dec;
    EventBuffer acc;
};

template <typename D, typename... Args>
void bind_decoder(py::module_& m, const char* name, const char* doc) {
    using W = Decoding<D>;
    py::class_<W>(m, name, doc)
        .def(py::init<Args...>())
        .def(
            "decode",
            [](W& self, const py::buffer& data) {
                py::buffer_info info = bytes_arg(data, "data");
                EventBuffer out;
                {
                    py::gil_scoped_release release;
                    self.dec.decode(static_cast<const uint8_t*>(info.ptr), size_t(info.size), out);
                }
                return to_numpy(out);
            },
            py::arg("data"),
            "Decodes the next chunk of the stream (any split) and returns its events.")
        .def(
            "decode_append",
            [](W& self, const py::buffer& data) {
                py::buffer_info info = bytes_arg(data, "data");
                py::gil_scoped_release release;
                self.dec.decode(static_cast<const uint8_t*>(info.ptr), size_t(info.size), self.acc);
            },
            py::arg("data"),
            "Decodes the next chunk into the decoder's own accumulator (see take()).")
        .def(
            "reserve", [](W& self, size_t n) { self.acc.reserve_total(n); }, py::arg("events"),
            "Sizes the accumulator for about `events` events (a hint; it still grows).")
        .def(
            "take", [](W& self) { return to_numpy(self.acc); },
            "Returns the accumulated events as one array and empties the accumulator.")
        .def_property_readonly("counters", [](const W& self) { return counters_dict(self.dec.counters()); })
        .def_property_readonly(
            "pending_bytes", [](const W& self) { return self.dec.pending_bytes(); },
            "Bytes of an incomplete trailing word held for the next chunk.");
}

}  // namespace

PYBIND11_MODULE(_core, m) {
    m.doc() = "evstream's C++ core: event decoders and encoders.";

    bind_decoder<Evt2Decoder, uint32_t, uint32_t>(m, "Evt2Decoder", "Prophesee EVT 2.0 decoder (width, height; 0 = unchecked).");
    bind_decoder<Evt21Decoder, uint32_t, uint32_t>(m, "Evt21Decoder", "Prophesee EVT 2.1 decoder (width, height).");
    bind_decoder<Evt3Decoder, uint32_t, uint32_t>(m, "Evt3Decoder", "Prophesee EVT 3.0 decoder (width, height).");
    bind_decoder<DatDecoder, uint32_t, uint32_t, uint32_t, uint32_t>(
        m, "DatDecoder", "Prophesee DAT CD decoder (width, height, x_bits, y_bits).");
    bind_decoder<AtisBinDecoder, uint32_t, uint32_t>(m, "AtisBinDecoder", "N-MNIST/N-Caltech101 40-bit decoder.");
    bind_decoder<EsDvsDecoder, uint32_t, uint32_t>(m, "EsDvsDecoder", "Event Stream 2.x DVS decoder.");
    bind_decoder<EsAtisDecoder, uint32_t, uint32_t>(m, "EsAtisDecoder", "Event Stream 2.x ATIS decoder.");

    py::class_<Evt2Encoder>(m, "Evt2Encoder", "Prophesee EVT 2.0 encoder (stateful across chunks).")
        .def(py::init<>())
        .def("encode", [](Evt2Encoder& self, const py::array& events) {
            size_t n = 0;
            const Event* ev = events_arg(events, "events", n);
            std::vector<uint32_t> words;
            {
                py::gil_scoped_release release;
                self.encode(ev, n, words);
            }
            return vector_to_numpy(std::move(words));
        }, py::arg("events"));
    py::class_<Evt3Encoder>(m, "Evt3Encoder", "Prophesee EVT 3.0 encoder (stateful across chunks).")
        .def(py::init<>())
        .def("encode", [](Evt3Encoder& self, const py::array& events) {
            size_t n = 0;
            const Event* ev = events_arg(events, "events", n);
            std::vector<uint16_t> words;
            {
                py::gil_scoped_release release;
                self.encode(ev, n, words);
            }
            return vector_to_numpy(std::move(words));
        }, py::arg("events"));
}
