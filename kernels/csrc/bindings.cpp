// The one file that knows about Python: argument checks, GIL release, zero-copy hand-off.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "async_engine.hpp"
#include "decoders.hpp"
#include "encoders.hpp"
#include "histogram.hpp"
#include "ring.hpp"

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

// A Ring plus the memory it lives in: owned, or a Python buffer (shared memory) kept alive.
struct PyRing {
    struct Free {
        void operator()(void* p) const { std::free(p); }
    };
    std::unique_ptr<void, Free> own;
    py::object keep;
    Ring ring;

    PyRing(std::unique_ptr<void, Free> o, py::object k, Ring r) : own(std::move(o)), keep(std::move(k)), ring(r) {}
};

RingPolicy policy_arg(const std::string& name) {
    if (name == "block") return RingPolicy::block;
    if (name == "drop-newest") return RingPolicy::drop_newest;
    if (name == "drop-oldest") return RingPolicy::drop_oldest;
    throw std::invalid_argument("policy must be 'block', 'drop-newest' or 'drop-oldest', got '" + name + "'");
}

const char* policy_name(RingPolicy p) {
    switch (p) {
        case RingPolicy::block:
            return "block";
        case RingPolicy::drop_newest:
            return "drop-newest";
        default:
            return "drop-oldest";
    }
}

std::pair<void*, size_t> writable_arg(const py::buffer& b, const char* name) {
    py::buffer_info info = b.request(true);
    if (info.ndim != 1 || info.strides[0] != info.itemsize)
        throw std::invalid_argument(std::string(name) + " must be a contiguous 1-D buffer");
    return {info.ptr, size_t(info.size * info.itemsize)};
}


// ---- asynchronous engine arguments ----

// A float32 array of exactly `shape` (-1 = any), C-contiguous; names the argument when it is not.
py::array_t<float> float_arg(const py::array& a, const char* name, std::vector<py::ssize_t> shape) {
    if (!a.dtype().is(py::dtype::of<float>()))
        throw std::invalid_argument(std::string(name) + " must be float32, got " + py::str(a.dtype()).cast<std::string>());
    bool ok = a.ndim() == py::ssize_t(shape.size());
    for (size_t i = 0; ok && i < shape.size(); ++i) ok = shape[i] < 0 || a.shape(py::ssize_t(i)) == shape[i];
    if (!ok) {
        std::string want = "(", got = "(";
        for (size_t i = 0; i < shape.size(); ++i) want += (i ? ", " : "") + (shape[i] < 0 ? std::string("N") : std::to_string(shape[i]));
        for (py::ssize_t i = 0; i < a.ndim(); ++i) got += (i ? ", " : "") + std::to_string(a.shape(i));
        throw std::invalid_argument(std::string(name) + " must have shape " + want + "), got " + got + ")");
    }
    auto c = py::array_t<float, py::array::c_style>::ensure(a);
    const float* v = c.data();
    for (py::ssize_t i = 0; i < c.size(); ++i)
        if (!std::isfinite(v[i])) throw std::invalid_argument(std::string(name) + " holds a non-finite value at flat index " + std::to_string(i));
    return c;
}

std::vector<float> float_vector(const py::array& a, const char* name, std::vector<py::ssize_t> shape) {
    auto c = float_arg(a, name, std::move(shape));
    return std::vector<float>(c.data(), c.data() + c.size());
}

async::ConvMode conv_mode_arg(const std::string& mode) {
    if (mode == "submanifold") return async::ConvMode::Submanifold;
    if (mode == "sparse") return async::ConvMode::Sparse;
    if (mode == "dense") return async::ConvMode::Dense;
    throw std::invalid_argument("mode must be 'submanifold', 'sparse' or 'dense', got '" + mode + "'");
}

py::tuple map_copy(const async::Map& m) {
    py::array_t<float> values({py::ssize_t(m.height), py::ssize_t(m.width), py::ssize_t(m.channels)});
    std::copy(m.values.begin(), m.values.end(), values.mutable_data());
    py::array_t<bool> active({py::ssize_t(m.height), py::ssize_t(m.width)});
    std::transform(m.active.begin(), m.active.end(), active.mutable_data(), [](uint8_t a) { return a != 0; });
    return py::make_tuple(values, active);
}

void bind_async(py::module_& m) {
    using async::Engine;
    py::class_<Engine>(m, "AsyncEngine",
                       "Asynchronous sparse CNN (kernels/csrc/async_engine.hpp): layers are appended in order, "
                       "then update()/batch() feed the input map (height x width x channels).")
        .def(py::init<int, int, int>(), py::arg("height"), py::arg("width"), py::arg("channels"))
        .def(
            "add_conv",
            [](Engine& self, const py::array& weight, const py::array& bias, int stride, int padding,
               const std::string& mode, bool relu) {
                if (weight.ndim() != 4 || weight.shape(0) != weight.shape(1))
                    throw std::invalid_argument("weight must have shape (k, k, in_channels, out_channels)");
                const int k = int(weight.shape(0)), cin = int(weight.shape(2)), cout = int(weight.shape(3));
                auto w = float_vector(weight, "weight", {k, k, cin, cout});
                auto b = float_vector(bias, "bias", {cout});
                std::lock_guard<std::mutex> lock(self.mutex);
                self.add_conv(cin, cout, k, stride, padding, conv_mode_arg(mode), relu, std::move(w), std::move(b));
            },
            py::arg("weight"), py::arg("bias"), py::arg("stride"), py::arg("padding"), py::arg("mode"), py::arg("relu"),
            "Appends a k x k convolution (weight (k, k, in, out) float32, bias (out,)); mode 'submanifold', "
            "'sparse' or 'dense'.")
        .def(
            "add_maxpool",
            [](Engine& self, int size, int stride) {
                std::lock_guard<std::mutex> lock(self.mutex);
                self.add_maxpool(size, stride);
            },
            py::arg("size"), py::arg("stride"), "Appends sparse max pooling (size x size windows, no padding).")
        .def(
            "add_linear",
            [](Engine& self, const py::array& weight, const py::array& bias, uint64_t dense_flops) {
                if (weight.ndim() != 3) throw std::invalid_argument("weight must have shape (sites, channels, outputs)");
                const py::ssize_t sites = weight.shape(0), c = weight.shape(1), n = weight.shape(2);
                auto w = float_vector(weight, "weight", {sites, c, n});
                auto b = float_vector(bias, "bias", {n});
                std::lock_guard<std::mutex> lock(self.mutex);
                const auto& last = self.last_map();
                if (sites != py::ssize_t(last.sites()) || c != last.channels)
                    throw std::invalid_argument("weight must have shape (" + std::to_string(last.sites()) + ", " +
                                                std::to_string(last.channels) + ", outputs) for the previous layer");
                self.add_linear(int(n), std::move(w), std::move(b), dense_flops);
            },
            py::arg("weight"), py::arg("bias"), py::arg("dense_flops"),
            "Appends a fully connected layer over the whole map (weight (sites, channels, outputs)).")
        .def(
            "update",
            [](Engine& self, const py::array& sites, const py::array& values) {
                const char kind = sites.dtype().kind();
                if (kind != 'i' && kind != 'u')
                    throw std::invalid_argument("sites must be an integer array, got " + py::str(sites.dtype()).cast<std::string>());
                if (sites.ndim() != 2 || sites.shape(1) != 2)
                    throw std::invalid_argument("sites must have shape (N, 2) holding (row, column) pairs");
                const py::ssize_t n = sites.shape(0);
                auto v = float_arg(values, "values", {n, py::ssize_t(self.input().channels)});
                auto s = py::array_t<int64_t, py::array::c_style | py::array::forcecast>::ensure(sites);
                std::vector<int32_t> ys(static_cast<size_t>(n)), xs(static_cast<size_t>(n));
                const int64_t* p = s.data();
                for (py::ssize_t i = 0; i < n; ++i) {
                    const int64_t y = p[2 * i], x = p[2 * i + 1];
                    if (y < 0 || x < 0 || y >= self.input().height || x >= self.input().width)
                        throw std::invalid_argument("site " + std::to_string(i) + " (row " + std::to_string(y) + ", column " +
                                                    std::to_string(x) + ") is outside the " + std::to_string(self.input().height) +
                                                    "x" + std::to_string(self.input().width) + " input");
                    ys[size_t(i)] = int32_t(y);
                    xs[size_t(i)] = int32_t(x);
                }
                py::gil_scoped_release release;
                std::lock_guard<std::mutex> lock(self.mutex);
                self.update(ys.data(), xs.data(), v.data(), size_t(n));
            },
            py::arg("sites"), py::arg("values"),
            "Sets input sites (N, 2) of (row, column) to values (N, channels) float32; all-zero values deactivate.")
        .def(
            "batch",
            [](Engine& self, const py::array& dense) {
                const auto& in = self.input();
                auto v = float_arg(dense, "dense", {in.height, in.width, in.channels});
                py::gil_scoped_release release;
                std::lock_guard<std::mutex> lock(self.mutex);
                self.batch(v.data());
            },
            py::arg("dense"), "Computes from scratch for a dense (height, width, channels) float32 input.")
        .def(
            "reset",
            [](Engine& self) {
                py::gil_scoped_release release;
                std::lock_guard<std::mutex> lock(self.mutex);
                self.reset();
            },
            "Empties the input and every layer.")
        .def_property(
            "threads", [](Engine& self) { return self.threads(); },
            [](Engine& self, int threads) {
                std::lock_guard<std::mutex> lock(self.mutex);
                self.set_threads(threads);
            },
            "Threads the convolutions use (1 = the calling thread only).")
        .def_property(
            "channel_skip", [](Engine& self) { return self.channel_skip(); },
            [](Engine& self, float share) {
                std::lock_guard<std::mutex> lock(self.mutex);
                self.set_channel_skip(share);
            },
            "Rows of a convolution's products whose share of non-zero channels is at most this (0..1, "
            "default 0.6) are multiplied over their non-zero channels only, and all-zero rows are left out; "
            "0 multiplies every row in full (the paper's count). Results agree up to rounding; the FLOP "
            "counts report the channels multiplied.")
        .def_property_readonly("num_layers", [](Engine& self) { return self.num_layers(); })
        .def(
            "output",
            [](Engine& self, int layer) {
                std::lock_guard<std::mutex> lock(self.mutex);
                if (layer < 0) layer += int(self.num_layers());
                if (layer < 0 || size_t(layer) >= self.num_layers())
                    throw std::invalid_argument("layer index out of range");
                return map_copy(self.output(size_t(layer)));
            },
            py::arg("layer"), "(values (H, W, C) float32, active (H, W) bool) copies of a layer's output.")
        .def(
            "input",
            [](Engine& self) {
                std::lock_guard<std::mutex> lock(self.mutex);
                return map_copy(self.input());
            },
            "(values, active) copies of the input map.")
        .def(
            "logits",
            [](Engine& self) {
                std::lock_guard<std::mutex> lock(self.mutex);
                const auto& out = self.last_map();
                py::array_t<float> a(py::ssize_t(out.values.size()));
                std::copy(out.values.begin(), out.values.end(), a.mutable_data());
                return a;
            },
            "The last layer's values, flattened (a copy).")
        .def(
            "layers",
            [](Engine& self) {
                std::lock_guard<std::mutex> lock(self.mutex);
                py::list out;
                for (size_t i = 0; i < self.num_layers(); ++i) {
                    const auto& l = self.layer(i);
                    const auto& c = l.counts;
                    py::dict d;
                    d["kind"] = l.kind();
                    d["shape"] = py::make_tuple(l.output().height, l.output().width, l.output().channels);
                    d["flops"] = c.flops;
                    d["full_flops"] = c.full_flops;
                    d["dense_flops"] = c.dense_flops;
                    d["rules"] = c.rules;
                    d["changed_in"] = c.changed_in;
                    d["changed_out"] = c.changed_out;
                    d["cone_out"] = c.cone_out;
                    d["nanoseconds"] = c.nanoseconds;
                    out.append(d);
                }
                return out;
            },
            "Per layer: kind, output shape and the counts of the last update (flops = asynchronous sparse, "
            "dense_flops = asynchronous dense over the cone of influence, nanoseconds = time of the update).")
        .def_property_readonly_static(
            "gemm_kernel", [](const py::object&) { return std::string(async::gemm_kernel()); },
            "Instruction set of the engine's matrix products (avx512, avx2 or portable): the best this "
            "CPU runs, unless set_gemm_kernel chose another.")
        .def_property_readonly_static(
            "gemm_kernels",
            [](const py::object&) {
                py::list out;
                for (const auto& name : async::gemm_kernels()) out.append(name);
                return out;
            },
            "The product kernels this CPU runs, best first.")
        .def_static(
            "set_gemm_kernel", [](const std::string& name) { async::set_gemm_kernel(name); }, py::arg("name"),
            "Makes every engine use the product kernel `name` (one of gemm_kernels; for tests and benchmarks "
            "of the other code paths). ValueError for an unknown or unsupported one. Not to be called while "
            "an update runs.");
}

}  // namespace

PYBIND11_MODULE(_core, m) {
    m.doc() = "evstream's C++ core: event decoders and encoders, ring buffer, asynchronous sparse CNN engine.";
    bind_async(m);

    bind_decoder<Evt2Decoder, uint32_t, uint32_t>(m, "Evt2Decoder", "Prophesee EVT 2.0 decoder (width, height; 0 = unchecked).");
    bind_decoder<Evt21Decoder, uint32_t, uint32_t>(m, "Evt21Decoder", "Prophesee EVT 2.1 decoder (width, height).");
    bind_decoder<Evt3Decoder, uint32_t, uint32_t>(m, "Evt3Decoder", "Prophesee EVT 3.0 decoder (width, height).");
    bind_decoder<DatDecoder, uint32_t, uint32_t, uint32_t, uint32_t>(
        m, "DatDecoder", "Prophesee DAT CD decoder (width, height, x_bits, y_bits).");
    bind_decoder<AtisBinDecoder, uint32_t, uint32_t>(m, "AtisBinDecoder", "N-MNIST/N-Caltech101 40-bit decoder.");
    bind_decoder<EsDvsDecoder, uint32_t, uint32_t>(m, "EsDvsDecoder", "Event Stream 2.x DVS decoder.");
    bind_decoder<EsAtisDecoder, uint32_t, uint32_t>(m, "EsAtisDecoder", "Event Stream 2.x ATIS decoder.");

    m.def(
        "histogram_add",
        [](py::array_t<int32_t, py::array::c_style> counts, const py::array& events, int32_t delta) {
            if (counts.ndim() != 3 || counts.shape(0) != 2)
                throw std::invalid_argument("counts must have shape (2, height, width)");
            size_t n = 0;
            const Event* ev = events_arg(events, "events", n);
            const uint32_t height = uint32_t(counts.shape(1)), width = uint32_t(counts.shape(2));
            int32_t* c = counts.mutable_data();
            py::gil_scoped_release release;
            return histogram_add(c, width, height, ev, n, delta);
        },
        py::arg("counts"), py::arg("events"), py::arg("delta"),
        "counts[p, y, x] += delta per event (in place); returns the events skipped as outside.");

    py::class_<PyRing>(m, "Ring", "SPSC event ring (see kernels/csrc/ring.hpp); build with new/create_in/attach.")
        .def_static(
            "new",
            [](size_t capacity, const std::string& policy) {
                if (capacity == 0) throw std::invalid_argument("capacity must be positive");
                const size_t bytes = (Ring::bytes_for(capacity) + 63) / 64 * 64;
                std::unique_ptr<void, PyRing::Free> mem(std::aligned_alloc(64, bytes));
                if (!mem) throw std::bad_alloc();
                Ring r = Ring::create(mem.get(), bytes, capacity, policy_arg(policy));
                return std::make_unique<PyRing>(std::move(mem), py::none(), r);
            },
            py::arg("capacity"), py::arg("policy"))
        .def_static(
            "create_in",
            [](const py::buffer& memory, size_t capacity, const std::string& policy) {
                auto [ptr, bytes] = writable_arg(memory, "memory");
                Ring r = Ring::create(ptr, bytes, capacity, policy_arg(policy));
                return std::make_unique<PyRing>(nullptr, memory, r);
            },
            py::arg("memory"), py::arg("capacity"), py::arg("policy"))
        .def_static(
            "attach",
            [](const py::buffer& memory) {
                auto [ptr, bytes] = writable_arg(memory, "memory");
                Ring r = Ring::attach(ptr, bytes);
                return std::make_unique<PyRing>(nullptr, memory, r);
            },
            py::arg("memory"))
        .def_static("bytes_for", &Ring::bytes_for, py::arg("capacity"))
        .def(
            "push",
            [](PyRing& self, const py::array& events, double timeout) {
                size_t n = 0;
                const Event* ev = events_arg(events, "events", n);
                py::gil_scoped_release release;
                return self.ring.push(ev, n, timeout);
            },
            py::arg("events"), py::arg("timeout") = -1.0,
            "Stores events; returns how many were stored (block: waits up to timeout s, < 0 forever).")
        .def(
            "pop",
            [](PyRing& self, size_t max_events, double timeout) {
                EventBuffer out;
                Event* w = out.reserve_more(max_events);
                size_t k;
                uint64_t first = 0;
                {
                    py::gil_scoped_release release;
                    k = self.ring.pop(w, max_events, timeout, nullptr, &first);
                }
                out.commit(k);
                return py::make_tuple(to_numpy(out), first);
            },
            py::arg("max_events"), py::arg("timeout") = 0.0,
            "Returns (events, stream index of the first), waiting up to timeout s for the first event.")
        .def_property_readonly("stored", [](const PyRing& self) { return self.ring.stored(); },
                               "Events stored so far (the stream index of the next one).")
        .def("close", [](PyRing& self) { self.ring.close(); }, "Marks the end of the stream.")
        .def_property_readonly("closed", [](const PyRing& self) { return self.ring.closed(); })
        .def_property_readonly("capacity", [](const PyRing& self) { return self.ring.capacity(); })
        .def_property_readonly("policy", [](const PyRing& self) { return policy_name(self.ring.policy()); })
        .def("__len__", [](const PyRing& self) { return self.ring.size(); })
        .def_property_readonly("offered", [](const PyRing& self) { return self.ring.offered(); })
        .def_property_readonly("dropped", [](const PyRing& self) { return self.ring.dropped(); })
        .def_property_readonly("popped", [](const PyRing& self) { return self.ring.popped(); });

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
