#include "encoders.hpp"

namespace evs {

// EVT 2.0: one TIME_HIGH word whenever t >> 6 changes. Forward jumps are split into
// steps under 2^27 time-high units (half the 2^34 us range) so that a reader sees every wrap
// and takes no step for a damaged word (see decode_prophesee.cpp).
size_t Evt2Encoder::encode(const Event* ev, size_t n, std::vector<uint32_t>& out) {
    const size_t before = out.size();
    out.reserve(before + n + n / 8 + 4);
    constexpr int64_t kStep = (int64_t(1) << 27) - 1;
    for (size_t i = 0; i < n; ++i) {
        const Event& e = ev[i];
        const int64_t high = e.t >> 6;
        if (high != time_high_) {
            if (time_high_ >= 0) {
                while (high - time_high_ > kStep) {
                    time_high_ += kStep;
                    out.push_back((0x8u << 28) | uint32_t(time_high_ & 0x0FFFFFFF));
                }
            }
            out.push_back((0x8u << 28) | uint32_t(high & 0x0FFFFFFF));
            time_high_ = high;
        }
        out.push_back((uint32_t(e.p & 1) << 28) | (uint32_t(e.t & 0x3F) << 22) |
                      (uint32_t(e.x & 0x7FF) << 11) | uint32_t(e.y & 0x7FF));
    }
    return out.size() - before;
}

// EVT 3.0: TIME_HIGH when t >> 12 changes (which also resets the reader's TIME_LOW to 0),
// TIME_LOW when the low 12 bits differ from what the reader holds, ADDR_Y when the row
// changes. Runs of at least three events with the same time, row and polarity and strictly
// increasing x within 32 pixels become VECT_BASE_X + VECT_12/VECT_8 words, as cameras emit
// them; other events get one ADDR_X each. Forward jumps are split into steps of 1024
// time-high units so that a reader sees every 2^24 us wrap (it detects one on a jump back
// >= 2048).
size_t Evt3Encoder::encode(const Event* ev, size_t n, std::vector<uint16_t>& out) {
    const size_t before = out.size();
    out.reserve(before + 2 * n + 8);
    constexpr int64_t kStep = 1024;
    size_t i = 0;
    while (i < n) {
        const Event& e = ev[i];
        const int64_t high = e.t >> 12;
        if (high != high_) {
            if (high_ >= 0) {
                while (high - high_ > kStep) {
                    high_ += kStep;
                    out.push_back(uint16_t(0x8000 | (high_ & 0xFFF)));
                }
            }
            out.push_back(uint16_t(0x8000 | (high & 0xFFF)));
            high_ = high;
            t_ = high << 12;
        }
        if (e.t != t_) {
            out.push_back(uint16_t(0x6000 | (e.t & 0xFFF)));
            t_ = e.t;
        }
        if (int32_t(e.y) != y_) {
            out.push_back(uint16_t(e.y & 0x7FF));
            y_ = e.y;
        }
        // A vector run: same t, y, p; x strictly increasing, within 32 pixels of the first.
        size_t j = i + 1;
        while (j < n && ev[j].t == e.t && ev[j].y == e.y && ev[j].p == e.p && ev[j].x > ev[j - 1].x &&
               ev[j].x < e.x + 32) {
            ++j;
        }
        if (j - i >= 3) {
            const uint32_t base = e.x;
            out.push_back(uint16_t(0x3000 | (uint32_t(e.p & 1) << 11) | (base & 0x7FF)));
            uint32_t start = base;
            size_t k = i;
            while (k < j) {
                const uint32_t span = (ev[j - 1].x - start < 8) ? 8 : 12;
                uint32_t mask = 0;
                while (k < j && ev[k].x < start + span) {
                    mask |= 1u << (ev[k].x - start);
                    ++k;
                }
                out.push_back(uint16_t((span == 12 ? 0x4000 : 0x5000) | mask));
                start += span;
            }
            i = j;
            continue;
        }
        out.push_back(uint16_t(0x2000 | (uint32_t(e.p & 1) << 11) | (e.x & 0x7FF)));
        ++i;
    }
    return out.size() - before;
}

}  // namespace evs
