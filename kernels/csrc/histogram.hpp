// Event histogram accumulation (polarity, row, column), for incremental window updates.
#pragma once

#include <cstddef>
#include <cstdint>

#include "event.hpp"

namespace evs {

// counts[(p * height + y) * width + x] += delta for every event; events outside the sensor are
// skipped and their number returned.
size_t histogram_add(int32_t* counts, uint32_t width, uint32_t height, const Event* ev, size_t n, int32_t delta);

}  // namespace evs
