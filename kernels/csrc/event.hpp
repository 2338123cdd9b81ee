// The canonical event, shared by every decoder, encoder and (later) the ring buffer.
// Layout matches evstream.kernels.events.EVENT_DTYPE: 16 bytes, t aligned to 8.
#pragma once

#include <cstddef>
#include <cstdint>

namespace evs {

struct Event {
    uint16_t x;   // column, pixels
    uint16_t y;   // row, pixels
    uint8_t p;    // polarity: 1 = ON (brightness increase), 0 = OFF
    uint8_t pad[3];
    int64_t t;    // microseconds
};

static_assert(sizeof(Event) == 16, "Event must be 16 bytes");
static_assert(offsetof(Event, x) == 0 && offsetof(Event, y) == 2 && offsetof(Event, p) == 4 &&
                  offsetof(Event, t) == 8,
              "Event layout must match EVENT_DTYPE");

inline Event make_event(uint16_t x, uint16_t y, int64_t t, uint8_t p) {
    Event e{};
    e.x = x;
    e.y = y;
    e.p = p;
    e.t = t;
    return e;
}

}  // namespace evs
