// Exercises the file decoders, the EVT encoders, the event ring and the histogram without Python,
// for sanitizer builds (tests/test_sanitizers.py). Every decoder of decoders.hpp is fed
//   (a) valid streams (EVT 2.0 / 3.0 from encoders.hpp, the other formats written here) whose
//       events and counters are known: the decoder must give exactly them back;
//   (b) the same streams damaged: bit flips, truncation, overwritten or inserted random bytes,
//       runs of 0x00 or 0xFF;
//   (c) random bytes;
// each split at random (1-byte chunks, mid-word splits, empty chunks) and also as one block of
// more than 1 MiB, so that the two-thread path of EVT 2.0, EVT 3.0 and DAT runs (the driver
// checks that it did). After every chunk: events inside the sensor (when its size is given),
// p in {0, 1}, t >= 0, counters.events == events emitted, counters.bytes + pending_bytes == bytes
// fed; at the end every split must give the same events and counters, and counters.t_backwards
// must be the number of steps back of the emitted events (also across a two-thread seam after a
// first half that emits nothing). The ring is checked against a model for each policy
// (wraparound, drops, stream indices, offered == popped + dropped + size) and from two threads
// (drop_oldest too under ThreadSanitizer; blocking pushes retried after timeouts); the histogram
// against a plain loop. Deterministic seeds. Prints "ok: ..." and exits 0, or prints every failed
// check and exits 1; a sanitizer report aborts the process.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <functional>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "decoders.hpp"
#include "encoders.hpp"
#include "histogram.hpp"
#include "ring.hpp"

using namespace evs;

namespace {

using Rng = std::mt19937_64;
using Bytes = std::vector<uint8_t>;

int failures = 0;
std::string where;  // the case under test, printed with every failure

void fail(const char* fmt, ...) {
    std::fprintf(stderr, "FAIL [%s]: ", where.c_str());
    va_list ap;
    va_start(ap, fmt);
    std::vfprintf(stderr, fmt, ap);
    va_end(ap);
    std::fputc('\n', stderr);
    if (++failures >= 25) {
        std::fprintf(stderr, "too many failures, stopping\n");
        std::exit(1);
    }
}

unsigned long long ull(uint64_t v) { return v; }  // for %llu
uint64_t below(Rng& g, uint64_t n) { return n ? g() % n : 0; }
bool chance(Rng& g, unsigned percent) { return g() % 100 < percent; }
// A time step: 0 (`same` % of the time), small, medium, and 1 % of the time anything below `jump`.
int64_t step(Rng& g, unsigned same, uint64_t small, uint64_t medium, uint64_t jump) {
    const unsigned r = unsigned(g() % 100);
    return int64_t(r < same ? 0 : r < 90 ? below(g, small) : r < 99 ? below(g, medium) : below(g, jump));
}

bool same(const Event& a, const Event& b) { return a.x == b.x && a.y == b.y && a.p == b.p && a.t == b.t; }

std::string show(const Event& e) {
    char s[96];
    std::snprintf(s, sizeof s, "(x %u, y %u, p %u, t %lld)", unsigned(e.x), unsigned(e.y), unsigned(e.p),
                  static_cast<long long>(e.t));
    return s;
}

void put16(Bytes& b, uint32_t v) {
    b.push_back(uint8_t(v));
    b.push_back(uint8_t(v >> 8));
}
void put32(Bytes& b, uint32_t v) {
    put16(b, v & 0xFFFF);
    put16(b, v >> 16);
}
uint16_t get16(const uint8_t* p) { return uint16_t(p[0] | (p[1] << 8)); }
uint32_t get32(const uint8_t* p) { return uint32_t(get16(p)) | (uint32_t(get16(p + 2)) << 16); }

uint64_t descents(const std::vector<Event>& ev) {
    uint64_t d = 0;
    for (size_t i = 1; i < ev.size(); ++i) d += ev[i].t < ev[i - 1].t;
    return d;
}

// ---------------------------------------------------------------------------------------------
// Decoders

struct Decoded {
    std::vector<Event> events;
    DecodeCounters c;
    size_t pending = 0;
};

// A valid stream and what decoding it must give.
struct Valid {
    Bytes data;
    std::vector<Event> events;
    uint64_t out_of_bounds = 0, other = 0, loops = 0;
};

struct Format {
    std::string name;
    uint32_t width, height;
    size_t word;                 // bytes per word or record (1: a byte stream)
    bool es;                     // Event Stream: a byte stream; pending_bytes is an incomplete event (<= 4)
    // Streams of more than 1 MiB: 0 none, 1 random bytes, 2 also valid, damaged, all 0x00, all 0xFF.
    int large = 1;
    int threaded = -1;  // decoders with a two-thread path: index in Totals::parallel_blocks
    // Decodes `data` split into `sizes` with a fresh decoder, checking after every chunk; `fresh`:
    // a new output buffer per chunk (else one accumulating buffer sized for `hint` events).
    std::function<Decoded(const Format&, const Bytes&, const std::vector<size_t>&, bool fresh, size_t hint)> run;
    std::function<Valid(Rng&, const Format&, size_t)> valid;  // a valid stream of at least n bytes
    std::function<bool(const uint8_t*, size_t)> parallel;  // decode() of this block uses two threads
};

// Whether (x, y) lies on the sensor (any coordinate does when its size is not given).
bool inside(const Format& f, uint32_t x, uint32_t y) {
    return (f.width == 0 || x < f.width) && (f.height == 0 || y < f.height);
}

template <class D>
Decoded feed(D dec, const Format& f, const Bytes& data, const std::vector<size_t>& sizes, bool fresh, size_t hint) {
    static const uint8_t dummy = 0;
    const uint8_t* base = data.empty() ? &dummy : data.data();
    Decoded r;
    EventBuffer acc;
    if (hint) acc.reserve_total(hint);
    size_t off = 0;
    for (size_t s : sizes) {
        EventBuffer one;
        EventBuffer& out = fresh ? one : acc;
        const size_t before = out.size();
        dec.decode(base + off, s, out);
        off += s;
        const size_t k = out.size() - before;
        const Event* e = out.data() + before;
        for (size_t i = 0; i < k; ++i) {
            if (!inside(f, e[i].x, e[i].y) || e[i].p > 1 || e[i].t < 0) {
                fail("after %zu of %zu bytes: bad event %s (sensor %ux%u)", off, data.size(), show(e[i]).c_str(),
                     f.width, f.height);
                break;
            }
        }
        if (fresh) r.events.insert(r.events.end(), e, e + k);
        const DecodeCounters& c = dec.counters();
        const size_t emitted = fresh ? r.events.size() : acc.size();
        if (c.events != emitted)
            fail("after %zu bytes: counters.events %llu, %zu emitted", off, ull(c.events), emitted);
        const size_t pend = dec.pending_bytes();
        if (c.bytes + pend != off || pend > (f.es ? 4 : f.word - 1) || c.bytes % f.word)
            fail("after %zu bytes fed: counters.bytes %llu, pending_bytes %zu", off, ull(c.bytes), pend);
    }
    if (!fresh) r.events.assign(acc.data(), acc.data() + acc.size());
    r.c = dec.counters();
    r.pending = dec.pending_bytes();
    if (!fresh) std::free(acc.release());  // the shrinking realloc of a large unused tail
    return r;
}

template <class D, class... Args>
auto runner(Args... args) {
    return [=](const Format& f, const Bytes& data, const std::vector<size_t>& sizes, bool fresh, size_t hint) {
        return feed(D(f.width, f.height, args...), f, data, sizes, fresh, hint);
    };
}

// Checks `got` against `want` (the reference split, or what a valid stream holds).
void compare(const Decoded& want, const Decoded& got, const char* what) {
    if (want.events.size() != got.events.size()) {
        fail("%s: %zu events, want %zu", what, got.events.size(), want.events.size());
    } else {
        for (size_t i = 0; i < want.events.size(); ++i) {
            if (!same(want.events[i], got.events[i])) {
                fail("%s: event %zu is %s, want %s", what, i, show(got.events[i]).c_str(), show(want.events[i]).c_str());
                break;
            }
        }
    }
#define EVS_SAME_COUNTER(field) \
    if (want.c.field != got.c.field) \
        fail("%s: counters." #field " %llu, want %llu", what, ull(got.c.field), ull(want.c.field));
    EVS_SAME_COUNTER(events)
    EVS_SAME_COUNTER(out_of_bounds)
    EVS_SAME_COUNTER(other_words)
    EVS_SAME_COUNTER(unknown_words)
    EVS_SAME_COUNTER(before_time)
    EVS_SAME_COUNTER(t_backwards)
    EVS_SAME_COUNTER(time_loops)
    EVS_SAME_COUNTER(bytes)
#undef EVS_SAME_COUNTER
    if (want.pending != got.pending) fail("%s: pending_bytes %zu, want %zu", what, got.pending, want.pending);
}

std::vector<size_t> random_split(Rng& g, size_t n, size_t word) {
    std::vector<size_t> s;
    for (size_t left = n; left;) {
        size_t k;
        switch (g() % 6) {
            case 0: k = 1; break;
            case 1: k = 1 + below(g, 2 * word + 1); break;  // mostly mid-word
            case 2: k = 0; break;
            case 3: k = 1 + below(g, 512); break;
            case 4: k = 1 + below(g, 16384); break;
            default: k = 1 + below(g, 200000); break;  // always below the two-thread size
        }
        k = std::min(k, left);
        s.push_back(k);
        left -= k;
    }
    return s;
}

std::vector<size_t> tiny_split(Rng& g, size_t n, size_t word) {
    std::vector<size_t> s;
    for (size_t left = n; left;) {
        const size_t k = std::min<size_t>(1 + below(g, 2 * word + 1), left);
        s.push_back(k);
        left -= k;
    }
    return s;
}

Bytes random_bytes(Rng& g, size_t n) {
    Bytes b(n);
    for (auto& x : b) x = uint8_t(g());
    return b;
}

// 1..4 random kinds of damage; `keep` bytes at least are left (a large stream stays large).
Bytes damage(Rng& g, Bytes d, size_t keep) {
    for (int m = 1 + int(below(g, 4)); m > 0; --m) {
        const size_t n = d.size();
        const size_t room = n > keep ? n - keep : 0;
        switch (g() % 8) {
            case 0:  // bit flips
                for (int i = 1 + int(below(g, 8)); i > 0 && n; --i) d[below(g, n)] ^= uint8_t(1u << below(g, 8));
                break;
            case 1:  // truncated
                d.resize(n - below(g, std::min<size_t>(room, 4096) + 1));
                break;
            case 2:  // starts mid-stream
                d.erase(d.begin(), d.begin() + long(below(g, std::min<size_t>(room, 64) + 1)));
                break;
            case 3: {  // random bytes written over
                const size_t at = below(g, n + 1), len = std::min<size_t>(1 + below(g, 64), n - at);
                for (size_t i = 0; i < len; ++i) d[at + i] = uint8_t(g());
                break;
            }
            case 4: {  // random bytes inserted
                const Bytes ins = random_bytes(g, 1 + below(g, 17));
                d.insert(d.begin() + long(below(g, n + 1)), ins.begin(), ins.end());
                break;
            }
            case 5:
            case 6: {  // a run of 0x00 or 0xFF written over
                const size_t at = below(g, n + 1), len = std::min<size_t>(1 + below(g, 4096), n - at);
                std::fill(d.begin() + long(at), d.begin() + long(at + len), uint8_t(g() & 1 ? 0xFF : 0x00));
                break;
            }
            default: {  // a run of 0x00 or 0xFF inserted
                const Bytes ins(1 + below(g, 4096), uint8_t(g() & 1 ? 0xFF : 0x00));
                d.insert(d.begin() + long(below(g, n + 1)), ins.begin(), ins.end());
                break;
            }
        }
    }
    return d;
}

struct Totals {
    size_t streams = 0, bytes = 0, events = 0;
    size_t parallel_blocks[3] = {0, 0, 0};  // EVT 2.0, EVT 3.0, DAT
};

// Decodes one stream three ways (a random split as the reference, one block, and tiny chunks or a
// prefix then one block of the rest) and checks them against each other and, if given, against
// what the stream holds. Returns how many of the blocks took the two-thread path.
size_t check_stream(const Format& f, const Bytes& data, const Valid* v, Rng& g, std::vector<int32_t>& hist,
                    Totals& tot) {
    const size_t n = data.size();
    const Decoded ref = f.run(f, data, random_split(g, n, f.word), false, 0);
    size_t parallel = 0;
    const Decoded whole = f.run(f, data, {n}, true, chance(g, 50) ? n / f.word + 1 : 0);
    compare(ref, whole, "one block");
    parallel += f.parallel(data.data(), n - n % f.word);
    if (n <= 65536) {
        compare(ref, f.run(f, data, tiny_split(g, n, f.word), chance(g, 50), 0), "tiny chunks");
    } else {  // a prefix sets the decoder's state (time base, row, partial word), then one block
        const size_t p = 1 + below(g, 65536);
        compare(ref, f.run(f, data, {p, n - p}, chance(g, 50), 0), "prefix, then one block");
        const size_t start = (p + f.word - 1) / f.word * f.word;
        parallel += f.parallel(data.data() + start, (n - start) - (n - start) % f.word);
    }
    // t_backwards counts the descents of the emitted events, whatever the split and whatever was
    // dropped in between (out of bounds, before the time reference).
    const uint64_t d = descents(ref.events);
    if (ref.c.t_backwards != d)
        fail("counters.t_backwards %llu, the events step back %llu times", ull(ref.c.t_backwards), ull(d));
    if (v) {
        compare(Decoded{v->events, ref.c, 0}, ref, "against the encoded events");
        const DecodeCounters& c = ref.c;
        if (c.events != v->events.size() || c.out_of_bounds != v->out_of_bounds || c.other_words != v->other ||
            c.unknown_words || c.before_time || c.time_loops != v->loops || c.bytes != n || ref.pending)
            fail("valid stream: counters events %llu oob %llu other %llu unknown %llu before %llu loops %llu bytes %llu "
                 "pending %zu; want %zu %llu %llu 0 0 %llu %zu 0",
                 ull(c.events), ull(c.out_of_bounds), ull(c.other_words),
                 ull(c.unknown_words), ull(c.before_time), ull(c.time_loops),
                 ull(c.bytes), ref.pending, v->events.size(), ull(v->out_of_bounds),
                 ull(v->other), ull(v->loops), n);
    }
    if (f.width && f.height && !ref.events.empty()) {  // decoded events index a (2, h, w) histogram
        if (hist.size() != size_t(2) * f.width * f.height) hist.assign(size_t(2) * f.width * f.height, 0);
        for (int32_t delta : {1, -1}) {
            const size_t skipped =
                histogram_add(hist.data(), f.width, f.height, ref.events.data(), ref.events.size(), delta);
            if (skipped) fail("histogram_add skipped %zu decoded events", skipped);
        }
        for (const Event& e : ref.events) {
            if (hist[(e.p * size_t(f.height) + e.y) * f.width + e.x]) {
                fail("histogram_add: +1 then -1 left %s nonzero", show(e).c_str());
                break;
            }
        }
    }
    tot.streams += 1;
    tot.bytes += 3 * n;
    tot.events += ref.events.size();
    return parallel;
}

// The two-thread conditions of decode_prophesee.cpp, for a block of whole words.
bool evt2_parallel(const uint8_t* d, size_t n) {
    if (n < DecoderBase::kParallelBytes) return false;
    for (size_t i = n / 4 / 2; i < n / 4; ++i)
        if ((get32(d + 4 * i) >> 28) == 0x8) return true;
    return false;
}
bool evt3_parallel(const uint8_t* d, size_t n) {
    if (n < DecoderBase::kParallelBytes) return false;
    int prev = -1;
    for (size_t i = n / 2 / 2; i < n / 2; ++i) {
        const uint16_t v = get16(d + 2 * i);
        if ((v >> 12) != 0x8) continue;
        if (prev >= 0 && (v & 0xFFF) != prev) return true;
        prev = v & 0xFFF;
    }
    return false;
}
bool dat_parallel(const uint8_t*, size_t n) { return n >= DecoderBase::kParallelBytes; }
bool never_parallel(const uint8_t*, size_t) { return false; }

// A limit for generated coordinates: mostly inside the sensor, some outside (or anything `cap`
// allows when the size is not given).
uint32_t limit(uint32_t size, uint32_t cap) { return size ? std::min(cap, size + size / 8 + 1) : cap; }

// Sorted events (what the encoders accept): runs of equal t, row segments of up to 32 pixels with
// equal t, y and p (EVT 3.0 vectors), and now and then a jump of up to `jump` us. The first event
// of a stream (`first`) is at t: a stream's start is before its counter's first wrap.
void more_events(Rng& g, std::vector<Event>& ev, size_t n, uint32_t xlim, uint32_t ylim, int64_t& t, int64_t jump,
                 bool first) {
    for (size_t i = 0; i < n; first = false) {
        if (!first) t += step(g, 40, 8, 5000, uint64_t(jump));
        const uint16_t y = uint16_t(below(g, ylim));
        const uint8_t p = uint8_t(g() & 1);
        if (chance(g, 25)) {
            uint32_t x = uint32_t(below(g, xlim));
            const uint32_t end = std::min(x + 32, xlim);
            for (; x < end && i < n; x += 1 + uint32_t(below(g, 3)), ++i)
                ev.push_back(make_event(uint16_t(x), y, t, p));
        } else {
            ev.push_back(make_event(uint16_t(below(g, xlim)), y, t, p));
            ++i;
        }
    }
}

template <class Word>
void append_words(Bytes& b, const std::vector<Word>& w) {
    const size_t at = b.size();
    b.resize(at + w.size() * sizeof(Word));
    std::memcpy(b.data() + at, w.data(), w.size() * sizeof(Word));  // little-endian hosts, as the decoders
}

// EVT 2.0 / 3.0 through the encoders, with trigger/OTHERS/CONTINUED words slipped in.
template <class Encoder, class Word>
Valid encoded(Rng& g, const Format& f, size_t bytes, int64_t t0, int64_t jump, int time_bits,
              const std::vector<uint32_t>& other_types) {
    Valid v;
    Encoder enc;
    const uint32_t xlim = limit(f.width, 2048), ylim = limit(f.height, 2048);
    int64_t t = t0, last_t = t0;
    std::vector<Event> ev;
    std::vector<Word> words, mixed;
    constexpr int shift = int(sizeof(Word)) * 8 - 4;
    while (v.data.size() < bytes) {
        ev.clear();
        more_events(g, ev, 512, xlim, ylim, t, jump, v.data.empty());
        words.clear();
        enc.encode(ev.data(), ev.size(), words);
        mixed.clear();
        for (Word w : words) {
            if (chance(g, 2)) {
                const uint32_t type = other_types[below(g, other_types.size())];
                mixed.push_back(Word((type << shift) | (uint32_t(g()) & ((1u << shift) - 1))));
                ++v.other;
            }
            mixed.push_back(w);
        }
        append_words(v.data, mixed);
        for (const Event& e : ev) {
            if (inside(f, e.x, e.y))
                v.events.push_back(e);
            else
                ++v.out_of_bounds;
        }
        last_t = ev.back().t;
    }
    v.loops = uint64_t(last_t >> time_bits);
    return v;
}

Valid evt21(Rng& g, const Format& f, size_t bytes, int64_t t) {
    Valid v;
    const uint32_t xlim = limit(f.width, 2048), ylim = limit(f.height, 2048);
    int64_t high = -1;
    while (v.data.size() < bytes) {
        if (high >= 0) t += step(g, 40, 100, 100000, uint64_t(1) << 32);
        if ((t >> 6) != high) {
            high = t >> 6;
            put32(v.data, uint32_t(g()));
            put32(v.data, 0x80000000u | uint32_t(high & 0x0FFFFFFF));
        }
        if (chance(g, 2)) {
            const uint32_t types[] = {0xA, 0xE, 0xF};
            put32(v.data, uint32_t(g()));
            put32(v.data, (types[below(g, 3)] << 28) | uint32_t(below(g, 1u << 28)));
            ++v.other;
        }
        const uint32_t y = uint32_t(below(g, ylim)), x0 = 32 * uint32_t(below(g, (xlim + 31) / 32));
        const uint32_t p = uint32_t(g() & 1);
        const uint32_t mask = chance(g, 3) ? 0 : chance(g, 20) ? 1u << below(g, 32) : uint32_t(g());
        put32(v.data, mask);
        put32(v.data, (p << 28) | (uint32_t(t & 0x3F) << 22) | (x0 << 11) | y);
        for (uint32_t i = 0; i < 32; ++i) {
            if (!(mask >> i & 1)) continue;
            if (inside(f, x0 + i, y))
                v.events.push_back(make_event(uint16_t(x0 + i), uint16_t(y), t, uint8_t(p)));
            else
                ++v.out_of_bounds;
        }
    }
    v.loops = uint64_t(high >> 28);
    return v;
}

Valid dat(Rng& g, const Format& f, size_t bytes, uint32_t xb, uint32_t yb) {
    Valid v;
    const uint32_t xlim = limit(f.width, 1u << xb), ylim = limit(f.height, 1u << yb);
    int64_t t = chance(g, 50) ? (int64_t(1) << 32) - int64_t(below(g, 1 << 22)) : int64_t(below(g, 1 << 20));
    while (v.data.size() < bytes) {
        if (v.data.empty())
            ;  // the first record is before the first wrap
        else if (chance(g, 5) && (t & 0xFFFFFFFF) >= 200)
            t -= int64_t(below(g, 100));  // a little disorder, never across a wrap
        else
            t += step(g, 40, 100, 100000, uint64_t(1) << 31);  // forward jumps up to the unwrap limit
        const uint32_t x = uint32_t(below(g, xlim)), y = uint32_t(below(g, ylim)), p = uint32_t(g() & 1);
        put32(v.data, uint32_t(t & 0xFFFFFFFF));
        put32(v.data, x | (y << xb) | (p << (xb + yb)));
        if (inside(f, x, y))
            v.events.push_back(make_event(uint16_t(x), uint16_t(y), t, uint8_t(p)));
        else
            ++v.out_of_bounds;
    }
    v.loops = uint64_t(t >> 32);
    return v;
}

Valid atis_bin(Rng& g, const Format& f, size_t bytes) {
    Valid v;
    const uint32_t xlim = limit(f.width, 256), ylim = limit(f.height, 256);
    int64_t offset = 0;
    uint32_t t23 = uint32_t(below(g, 1000));
    while (v.data.size() < bytes) {
        if (chance(g, 1)) {  // timestamp overflow record
            v.data.push_back(uint8_t(g()));
            v.data.push_back(240);
            for (int i = 0; i < 3; ++i) v.data.push_back(uint8_t(g()));
            offset += 1 << 13;
            ++v.other;
        }
        t23 = (t23 + uint32_t(chance(g, 2) ? below(g, 1u << 23) : below(g, 300))) & 0x7FFFFF;
        uint32_t y;
        do y = uint32_t(below(g, ylim)); while (y == 240);
        const uint32_t x = uint32_t(below(g, xlim)), p = uint32_t(g() & 1);
        v.data.push_back(uint8_t(x));
        v.data.push_back(uint8_t(y));
        v.data.push_back(uint8_t((p << 7) | (t23 >> 16)));
        v.data.push_back(uint8_t(t23 >> 8));
        v.data.push_back(uint8_t(t23));
        if (inside(f, x, y))
            v.events.push_back(make_event(uint16_t(x), uint16_t(y), offset + t23, uint8_t(p)));
        else
            ++v.out_of_bounds;
    }
    return v;
}

Valid event_stream(Rng& g, const Format& f, size_t bytes, bool atis) {
    Valid v;
    const uint32_t xlim = limit(f.width, 65536), ylim = limit(f.height, 65536);
    int64_t t = 0;
    while (v.data.size() < bytes) {
        bool crossing = false;
        uint32_t p = uint32_t(g() & 1), delta;
        if (atis) {
            while (chance(g, 3)) {
                const uint8_t b = uint8_t(0xFC | below(g, 4));
                v.data.push_back(b);
                t += 63 * (b & 3);
            }
            delta = uint32_t(below(g, 63));
            crossing = chance(g, 5);
            v.data.push_back(uint8_t((delta << 2) | (p << 1) | uint32_t(crossing)));
        } else {
            while (chance(g, 3)) {
                v.data.push_back(0xFF);
                t += 127;
            }
            if (chance(g, 2)) v.data.push_back(0xFE);
            delta = uint32_t(below(g, 127));
            v.data.push_back(uint8_t((delta << 1) | p));
        }
        t += delta;
        const uint32_t x = uint32_t(below(g, xlim)), y = uint32_t(below(g, ylim));
        put16(v.data, x);
        put16(v.data, y);
        if (crossing)
            ++v.other;
        else if (inside(f, x, y))
            v.events.push_back(make_event(uint16_t(x), uint16_t(y), t, uint8_t(p)));
        else
            ++v.out_of_bounds;
    }
    return v;
}

std::vector<Format> formats() {
    std::vector<Format> fs;
    auto add = [&](const std::string& name, uint32_t w, uint32_t h, size_t word, bool es) -> Format& {
        Format f;
        f.name = name + " " + std::to_string(w) + "x" + std::to_string(h);
        f.width = w;
        f.height = h;
        f.word = word;
        f.es = es;
        f.parallel = never_parallel;
        fs.push_back(std::move(f));
        return fs.back();
    };
    const auto t34 = [](Rng& g) {  // EVT 2.x time: half the streams start just before the 2^34 us wrap
        return chance(g, 50) ? (int64_t(1) << 34) - int64_t(below(g, 1 << 22)) : int64_t(below(g, 1 << 20));
    };
    for (auto [w, h] : {std::pair<uint32_t, uint32_t>{1280, 720}, {0, 0}}) {
        Format& e2 = add("EVT 2.0", w, h, 4, false);
        e2.run = runner<Evt2Decoder>();
        e2.parallel = evt2_parallel;
        e2.threaded = 0;
        e2.large = w ? 2 : 1;
        e2.valid = [t34](Rng& g, const Format& f, size_t n) {
            return encoded<Evt2Encoder, uint32_t>(g, f, n, t34(g), int64_t(1) << 36, 34, {0xA, 0xE, 0xF});
        };
        Format& e3 = add("EVT 3.0", w, h, 2, false);
        e3.run = runner<Evt3Decoder>();
        e3.parallel = evt3_parallel;
        e3.threaded = 1;
        e3.large = w ? 2 : 1;
        e3.valid = [](Rng& g, const Format& f, size_t n) {
            const int64_t t0 = int64_t(below(g, 1 << 24));
            return encoded<Evt3Encoder, uint16_t>(g, f, n, t0, int64_t(1) << 26, 24, {0x7, 0xA, 0xE, 0xF});
        };
    }
    for (auto [w, h] : {std::pair<uint32_t, uint32_t>{640, 480}, {0, 0}}) {
        Format& e21 = add("EVT 2.1", w, h, 8, false);
        e21.run = runner<Evt21Decoder>();
        e21.large = w ? 1 : 0;
        e21.valid = [t34](Rng& g, const Format& f, size_t n) { return evt21(g, f, n, t34(g)); };
    }
    for (auto [w, h, xb, yb] : {std::tuple<uint32_t, uint32_t, uint32_t, uint32_t>{640, 480, 14, 14},
                                {0, 0, 14, 14},
                                {304, 240, 9, 8}}) {
        Format& d = add("DAT " + std::to_string(xb) + "/" + std::to_string(yb) + " bits", w, h, 8, false);
        d.run = runner<DatDecoder>(xb, yb);
        d.parallel = dat_parallel;
        d.threaded = 2;
        d.large = xb == 14 && w ? 2 : 1;
        d.valid = [xb = xb, yb = yb](Rng& g, const Format& f, size_t n) { return dat(g, f, n, xb, yb); };
    }
    for (auto [w, h] : {std::pair<uint32_t, uint32_t>{34, 34}, {0, 0}}) {
        Format& bin = add("ATIS bin", w, h, 5, false);
        bin.run = runner<AtisBinDecoder>();
        bin.large = w ? 1 : 0;
        bin.valid = atis_bin;
    }
    for (auto [w, h] : {std::pair<uint32_t, uint32_t>{346, 260}, {0, 0}}) {
        Format& dvs = add("ES DVS", w, h, 1, true);
        dvs.run = runner<EsDvsDecoder>();
        dvs.large = w ? 1 : 0;
        dvs.valid = [](Rng& g, const Format& f, size_t n) { return event_stream(g, f, n, false); };
        Format& atis = add("ES ATIS", w, h, 1, true);
        atis.run = runner<EsAtisDecoder>();
        atis.large = w ? 1 : 0;
        atis.valid = [](Rng& g, const Format& f, size_t n) { return event_stream(g, f, n, true); };
    }
    return fs;
}

// Two-thread seams after an empty first half: a first chunk emits one event, the first half of the
// next block (over 1 MiB: two threads) emits nothing, and its second half starts earlier in time.
// That step back must be counted as when the block comes in small chunks.
void check_seams(const std::vector<Format>& fs) {
    const size_t big = DecoderBase::kParallelBytes + 64;
    for (const Format& f : fs) {
        if (f.threaded < 0 || f.width == 0) continue;
        where = f.name + ", seam after an empty first half";
        Bytes c1, c2;
        if (f.threaded == 0) {  // EVT 2.0: TIME_HIGH 960 us, an event; then OTHERS, TIME_HIGH 0, events at t 0
            put32(c1, 0x80000000u | (1000 >> 6));
            put32(c1, (1u << 28) | (5u << 11) | 5u);
            put32(c2, 0x80000000u | (1000 >> 6));
            while (c2.size() < big / 2 + 8) put32(c2, 0xE0000000u);
            put32(c2, 0x80000000u);
            while (c2.size() < big) put32(c2, (1u << 28) | (5u << 11) | 5u);
        } else if (f.threaded == 1) {  // EVT 3.0: an event at 4096 us; then OTHERS, events at t 0
            put16(c1, 0x8001);
            put16(c1, 0x0005);
            put16(c1, 0x2005);
            put16(c2, 0x8001);
            while (c2.size() < big / 2 + 4) put16(c2, 0xE000);
            put16(c2, 0x8001);  // the split is at a TIME_HIGH that differs from the one before it
            put16(c2, 0xE000);
            put16(c2, 0x8000);
            while (c2.size() < big) put16(c2, 0x2005);
        } else {  // DAT: an event at 1000 us; then events outside the sensor, then events at 500 us
            put32(c1, 1000);
            put32(c1, 5);
            while (c2.size() < big / 2) {
                put32(c2, 1000);
                put32(c2, f.width);
            }
            while (c2.size() < big) {
                put32(c2, 500);
                put32(c2, 5);
            }
        }
        if (!f.parallel(c2.data(), c2.size())) fail("the large block does not take the two-thread path");
        Bytes data = c1;
        data.insert(data.end(), c2.begin(), c2.end());
        std::vector<size_t> chunks{c1.size()};
        for (size_t left = c2.size(); left;) {
            chunks.push_back(std::min<size_t>(left, 65536));
            left -= chunks.back();
        }
        const Decoded small = f.run(f, data, chunks, false, 0);
        compare(small, f.run(f, data, {c1.size(), c2.size()}, false, 0), "first chunk, then one block");
        if (small.c.t_backwards != 1 || descents(small.events) != 1)
            fail("counters.t_backwards %llu, the events step back %llu times, want 1", ull(small.c.t_backwards),
                 ull(descents(small.events)));
    }
}

void check_decoders(Totals& tot) {
    const std::vector<Format> fs = formats();
    check_seams(fs);
    std::vector<int32_t> hist;
    constexpr size_t kLarge = DecoderBase::kParallelBytes + 65536 + 4099;  // > 1 MiB after any prefix
    for (size_t fi = 0; fi < fs.size(); ++fi) {
        const Format& f = fs[fi];
        Rng g(1000 + fi);
        size_t parallel = 0;
        for (int seed = 0; seed < 4; ++seed) {
            where = f.name + ", valid stream " + std::to_string(seed);
            const Valid v = f.valid(g, f, 1 + below(g, 16384));
            check_stream(f, v.data, &v, g, hist, tot);
            for (int m = 0; m < 3; ++m) {
                where = f.name + ", damaged stream " + std::to_string(seed) + "." + std::to_string(m);
                check_stream(f, damage(g, v.data, 0), nullptr, g, hist, tot);
            }
            where = f.name + ", random bytes " + std::to_string(seed);
            check_stream(f, random_bytes(g, below(g, 16384)), nullptr, g, hist, tot);
        }
        if (f.large >= 1) {
            where = f.name + ", large random block";
            parallel += check_stream(f, random_bytes(g, kLarge + below(g, 8)), nullptr, g, hist, tot);
        }
        if (f.large >= 2) {
            where = f.name + ", large valid stream";
            const Valid big = f.valid(g, f, kLarge);
            parallel += check_stream(f, big.data, &big, g, hist, tot);
            where = f.name + ", large damaged stream";
            parallel += check_stream(f, damage(g, big.data, kLarge), nullptr, g, hist, tot);
            where = f.name + ", large block of 0x00";
            parallel += check_stream(f, Bytes(kLarge, 0x00), nullptr, g, hist, tot);
            where = f.name + ", large block of 0xFF";
            parallel += check_stream(f, Bytes(kLarge, 0xFF), nullptr, g, hist, tot);
        }
        if (f.threaded >= 0) {
            tot.parallel_blocks[f.threaded] += parallel;
            where = f.name;
            const size_t want = f.large >= 2 ? 6 : 2;  // random, valid and damaged: whole and after a prefix
            if (parallel < want) fail("%zu blocks took the two-thread path, want at least %zu", parallel, want);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Ring

Event seq_event(uint64_t s) {
    return make_event(uint16_t(s % 1021), uint16_t(s % 509), int64_t(s), uint8_t(s & 1));
}
bool is_seq_event(const Event& e) { return e.t >= 0 && same(e, seq_event(uint64_t(e.t))); }

struct RingMemory {
    explicit RingMemory(size_t cap)
        : bytes((Ring::bytes_for(cap) + 63) / 64 * 64), p(std::aligned_alloc(64, bytes)) {}
    ~RingMemory() { std::free(p); }
    size_t bytes;
    void* p;
};

const char* policy_name(RingPolicy p) {
    return p == RingPolicy::block ? "block" : p == RingPolicy::drop_newest ? "drop_newest" : "drop_oldest";
}

// One thread against a deque model: random pushes and pops through the wraparound.
void ring_model(RingPolicy policy, size_t cap, Rng& g) {
    where = std::string("ring ") + policy_name(policy) + ", capacity " + std::to_string(cap) + ", one thread";
    RingMemory mem(cap);
    Ring ring = Ring::create(mem.p, mem.bytes, cap, policy);
    struct Slot {
        uint64_t seq, index;
    };
    std::deque<Slot> q;
    uint64_t seq = 0, head = 0, offered = 0, dropped = 0, popped = 0;
    std::vector<Event> in(2 * cap + 3), out(2 * cap + 3);
    for (int step = 0; step < 400; ++step) {
        if (chance(g, 50)) {
            const size_t k = below(g, 2 * cap + 3);
            for (size_t i = 0; i < k; ++i) in[i] = seq_event(seq + i);
            const size_t stored = ring.push(in.data(), k, 0.0);
            size_t want = 0;
            if (policy == RingPolicy::drop_oldest) {
                const size_t skip = k > cap ? k - cap : 0;
                dropped += skip;
                for (size_t i = skip; i < k; ++i) {
                    if (q.size() == cap) {
                        q.pop_front();
                        ++dropped;
                    }
                    q.push_back({seq + i, head++});
                }
                want = k - skip;
                offered += k;
            } else {
                want = std::min(k, cap - q.size());
                for (size_t i = 0; i < want; ++i) q.push_back({seq + i, head++});
                // drop_newest answers for all k (stored or dropped); block only for what it stored:
                // the caller keeps the rest (and may offer it again).
                if (policy == RingPolicy::drop_newest) dropped += k - want;
                offered += policy == RingPolicy::drop_newest ? k : want;
            }
            if (stored != want) fail("push of %zu stored %zu, want %zu", k, stored, want);
            seq += k;
        } else {
            const size_t max = below(g, 2 * cap + 3);
            uint64_t first = ~uint64_t(0);
            const size_t got = ring.pop(out.data(), max, 0.0, nullptr, &first);
            const size_t want = std::min(max, q.size());
            if (got != want) fail("pop of %zu gave %zu, want %zu", max, got, want);
            if (got && first != q.front().index)
                fail("pop: first index %llu, want %llu", ull(first), ull(q.front().index));
            for (size_t i = 0; i < std::min(got, want); ++i) {
                if (!same(out[i], seq_event(q.front().seq)))
                    fail("pop: event %s, want seq %llu", show(out[i]).c_str(), ull(q.front().seq));
                q.pop_front();
            }
            popped += got;
        }
        if (ring.size() != q.size() || ring.offered() != offered || ring.dropped() != dropped || ring.popped() != popped ||
            ring.stored() != head)
            fail("step %d: size %zu offered %llu dropped %llu popped %llu stored %llu; want %zu %llu %llu %llu %llu", step,
                 ring.size(), ull(ring.offered()), ull(ring.dropped()),
                 ull(ring.popped()), ull(ring.stored()), q.size(), ull(offered),
                 ull(dropped), ull(popped), ull(head));
        // Every event is accounted for, for every policy.
        if (ring.offered() != ring.popped() + ring.dropped() + ring.size())
            fail("step %d: offered != popped + dropped + size", step);
    }
    ring.close();
    const size_t left = q.size();
    if (ring.pop(out.data(), out.size(), 1.0) != std::min(left, out.size()))
        fail("closed ring: pop did not drain it");
    if (left <= out.size() && ring.pop(out.data(), out.size(), 1.0) != 0)
        fail("closed, drained ring: pop returned events");
}

// Producer and consumer threads; the consumer checks every event (no torn or repeated events,
// order kept) and, after the join, each popped event's stream index against the producer's record.
// `retry` (block): pushes time out at once and the producer offers the rest again, as
// runtime/pipeline.py does; `offered` must still count every event once.
void ring_threads(RingPolicy policy, size_t cap, uint64_t n, unsigned seed, bool retry = false) {
    where = std::string("ring ") + policy_name(policy) + ", capacity " + std::to_string(cap) + ", two threads" +
            (retry ? ", pushes retried after a timeout" : "");
    RingMemory mem(cap);
    Ring ring = Ring::create(mem.p, mem.bytes, cap, policy);
    std::vector<int64_t> seq_at(n, -1);  // stream index -> seq, written by the producer
    size_t producer_errors = 0;
    std::thread producer([&] {
        Rng g(seed);
        std::vector<Event> batch(2 * cap);
        for (uint64_t seq = 0; seq < n;) {
            const size_t k = size_t(std::min<uint64_t>(1 + below(g, 2 * cap), n - seq));
            for (size_t i = 0; i < k; ++i) batch[i] = seq_event(seq + i);
            const uint64_t h = ring.stored();
            size_t stored = ring.push(batch.data(), k, policy == RingPolicy::block && !retry ? -1.0 : 0.0);
            while (retry && stored < k) stored += ring.push(batch.data() + stored, k - stored, 1e-5);
            const size_t skip = policy == RingPolicy::drop_oldest && k > cap ? k - cap : 0;
            if (policy == RingPolicy::block ? stored != k : stored > k - skip) ++producer_errors;
            for (size_t i = 0; i < stored; ++i) seq_at[h + i] = int64_t(seq + skip + i);
            seq += k;
            if (chance(g, 10)) std::this_thread::yield();
        }
        ring.close();
    });
    Rng g(seed + 1);
    std::vector<Event> out(2 * cap);
    std::vector<std::pair<uint64_t, int64_t>> got;  // (stream index, seq)
    int64_t last = -1;
    uint64_t next_index = 0;
    while (true) {
        uint64_t first = 0;
        const size_t k = ring.pop(out.data(), 1 + below(g, 2 * cap - 1), 0.01, nullptr, &first);
        if (k == 0) {
            if (ring.closed() && ring.size() == 0) break;  // closed after the producer's last push
            continue;
        }
        if (first < next_index || (policy != RingPolicy::drop_oldest && first != next_index))
            fail("pop: first index %llu after %llu", ull(first), ull(next_index));
        next_index = first + k;
        for (size_t i = 0; i < k; ++i) {
            if (!is_seq_event(out[i]) || out[i].t <= last) {
                fail("pop: event %s after seq %lld", show(out[i]).c_str(), static_cast<long long>(last));
                break;
            }
            last = out[i].t;
            got.emplace_back(first + i, out[i].t);
        }
        if (chance(g, 5)) std::this_thread::sleep_for(std::chrono::microseconds(100));  // a slow consumer: drops
    }
    producer.join();
    if (producer_errors) fail("%zu pushes stored the wrong number of events", producer_errors);
    for (const auto& [index, seq] : got) {
        if (index >= n || seq_at[index] != seq) {
            fail("popped seq %lld at stream index %llu, the producer stored %lld there", static_cast<long long>(seq),
                 ull(index), static_cast<long long>(index < n ? seq_at[index] : -2));
            break;
        }
    }
    if (ring.offered() != n || ring.popped() != got.size() || ring.offered() != ring.popped() + ring.dropped() + ring.size() ||
        (policy == RingPolicy::block && got.size() != n))
        fail("offered %llu popped %llu dropped %llu size %zu after %llu pushed and %zu popped", ull(ring.offered()),
             ull(ring.popped()), ull(ring.dropped()), ring.size(), ull(n), got.size());
}

void ring_edges() {
    where = "ring create/attach/cancel";
    RingMemory mem(16);
    Ring ring = Ring::create(mem.p, mem.bytes, 16, RingPolicy::drop_newest);
    Ring other = Ring::attach(mem.p, mem.bytes);
    if (other.capacity() != 16 || other.policy() != RingPolicy::drop_newest)
        fail("attach: wrong capacity or policy");
    const Event e = seq_event(5);
    if (ring.push(&e, 1, 0.0) != 1 || other.size() != 1) fail("attach: the attached ring does not see a push");
    auto throws = [](const char* what, auto f) {
        try {
            f();
            fail("%s was accepted", what);
        } catch (const std::invalid_argument&) {
        }
    };
    throws("a zero capacity", [&] { Ring::create(mem.p, mem.bytes, 0, RingPolicy::block); });
    throws("too small a block", [&] { Ring::create(mem.p, Ring::bytes_for(16) - 1, 16, RingPolicy::block); });
    throws("unaligned memory",
           [&] { Ring::create(static_cast<uint8_t*>(mem.p) + 8, mem.bytes - 8, 4, RingPolicy::block); });
    throws("attach to a shorter block", [&] { Ring::attach(mem.p, Ring::bytes_for(16) - 1); });
    RingMemory junk(16);
    std::memset(junk.p, 0xAB, junk.bytes);
    throws("attach to junk", [&] { Ring::attach(junk.p, junk.bytes); });

    RingMemory bm(8);
    Ring blocking = Ring::create(bm.p, bm.bytes, 8, RingPolicy::block);
    std::vector<Event> ev(12);
    for (size_t i = 0; i < ev.size(); ++i) ev[i] = seq_event(i);
    std::atomic<bool> cancel{true};
    if (blocking.push(ev.data(), 12, -1.0, &cancel) != 8) fail("a cancelled blocking push did not return");
    if (blocking.pop(ev.data(), 12, -1.0, &cancel) != 8) fail("pop did not return the stored events");
    if (blocking.pop(ev.data(), 12, -1.0, &cancel) != 0) fail("a cancelled pop of an empty ring did not return");
}

// ---------------------------------------------------------------------------------------------
// Histogram

void check_histogram(Rng& g) {
    where = "histogram_add";
    std::vector<int32_t> counts, want;
    std::vector<Event> ev;
    for (int trial = 0; trial < 300; ++trial) {
        const uint32_t w = uint32_t(below(g, 41)), h = uint32_t(below(g, 31));
        const size_t plane = size_t(w) * h;
        counts.assign(2 * plane + 1, 0);
        want.assign(2 * plane + 1, 0);
        ev.resize(below(g, 600) + 1);
        const uint8_t ps[] = {0, 1, 1, 0, 2, 255};
        for (auto& e : ev)
            e = make_event(uint16_t(below(g, w + 4)), uint16_t(below(g, h + 4)), int64_t(g() >> 1), ps[below(g, 6)]);
        for (int pass = 0; pass < 2; ++pass) {
            const int32_t delta = int32_t(below(g, 7)) - 3;
            size_t skipped = 0;
            for (const Event& e : ev) {
                if (e.x < w && e.y < h && e.p <= 1)
                    want[e.p * plane + size_t(e.y) * w + e.x] += delta;
                else
                    ++skipped;
            }
            const size_t k = histogram_add(counts.data(), w, h, ev.data(), ev.size(), delta);
            if (k != skipped) fail("%ux%u: skipped %zu, want %zu", w, h, k, skipped);
        }
        if (counts != want) fail("%ux%u: counts differ from the plain loop", w, h);
    }
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

int main() {
    auto t0 = std::chrono::steady_clock::now();
    Totals tot;
    check_decoders(tot);
    const double decode_s = seconds_since(t0);

    t0 = std::chrono::steady_clock::now();
    Rng g(7);
    for (RingPolicy p : {RingPolicy::block, RingPolicy::drop_newest, RingPolicy::drop_oldest})
        for (size_t cap : {1, 3, 64, 1000}) ring_model(p, cap, g);
    for (RingPolicy p : {RingPolicy::block, RingPolicy::drop_newest, RingPolicy::drop_oldest}) {
        ring_threads(p, 1, 20000, 11);
        ring_threads(p, 1000, 200000, 12);
    }
    ring_threads(RingPolicy::block, 1, 20000, 13, true);
    ring_threads(RingPolicy::block, 1000, 200000, 14, true);
    ring_edges();
    check_histogram(g);
    const double ring_s = seconds_since(t0);

    if (failures) {
        std::fprintf(stderr, "%d checks failed\n", failures);
        return 1;
    }
    std::printf("ok: %zu streams, %.1f MB decoded, %zu events; two-thread blocks: EVT 2.0 %zu, EVT 3.0 %zu, DAT %zu "
                "(%.1f s); ring and histogram (%.1f s)\n",
                tot.streams, double(tot.bytes) / 1e6, tot.events, tot.parallel_blocks[0], tot.parallel_blocks[1],
                tot.parallel_blocks[2], decode_s, ring_s);
    return 0;
}
