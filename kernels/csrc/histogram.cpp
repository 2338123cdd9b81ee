#include "histogram.hpp"

namespace evs {

size_t histogram_add(int32_t* counts, uint32_t width, uint32_t height, const Event* ev, size_t n, int32_t delta) {
    size_t skipped = 0;
    const size_t plane = size_t(width) * height;
    for (size_t i = 0; i < n; ++i) {
        const Event& e = ev[i];
        if (e.x >= width || e.y >= height || e.p > 1) {
            ++skipped;
            continue;
        }
        counts[e.p * plane + size_t(e.y) * width + e.x] += delta;
    }
    return skipped;
}

}  // namespace evs
