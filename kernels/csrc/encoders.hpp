// Streaming encoders for Prophesee EVT 2.0 and EVT 3.0. Plain C++: no Python in here.
// Events must have 0 <= t, x < 2048, y < 2048 and p in {0, 1} (checked by the caller).
#pragma once

#include <cstdint>
#include <vector>

#include "event.hpp"

namespace evs {

class Evt2Encoder {
public:
    // Appends 32-bit words for `n` events to `out`. Returns the number of words written.
    size_t encode(const Event* ev, size_t n, std::vector<uint32_t>& out);

private:
    int64_t time_high_ = -1;  // last emitted t >> 6 (unwrapped)
};

class Evt3Encoder {
public:
    size_t encode(const Event* ev, size_t n, std::vector<uint16_t>& out);

private:
    int64_t high_ = -1;  // last emitted t >> 12 (unwrapped)
    int64_t t_ = -1;     // time the decoder currently assigns to events
    int32_t y_ = -1;
};

}  // namespace evs
