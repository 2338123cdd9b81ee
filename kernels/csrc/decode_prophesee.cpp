// Prophesee EVT 2.0, EVT 2.1, EVT 3.0 and DAT decoders, written from Prophesee's format
// specifications. Timestamps are absolute microseconds (no "time shifting").
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "decoders.hpp"

namespace evs {
namespace {

inline uint16_t load_u16(const uint8_t* p) { return uint16_t(p[0] | (p[1] << 8)); }
inline uint32_t load_u32(const uint8_t* p) {
    uint32_t v;
    std::memcpy(&v, p, 4);
    return v;  // little-endian hosts only; checked at build time in bindings.cpp
}

// Counter wraps (EVT 2.0 / 2.1 TIME_HIGH, DAT timestamps). A step back by half the counter's
// range or more (`strict`: more than half) is a wrap, not disorder, and a forward jump by half the
// range or more is no wrap either; but one damaged value (a flipped high bit, a stray word) makes
// two such steps in a row: up and back (a jump, then what looks like a wrap), or down and up (a
// "wrap", then a jump). Taken at face value the second would shift every later timestamp by a
// whole range. So a step back right after a jump is no wrap, and a jump right after a wrap takes
// the wrap back: time resumes from before the damaged value, whose events are counted as going
// backwards. (A recording with a genuine jump of half the range right before a wrap, or right
// after one, is misread; writers split such jumps into shorter steps, as evstream's encoders do.)
// `raw` and `prev` are the new and the previous value within the range; returns the wraps to add:
// +1, -1 (one taken back) or 0.
template <bool strict>
inline int wrap_step(int64_t raw, int64_t prev, Step& last, int64_t range) {
    const int64_t d = raw - prev, half = range / 2;
    if (strict ? d < -half : d <= -half) {
        if (last == Step::Jumped) {  // back from a damaged value
            last = Step::Normal;
            return 0;
        }
        last = Step::Wrapped;
        return 1;
    }
    if (d >= half) {
        if (last == Step::Wrapped) {  // the wrap was a damaged value
            last = Step::Normal;
            return -1;
        }
        last = Step::Jumped;
        return 0;
    }
    last = Step::Normal;
    return 0;
}

}  // namespace

// ---------------------------------------------------------------------------------------
// EVT 2.0. Word type in bits 31..28: CD_OFF 0x0, CD_ON 0x1, EVT_TIME_HIGH 0x8,
// EXT_TRIGGER 0xA, OTHERS 0xE, CONTINUED 0xF. CD: [27..22] t low 6 bits, [21..11] x,
// [10..0] y. TIME_HIGH: [27..0] = t >> 6. The 34-bit time wraps every 2^34 us.
void Evt2Decoder::decode(const uint8_t* data, size_t n, EventBuffer& out) {
    feed_words<4>(data, n, [&](const uint8_t* d, size_t m) { run(d, m, out); });
}

// Large blocks are split at a TIME_HIGH word near the middle and the halves decoded by two
// threads. The split is where the two TIME_HIGHs before it are less than half the range apart
// (their step was neither a wrap nor a jump: nothing to carry over, see wrap_step); the second
// half's decoder is seeded with the last of them, and its output goes right after the first
// half's CD words, counted up front; a wrap or dropped events inside the first half are fixed up
// after the join.
void Evt2Decoder::run(const uint8_t* data, size_t n, EventBuffer& out) {
    const size_t words = n / 4;
    Event* w = out.reserve_more(words);
    constexpr int64_t kHalf = int64_t(1) << 33;
    const auto time_high = [&](size_t i) -> int64_t {  // the TIME_HIGH word i holds, or -1
        const uint32_t v = load_u32(data + 4 * i);
        return (v >> 28) == 0x8 ? int64_t(v & 0x0FFFFFFF) << 6 : -1;
    };
    int64_t r0 = -1, r1 = -1;  // the two TIME_HIGHs before the candidate split
    size_t mid = words / 2;
    for (size_t j = mid, found = 0; found < 2 && j-- > 0;)
        if (const int64_t r = time_high(j); r >= 0) (found++ ? r0 : r1) = r;
    for (; mid < words; ++mid)
        if (const int64_t r = time_high(mid); r >= 0) {
            if (r0 >= 0 && r1 - r0 < kHalf && r0 - r1 < kHalf) break;
            r0 = r1;
            r1 = r;
        }
    if (n < kParallelBytes || mid >= words) {
        out.commit(decode_words(data, words, w));
        return;
    }
    Evt2Decoder second(width_, height_);
    const int64_t seed_loop = loop_;
    second.loop_ = loop_;
    second.time_base_ = r1 + loop_;
    size_t first_cd = 0, k2 = 0;
    std::thread worker([&] {
        for (size_t i = 0; i < mid; ++i) first_cd += (load_u32(data + 4 * i) >> 28) <= 1;
        k2 = second.decode_words(data + 4 * mid, words - mid, w + first_cd);
    });
    const size_t k1 = decode_words(data, mid, w);
    const int64_t last_first = last_t_;
    worker.join();
    if (k1 != first_cd) std::memmove(w + k1, w + first_cd, k2 * sizeof(Event));
    const int64_t delta = loop_ - seed_loop;
    join_seam(w + k1, k2, delta, last_first);
    second.time_base_ += delta;
    second.loop_ += delta;
    second.last_t_ += delta;
    time_base_ = second.time_base_;
    loop_ = second.loop_;
    step_ = second.step_;  // (a wrap at the block's end may be taken back in the next chunk)
    if (k2) last_t_ = second.last_t_;
    c_.merge(second.c_);
    out.commit(k1 + k2);
}

size_t Evt2Decoder::decode_words(const uint8_t* data, size_t words, Event* w) {
    Event* const start = w;
    constexpr int64_t kLoop = int64_t(1) << 34;
    const uint32_t wmax = width_ ? width_ : 0x10000, hmax = height_ ? height_ : 0x10000;
    int64_t base = time_base_, loop = loop_, last_t = last_t_;
    Step step = step_;
    int64_t loops = 0;
    uint64_t before = 0, oob = 0, backwards = 0, other = 0, unknown = 0;
    for (size_t i = 0; i < words; ++i) {
        const uint32_t v = load_u32(data + 4 * i);
        const uint32_t type = v >> 28;
        if (type <= 1) {
            const uint32_t x = (v >> 11) & 0x7FF, y = v & 0x7FF;
            if (base < 0) {
                ++before;
            } else if (x >= wmax || y >= hmax) {
                ++oob;
            } else {
                const int64_t t = base + ((v >> 22) & 0x3F);
                backwards += t < last_t;
                last_t = t;
                w->x = uint16_t(x);
                w->y = uint16_t(y);
                w->p = uint8_t(type);
                w->t = t;
                ++w;
            }
        } else if (type == 0x8) {
            const int64_t raw = int64_t(v & 0x0FFFFFFF) << 6;
            if (base >= 0) {
                const int wraps = wrap_step<false>(raw, base - loop, step, kLoop);
                loop += wraps * kLoop;
                loops += wraps;
            }
            base = raw + loop;
        } else if (type == 0xA || type == 0xE || type == 0xF) {
            ++other;
        } else {
            ++unknown;
        }
    }
    time_base_ = base;
    loop_ = loop;
    step_ = step;
    last_t_ = last_t;
    const size_t k = size_t(w - start);
    c_.events += k;
    c_.before_time += before;
    c_.out_of_bounds += oob;
    c_.t_backwards += backwards;
    c_.other_words += other;
    c_.unknown_words += unknown;
    c_.time_loops += uint64_t(loops);  // (modulo 2^64: a wrap taken back subtracts one)
    return k;
}

// ---------------------------------------------------------------------------------------
// EVT 2.1. 64-bit words, stored as two little-endian 32-bit halves, low half first.
// Type in bits 63..60: EVT_NEG 0x0, EVT_POS 0x1, EVT_TIME_HIGH 0x8, EXT_TRIGGER 0xA,
// OTHERS 0xE, CONTINUED 0xF. CD: [59..54] t low 6 bits, [53..43] x (multiple of 32),
// [42..32] y, [31..0] valid mask: bit i set -> event at x + i.
void Evt21Decoder::decode(const uint8_t* data, size_t n, EventBuffer& out) {
    feed_words<8>(data, n, [&](const uint8_t* d, size_t m) { run(d, m, out); });
}

void Evt21Decoder::run(const uint8_t* data, size_t n, EventBuffer& out) {
    const size_t words = n / 8;
    constexpr int64_t kLoop = int64_t(1) << 34;
    size_t emitted = 0;
    for (size_t i = 0; i < words; ++i) {
        const uint32_t lo = load_u32(data + 8 * i);
        const uint32_t hi = load_u32(data + 8 * i + 4);
        const uint32_t type = hi >> 28;
        if (type <= 1) {
            if (time_base_ < 0) {
                c_.before_time += uint64_t(__builtin_popcount(lo));
                continue;
            }
            const int64_t t = time_base_ + ((hi >> 22) & 0x3F);
            const uint32_t x0 = (hi >> 11) & 0x7FF, y = hi & 0x7FF;
            Event* w = out.reserve_more(32);
            Event* const start = w;
            for (uint32_t mask = lo; mask; mask &= mask - 1) {
                const uint32_t x = x0 + uint32_t(__builtin_ctz(mask));
                if (!in_bounds(x, y)) {
                    ++c_.out_of_bounds;
                    continue;
                }
                w->x = uint16_t(x);
                w->y = uint16_t(y);
                w->p = uint8_t(type);
                w->t = t;
                ++w;
            }
            const size_t k = size_t(w - start);
            if (k) {  // a word whose pixels are all outside the sensor emits nothing: no time step
                c_.t_backwards += t < last_t_;
                last_t_ = t;
            }
            out.commit(k);
            emitted += k;
        } else if (type == 0x8) {
            const int64_t raw = int64_t(hi & 0x0FFFFFFF) << 6;
            if (time_base_ >= 0) {
                const int wraps = wrap_step<false>(raw, time_base_ - loop_, step_, kLoop);
                loop_ += wraps * kLoop;
                c_.time_loops += uint64_t(int64_t(wraps));  // (modulo 2^64: a wrap taken back subtracts one)
            }
            time_base_ = raw + loop_;
        } else if (type == 0xA || type == 0xE || type == 0xF) {
            ++c_.other_words;
        } else {
            ++c_.unknown_words;
        }
    }
    c_.events += emitted;
}

// ---------------------------------------------------------------------------------------
// EVT 3.0. Type in bits 15..12 (see the table in replay/prophesee_raw.py's docstring).
// t = loop * 2^24 + (TIME_HIGH << 12) + TIME_LOW. A TIME_HIGH that differs from the last
// one resets TIME_LOW to 0; a backwards TIME_HIGH jump of >= 2048 is a 24-bit wrap.
void Evt3Decoder::decode(const uint8_t* data, size_t n, EventBuffer& out) {
    feed_words<2>(data, n, [&](const uint8_t* d, size_t m) { run(d, m, out); });
}

// Large blocks are split at a TIME_HIGH word (near the middle) whose value differs from the
// TIME_HIGH before it, so that the reader's time there does not depend on earlier TIME_LOWs.
// The second half's row and vector base are recovered by scanning back from the split; a
// 24-bit wrap inside the first half is fixed up after the join.
void Evt3Decoder::run(const uint8_t* data, size_t n, EventBuffer& out) {
    const size_t words = n / 2;
    if (n < kParallelBytes) {
        run_serial(data, words, out);
        return;
    }
    size_t split = words;
    int32_t prev_high = -1;
    for (size_t i = words / 2; i < words; ++i) {
        const uint16_t v = load_u16(data + 2 * i);
        if ((v >> 12) != 0x8) continue;
        const int32_t h = v & 0xFFF;
        if (prev_high >= 0 && h != prev_high) {
            split = i;
            break;
        }
        prev_high = h;
    }
    if (split == words) {
        run_serial(data, words, out);
        return;
    }
    Evt3Decoder second(width_, height_);
    const int64_t seed_loop = loop_;
    second.loop_ = loop_;
    second.time_high_ = (int64_t(prev_high) << 12) + loop_;
    second.t_ = second.time_high_;
    second.y_ = y_;
    for (size_t i = split; i-- > 0;) {
        const uint16_t v = load_u16(data + 2 * i);
        if ((v >> 12) == 0x0) {
            second.y_ = v & 0x7FF;
            break;
        }
    }
    uint32_t advance = 0;
    second.base_x_ = base_x_;
    second.base_p_ = base_p_;
    bool found_base = false;
    for (size_t i = split; i-- > 0;) {
        const uint16_t v = load_u16(data + 2 * i);
        const uint32_t type = v >> 12;
        if (type == 0x4) advance += 12;
        if (type == 0x5) advance += 8;
        if (type == 0x3) {
            second.base_x_ = (v & 0x7FF) + advance;
            second.base_p_ = uint8_t((v >> 11) & 1);
            found_base = true;
            break;
        }
    }
    if (!found_base) second.base_x_ = base_x_ + advance;
    EventBuffer tail;
    std::thread worker([&] { second.run_serial(data + 2 * split, words - split, tail); });
    run_serial(data, split, out);
    const int64_t last_first = last_t_;
    worker.join();
    const size_t k2 = tail.size();
    Event* w = tail.data();
    const int64_t delta = loop_ - seed_loop;
    join_seam(w, k2, delta, last_first);
    second.time_high_ += delta;
    second.t_ += delta;
    second.loop_ += delta;
    second.last_t_ += delta;
    if (k2) {
        std::memcpy(out.reserve_more(k2), w, k2 * sizeof(Event));
        out.commit(k2);
        last_t_ = second.last_t_;
    }
    time_high_ = second.time_high_;
    t_ = second.t_;
    loop_ = second.loop_;
    y_ = second.y_;
    base_x_ = second.base_x_;
    base_p_ = second.base_p_;
    c_.merge(second.c_);
}

void Evt3Decoder::run_serial(const uint8_t* data, size_t words, EventBuffer& out) {
    constexpr int64_t kLoop = int64_t(1) << 24;
    constexpr size_t kBlock = 4096;  // words per block; a word emits at most 12 events
    const uint32_t wmax = width_ ? width_ : 0x10000, hmax = height_ ? height_ : 0x10000;
    // Local copies of the state keep the hot loop in registers.
    int64_t th = time_high_, t = t_, loop = loop_, last_t = last_t_;
    uint32_t y = y_, bx = base_x_;
    uint8_t bp = base_p_;
    uint64_t oob = 0, before = 0, other = 0, unknown = 0, backwards = 0, loops = 0;
    size_t emitted = 0;
    for (size_t b0 = 0; b0 < words; b0 += kBlock) {
        const size_t b1 = b0 + kBlock < words ? b0 + kBlock : words;
        Event* w = out.reserve_more((b1 - b0) * 12);
        Event* const start = w;
        for (size_t i = b0; i < b1; ++i) {
            const uint16_t v = load_u16(data + 2 * i);
            const uint32_t payload = v & 0xFFF;
            switch (v >> 12) {
                case 0x0:  // EVT_ADDR_Y
                    y = payload & 0x7FF;
                    break;
                case 0x2: {  // EVT_ADDR_X: one event
                    const uint32_t x = payload & 0x7FF;
                    if (th < 0) {
                        ++before;
                    } else if (x >= wmax || y >= hmax) {
                        ++oob;
                    } else {
                        w->x = uint16_t(x);
                        w->y = uint16_t(y);
                        w->p = uint8_t(payload >> 11);
                        w->t = t;
                        ++w;
                        backwards += t < last_t;
                        last_t = t;
                    }
                    break;
                }
                case 0x3:  // VECT_BASE_X
                    bx = payload & 0x7FF;
                    bp = uint8_t(payload >> 11);
                    break;
                case 0x4:    // VECT_12
                case 0x5: {  // VECT_8
                    const uint32_t width = (v >> 12) == 0x4 ? 12 : 8;
                    const uint32_t mask = payload & ((1u << width) - 1);
                    if (mask) {
                        if (th < 0) {
                            before += uint64_t(__builtin_popcount(mask));
                        } else {
                            Event* const first = w;
                            for (uint32_t m = mask; m; m &= m - 1) {
                                const uint32_t x = bx + uint32_t(__builtin_ctz(m));
                                if (x >= wmax || y >= hmax) {
                                    ++oob;
                                    continue;
                                }
                                w->x = uint16_t(x);
                                w->y = uint16_t(y);
                                w->p = bp;
                                w->t = t;
                                ++w;
                            }
                            // A time step counts only between emitted events: a vector whose
                            // pixels all fall outside the sensor emits nothing and steps nothing
                            // (else the count would depend on where a two-thread block is split).
                            if (w != first) {
                                backwards += t < last_t;
                                last_t = t;
                            }
                        }
                    }
                    bx += width;
                    break;
                }
                case 0x6:  // EVT_TIME_LOW
                    if (th >= 0) t = th + payload;
                    break;
                case 0x8: {  // EVT_TIME_HIGH
                    int64_t nh = (int64_t(payload) << 12) + loop;
                    if (th >= 0 && nh + (int64_t(2048) << 12) <= th) {
                        loop += kLoop;
                        nh += kLoop;
                        ++loops;
                    }
                    if (nh != th) t = nh;
                    th = nh;
                    break;
                }
                case 0x7:  // CONTINUED_4
                case 0xA:  // EXT_TRIGGER
                case 0xE:  // OTHERS
                case 0xF:  // CONTINUED_12
                    ++other;
                    break;
                default:
                    ++unknown;
                    break;
            }
        }
        const size_t k = size_t(w - start);
        out.commit(k);
        emitted += k;
    }
    time_high_ = th;
    t_ = t;
    loop_ = loop;
    last_t_ = last_t;
    y_ = y;
    base_x_ = bx;
    base_p_ = bp;
    c_.events += emitted;
    c_.out_of_bounds += oob;
    c_.before_time += before;
    c_.other_words += other;
    c_.unknown_words += unknown;
    c_.t_backwards += backwards;
    c_.time_loops += loops;
}

// ---------------------------------------------------------------------------------------
// DAT (CD): 8-byte records, uint32 t then uint32 {x: x_bits, y: y_bits, p: 4 bits}.
// The 32-bit microsecond counter (71.6 min) is unwrapped on a backwards jump > 2^31.
void DatDecoder::decode(const uint8_t* data, size_t n, EventBuffer& out) {
    feed_words<8>(data, n, [&](const uint8_t* d, size_t m) { run(d, m, out); });
}

// Records are independent but for the 32-bit time unwrap: large blocks are split in two, the
// second half seeded with the record before the split and shifted afterwards if the first
// half wrapped.
void DatDecoder::run(const uint8_t* data, size_t n, EventBuffer& out) {
    const size_t records = n / 8;
    Event* w = out.reserve_more(records);
    if (n < kParallelBytes) {
        out.commit(decode_records(data, records, w));
        return;
    }
    // The split: where the two records before it are less than half the range apart (their step
    // was neither a wrap nor a jump: nothing to carry over, see wrap_step).
    const auto raw = [&](size_t i) { return int64_t(load_u32(data + 8 * i)); };
    size_t mid = std::max<size_t>(records / 2, 2);
    while (mid < records && std::llabs(raw(mid - 1) - raw(mid - 2)) >= (int64_t(1) << 31)) ++mid;
    if (mid >= records) {
        out.commit(decode_records(data, records, w));
        return;
    }
    DatDecoder second(width_, height_, x_bits_, y_bits_);
    const int64_t seed_loop = loop_;
    second.loop_ = loop_;
    second.prev_raw_ = raw(mid - 1);
    size_t k2 = 0;
    std::thread worker([&] { k2 = second.decode_records(data + 8 * mid, records - mid, w + mid); });
    const size_t k1 = decode_records(data, mid, w);
    const int64_t last_first = last_t_;
    worker.join();
    if (k1 != mid) std::memmove(w + k1, w + mid, k2 * sizeof(Event));
    const int64_t delta = loop_ - seed_loop;
    join_seam(w + k1, k2, delta, last_first);
    second.loop_ += delta;
    second.last_t_ += delta;
    loop_ = second.loop_;
    prev_raw_ = second.prev_raw_;
    step_ = second.step_;  // (a wrap at the block's end may be taken back in the next chunk)
    if (k2) last_t_ = second.last_t_;
    c_.merge(second.c_);
    out.commit(k1 + k2);
}

size_t DatDecoder::decode_records(const uint8_t* data, size_t records, Event* w) {
    Event* const start = w;
    const uint32_t xmask = (1u << x_bits_) - 1, ymask = (1u << y_bits_) - 1;
    const uint32_t pshift = x_bits_ + y_bits_;
    const uint32_t wmax = width_ ? width_ : 0xFFFFFFFF, hmax = height_ ? height_ : 0xFFFFFFFF;
    constexpr int64_t kLoop = int64_t(1) << 32;
    int64_t loop = loop_, prev = prev_raw_, last_t = last_t_;
    Step step = step_;
    int64_t loops = 0;
    uint64_t oob = 0, backwards = 0;
    for (size_t i = 0; i < records; ++i) {
        const int64_t raw = load_u32(data + 8 * i);
        const uint32_t v = load_u32(data + 8 * i + 4);
        if (prev >= 0) {
            const int wraps = wrap_step<true>(raw, prev, step, kLoop);
            loop += wraps * kLoop;
            loops += wraps;
        }
        prev = raw;
        const uint32_t x = v & xmask, y = (v >> x_bits_) & ymask;
        if (x >= wmax || y >= hmax) {
            ++oob;
            continue;
        }
        const int64_t t = raw + loop;
        backwards += t < last_t;
        last_t = t;
        w->x = uint16_t(x);
        w->y = uint16_t(y);
        w->p = uint8_t((v >> pshift) & 1);
        w->t = t;
        ++w;
    }
    loop_ = loop;
    prev_raw_ = prev;
    step_ = step;
    last_t_ = last_t;
    const size_t k = size_t(w - start);
    c_.events += k;
    c_.out_of_bounds += oob;
    c_.t_backwards += backwards;
    c_.time_loops += uint64_t(loops);  // (modulo 2^64: a wrap taken back subtracts one)
    return k;
}

}  // namespace evs
