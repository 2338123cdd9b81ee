// Decoders for the ATIS 40-bit .bin records (N-MNIST, N-Caltech101) and the Event Stream
// (.es) DVS byte stream.
#include "decoders.hpp"

namespace evs {

// ---------------------------------------------------------------------------------------
// 40-bit ATIS record, big-endian bit order: x[39..32] y[31..24] p[23] t[22..0].
// Records with y == 240 are not events: each adds 2^13 us to all later timestamps
// (Orchard et al.'s reader convention for timestamp overflow).
void AtisBinDecoder::decode(const uint8_t* data, size_t n, EventBuffer& out) {
    feed_words<5>(data, n, [&](const uint8_t* d, size_t m) { run(d, m, out); });
}

void AtisBinDecoder::run(const uint8_t* data, size_t n, EventBuffer& out) {
    const size_t records = n / 5;
    Event* w = out.reserve_more(records);
    Event* const start = w;
    for (size_t i = 0; i < records; ++i) {
        const uint8_t* r = data + 5 * i;
        const uint32_t x = r[0], y = r[1];
        if (y == 240) {
            offset_ += int64_t(1) << 13;
            ++c_.other_words;
            continue;
        }
        if (!in_bounds(x, y)) {
            ++c_.out_of_bounds;
            continue;
        }
        const int64_t t = offset_ + ((int64_t(r[2] & 0x7F) << 16) | (int64_t(r[3]) << 8) | r[4]);
        c_.t_backwards += t < last_t_;
        last_t_ = t;
        w->x = uint16_t(x);
        w->y = uint16_t(y);
        w->p = uint8_t(r[2] >> 7);
        w->t = t;
        ++w;
    }
    const size_t k = size_t(w - start);
    out.commit(k);
    c_.events += k;
}

// ---------------------------------------------------------------------------------------
// Event Stream 2.x. The first byte of an event differs by stream type:
//   DVS:  'tttttttp' (t delta 0..126 us, polarity); 0xFF alone adds 127 us, 0xFE is a no-op reset.
//   ATIS: 'ttttttpc' (t delta, polarity, c = threshold crossing, not a change event); 0xFC is a
//         reset, other (b & 0xFC) == 0xFC bytes add 63 * (b & 3) us.
// Then x and y as uint16 little-endian, for both.
void EsDecoder::decode(const uint8_t* data, size_t n, EventBuffer& out) {
    const int old_state = state_;  // bytes of an incomplete event from the last chunk
    // Every event needs at least 5 bytes.
    Event* w = out.reserve_more(n / 5 + 1);
    Event* const start = w;
    for (size_t i = 0; i < n; ++i) {
        const uint8_t b = data[i];
        switch (state_) {
            case 0:
                if (atis_) {
                    if ((b & 0xFC) == 0xFC) {
                        t_ += 63 * (b & 0x03);
                        break;
                    }
                    t_ += b >> 2;
                    p_ = (b >> 1) & 1;
                    tc_ = b & 1;
                } else {
                    if (b == 0xFF) {
                        t_ += 127;
                        break;
                    }
                    if (b == 0xFE) break;
                    t_ += b >> 1;
                    p_ = b & 1;
                }
                state_ = 1;
                break;
            case 1:
                x_ = b;
                state_ = 2;
                break;
            case 2:
                x_ |= uint32_t(b) << 8;
                state_ = 3;
                break;
            case 3:
                y_ = b;
                state_ = 4;
                break;
            default:
                y_ |= uint32_t(b) << 8;
                state_ = 0;
                if (tc_) {
                    ++c_.other_words;
                } else if (!in_bounds(x_, y_)) {
                    ++c_.out_of_bounds;
                } else {
                    w->x = uint16_t(x_);
                    w->y = uint16_t(y_);
                    w->p = p_;
                    w->t = t_;
                    ++w;
                }
                break;
        }
    }
    // Consumed: what was fed, plus the last chunk's incomplete event if completed here, minus the
    // bytes of an event still incomplete (held in state_, reported by pending_bytes()). So
    // bytes + pending_bytes() == bytes fed, as for the word decoders.
    c_.bytes += n + size_t(old_state) - size_t(state_);
    carry_n_ = size_t(state_);  // bytes of an event still incomplete
    const size_t k = size_t(w - start);
    out.commit(k);
    c_.events += k;
}

}  // namespace evs
