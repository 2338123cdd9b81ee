// Streaming decoders for word-oriented event formats. Plain C++: no Python in here.
//
// Every decoder is fed consecutive byte chunks of one file (any split, even mid-word) and
// appends decoded events to an EventBuffer. State (time base, current row, partial words)
// carries across chunks, so a file is never loaded whole. Damage a format tolerates is
// counted in DecodeCounters rather than thrown; the Python layer reports the counters.
#pragma once

#include <array>
#include <cstdint>

#include "event_buffer.hpp"

namespace evs {

struct DecodeCounters {
    uint64_t events = 0;          // events emitted
    uint64_t out_of_bounds = 0;   // events dropped: x >= width or y >= height
    uint64_t other_words = 0;     // valid non-CD words (triggers, OTHERS, CONTINUED, APS, ...)
    uint64_t unknown_words = 0;   // words of a reserved/undefined type, skipped
    uint64_t before_time = 0;     // CD events before the first time reference, dropped
    uint64_t t_backwards = 0;     // events kept although t < the previous kept event's t
    uint64_t time_loops = 0;      // timestamp counter roll-overs unwrapped
    uint64_t bytes = 0;           // bytes consumed (whole words or events only): bytes fed - pending_bytes()

    void merge(const DecodeCounters& o) {
        events += o.events;
        out_of_bounds += o.out_of_bounds;
        other_words += o.other_words;
        unknown_words += o.unknown_words;
        before_time += o.before_time;
        t_backwards += o.t_backwards;
        time_loops += o.time_loops;
    }
};

// Common machinery: geometry check, partial-word carry, counters.
class DecoderBase {
public:
    // Blocks at least this large (in bytes) are decoded by two threads where the format allows.
    static constexpr size_t kParallelBytes = size_t(1) << 20;

    DecoderBase(uint32_t width, uint32_t height) : width_(width), height_(height) {}
    const DecodeCounters& counters() const { return c_; }
    // Bytes of an incomplete trailing word held back, waiting for the next chunk.
    size_t pending_bytes() const { return carry_n_; }

protected:
    // After a two-thread decode: shifts the second half's k2 events by `delta` (a counter wrap
    // the first half found) and counts a backwards step at the seam between the halves.
    // `last_first`: the decoder's last emitted t after the first half (INT64_MIN if it never
    // emitted), which may come from an earlier chunk when the first half emitted nothing. The
    // second half's decoder started without a previous event, so its first event's step back,
    // if any, is counted here.
    void join_seam(Event* second, size_t k2, int64_t delta, int64_t last_first) {
        if (delta)
            for (size_t i = 0; i < k2; ++i) second[i].t += delta;
        if (last_first != INT64_MIN && k2 && second[0].t < last_first) ++c_.t_backwards;
    }

    bool in_bounds(uint32_t x, uint32_t y) const {
        return (width_ == 0 || x < width_) && (height_ == 0 || y < height_);
    }
    // Joins carried bytes with the new chunk into whole words; calls f(ptr, nbytes) on
    // whole words only (nbytes multiple of word_size) and stores the remainder.
    template <size_t WordSize, typename F>
    void feed_words(const uint8_t* data, size_t n, F&& f) {
        if (carry_n_) {
            size_t need = WordSize - carry_n_;
            size_t take = need < n ? need : n;
            std::memcpy(carry_.data() + carry_n_, data, take);
            carry_n_ += take;
            data += take;
            n -= take;
            if (carry_n_ < WordSize) return;
            f(carry_.data(), WordSize);
            c_.bytes += WordSize;
            carry_n_ = 0;
        }
        size_t whole = n - n % WordSize;
        if (whole) f(data, whole);
        c_.bytes += whole;
        carry_n_ = n - whole;
        if (carry_n_) std::memcpy(carry_.data(), data + whole, carry_n_);
    }

    uint32_t width_, height_;
    DecodeCounters c_;
    std::array<uint8_t, 16> carry_{};
    size_t carry_n_ = 0;
};

// The last step of a wrapping timestamp counter (EVT 2.0 / 2.1 TIME_HIGH, DAT times): see
// wrap_step in decode_prophesee.cpp.
enum class Step : uint8_t { Normal, Wrapped, Jumped };

// Prophesee EVT 2.0: 32-bit little-endian words.
class Evt2Decoder : public DecoderBase {
public:
    using DecoderBase::DecoderBase;
    void decode(const uint8_t* data, size_t n, EventBuffer& out);

private:
    void run(const uint8_t* data, size_t n, EventBuffer& out);
    // Decodes `words` words to `w` (room for `words` events); returns the events written.
    size_t decode_words(const uint8_t* data, size_t words, Event* w);
    int64_t time_base_ = -1;   // (time_high << 6) + loop offset; -1 until the first TIME_HIGH
    int64_t loop_ = 0;
    Step step_ = Step::Normal;  // the last TIME_HIGH's
    int64_t last_t_ = INT64_MIN;
};

// Prophesee EVT 2.1: 64-bit words with a 32-pixel validity mask.
class Evt21Decoder : public DecoderBase {
public:
    using DecoderBase::DecoderBase;
    void decode(const uint8_t* data, size_t n, EventBuffer& out);

private:
    void run(const uint8_t* data, size_t n, EventBuffer& out);
    int64_t time_base_ = -1;
    int64_t loop_ = 0;
    Step step_ = Step::Normal;
    int64_t last_t_ = INT64_MIN;
};

// Prophesee EVT 3.0: 16-bit little-endian words, stateful (row, time, vector base).
class Evt3Decoder : public DecoderBase {
public:
    using DecoderBase::DecoderBase;
    void decode(const uint8_t* data, size_t n, EventBuffer& out);

private:
    void run(const uint8_t* data, size_t n, EventBuffer& out);
    void run_serial(const uint8_t* data, size_t words, EventBuffer& out);
    int64_t time_high_ = -1;   // unwrapped (time_high << 12); -1 until the first TIME_HIGH
    int64_t loop_ = 0;
    int64_t t_ = 0;
    uint32_t y_ = 0;
    uint32_t base_x_ = 0;
    uint8_t base_p_ = 0;
    int64_t last_t_ = INT64_MIN;
};

// Prophesee DAT (CD, 8-byte records: uint32 t, uint32 x:14 y:14 p:4), 32-bit time unwrapped.
class DatDecoder : public DecoderBase {
public:
    DatDecoder(uint32_t width, uint32_t height, uint32_t x_bits, uint32_t y_bits)
        : DecoderBase(width, height), x_bits_(x_bits), y_bits_(y_bits) {}
    void decode(const uint8_t* data, size_t n, EventBuffer& out);

private:
    void run(const uint8_t* data, size_t n, EventBuffer& out);
    size_t decode_records(const uint8_t* data, size_t records, Event* w);
    uint32_t x_bits_, y_bits_;
    int64_t loop_ = 0;
    int64_t prev_raw_ = -1;
    Step step_ = Step::Normal;  // the last record's
    int64_t last_t_ = INT64_MIN;
};

// N-MNIST / N-Caltech101 40-bit ATIS records; y == 240 marks a timestamp overflow (+2^13).
class AtisBinDecoder : public DecoderBase {
public:
    using DecoderBase::DecoderBase;
    void decode(const uint8_t* data, size_t n, EventBuffer& out);

private:
    void run(const uint8_t* data, size_t n, EventBuffer& out);
    int64_t offset_ = 0;
    int64_t last_t_ = INT64_MIN;
};

// Event Stream (.es) version 2, DVS or ATIS byte stream; a state machine across chunks. The two
// types differ only in the event's first byte; ATIS threshold crossings are counted, not kept.
class EsDecoder : public DecoderBase {
public:
    EsDecoder(uint32_t width, uint32_t height, bool atis) : DecoderBase(width, height), atis_(atis) {}
    void decode(const uint8_t* data, size_t n, EventBuffer& out);

private:
    bool atis_;
    int state_ = 0;
    int64_t t_ = 0;
    uint8_t p_ = 0;
    bool tc_ = false;
    uint32_t x_ = 0;
    uint32_t y_ = 0;
};

struct EsDvsDecoder : EsDecoder {
    EsDvsDecoder(uint32_t width, uint32_t height) : EsDecoder(width, height, false) {}
};

struct EsAtisDecoder : EsDecoder {
    EsAtisDecoder(uint32_t width, uint32_t height) : EsDecoder(width, height, true) {}
};

}  // namespace evs
